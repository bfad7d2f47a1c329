"""`parrot-ser demo`: the offline end-to-end demo on a synthetic acted-prosody corpus."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from parrot_ser.cli.common import err, guard, make_progress, parse_checkpoints, print_json


@guard
def demo(
    out: Path = typer.Option(Path("parrot-demo"), "--out", help="Output folder (a rerun with the same settings "
                                                                 "resumes; other settings are refused)."),
    quick: bool = typer.Option(False, "--quick", help="Small and fast (CI): 48 utterances, 3 folds, 8 epochs."),
    seed: int = typer.Option(0, "--seed", help="Seed of the corpus, the random-init encoders and training."),
    untrained: bool = typer.Option(False, "--untrained", help="The old demo: logmel + UNTRAINED random-init Mamba "
                                   "and attention PTMs (needs no extra; tests the pipeline, not the models)."),
    checkpoint: list[str] = typer.Option([], "--checkpoint", help="NAME=PATH: one more REAL encoder (with "
                                         "--untrained: in place of the untrained one of its kind), e.g. "
                                         "whisper-base=../shared/models/whisper-base (attention) or "
                                         "ssam-base=ckpt.pth (Mamba). Never downloads."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary (demo.json) as JSON on stdout."),
) -> None:
    """Synthesise a speaker-labelled corpus, extract features from REAL pretrained encoders whose weights
    ship in the 'demo' extra (resemblyzer: recurrent, crepe-tiny: convolutional; + whisper-base with
    --checkpoint), run cnn / concat / PARROT with speaker-independent folds, write REPORT.md with
    tables and plots, export the PARROT model and predict unseen voices. Offline, no downloads."""
    from parrot_ser.demo.run import check_demo_extra, demo_encoders, run_demo

    ckpts = parse_checkpoints(checkpoint)
    names = demo_encoders(ckpts, untrained=untrained, quick=quick)
    if not untrained:
        check_demo_extra()  # one line naming the extra, before anything is written
    random = [n for n in names if untrained and n != "logmel" and n not in ckpts]
    if random:
        err.print(f"[bold yellow]UNTRAINED (random init, no download): {', '.join(random)}; their numbers "
                  "test the pipeline, not the models.[/]", markup=True)
    real = [f"{n} ({ckpts[n]})" if n in ckpts else f"{n} (weights from the demo extra's wheel)"
            for n in names if n != "logmel" and n not in random]
    if real:
        err.print(f"[bold green]real pretrained weights: {', '.join(real)}[/]", markup=True)

    def say(msg: str) -> None:
        err.print(f"[bold cyan]demo[/] {msg}", markup=True, highlight=False)

    res = run_demo(out, quick=quick, seed=seed, say=say, progress=make_progress, checkpoints=ckpts, untrained=untrained)
    s = res.summary
    t = Table(title=f"demo results ({'quick' if quick else 'full'}; {s['corpus']['n_utterances']} utterances, "
                    f"{len(s['corpus']['speakers'])} speakers, {s['plan']['n_folds']} speaker-independent folds)",
              title_justify="left")
    for col in ("encoders", "model", "accuracy %", "macro-F1 %"):
        t.add_column(col, justify="left" if col in ("encoders", "model") else "right")
    for c in s["cells"]:
        tags = [e for e in c["row"].split("+") if s["encoders"].get(e, {}).get("untrained")]
        t.add_row(c["row"] + (f" ({', '.join(tags)} untrained)" if tags else ""), c["model"],
                  f"{c['accuracy']['mean']:.1f} ± {c['accuracy']['std']:.1f}",
                  f"{c['macro_f1']['mean']:.1f} ± {c['macro_f1']['std']:.1f}")
    err.print(t)
    un = s["unseen"]
    err.print(f"exported {s['exported']['cell']}; on {un['n']} utterances by unseen voices: "
              f"{un['accuracy']:.1f}% correct. Corpus synthesised with {s['corpus']['backend']}; "
              f"total {s['timings']['total_s']:.0f} s.")
    if s["missing_encoders"]:
        err.print(f"[bold yellow]left out (could not be built):[/] {', '.join(s['missing_encoders'])}", markup=True)
    err.print("[bold]outputs:[/]", markup=True)
    for k, v in s["paths"].items():
        err.print(f"  {k:14s} {v}", highlight=False)
    if as_json:
        print_json(s)
