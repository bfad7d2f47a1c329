"""What every corpus scanner shares: file walking, the manifest builder (duplicates, problems,
exclusions) and the label spellings of user-labelled corpora."""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from parrot_ser.audio import AUDIO_SUFFIXES
from parrot_ser.corpora.base import CANONICAL_LABELS, Manifest, Problem, Utterance
from parrot_ser.errors import ConfigError, CorpusError

# Extensions the generic scanners (csv, folders) accept: the same list as `predict`'s (one list, in
# parrot_ser.audio). The official corpora ship .wav only, so their scanners look at .wav and ignore
# the MP3/FLAC re-encodings some packages carry next to them.
AUDIO_EXTS = tuple(sorted(AUDIO_SUFFIXES))
RESOURCE_FORK = "macOS resource-fork files (._*)"


# --- helpers for scanners --------------------------------------------------------------------------

def require_dir(root: Path) -> Path:
    if not root.is_dir():
        raise CorpusError(f"{root}: corpus root is not a folder")
    return root


def walk_files(root: Path, exts: Iterable[str] = (".wav",), others: list[Path] | None = None,
               unreadable: list[tuple[Path, str]] | None = None) -> tuple[list[Path], int]:
    """All files under root with one of ``exts`` (case-insensitive), sorted; also the number of
    macOS ``._*`` resource forks skipped (zip re-packagings are full of them). Symlinked folders
    are followed, but each real folder is walked once (a link to a parent would otherwise be walked
    until the path is too long). ``others``, when given, receives the files with other suffixes
    (hidden files such as .DS_Store left out), so a scanner can report what it will not read.
    ``unreadable``, when given, receives (folder, reason) for every folder that could not be listed
    (no permission, vanished): os.walk would otherwise skip it, and its files, without a word."""
    exts = tuple(e.lower() for e in exts)
    found: list[Path] = []
    forks = 0
    seen: set[tuple[int, int]] = set()
    def skipped(err: OSError) -> None:
        if unreadable is not None:
            unreadable.append((Path(err.filename or root), err.strerror or type(err).__name__))

    for dirpath, dirnames, filenames in os.walk(root, followlinks=True, onerror=skipped):
        try:
            st = os.stat(dirpath)
        except OSError as err:
            skipped(err)
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


def start_scan(corpus: str, root: Path, exts: Iterable[str] = (".wav",),
               others: list[Path] | None = None) -> tuple[ManifestBuilder, list[Path]]:
    """The opening of every scanner: root must be a folder; its audio files (any depth, sorted) and a
    builder that already counts the skipped macOS resource forks."""
    b = ManifestBuilder(corpus, require_dir(root))
    files, forks = b.walk(root, exts, others)
    return b, files


def speaker_matcher(speaker_regex: str) -> Callable[[str], str | None]:
    """A file name -> its speaker by ``speaker_regex`` (group ``speaker`` or group 1), None when the
    name does not match; a bad or group-less regex is a one-line ConfigError."""
    try:
        rx = re.compile(speaker_regex)
    except re.error as e:
        raise ConfigError(f"speaker regex {speaker_regex!r} is invalid: {e}") from None
    if rx.groups == 0:
        raise ConfigError(f"speaker regex {speaker_regex!r} needs a group (?P<speaker>...) or (...)")
    group = "speaker" if "speaker" in rx.groupindex else 1

    def speaker_of(name: str) -> str | None:
        m = rx.search(name)
        return m.group(group) if m else None
    return speaker_of


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
        # Scanners give the canonical name or "" (none); corpora/labels.py turns that into the run's labels.
        if utt.label and utt.label not in CANONICAL_LABELS:  # a scanner bug, not a user error
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

    def walk(self, folder: Path, exts: Iterable[str] = (".wav",),
             others: list[Path] | None = None) -> tuple[list[Path], int]:
        """:func:`walk_files` that counts the resource forks it skipped and reports every folder it
        could not list as a problem (its files are missing from the manifest, so say so)."""
        unreadable: list[tuple[Path, str]] = []
        files, forks = walk_files(folder, exts, others, unreadable)
        self.exclude(RESOURCE_FORK, forks)
        for path, why in unreadable:
            self.problem(path, f"folder could not be read ({why}); the files in it were skipped")
        return files, forks

    def exclude(self, reason: str, n: int = 1) -> None:
        if n:
            self.excluded[reason] += n

    def named(self, files: Iterable[Path], pattern: re.Pattern[str], layout: str,
              accept: Callable[[re.Match[str]], bool] | None = None) -> Iterator[tuple[Path, re.Match[str]]]:
        """(file, match) for the files whose name matches ``pattern`` (and ``accept``); every other file
        is a problem "name does not follow {layout}; skipped"."""
        for f in files:
            m = pattern.match(f.name)
            if m and (accept is None or accept(m)):
                yield f, m
            else:
                self.problem(f, f"name does not follow {layout}; skipped")

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
    "con": "contempt", "contempt": "contempt", "contemptuous": "contempt",
    "oth": "other", "other": "other",
}


def canonical_label(raw: str) -> str | None:
    """Canonical label for a code or word in any common spelling, None when unknown."""
    key = raw.strip().lower().replace(" ", "_").replace("-", "_")
    return LABEL_ALIASES.get(key)
