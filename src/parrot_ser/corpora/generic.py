"""User corpora: ``csv`` (a table of path,label,speaker[,split][,numeric targets]) and ``folders``
(ROOT/<label>/*.wav).

Each label is kept as written (``original_label``) next to its canonical name when it is a common
spelling of one (anger -> angry, ps -> surprise); corpora/labels.py then keeps the canonical names when
every label has one and the data's own labels otherwise (or what ``--labels`` says). A CSV may name
numeric target columns (``targets=arousal,valence``): then the label column is optional."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from parrot_ser.corpora.base import BASE_COLUMNS, Manifest, Utterance, read_csv_table
from parrot_ser.corpora.registry import CorpusSpec, register
from parrot_ser.corpora.scanning import (
    AUDIO_EXTS,
    ManifestBuilder,
    canonical_label,
    rel,
    speaker_matcher,
    start_scan,
)
from parrot_ser.errors import CorpusError

DEFAULT_SPEAKER_REGEX = r"^(?P<speaker>[^_\-.]+)"  # the name up to the first "_", "-" or "."


TARGETS_HELP = "comma-separated numeric columns to use as dimensional targets (e.g. arousal,valence)"


def parse_targets(targets: str, cols: list[str], table: Path) -> list[str]:
    names = [t.strip() for t in targets.split(",") if t.strip()]
    missing = [t for t in names if t not in cols]
    if missing:
        raise CorpusError(f"{table}: target column(s) {', '.join(missing)} not in the header ({', '.join(cols)})")
    clash = [t for t in names if t in BASE_COLUMNS]
    if clash:
        raise CorpusError(f"{table}: {', '.join(clash)} cannot be a target (a manifest column)")
    return names


def _target_problem(row: dict, names: list[str]) -> str | None:
    for t in names:
        try:
            v = float(row[t])
        except ValueError:
            return f"target {t}={row[t]!r} is not a number"
        if v != v or v in (float("inf"), float("-inf")):
            return f"target {t}={row[t]!r} is not finite"
    return None


NOTE_HELP = "a sentence every run on this data repeats (e.g. 'derived targets, NOT a real result')"


def scan_csv(root: Path, targets: Annotated[str, TARGETS_HELP] = "", note: Annotated[str, NOTE_HELP] = "") -> Manifest:
    table = root
    if root.is_dir():
        found = sorted(p for p in root.glob("*.csv") if not p.name.startswith("._"))
        if len(found) != 1:
            raise CorpusError(f"{root}: give the CSV file itself (found {len(found)} .csv files in the folder)")
        table = found[0]
    base = table.parent
    b = ManifestBuilder("csv", base)
    cols, rows = read_csv_table(table)
    names = parse_targets(targets, cols, table) if targets else []
    need = ("path", "speaker") if names else ("path", "label", "speaker")
    missing = [c for c in need if c not in cols]
    if missing:
        raise CorpusError(f"{table}: lacks column(s) {', '.join(missing)}; has {', '.join(cols) or 'none'}"
                          + ("" if names or "label" in cols else " (a table without labels needs "
                                                                 "--corpus-option targets=COLUMNS)"))
    for line, raw in rows:
        where = f"{table.name}:{line}"
        if raw.get(None):  # DictReader puts fields beyond the header under None
            b.problem(where, f"{len(raw[None])} more field(s) than the {len(cols)} header columns (an unquoted "
                             f"comma in a value?); quote that value; skipped")
            continue
        row = {(k or "").strip(): (v or "").strip() for k, v in raw.items() if k is not None}
        row.setdefault("label", "")
        empty = [c for c in need if not row[c]]
        if empty:
            b.problem(where, f"empty {', '.join(empty)}; skipped")
            continue
        bad = _target_problem(row, names)
        if bad:
            b.problem(where, f"{bad}; skipped")
            continue
        p = Path(row["path"])
        full = p if p.is_absolute() else base / p
        if not full.is_file():
            b.problem(row["path"], f"listed in {where} but the file does not exist; skipped")
            continue
        meta = {k: v for k, v in row.items() if k and k not in BASE_COLUMNS}
        utt_id = row.get("utt_id") or p.with_suffix("").as_posix()
        b.add(Utterance(utt_id, row["path"], canonical_label(row["label"]) or "", row["speaker"], row["label"], meta))
    man = b.build()
    man.targets, man.note = names, note.strip()
    return man


SPEAKER_REGEX_HELP = "regex on the file name; group 'speaker' or group 1"


def scan_folders(root: Path, speaker_regex: Annotated[str, SPEAKER_REGEX_HELP] = DEFAULT_SPEAKER_REGEX) -> Manifest:
    if not root.is_dir():
        raise CorpusError(f"{root}: corpus root is not a folder")
    speaker_of = speaker_matcher(speaker_regex)
    others: list[Path] = []
    b, files = start_scan("folders", root, AUDIO_EXTS, others)
    for f in sorted(others):  # reported, never silently dropped (a .m4a the user expected to count)
        b.problem(f, "not an audio file type parrot-ser reads (suffixes: " + " ".join(AUDIO_EXTS) + "); skipped")
    for f in files:
        parts = f.relative_to(root).parts
        if len(parts) != 2:
            b.problem(f, "not directly inside a ROOT/<label>/ folder; skipped")
            continue
        spk = speaker_of(f.name)
        if spk is None:
            b.problem(f, f"file name does not match speaker regex {speaker_regex!r}; skipped")
            continue
        b.add(Utterance(f"{parts[0]}/{f.stem}", rel(f, root), canonical_label(parts[0]) or "", spk, parts[0], {}))
    return b.build()


register(CorpusSpec("csv", "any corpus listed in a CSV: path,label,speaker[,split][,targets] (paths relative to "
                           "the CSV)",
                    scan_csv, layout="a CSV file with columns path,label,speaker"))
register(CorpusSpec("folders", "ROOT/<label>/*.wav; speaker from a regex on the file name (--speaker-regex)",
                    scan_folders,
                    layout="angry/spk1_001.wav"))
