"""The manifest: the one table every later stage reads (utterance id, audio path, label, speaker).

Owned by the corpora package; encoders, the feature store and training only read it."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path

from parrot_ser.errors import CorpusError

# One vocabulary across corpora; each corpus maps its own codes onto it and keeps the code.
CANONICAL_LABELS = (
    "neutral", "calm", "happy", "sad", "angry", "fear", "disgust", "surprise", "boredom",
    "frustration", "excited", "other",
)

BASE_COLUMNS = ("utt_id", "path", "label", "speaker", "original_label")


@dataclass
class Utterance:
    utt_id: str
    path: str  # relative to the manifest root (or absolute)
    label: str  # canonical label
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
                   "problems": [p.__dict__ for p in self.problems]}
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
        sidecar = json.loads(sidecar_path.read_text(encoding="utf-8")) if sidecar_path.is_file() else {}
        if root is None:
            root = sidecar.get("root") or path.parent
        utts: list[Utterance] = []
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            cols = reader.fieldnames or []
            missing = [c for c in ("path", "label", "speaker") if c not in cols]
            if missing:
                raise CorpusError(f"{path}: manifest lacks column(s) {', '.join(missing)}; has {', '.join(cols)}")
            for i, row in enumerate(reader, start=2):
                if not row.get("path"):
                    raise CorpusError(f"{path}:{i}: empty path")
                utt_id = row.get("utt_id") or str(Path(row["path"]).with_suffix("")).replace("\\", "/")
                meta = {k: v for k, v in row.items() if k not in BASE_COLUMNS and k is not None and v is not None}
                utts.append(Utterance(utt_id, row["path"], row["label"], row["speaker"],
                                      row.get("original_label") or row["label"], meta))
        ids = [u.utt_id for u in utts]
        if len(set(ids)) != len(ids):
            dup = next(i for i in ids if ids.count(i) > 1)
            raise CorpusError(f"{path}: duplicate utt_id {dup!r}")
        problems = [Problem(**p) for p in sidecar.get("problems", [])]
        return cls(sidecar.get("corpus", "csv"), Path(root), utts, problems)
