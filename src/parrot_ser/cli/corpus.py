"""`parrot-ser corpus list | inspect | manifest`."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from parrot_ser.cli.common import err, guard, make_progress, out, print_json, rate_text
from parrot_ser.corpora import CORPORA, Manifest, list_corpora, scan_corpus
from parrot_ser.corpora.base import Problem, is_unknown_speaker
from parrot_ser.corpora.check import check_audio
from parrot_ser.errors import ConfigError
from parrot_ser.registry import parse_key_values

app = typer.Typer(no_args_is_help=True, help="List, inspect and export SER corpora (and folds in EmoBox's format).")

ROOT_ARG = typer.Argument(..., help="Corpus root folder (csv: the CSV file).", show_default=False)
CORPUS_OPT = typer.Option(..., "--corpus", "-c", help="Corpus name (see `parrot-ser corpus list`).")
REGEX_OPT = typer.Option(None, "--speaker-regex", help="folders: regex on the file name giving the speaker "
                                                       "(group 'speaker' or group 1).")
FULL_OPT = typer.Option(False, "--iemocap-full-labels", help="iemocap: keep every annotated class, not the 4 classes.")
SONG_OPT = typer.Option(False, "--include-song", help="ravdess: also include the song files.")

CORPUS_OPTION_OPT = typer.Option([], "--corpus-option", help="KEY=VALUE option of the corpus scanner; repeat for "
                                 "several (e.g. speaker_regex=..., include_song=true, full_labels=true; "
                                 "`parrot-ser corpus list` shows what each corpus takes).")

LABELS_OPT = typer.Option(None, "--labels", help="canonical: the shared vocabulary (anger -> angry); asis: the "
                          "strings of the data. Default: canonical for the built-in corpora; for csv/folders "
                          "canonical when every label is a known spelling, else the data's own labels.")
LABEL_MAP_OPT = typer.Option(None, "--label-map", help="YAML/JSON file of label: new_label (merge and rename, "
                             "e.g. exc: happy; null drops the label), applied after --labels.")

# Dedicated flags kept for the options most used; each is the same as --corpus-option NAME=VALUE.
_FLAGS = {"--speaker-regex": "speaker_regex", "--iemocap-full-labels": "full_labels", "--include-song": "include_song"}


def scan_from_cli(root: Path, corpus: str, corpus_option: list[str], flags: dict[str, Any] | None = None,
                  labels: str | None = None, label_map: Path | None = None) -> Manifest:
    """Scan ``root`` with the options of ``--corpus-option KEY=VALUE`` and the dedicated flags the user
    set (``flags``: flag -> value, None when not given); an option the corpus does not take is a
    one-line error naming the corpora that take it."""
    spec = CORPORA.get(corpus)  # RegistryError for an unknown name, before touching the disk
    options: dict[str, Any] = dict(parse_key_values(corpus_option, "--corpus-option"))
    given = {flag: (_FLAGS[flag], value) for flag, value in (flags or {}).items() if value is not None}
    given.update({f"--corpus-option {k}": (k, v) for k, v in options.items()})
    for flag, (key, value) in given.items():
        if key not in spec.options:
            users = [n for n, s in CORPORA.items() if key in s.options]
            takes = ", ".join(spec.options) or "no options"
            raise ConfigError(f"{flag} applies to corpus {', '.join(users) or 'none'}, not {corpus} (takes: {takes})")
        options[key] = value
    man = scan_corpus(corpus, root, labels=labels, label_map=label_map, **options)
    err.print(man.label_policy["note"] + (f"; label map {label_map}" if label_map else "")
              + (f"; targets: {', '.join(man.targets)}" if man.targets else ""), markup=False)
    return man


def _scan(root: Path, corpus: str, corpus_option: list[str], speaker_regex: str | None, full: bool,
          song: bool, labels: str | None, label_map: Path | None) -> Manifest:
    return scan_from_cli(root, corpus, corpus_option, {"--speaker-regex": speaker_regex,
                                                       "--iemocap-full-labels": full or None,
                                                       "--include-song": song or None}, labels, label_map)


@app.command("list")
@guard
def list_cmd() -> None:
    """Known corpora, one line each."""
    width = max(len(n) for n, _ in list_corpora())
    for name, desc in list_corpora():
        opts = ", ".join(f"{k}={o.default!r}" for k, o in CORPORA.get(name).options.items())
        out.print(f"{name:<{width}}  {desc}" + (f" [--corpus-option {opts}]" if opts else ""), markup=False)
    for module, problem in CORPORA.failures().items():
        out.print(f"{module:<{width}}  unavailable: {problem}", markup=False)


def _check(man: Manifest, workers: int, quiet: bool) -> tuple[dict[str, float], list[Problem]]:
    t0 = time.perf_counter()
    with make_progress("file", disable=quiet) as prog:
        task = prog.add_task("reading headers", total=len(man), rate="")
        done = 0

        def step(n: int) -> None:
            nonlocal done
            done += n
            prog.update(task, advance=n, rate=rate_text(done, time.perf_counter() - t0, "file"))

        infos, problems = check_audio(man, workers=workers, on_done=step)
    return {k: v.duration for k, v in infos.items()}, problems


@app.command("inspect")
@guard
def inspect(
    root: Path = ROOT_ARG,
    corpus: str = CORPUS_OPT,
    check_audio_: bool = typer.Option(False, "--check-audio", help="Read every file header (durations, bad files)."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object on stdout."),
    workers: int = typer.Option(8, "--workers", min=1, help="Threads for --check-audio."),
    speaker_regex: str | None = REGEX_OPT,
    iemocap_full_labels: bool = FULL_OPT,
    include_song: bool = SONG_OPT,
    corpus_option: list[str] = CORPUS_OPTION_OPT,
    labels_mode: str | None = LABELS_OPT,
    label_map: Path | None = LABEL_MAP_OPT,
) -> None:
    """Counts per class and speaker, durations, targets, and every file that did not fit."""
    man = _scan(root, corpus, corpus_option, speaker_regex, iemocap_full_labels, include_song, labels_mode, label_map)
    durations: dict[str, float] | None = None
    problems = list(man.problems)
    if check_audio_:
        durations, bad = _check(man, workers, quiet=False)
        problems = sorted(problems + bad, key=lambda p: p.path)
    labels = Counter(u.label or "(none)" for u in man.utterances)
    speakers = Counter(u.speaker for u in man.utterances if not is_unknown_speaker(u.speaker))
    n_unknown = sum(is_unknown_speaker(u.speaker) for u in man.utterances)
    total = round(sum(durations.values()), 3) if durations is not None else None
    targets = target_summary(man)
    if as_json:
        print_json({
            "corpus": man.corpus,
            "n_utterances": len(man),
            "n_speakers": len(speakers),
            "n_unknown_speaker": n_unknown,
            "labels": dict(sorted(labels.items(), key=lambda kv: (-kv[1], kv[0]))),
            "label_policy": man.label_policy,
            "targets": targets,
            "speakers": dict(sorted(speakers.items())),
            "total_seconds": total,
            "excluded": man.excluded,
            "problems": [{"path": p.path, "problem": p.problem} for p in problems],
        })
        return
    _print_table(man, labels, durations)
    out.print(f"{man.corpus}: {len(man)} utterances, {len(speakers)} speakers, {len(labels)} labels"
              + (f", {total / 3600:.2f} h ({total:.1f} s)" if total is not None else ""), markup=False)
    if n_unknown:
        out.print(f"unknown speaker: {n_unknown} utterance(s), counted apart (not one speaker; each is its own "
                  f"group in folds)", markup=False)
    for name, t in targets.items():
        out.print(f"target {name}: min {t['min']:g}, mean {t['mean']:g}, max {t['max']:g} (n {t['n']})", markup=False)
    for reason, n in man.excluded.items():
        out.print(f"excluded: {n} x {reason}", markup=False)
    if problems:
        out.print(f"{len(problems)} problem(s):", markup=False)
        for p in problems[:20]:
            out.print(f"  {p.path}: {p.problem}", markup=False)
        if len(problems) > 20:
            out.print(f"  ... and {len(problems) - 20} more (see --json)", markup=False)


def _print_table(man: Manifest, labels: Counter[str], durations: dict[str, float] | None) -> None:
    """Speakers as rows (there can be ~100), labels as columns (at most 12)."""
    cols = sorted(labels)
    table = Table(title=f"{man.corpus}: utterances per speaker and label", show_footer=True)
    table.add_column("speaker", footer="total")
    cell: Counter[tuple[str, str]] = Counter((_speaker_row(u.speaker), u.label or "(none)") for u in man.utterances)
    for c in cols:
        table.add_column(c, justify="right", footer=str(labels[c]))
    table.add_column("all", justify="right", footer=str(len(man)))
    if durations is not None:
        table.add_column("seconds", justify="right", footer=f"{sum(durations.values()):.1f}")
    for spk in sorted({_speaker_row(s) for s in man.speakers()}):
        row = [spk, *(str(cell[(spk, c)]) for c in cols), str(sum(cell[(spk, c)] for c in cols))]
        if durations is not None:
            row.append(f"{sum(durations.get(u.utt_id, 0.0) for u in man.utterances if _speaker_row(u.speaker) == spk):.1f}")
        table.add_row(*row)
    out.print(table)


def _speaker_row(speaker: str) -> str:
    return "(unknown speaker)" if is_unknown_speaker(speaker) else speaker


def target_summary(man: Manifest) -> dict[str, dict]:
    """min / mean / max of each numeric target (the data's own scale)."""
    out = {}
    for t in man.targets:
        v = [float(u.meta[t]) for u in man.utterances]
        out[t] = {"min": min(v), "mean": round(sum(v) / len(v), 6), "max": max(v), "n": len(v)}
    return out


@app.command("manifest")
@guard
def manifest(
    root: Path = ROOT_ARG,
    corpus: str = CORPUS_OPT,
    output: Path = typer.Option(..., "--output", "-o", help="Manifest CSV to write (a .json sidecar goes next to it)."),
    corpus_option: list[str] = CORPUS_OPTION_OPT,
    speaker_regex: str | None = REGEX_OPT,
    iemocap_full_labels: bool = FULL_OPT,
    include_song: bool = SONG_OPT,
    labels_mode: str | None = LABELS_OPT,
    label_map: Path | None = LABEL_MAP_OPT,
) -> None:
    """Write the manifest CSV (utt_id, path, label, speaker, original_label, meta and target columns); the
    label choice and the targets go into its .json sidecar."""
    man = _scan(root, corpus, corpus_option, speaker_regex, iemocap_full_labels, include_song, labels_mode, label_map)
    path = man.to_csv(output)
    err.print(f"wrote {path}: {len(man)} utterances, {len(man.speakers())} speakers, {len(man.labels())} labels, "
              f"{len(man.problems)} problem(s)", markup=False)


@app.command("emobox-folds")
@guard
def emobox_folds(
    folds_file: Path = typer.Argument(..., help="Folds file (parrot-ser train ... --folds-file F --folds-only).",
                                      show_default=False),
    manifest: Path = typer.Option(..., "--manifest", "-m", help="Manifest the folds were made on (e.g. the "
                                  "feature store's manifest.csv)."),
    output: Path = typer.Option(..., "--out", "-o", help="Folder for EmoBox's layout (<dataset>.jsonl, fold_<k>/, "
                                "label_map.json)."),
    dataset: str = typer.Option(..., "--dataset", help="Dataset name in the file names (e.g. emodb)."),
    seed: int | None = typer.Option(None, "--seed", help="Which seed's folds (default: the first in the file)."),
) -> None:
    """Write our folds in EmoBox's format, so other toolkits can reuse them (rows carry a speaker field)."""
    import json

    from parrot_ser.corpora.emobox import write_emobox_folds

    try:
        doc = json.loads(folds_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ConfigError(f"{folds_file}: unreadable folds file ({e})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("seeds"), dict):
        raise ConfigError(f"{folds_file}: not a parrot-ser folds file (no 'seeds' mapping)")
    written = write_emobox_folds(doc, Manifest.from_csv(manifest), output, dataset, seed)
    err.print(f"wrote {len(written)} file(s) in EmoBox's layout under {output}", markup=False)
