"""REPORT.md and the two demo plots (every cell's accuracy; the corpus's measured prosody)."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import soundfile as sf

UNTRAINED_CAVEAT = (
    "**UNTRAINED ENCODERS.** The PTM encoders of this demo ({names}) have RANDOM weights (no download "
    "happens). Their features, and every number computed from them, show that the pipeline runs end to "
    "end; they say nothing about the pretrained models or about PARROT's merit. Run `parrot-ser extract` "
    "with real checkpoints and a real corpus for that."
)


def _fmt(m: dict) -> str:
    return f"{m['mean']:.1f} ± {m['std']:.1f}"


def plot_accuracy(cells: list[dict], path: Path, chance: float | None = None,
                  untrained: list[str] | None = None) -> Path:
    """Horizontal bars per cell, best accuracy on top, with the chance level drawn and the legend
    outside the bars (a reader compares cells, so they are sorted). The title names the untrained
    encoders (none when every PTM was given a checkpoint)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cells = sorted(cells, key=lambda c: -c["accuracy"]["mean"])
    labels = [f"{c['model']} [{c['row']}]" for c in cells]
    y = np.arange(len(cells))
    fig, ax = plt.subplots(figsize=(9, 0.5 * len(cells) + 2.2))
    for off, m, name in ((-0.2, "accuracy", "accuracy (WA)"), (0.2, "macro_f1", "macro-F1")):
        ax.barh(y + off, [c[m]["mean"] for c in cells], 0.4, xerr=[c[m]["std"] for c in cells], label=name,
                capsize=2)
    if chance is not None:
        ax.axvline(chance, color="0.3", ls="--", lw=1, label=f"chance {chance:.1f}%")
    ax.set_yticks(y, labels)
    ax.invert_yaxis()
    ax.set_xlim(0, 100)
    ax.set_xlabel("% (mean ± std over speaker-independent folds)")
    ax.set_title("Demo grid, best first\n(synthetic corpus; " + (f"UNTRAINED random init: {', '.join(untrained)})"
                                                                 if untrained else "PTMs with real weights)"),
                 fontsize=10)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)  # outside: never over a bar
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path


def corpus_prosody(corpus_dir: Path) -> dict[str, dict[str, tuple[float, float]]]:
    """Per emotion: mean and std of duration, RMS level and median F0, measured on the written files."""
    from parrot_ser.corpora.base import Manifest
    from parrot_ser.demo.synth import prosody_stats

    m = Manifest.from_csv(corpus_dir / "manifest.csv", root=corpus_dir)
    per: dict[str, list[dict]] = defaultdict(list)
    for u in m.utterances:
        x, sr = sf.read(str(m.abspath(u)), dtype="float32")
        per[u.label].append(prosody_stats(x, sr))
    return {e: {k: (float(np.nanmean([d[k] for d in rows])), float(np.nanstd([d[k] for d in rows])))
                for k in rows[0]} for e, rows in per.items()}


def plot_prosody(stats: dict[str, dict[str, tuple[float, float]]], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    emos = list(stats)
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.5))
    for ax, (k, title) in zip(axes, (("f0_hz", "median F0 (Hz)"), ("rms_db", "RMS level (dBFS)"),
                                     ("duration_s", "duration (s)"))):
        ax.bar(emos, [stats[e][k][0] for e in emos], yerr=[stats[e][k][1] for e in emos], capsize=2)
        ax.set_title(title)
        ax.tick_params(axis="x", rotation=45)
        if k == "rms_db":
            ax.set_ylim(min(stats[e][k][0] for e in emos) - 6, 0)
    fig.suptitle("Synthetic corpus: measured prosody per emotion (mean ± std over utterances)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _encoder_lines(encoders: dict) -> list[str]:
    """One line per encoder: handcrafted, UNTRAINED or real (with its checkpoint)."""
    lines = ["Encoders:", ""]
    for e, v in encoders.items():
        state = ("handcrafted, no weights" if v["kind"] == "handcrafted" else
                 "**UNTRAINED** (random init)" if v["untrained"] else f"**real** pretrained weights (`{v.get('checkpoint')}`)")
        lines.append(f"- `{e}` ({v['kind']}): {state}")
    return lines + [""]


def _why_exported(exported: dict, cells: list[dict]) -> str:
    """Why this cell and not the best one (issue 20, item 11: parrot-token was exported over a
    higher-scoring parrot without a word)."""
    row, model = exported["cell"].rsplit("/", 1)
    if model != "parrot-token":
        return ""
    acc = {c["model"]: c["accuracy"]["mean"] for c in cells if c["row"] == row}
    versus = (f" (here {acc['parrot-token']:.1f}% against parrot's {acc['parrot']:.1f}%, cross-validated on "
              "this small synthetic corpus)" if "parrot" in acc and "parrot-token" in acc else "")
    return ("It is parrot-token rather than the paper's parrot because a parrot-token prediction for a file "
            "depends on that file alone: the paper's OT couples the utterances of a batch, so an exported "
            f"parrot scores each file together with fixed anchor utterances{versus}.")


def write_report(out: Path, summary: dict, grid: dict, predictions: list[dict]) -> Path:
    cells = summary["cells"]
    untrained = [e for e, v in summary["encoders"].items() if v["untrained"]]
    plot_accuracy(cells, out / "plots" / "accuracy.png", chance=100 / len(summary["corpus"]["emotions"]),
                  untrained=untrained)
    stats = corpus_prosody(out / "corpus")
    plot_prosody(stats, out / "plots" / "prosody.png")
    summary["corpus"]["prosody"] = {e: {k: v[0] for k, v in d.items()} for e, d in stats.items()}

    setup, corpus = summary["plan"], summary["corpus"]
    first = json.loads((out / cells[0]["dir"] / "results.json").read_text(encoding="utf-8"))
    seed0 = str(setup["seeds"][0])
    folds = first["folds"][seed0]
    n_classes = len(corpus["emotions"])
    L = [f"# PARROT-SER demo report ({'quick' if setup['quick'] else 'full'} mode, seed {setup['seed']})", ""]
    if untrained:
        L += ["> " + UNTRAINED_CAVEAT.format(names=", ".join(untrained)), ""]
    L += _encoder_lines(summary["encoders"])
    L += ["> **SYNTHETIC CORPUS.** The speech is rendered by "
          f"`{corpus['backend']}` from prosody profiles (rate, pitch, range, loudness, voice-quality "
          "effects): emotions here are clean, exaggerated prosody patterns, far easier and far less varied "
          "than acted or natural emotional speech. Scores on it are not comparable with any published number.",
          ""]
    if summary["missing_encoders"]:
        L += ["**Encoders that could not be built (left out):** " +
              "; ".join(f"`{k}`: {v}" for k, v in summary["missing_encoders"].items()), ""]
    L += ["## Corpus", "",
          f"{corpus['n_utterances']} utterances = {len(corpus['speakers'])} speakers (espeak voices "
          f"{', '.join(corpus['speakers'])}) x {len(corpus['emotions'])} emotions x {corpus['n_sentences']} "
          f"emotionally neutral sentences; 16 kHz mono; manifest `corpus/manifest.csv`, generator settings "
          "`corpus/corpus.json`. Measured prosody per emotion (![prosody](plots/prosody.png)):", "",
          "| emotion | median F0 (Hz) | RMS (dBFS) | duration (s) |", "|---|---|---|---|"]
    for e, d in stats.items():
        L.append(f"| {e} | {d['f0_hz'][0]:.0f} ± {d['f0_hz'][1]:.0f} | {d['rms_db'][0]:.1f} ± {d['rms_db'][1]:.1f} "
                 f"| {d['duration_s'][0]:.2f} ± {d['duration_s'][1]:.2f} |")
    L += ["", "## Results", "",
          f"Protocol `{summary['protocol']}`: {setup['n_folds']} folds with disjoint speakers (checked "
          f"mechanically before training: a speaker on both sides raises LeakageError), validation speakers "
          f"drawn from the training side only, seeds {setup['seeds']} (each fold averaged over seeds, then "
          f"mean ± sample std over folds). {setup['epochs']} epochs max. Chance level: {100 / n_classes:.1f}% "
          f"({n_classes} balanced classes). Pairs: `{summary['pairs']}`.", "",
          "| encoders | model | accuracy (WA) % | UA % | macro-F1 % |", "|---|---|---|---|---|"]
    names = {e: v.get("label", e) for e, v in summary["encoders"].items()}
    for c in cells:
        row = "+".join(names.get(e, e) for e in c["row"].split("+"))
        L.append(f"| {row} | {c['model']} | {_fmt(c['accuracy'])} | {_fmt(c['ua'])} | {_fmt(c['macro_f1'])} |")
    L += ["", "![accuracy per cell](plots/accuracy.png)", "",
          "Paper-style table: [grid/table.md](grid/table.md); long form: [grid/cells.csv](grid/cells.csv); "
          "fusion models vs concat, paired over the same folds and seeds: "
          "[grid/significance.md](grid/significance.md). Each cell's run (results.json, predictions.csv, "
          "confusion.png, per_class_f1.png, transport.png for OT models, fold weights) is under its folder:", ""]
    for c in cells:
        L.append(f"- `{c['row']}` / `{c['model']}`: [{c['dir']}]({c['dir']}/results.json), "
                 f"[confusion]({c['dir']}/confusion.png)")
    L += ["", f"Folds (seed {seed0}):", "", "| fold | test speakers | validation speakers | train speakers |",
          "|---|---|---|---|"]
    for f in folds:
        L.append(f"| {f['fold']} | {', '.join(f['test_speakers'])} | {', '.join(f['val_speakers'])} | "
                 f"{', '.join(f['train_speakers'])} |")
    ex, un = summary["exported"], summary["unseen"]
    L += ["", "## Exported model and predictions on unseen voices", "",
          f"`{ex['cell']}` refit as one model on the whole corpus (what `parrot-ser export` does by "
          f"default) to [model/](model/) (`parrot-ser predict {out / 'model'} FILES`). {_why_exported(ex, cells)} "
          f"It then scored {un['n']} new utterances by "
          f"two voices the corpus never uses ({', '.join(un['speakers'])}): accuracy {un['accuracy']:.1f}% "
          f"(a handful of files: a smoke test, not a measurement). [predictions.csv](predictions.csv):", "",
          "| file | speaker | label | predicted | confidence |", "|---|---|---|---|---|"]
    for r in predictions:
        L.append(f"| {r['path']} | {r['speaker']} | {r['label']} | {r['predicted']} | {r['confidence']:.2f} |")
    t = summary["timings"]
    L += ["", "## Reproduce", "",
          f"`parrot-ser demo --out {out} --seed {setup['seed']}{' --quick' if setup['quick'] else ''}"
          + "".join(f" --checkpoint {k}={v}" for k, v in setup.get("checkpoints", {}).items()) + "` "
          f"(same seed -> byte-identical corpus; training is seeded). This run: corpus {t['corpus_s']:.0f} s, "
          f"features {t['features_s']:.0f} s, grid {t['grid_s']:.0f} s, export + predict "
          f"{t['export_predict_s']:.0f} s, total {t['total_s']:.0f} s.", ""]
    path = out / "REPORT.md"
    path.write_text("\n".join(L), encoding="utf-8")
    return path
