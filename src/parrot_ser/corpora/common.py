"""The corpus registry and the helpers every scanner shares (file walking, duplicates, problems)."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from parrot_ser.audio import AUDIO_SUFFIXES
from parrot_ser.corpora.base import CANONICAL_LABELS, Manifest, Problem, Utterance
from parrot_ser.errors import ConfigError, CorpusError
from parrot_ser.registry import Registry

# Extensions the generic scanners (csv, folders) accept: the same list as `predict`'s (one list, in
# parrot_ser.audio). The official corpora ship .wav only, so their scanners look at .wav and ignore
# the MP3/FLAC re-encodings some packages carry next to them.
AUDIO_EXTS = tuple(sorted(AUDIO_SUFFIXES))
RESOURCE_FORK = "macOS resource-fork files (._*)"


@dataclass(frozen=True)
class CorpusSpec:
    name: str
    description: str  # one line, shown by `parrot-ser corpus list`
    scan: Callable[..., Manifest]  # scan(root: Path, **options) -> Manifest
    options: dict[str, str] = field(default_factory=dict)  # option name -> help
    layout: str = ""  # example path, quoted when a root holds nothing of the layout


CORPORA: Registry[CorpusSpec] = Registry("corpus")


def register(spec: CorpusSpec) -> CorpusSpec:
    CORPORA.add(spec.name, spec)
    return spec


def list_corpora() -> list[tuple[str, str]]:
    return [(name, spec.description) for name, spec in CORPORA.items()]


def scan_corpus(name: str, root: str | Path, **options: Any) -> Manifest:
    """Scan ``root`` in the official layout of corpus ``name`` (see ``list_corpora()``).

    Raises RegistryError for an unknown name, ConfigError for an option the corpus does not take,
    CorpusError for a missing root or one that holds no file of the expected layout."""
    spec = CORPORA.get(name)
    unknown = sorted(set(options) - set(spec.options))
    if unknown:
        takes = ", ".join(sorted(spec.options)) or "none"
        raise ConfigError(f"corpus {name!r} does not take option(s) {', '.join(unknown)} (takes: {takes})")
    root = Path(root).expanduser()
    if not root.exists():
        raise CorpusError(f"{root}: corpus root not found")
    man = spec.scan(root, **options)
    if not man.utterances:
        hint = f" (expected e.g. {spec.layout})" if spec.layout else ""
        extra = f"; {len(man.problems)} file(s) did not fit, first: {man.problems[0].path}: " \
                f"{man.problems[0].problem}" if man.problems else ""
        raise CorpusError(f"{root}: no {name} utterances found{hint}{extra}")
    return man


# --- helpers for scanners --------------------------------------------------------------------------

def require_dir(root: Path) -> Path:
    if not root.is_dir():
        raise CorpusError(f"{root}: corpus root is not a folder")
    return root


def walk_files(root: Path, exts: Iterable[str] = (".wav",),
               others: list[Path] | None = None) -> tuple[list[Path], int]:
    """All files under root with one of ``exts`` (case-insensitive), sorted; also the number of
    macOS ``._*`` resource forks skipped (zip re-packagings are full of them). Symlinked folders
    are followed, but each real folder is walked once (a link to a parent would otherwise be walked
    until the path is too long). ``others``, when given, receives the files with other suffixes
    (hidden files such as .DS_Store left out), so a scanner can report what it will not read."""
    exts = tuple(e.lower() for e in exts)
    found: list[Path] = []
    forks = 0
    seen: set[tuple[int, int]] = set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        try:
            st = os.stat(dirpath)
        except OSError:
            continue
        if (st.st_dev, st.st_ino) in seen:
            dirnames[:] = []
            continue
        seen.add((st.st_dev, st.st_ino))
        dirnames[:] = sorted(d for d in dirnames if d != "__MACOSX")
        for fn in filenames:
            if not fn.lower().endswith(exts):
                if others is not None and not fn.startswith("."):
                    others.append(Path(dirpath) / fn)
                continue
            if fn.startswith("._"):
                forks += 1
                continue
            found.append(Path(dirpath) / fn)
    return sorted(found), forks


def rel(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()


class ManifestBuilder:
    """Collects utterances, problems and exclusions; rejects duplicate utt_ids (the same clip twice
    in a re-packaged tree) as problems so the manifest stays unique and nothing vanishes silently."""

    def __init__(self, corpus: str, root: Path):
        self.corpus = corpus
        self.root = root
        self.utts: list[Utterance] = []
        self.problems: list[Problem] = []
        self.excluded: Counter[str] = Counter()
        self._seen: dict[str, str] = {}

    def add(self, utt: Utterance) -> None:
        if utt.label not in CANONICAL_LABELS:  # a scanner bug, not a user error
            raise AssertionError(f"{self.corpus}: non-canonical label {utt.label!r}")
        first = self._seen.get(utt.utt_id)
        if first is not None:
            self.problem(utt.path, f"duplicate of {first} (same utterance id {utt.utt_id}); skipped")
            return
        self._seen[utt.utt_id] = utt.path
        self.utts.append(utt)

    def problem(self, path: str | Path, text: str) -> None:
        if isinstance(path, Path):
            path = rel(path, self.root) if path.is_absolute() and path.is_relative_to(self.root) else str(path)
        self.problems.append(Problem(str(path), text))

    def exclude(self, reason: str, n: int = 1) -> None:
        if n:
            self.excluded[reason] += n

    def build(self) -> Manifest:
        utts = sorted(self.utts, key=lambda u: u.path)
        problems = sorted(self.problems, key=lambda p: p.path)
        return Manifest(self.corpus, self.root, utts, problems, dict(sorted(self.excluded.items())))


# Label aliases for user-labelled corpora (csv, folders) and the odd spellings of public packages.
LABEL_ALIASES = {
    "neu": "neutral", "n": "neutral", "neutral": "neutral",
    "calm": "calm",
    "hap": "happy", "happy": "happy", "happiness": "happy", "joy": "happy",
    "sad": "sad", "sadness": "sad",
    "ang": "angry", "angry": "angry", "anger": "angry",
    "fea": "fear", "fear": "fear", "fearful": "fear",
    "dis": "disgust", "disgust": "disgust", "disgusted": "disgust",
    "sur": "surprise", "surprise": "surprise", "surprised": "surprise", "ps": "surprise",
    "pleasant_surprise": "surprise", "pleasant_surprised": "surprise",
    "bor": "boredom", "boredom": "boredom", "bored": "boredom",
    "fru": "frustration", "frustration": "frustration", "frustrated": "frustration",
    "exc": "excited", "excited": "excited", "excitement": "excited",
    "oth": "other", "other": "other",
}


def canonical_label(raw: str) -> str | None:
    """Canonical label for a code or word in any common spelling, None when unknown."""
    key = raw.strip().lower().replace(" ", "_").replace("-", "_")
    return LABEL_ALIASES.get(key)
