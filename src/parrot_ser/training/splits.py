"""Speaker-independent cross-validation folds, with a mechanical leakage check.

Protocols (``make_folds``):

- ``speaker-kfold`` (default): scikit-learn ``StratifiedGroupKFold`` grouped by speaker, ``n_folds``
  folds, shuffled with the seed (so folds are reproducible from the seed and differ across seeds).
- ``loso``: leave one speaker out (one fold per speaker, sorted by speaker id).
- ``iemocap-sessions``: leave one session out, from the manifest meta column ``session``.
- ``predefined``: a ``split`` meta column: either ``train``/``dev``/``test`` (one fold; ``dev`` is the
  validation side; ``val``/``valid``/``evaluation`` mean ``dev``) or fold numbers (fold k tests the
  rows whose split is k).

Validation speakers for early stopping are always taken from the TRAINING side of a fold (default 10%
of its speakers, at least 1), chosen with ``StratifiedGroupKFold`` so their label mix resembles the
training side; the test fold is never looked at. ``assert_speaker_independent`` then checks each fold.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold

from parrot_ser.corpora.base import is_unknown_speaker
from parrot_ser.errors import ConfigError, LeakageError

PROTOCOLS = ("speaker-kfold", "loso", "iemocap-sessions", "predefined")
_DEV_NAMES = {"dev", "val", "valid", "validation", "evaluation", "eval"}


@dataclass
class Fold:
    """Row indices (into the utterance list the folds were made from) of one fold."""

    index: int
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    name: str = ""  # e.g. "speaker 03" or "session 1"

    def speakers(self, speakers: Sequence[str]) -> dict[str, list[str]]:
        """Known speakers per side (rows of an unknown speaker are counted apart: describe)."""
        sp = np.asarray(speakers, dtype=object)
        return {side: sorted({str(s) for s in sp[getattr(self, side)] if not is_unknown_speaker(s)})
                for side in ("train", "val", "test")}

    def describe(self, speakers: Sequence[str]) -> dict:
        """JSON-ready record of the fold: speaker lists and sizes (stored in every run); the rows whose
        speaker is unknown (MSP-Podcast's "Unknown") and the speakers shared by train and test, apart."""
        d = {"fold": self.index, "name": self.name, **{f"{k}_speakers": v for k, v in
                                                        self.speakers(speakers).items()}}
        d.update({f"n_{side}": int(len(getattr(self, side))) for side in ("train", "val", "test")})
        sp = np.asarray(speakers, dtype=object)
        unknown = {side: int(sum(is_unknown_speaker(s) for s in sp[getattr(self, side)]))
                   for side in ("train", "val", "test")}
        if any(unknown.values()):
            d.update({f"n_{side}_unknown_speaker": n for side, n in unknown.items()})
        shared = shared_speakers(self, speakers)
        if shared:
            d["shared_speakers"] = shared
        return d


def shared_speakers(fold: Fold, speakers: Sequence[str]) -> list[str]:
    """Speakers on the test side and on the train or validation side of ``fold`` (unknown speakers
    are not one speaker and never count)."""
    sp = np.asarray(speakers, dtype=object)
    test_spk = {str(s) for s in sp[fold.test] if not is_unknown_speaker(s)}
    return sorted(test_spk & {str(s) for s in sp[np.concatenate([fold.train, fold.val])]})


def speaker_overlap(folds: Sequence[Fold], speakers: Sequence[str]) -> dict[str, int]:
    """Fold index -> number of speakers it shares between training and test (folds sharing none left out)."""
    return {str(f.index): n for f in folds if (n := len(shared_speakers(f, speakers)))}


OVERLAP_NOTE = ("NOT speaker-independent: imported folds share speakers between training and test "
                "(--allow-speaker-overlap); shared speakers per fold: {counts}")


def overlap_note(overlap: dict[str, int]) -> str:
    return OVERLAP_NOTE.format(counts=", ".join(f"fold {k}: {n}" for k, n in overlap.items()))


def assert_speaker_independent(folds: Sequence[Fold], speakers: Sequence[str], *, allow_overlap: bool = False) -> None:
    """Raise LeakageError if any speaker is on both the train (or val) side and the test side of a
    fold (unless ``allow_overlap``: imported folds run as they are, and the run records the overlap),
    or if a row is on two sides at once (always)."""
    sp = np.asarray(speakers, dtype=object)
    for f in folds:
        test_spk = {str(s) for s in sp[f.test] if not is_unknown_speaker(s)}
        for side in ("train", "val"):
            shared = sorted(test_spk & {str(s) for s in sp[getattr(f, side)]})
            if shared and not allow_overlap:
                raise LeakageError(
                    f"fold {f.index}{' (' + f.name + ')' if f.name else ''}: speaker {shared[0]!r} is in both "
                    f"{side} and test ({len(shared)} shared speaker(s): {', '.join(shared[:5])}); imported folds "
                    f"that share speakers run only with --allow-speaker-overlap")
        for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
            both = np.intersect1d(getattr(f, a), getattr(f, b))
            if both.size:
                raise LeakageError(f"fold {f.index}: row {int(both[0])} is in both {a} and {b}")


def _sgkf(n_splits: int, seed: int | None) -> StratifiedGroupKFold:
    if seed is None:
        return StratifiedGroupKFold(n_splits=n_splits, shuffle=False)
    return StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=int(seed) % (2**32))


def split_validation(train_idx: np.ndarray, labels: Sequence, speakers: Sequence[str], *,
                     fraction: float = 0.1, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Hold out about ``fraction`` of the training speakers (at least 1) as the validation side.
    Returns (train, val) row indices. With a single training speaker there is no validation side."""
    train_idx = np.asarray(train_idx, dtype=np.int64)
    if fraction <= 0 or len(train_idx) == 0:
        return train_idx, np.zeros(0, dtype=np.int64)
    sp = np.asarray(speakers, dtype=object)[train_idx]
    y = np.asarray(labels, dtype=object)[train_idx]
    uniq = sorted({str(s) for s in sp})
    if len(uniq) < 2:
        return train_idx, np.zeros(0, dtype=np.int64)
    # n_splits chosen so one split holds ~fraction of the speakers; fold 0 of a stratified group split
    # is then a label-balanced set of whole speakers.
    n_splits = int(min(len(uniq), max(2, round(1.0 / fraction))))
    _, counts = np.unique(y.astype(str), return_counts=True)
    if counts.max() < n_splits:
        # Every class has fewer rows than splits: scikit-learn >= 1.9 raises here (older versions
        # warned). Stratifying is impossible, so keep the validation share and take whole speakers
        # by a seeded draw instead; the fold record lists them.
        rng = np.random.default_rng(int(seed) % (2**32))
        k = max(1, int(round(fraction * len(uniq))))
        val_spk = set(rng.permutation(np.asarray(uniq, dtype=object))[:k].tolist())
        is_val = np.asarray([str(v) in val_spk for v in sp])
        return np.sort(train_idx[~is_val]), np.sort(train_idx[is_val])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "least populated class has only n members" on tiny data
        tr, va = next(_sgkf(n_splits, seed).split(np.zeros(len(y)), y, groups=sp.astype(str)))
    return np.sort(train_idx[tr]), np.sort(train_idx[va])


def make_folds(labels: Sequence, speakers: Sequence[str], *, protocol: str = "speaker-kfold",
               n_folds: int = 5, seed: int = 0, meta: Sequence[dict] | None = None,
               val_fraction: float = 0.1, allow_overlap: bool = False) -> list[Fold]:
    """Build the folds of one protocol (see the module doc). Deterministic given ``seed``."""
    labels = list(labels)
    speakers = [str(s) for s in speakers]
    n = len(labels)
    if len(speakers) != n:
        raise ConfigError(f"{len(labels)} labels but {len(speakers)} speakers")
    if n == 0:
        raise ConfigError("no utterances to split")
    sp = np.asarray(speakers, dtype=object)
    rows = np.arange(n)
    folds: list[Fold] = []
    if protocol == "speaker-kfold":
        n_spk = len(set(speakers))
        if n_folds < 2:
            raise ConfigError(f"--folds must be at least 2 (got {n_folds})")
        if n_spk < n_folds:
            raise ConfigError(f"speaker-kfold with {n_folds} folds needs at least {n_folds} speakers; "
                              f"the data has {n_spk} (use --folds {n_spk} or --protocol loso)")
        cls, counts = np.unique(np.asarray(labels, dtype=str), return_counts=True)
        if counts.max() < n_folds:  # scikit-learn >= 1.9 raises; say which classes and what to do
            sizes = ", ".join(f"{c} {k}" for c, k in sorted(zip(cls, counts), key=lambda t: -t[1]))
            raise ConfigError(f"speaker-kfold with {n_folds} folds cannot be stratified: every class has fewer "
                              f"than {n_folds} utterances ({sizes}); use --folds {max(2, int(counts.max()))} "
                              f"or --protocol loso")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            splits = list(_sgkf(n_folds, seed).split(np.zeros(n), np.asarray(labels, dtype=object),
                                                      groups=sp.astype(str)))
        for k, (tr, te) in enumerate(splits):
            folds.append(Fold(k, tr, np.zeros(0, dtype=np.int64), te))
    elif protocol in ("loso", "iemocap-sessions"):
        if protocol == "loso":
            groups = speakers
            what = "speaker"
        else:
            missing = [i for i in range(n) if not (meta and meta[i].get("session"))]
            if missing:
                raise ConfigError(f"iemocap-sessions needs a 'session' meta column; {len(missing)} "
                                  f"utterance(s) lack it (first row {missing[0]})")
            groups = [str(meta[i]["session"]) for i in range(n)]  # type: ignore[index]
            what = "session"
        g = np.asarray(groups, dtype=object)
        uniq = sorted(set(groups))
        if len(uniq) < 2:
            raise ConfigError(f"{protocol} needs at least 2 {what}s; the data has {len(uniq)}")
        for k, u in enumerate(uniq):
            folds.append(Fold(k, rows[g != u], np.zeros(0, dtype=np.int64), rows[g == u], f"{what} {u}"))
    elif protocol == "predefined":
        if not meta or any("split" not in m or not str(m["split"]).strip() for m in meta):
            raise ConfigError("predefined protocol needs a non-empty 'split' meta column on every utterance")
        split = np.asarray([str(m["split"]).strip().lower() for m in meta], dtype=object)
        vals = set(split)
        if vals <= {"train", "test"} | _DEV_NAMES:
            if "test" not in vals or "train" not in vals:
                raise ConfigError("predefined split needs both 'train' and 'test' rows")
            dev = np.isin(split, list(_DEV_NAMES))
            fold = Fold(0, rows[split == "train"], rows[dev], rows[split == "test"], "predefined")
            assert_speaker_independent([fold], speakers, allow_overlap=allow_overlap)
            return [fold]
        if not all(v.lstrip("-").isdigit() for v in vals):
            raise ConfigError(f"predefined 'split' values must be train/dev/test or fold numbers; "
                              f"got {sorted(vals)[:6]}")
        nums = np.asarray([int(v) for v in split])
        for k, u in enumerate(sorted(set(nums.tolist()))):
            folds.append(Fold(k, rows[nums != u], np.zeros(0, dtype=np.int64), rows[nums == u], f"split {u}"))
    else:
        raise ConfigError(f"unknown protocol {protocol!r}; known: {', '.join(PROTOCOLS)}")
    # Validation speakers come from the training side only (after the test side is fixed).
    for f in folds:
        f.train, f.val = split_validation(f.train, labels, speakers, fraction=val_fraction,
                                          seed=seed * 1000 + f.index)
        f.test = np.sort(f.test)
    # only imported splits (predefined) may share speakers; the ones made here never do
    assert_speaker_independent(folds, speakers, allow_overlap=allow_overlap and protocol == "predefined")
    return folds


def folds_to_json(folds: Sequence[Fold], speakers: Sequence[str]) -> list[dict]:
    return [f.describe(speakers) for f in folds]



FOLDS_FORMAT = "parrot-ser-folds/1"


def write_folds_file(path, folds_by_seed: dict[int, Sequence[Fold]], utt_ids: Sequence[str],
                     speakers: Sequence[str], protocol: str) -> None:
    """Folds as utterance ids (readable, editable, independent of row order): ``{"format", "protocol",
    "seeds": {"0": [{"fold", "name", "train", "val", "test", ...speakers}]}}``."""
    from parrot_ser.files import write_json_atomic

    ids = np.asarray(list(utt_ids), dtype=object)
    doc = {"format": FOLDS_FORMAT, "protocol": protocol, "seeds": {
        str(s): [{**f.describe(speakers), "train": ids[f.train].tolist(), "val": ids[f.val].tolist(),
                  "test": ids[f.test].tolist()} for f in folds] for s, folds in folds_by_seed.items()}}
    write_json_atomic(path, doc)


def read_folds_file(path, seeds: Sequence[int], utt_ids: Sequence[str], speakers: Sequence[str],
                    allow_overlap: bool = False) -> dict[int, list[Fold]]:
    """Folds of ``write_folds_file`` (or a hand-made file in that format) mapped onto the rows of
    ``utt_ids``. A file with one seed gives its folds to every requested seed. Unknown utterance
    ids, a row on two sides of a fold, or speaker leakage are ConfigError/LeakageError naming them."""
    import json
    from pathlib import Path

    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ConfigError(f"{path}: unreadable folds file ({e})") from None
    if not isinstance(doc, dict) or doc.get("format") != FOLDS_FORMAT or not isinstance(doc.get("seeds"), dict) \
            or not doc["seeds"]:
        raise ConfigError(f"{path}: not a folds file (needs format {FOLDS_FORMAT!r} and a 'seeds' mapping; "
                          f"write one with `parrot-ser train ... --folds-file {path.name}`)")
    index = {u: i for i, u in enumerate(utt_ids)}
    by_seed = doc["seeds"]
    out: dict[int, list[Fold]] = {}
    for s in seeds:
        entry = by_seed.get(str(s))
        if entry is None:
            if len(by_seed) != 1:
                raise ConfigError(f"{path}: no folds for seed {s} (the file has seeds {', '.join(by_seed)})")
            entry = next(iter(by_seed.values()))
        folds = []
        for k, fd in enumerate(entry):
            sides = {}
            for side in ("train", "val", "test"):
                ids = fd.get(side) or []
                unknown = [u for u in ids if u not in index]
                if unknown:
                    raise ConfigError(f"{path}: fold {fd.get('fold', k)} {side}: {len(unknown)} utterance id(s) "
                                      f"not in the features (first: {unknown[0]!r})")
                sides[side] = np.sort(np.asarray([index[u] for u in ids], dtype=np.int64))
            if not len(sides["train"]) or not len(sides["test"]):
                raise ConfigError(f"{path}: fold {fd.get('fold', k)} has an empty train or test side")
            folds.append(Fold(int(fd.get("fold", k)), sides["train"], sides["val"], sides["test"],
                              str(fd.get("name", ""))))
        assert_speaker_independent(folds, speakers, allow_overlap=allow_overlap)
        out[int(s)] = folds
    return out
