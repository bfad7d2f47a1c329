"""Reading a feature store (the API the training code uses).

Layout of a store DIR::

    DIR/manifest.csv (+ manifest.csv.json)   the utterances ever requested (Manifest.to_csv)
    DIR/<encoder>/meta.json                  identity, spec, layers, dtype, shapes; written LAST:
                                             its presence (with "complete": true) marks a finished entry
    DIR/<encoder>/pooled.npy                 (N, L, P) float16|float32, np.load(mmap_mode="r")
    DIR/<encoder>/frames.npy                 optional (T_total, L, F), rows of utterance i at
    DIR/<encoder>/frame_offsets.npy          frame_offsets[i]:frame_offsets[i+1] (N + 1,) int64
    DIR/<encoder>/utt_ids.txt                one id per line, row order of pooled.npy
    DIR/<encoder>/report.json                ok / skipped files with errors, timings, RTF, padding
    DIR/<encoder>/.partial/                  resumable chunks while an extraction is unfinished
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from parrot_ser.corpora.base import Manifest
from parrot_ser.errors import ConfigError, CorpusError, FeatureStoreError
from parrot_ser.layer_choice import layer_position, parse_layer, select_layer

META = "meta.json"
POOLED = "pooled.npy"
FRAMES = "frames.npy"
OFFSETS = "frame_offsets.npy"
UTT_IDS = "utt_ids.txt"
REPORT = "report.json"
PARTIAL = ".partial"
MANIFEST = "manifest.csv"
FORMAT_VERSION = 1


def read_meta(enc_dir: Path) -> dict | None:
    """meta.json of a finished entry, or None when the entry is absent or unfinished."""
    p = enc_dir / META
    if not p.is_file():
        return None
    try:
        meta = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise FeatureStoreError(f"{p}: unreadable meta.json ({e})") from None
    return meta if meta.get("complete") else None


class EncoderFeatures:
    """Features of one encoder in a store. Arrays are memory-mapped; accessors return float32."""

    def __init__(self, enc_dir: Path, meta: dict):
        self.dir = enc_dir
        self.meta = meta
        self.name: str = meta["encoder"]
        self.layers: list[int] = [int(x) for x in meta["layers"]]
        self.utt_ids: list[str] = (enc_dir / UTT_IDS).read_text(encoding="utf-8").splitlines()
        self._pooled = self._load(POOLED)
        n = len(self.utt_ids)
        if self._pooled.ndim != 3 or self._pooled.shape[0] != n or self._pooled.shape[1] != len(self.layers):
            raise FeatureStoreError(f"{enc_dir / POOLED}: shape {self._pooled.shape} does not match "
                                    f"{n} utterances x {len(self.layers)} layers in meta.json/utt_ids.txt")
        self.has_frames: bool = bool(meta.get("has_frames"))
        self._frames = self._offsets = None
        if self.has_frames:
            self._frames = self._load(FRAMES)
            self._offsets = np.asarray(self._load(OFFSETS), dtype=np.int64)
            if len(self._offsets) != n + 1 or int(self._offsets[-1]) != self._frames.shape[0]:
                raise FeatureStoreError(f"{enc_dir / OFFSETS}: {len(self._offsets)} offsets ending at "
                                        f"{int(self._offsets[-1]) if len(self._offsets) else 0} do not match "
                                        f"{n} utterances / {self._frames.shape[0]} frames")
        self._index = {u: i for i, u in enumerate(self.utt_ids)}

    def _load(self, fname: str) -> np.ndarray:
        p = self.dir / fname
        try:
            return np.load(p, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as e:
            raise FeatureStoreError(f"{p}: cannot read ({e})") from None

    def __len__(self) -> int:
        return len(self.utt_ids)

    def __repr__(self) -> str:
        return (f"EncoderFeatures({self.name!r}, n={len(self)}, layers={self.layers}, "
                f"pooled_dim={self._pooled.shape[2]}, frames={self.has_frames})")

    @property
    def random_init(self) -> bool:
        return bool(self.meta.get("identity", {}).get("random_init"))

    @property
    def identity(self) -> dict:
        return dict(self.meta.get("identity", {}))

    def layer_position(self, layer: int | str | None) -> int | str:
        """A layer choice (layer_choice: a hidden-state index, "last", "mean", "weighted") -> its
        position along this entry's stored layer axis."""
        try:
            pos = layer_position(parse_layer(layer, note=False), self.layers, where=str(self.dir))
        except ConfigError as e:
            raise FeatureStoreError(str(e)) from None
        if pos == "weighted":
            raise FeatureStoreError(f"{self.dir}: 'weighted' keeps every layer; read pooled_all()")
        return pos

    def pooled(self, layer: int | str | None = "last") -> np.ndarray:
        """(N, P) float32 of one layer choice: "last" = the deepest stored layer; an int = that
        hidden state (0 = embeddings; it must be stored); "mean" = mean over the stored layers."""
        return select_layer(self._pooled, self.layer_position(layer), axis=1)

    def pooled_all(self) -> np.ndarray:
        """(N, L, P) memmap in the stored dtype."""
        return self._pooled

    def _check_frames(self, i: int) -> None:
        if not self.has_frames:
            raise FeatureStoreError(f"{self.dir}: frames were not stored; rerun extract with --frames")
        if not -len(self) <= i < len(self):
            raise FeatureStoreError(f"{self.dir}: row {i} out of range (0..{len(self) - 1})")

    def frames_all(self, i: int) -> np.ndarray:
        """(T_i, L, F) float32 frames of row i."""
        self._check_frames(i)
        i = int(i) % len(self)
        a, b = int(self._offsets[i]), int(self._offsets[i + 1])
        return np.array(self._frames[a:b], dtype=np.float32)

    def frames(self, i: int, layer: int | str | None = "last") -> np.ndarray:
        """(T_i, F) float32 frames of row i for one layer choice (see ``pooled``)."""
        pos = self.layer_position(layer)
        return np.ascontiguousarray(select_layer(self.frames_all(i), pos, axis=1))

    def frame_lengths(self) -> np.ndarray:
        """(N,) number of frames per row (needs frames)."""
        if not self.has_frames:
            raise FeatureStoreError(f"{self.dir}: frames were not stored; rerun extract with --frames")
        return np.diff(self._offsets)

    def rows(self, utt_ids: Iterable[str]) -> np.ndarray:
        """Row indices of ``utt_ids``; FeatureStoreError naming the missing ones (never KeyError)."""
        ids = list(utt_ids)
        missing = [u for u in ids if u not in self._index]
        if missing:
            more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
            raise FeatureStoreError(f"{self.dir}: no features for utterance(s) {', '.join(missing[:5])}{more} "
                                    f"(skipped as bad audio or not extracted; see {self.dir / REPORT})")
        return np.asarray([self._index[u] for u in ids], dtype=np.int64)

    def report(self) -> dict:
        p = self.dir / REPORT
        return json.loads(p.read_text(encoding="utf-8")) if p.is_file() else {}


class FeatureStore:
    def __init__(self, root: Path):
        self.root = root
        try:
            self.manifest: Manifest = Manifest.from_csv(root / MANIFEST)
        except CorpusError as e:
            raise FeatureStoreError(f"{root}: store manifest unreadable ({e})") from None
        self._cache: dict[str, EncoderFeatures] = {}

    def _entries(self) -> tuple[list[str], list[str]]:
        done, unfinished = [], []
        for d in sorted(p for p in self.root.iterdir() if p.is_dir() and not p.name.startswith(".")):
            if read_meta(d) is not None:
                done.append(d.name)
            elif (d / PARTIAL).is_dir() or (d / META).exists():
                unfinished.append(d.name)
        return done, unfinished

    @property
    def encoders(self) -> list[str]:
        """Names of the finished encoder entries."""
        return self._entries()[0]

    @property
    def unfinished(self) -> list[str]:
        return self._entries()[1]

    def get(self, name: str) -> EncoderFeatures:
        if name in self._cache:
            return self._cache[name]
        meta = read_meta(self.root / name)
        if meta is None:
            done, unfinished = self._entries()
            state = "is unfinished (rerun the same extract command to resume)" if name in unfinished \
                else "is not in this store"
            raise FeatureStoreError(f"{self.root}: encoder {name!r} {state}; finished: {', '.join(done) or 'none'}")
        fs = EncoderFeatures(self.root / name, meta)
        self._cache[name] = fs
        return fs

    def __contains__(self, name: str) -> bool:
        return name in self.encoders

    def __repr__(self) -> str:
        return f"FeatureStore({str(self.root)!r}, n={len(self.manifest)}, encoders={self.encoders})"


def open_store(path: str | Path, encoders: Sequence[str] | None = None) -> FeatureStore:
    """Open a finished store. FeatureStoreError if the folder or its manifest is missing, if no
    encoder entry is finished, or if one of ``encoders`` (when given) is absent/unfinished."""
    root = Path(path)
    if not root.is_dir():
        raise FeatureStoreError(f"{root}: feature store not found (run `parrot-ser extract ... --out {root}`)")
    if not (root / MANIFEST).is_file():
        raise FeatureStoreError(f"{root}: not a feature store (no {MANIFEST})")
    store = FeatureStore(root)
    done, unfinished = store._entries()
    if not done:
        extra = f"; unfinished: {', '.join(unfinished)} (rerun extract to resume)" if unfinished else ""
        raise FeatureStoreError(f"{root}: no finished encoder features{extra}")
    for name in encoders or ():
        store.get(name)
    return store
