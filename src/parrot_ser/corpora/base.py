"""The manifest: the one table every later stage reads (utterance id, audio path, label, speaker).

Owned by the corpora package; encoders, the feature store and training only read it."""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from parrot_ser.errors import CorpusError

# The shared vocabulary: each built-in corpus maps its own codes onto it and keeps the code
# (``--labels canonical``, the default). It does not lock the label set: ``--labels asis`` keeps the
# strings of the data and user corpora keep theirs when they are not spellings of these
# (corpora/labels.py).
CANONICAL_LABELS = (
    "neutral", "calm", "happy", "sad", "angry", "fear", "disgust", "surprise", "boredom",
    "frustration", "excited", "contempt", "other",
)

# A row whose speaker is not known (MSP-Podcast's "Unknown") gets this prefix and its own utterance id
# as speaker: such rows are not one speaker, so folds group each alone and the audits count them apart.
UNKNOWN_SPEAKER = "unknown:"


def is_unknown_speaker(speaker: str) -> bool:
    return str(speaker).startswith(UNKNOWN_SPEAKER)

BASE_COLUMNS = ("utt_id", "path", "label", "speaker", "original_label")


@dataclass
class Utterance:
    utt_id: str
    path: str  # relative to the manifest root (or absolute)
    label: str  # the run's label (canonical or the data's own; "" = none, only in a manifest with targets)
    speaker: str
    original_label: str = ""
    meta: dict[str, str] = field(default_factory=dict)  # gender, sentence, intensity, session, split, ...


@dataclass
class Problem:
    path: str
    problem: str


@dataclass
class Manifest:
    corpus: str
    root: Path
    utterances: list[Utterance]
    problems: list[Problem] = field(default_factory=list)
    # Files left out on purpose (RAVDESS song, IEMOCAP xxx, ...): reason -> count. Not problems.
    excluded: dict[str, int] = field(default_factory=dict)
    # How labels were made (corpora/labels.py: mode canonical | asis, the --label-map applied): recorded
    # in the sidecar and the store, so a run knows what its label names mean.
    label_policy: dict = field(default_factory=dict)
    # Numeric target columns (dimensional emotion: arousal, valence, ...), values in each row's meta.
    targets: list[str] = field(default_factory=list)
    # A sentence every run on this data repeats in its outputs (e.g. "targets derived from the labels,
    # NOT a real result"): travels through the store into run.json, results, tables and model cards.
    note: str = ""

    def __len__(self) -> int:
        return len(self.utterances)

    def abspath(self, utt: Utterance) -> Path:
        p = Path(utt.path)
        return p if p.is_absolute() else self.root / p

    def labels(self) -> list[str]:
        return sorted({u.label for u in self.utterances})

    def speakers(self) -> list[str]:
        return sorted({u.speaker for u in self.utterances})

    # --- CSV round trip; a sidecar JSON keeps corpus name, root and problems ---------------
    def to_csv(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        meta_keys = sorted({k for u in self.utterances for k in u.meta})
        with open(path, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow([*BASE_COLUMNS, *meta_keys])
            for u in self.utterances:
                w.writerow([u.utt_id, u.path, u.label, u.speaker, u.original_label,
                            *[u.meta.get(k, "") for k in meta_keys]])
        sidecar = {"corpus": self.corpus, "root": str(Path(self.root).resolve()),
                   "problems": [p.__dict__ for p in self.problems], "label_policy": self.label_policy,
                   "targets": list(self.targets), **({"note": self.note} if self.note else {})}
        Path(str(path) + ".json").write_text(json.dumps(sidecar, indent=2), encoding="utf-8")
        return path

    @classmethod
    def from_csv(cls, path: str | Path, root: str | Path | None = None) -> Manifest:
        """Read a manifest CSV. Root: explicit argument, else the sidecar's, else the CSV's folder.
        Columns path,label,speaker are required; utt_id defaults to the path without suffix."""
        path = Path(path)
        if not path.is_file():
            raise CorpusError(f"{path}: manifest file not found")
        sidecar_path = Path(str(path) + ".json")
        try:
            sidecar = json.loads(sidecar_path.read_text(encoding="utf-8")) if sidecar_path.is_file() else {}
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise CorpusError(f"{sidecar_path}: unreadable manifest sidecar ({e}); delete it or fix it") from None
        if root is None:
            root = sidecar.get("root") or path.parent
        utts: list[Utterance] = []
        cols, rows = read_csv_table(path)
        targets = list(sidecar.get("targets") or [])
        missing = [c for c in ("path", "speaker", *(() if targets else ("label",))) if c not in cols]
        if missing:
            raise CorpusError(f"{path}: manifest lacks column(s) {', '.join(missing)}; has {', '.join(cols)}")
        for i, row in rows:
            extra = row.get(None)
            if extra:
                raise CorpusError(f"{path}:{i}: {len(extra)} more field(s) than the {len(cols)} columns of the "
                                  f"header (an unquoted comma in a value?); quote that value")
            row = {k: (v if v is not None else "") for k, v in row.items() if k is not None}
            if not row.get("path"):
                raise CorpusError(f"{path}:{i}: empty path")
            utt_id = row.get("utt_id") or str(Path(row["path"]).with_suffix("")).replace("\\", "/")
            meta = {k: v for k, v in row.items() if k not in BASE_COLUMNS}
            label = row.get("label", "")
            utts.append(Utterance(utt_id, row["path"], label, row["speaker"], row.get("original_label") or label,
                                  meta))
        ids = [u.utt_id for u in utts]
        if len(set(ids)) != len(ids):
            dup = next(i for i in ids if ids.count(i) > 1)
            raise CorpusError(f"{path}: duplicate utt_id {dup!r}")
        problems = [Problem(**p) for p in sidecar.get("problems", [])]
        return cls(sidecar.get("corpus", "csv"), Path(root), utts, problems,
                   label_policy=dict(sidecar.get("label_policy") or {}), targets=targets,
                   note=str(sidecar.get("note") or ""))

    def target_values(self, utt: Utterance) -> list[float]:
        """The row's targets as floats, in ``self.targets`` order (check_labelled has refused bad ones)."""
        return [float(utt.meta[t]) for t in self.targets]


def read_csv_table(path: Path) -> tuple[list[str], list[tuple[int, dict]]]:
    """(header, [(line number, row dict)]) of a UTF-8 CSV, with one-line CorpusErrors for what is not
    one: binary data, another encoding, malformed quoting. A row with more fields than the header
    keeps them under the key None (csv.DictReader's convention); the caller decides."""
    raw = path.read_bytes()
    if b"\x00" in raw:
        raise CorpusError(f"{path}: binary data (NUL bytes), not a CSV text file")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise CorpusError(f"{path}: not UTF-8 text (byte 0x{raw[e.start]:02x} at offset {e.start}); re-save it "
                          f"as UTF-8, e.g. iconv -f latin1 -t utf-8 {path.name} > utf8.csv") from None
    reader = csv.DictReader(io.StringIO(text, newline=""))
    rows: list[tuple[int, dict]] = []
    try:
        for row in reader:
            rows.append((reader.line_num, row))
    except csv.Error as e:
        raise CorpusError(f"{path}:{reader.line_num}: malformed CSV ({e})") from None
    return [c.strip() for c in (reader.fieldnames or [])], rows


def check_labelled(man: Manifest, where: str | Path) -> None:
    """Refuse a manifest with rows that cannot be trained on: no label in a manifest without targets,
    a target that is not a finite number, or no speaker (speaker-independent folds need one). Any
    label string is trainable: the label set is the data's. Names the rows (line = row + 2 in the CSV)."""
    bad_label = [] if man.targets else [(i + 2, u) for i, u in enumerate(man.utterances) if not u.label.strip()]
    bad_target = [(i + 2, u, t) for i, u in enumerate(man.utterances) for t in man.targets
                  if not _finite(u.meta.get(t, ""))]
    no_speaker = [(i + 2, u) for i, u in enumerate(man.utterances) if not str(u.speaker).strip()]
    parts = []
    if bad_label:
        shown = ", ".join(f"line {n} ({u.utt_id}: {u.label!r})" for n, u in bad_label[:5])
        parts.append(f"{len(bad_label)} row(s) with an empty label: {shown}" + (" ..." if len(bad_label) > 5 else ""))
    if bad_target:
        shown = ", ".join(f"line {n} ({u.utt_id}: {t}={u.meta.get(t, '')!r})" for n, u, t in bad_target[:5])
        parts.append(f"{len(bad_target)} target value(s) that are not finite numbers: {shown}"
                     + (" ..." if len(bad_target) > 5 else ""))
    if no_speaker:
        shown = ", ".join(f"line {n} ({u.utt_id})" for n, u in no_speaker[:5])
        parts.append(f"{len(no_speaker)} row(s) without a speaker: {shown}" + (" ..." if len(no_speaker) > 5 else ""))
    if parts:
        raise CorpusError(f"{where}: {'; '.join(parts)}; fix or remove those rows")


def _finite(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False
