"""In-memory training data (one or two encoders' features + integer labels) and its batching into
``FusionInput`` (through the model layer's ``collate``, the same as serving)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from parrot_ser.errors import ConfigError, FeatureStoreError
from parrot_ser.fusion.base import FusionInput
from parrot_ser.layer_choice import WEIGHTED
from parrot_ser.models.batch import collate
from parrot_ser.training.spec import RunSpec


@dataclass
class SERData:
    """Features of N utterances for one or more encoders.

    ``pooled[i]``: (N, D_i) float32 for encoder i. ``frames[i]``: N arrays (T_n, F_i) or None.
    ``labels``: (N,) int64 indices into ``classes`` (-1: no class, a regression or multitask row).
    ``targets``: (N, len(dims)) float32 numeric targets in the data's scale, or None. ``selection``:
    how the run's label set was made from the store's (label map, classes kept, rows dropped)."""

    pooled: list[np.ndarray]
    labels: np.ndarray
    utt_ids: list[str]
    classes: list[str]
    frames: list[list[np.ndarray]] | None = None
    speakers: list[str] = field(default_factory=list)
    targets: np.ndarray | None = None
    dims: list[str] = field(default_factory=list)
    selection: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.labels = np.asarray(self.labels, dtype=np.int64)
        n = len(self.labels)
        for i, p in enumerate(self.pooled):
            if len(p) != n:
                raise FeatureStoreError(f"encoder input {i} has {len(p)} rows for {n} labels")
        if len(self.utt_ids) != n:
            raise FeatureStoreError(f"{len(self.utt_ids)} utterance ids for {n} labels")
        if self.frames is not None and any(len(f) != n for f in self.frames):
            raise FeatureStoreError("frame features do not cover every utterance")

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def n_inputs(self) -> int:
        return len(self.pooled)

    @property
    def input_dims(self) -> list[int]:
        return [int(p.shape[-1]) for p in self.pooled]

    @property
    def input_shapes(self) -> list[list[int]]:
        """Per-row shape of each input: [D] or [L, D] (all layers)."""
        return [[int(d) for d in p.shape[1:]] for p in self.pooled]

    @property
    def frame_dims(self) -> list[int] | None:
        if self.frames is None:
            return None
        return [int(f[0].shape[-1]) if len(f) else 0 for f in self.frames]

    def subset(self, idx: Sequence[int] | np.ndarray) -> SERData:
        idx = np.asarray(idx, dtype=np.int64)
        return SERData(
            pooled=[p[idx] for p in self.pooled],
            labels=self.labels[idx],
            utt_ids=[self.utt_ids[i] for i in idx],
            classes=list(self.classes),
            frames=None if self.frames is None else [[f[i] for i in idx] for f in self.frames],
            speakers=[self.speakers[i] for i in idx] if self.speakers else [],
            targets=None if self.targets is None else self.targets[idx], dims=list(self.dims),
            selection=self.selection,
        )

    def strata(self) -> list[str]:
        """What folds are stratified on: the label; for regression-only data the tertile of each target
        dimension (e.g. "1-3"), so every fold sees low, middle and high values."""
        if self.classes:
            return [self.classes[i] if i >= 0 else "(none)" for i in self.labels]
        assert self.targets is not None
        bins = [np.searchsorted(np.quantile(col, [1 / 3, 2 / 3]), col, side="right") for col in self.targets.T]
        return ["-".join(str(int(b[i])) for b in bins) for i in range(len(self))]


def make_batch(data: SERData, idx: np.ndarray, *, use_frames: bool = False,
               device: str | torch.device = "cpu") -> FusionInput:
    """Rows ``idx`` of ``data`` as a FusionInput (models.collate: frames right-padded with a mask)."""
    return collate(data.pooled, idx, data.frames if use_frames else None, device=device)


def load_features(features_dir: str | Path, spec: RunSpec) -> tuple[SERData, list[dict], dict[str, dict]]:
    """Read the feature store for a run spec: its encoders and layer choice (``spec.inputs``), its
    label selection (``spec.labels``) and task. Returns one SERData over the utterances every
    encoder has (manifest order), the manifest meta rows (for session / split protocols), and each
    encoder's meta."""
    from parrot_ser.features import open_store

    encoders, layer, use_frames = list(spec.inputs.encoders), spec.inputs.layer, spec.inputs.use_frames
    if not encoders:
        raise ConfigError("give at least one --encoder")
    if len(set(encoders)) != len(encoders):
        raise ConfigError(f"encoder listed twice: {', '.join(encoders)}")
    store = open_store(features_dir)
    available = list(store.encoders)
    for e in encoders:
        if e not in available:
            raise FeatureStoreError(f"{features_dir}: no features for encoder {e!r}; the store has "
                                    f"{', '.join(available) or 'none'} (run parrot-ser extract)")
    from parrot_ser.corpora.base import check_labelled

    check_labelled(store.manifest, Path(features_dir) / "manifest.csv")  # stores written before this check
    fss = [store.get(e) for e in encoders]
    n_skipped = {e: _check_complete(features_dir, store, fs) for e, fs in zip(encoders, fss)}
    have = set.intersection(*[set(fs.utt_ids) for fs in fss])
    utts = [u for u in store.manifest.utterances if u.utt_id in have]
    if not utts:
        raise FeatureStoreError(f"{features_dir}: no utterance has features for all of {', '.join(encoders)}")
    utts, labels, selection = select_labels(utts, spec, f"{features_dir}")
    if store.manifest.note:  # "derived targets, NOT a real result": every output of the run repeats it
        selection["data_note"] = store.manifest.note
    ids = [u.utt_id for u in utts]
    pooled, frames = [], [] if use_frames else None
    for e, fs in zip(encoders, fss):
        rows = np.asarray(fs.rows(ids), dtype=np.int64)
        if layer == WEIGHTED:
            p = np.asarray(fs.pooled_all()[rows], dtype=np.float32)  # (N, L, P): the model mixes them
        else:
            p = np.asarray(fs.pooled(layer=layer), dtype=np.float32)[rows]
        if not np.isfinite(p).all():
            bad = ids[int(np.where(~np.isfinite(p.reshape(len(p), -1)).all(axis=1))[0][0])]
            raise FeatureStoreError(f"{features_dir}/{e}: non-finite pooled features (first: {bad})")
        pooled.append(p)
        if frames is not None:
            if not fs.has_frames:
                raise FeatureStoreError(f"{features_dir}/{e}: frame features were not extracted "
                                        f"(re-run extract with --frames, or drop --frames)")
            if layer == WEIGHTED:  # every stored layer, (T, L, F): the model mixes them (layer weighting)
                frames.append([np.asarray(fs.frames_all(int(r)), dtype=np.float32) for r in rows])
            else:
                frames.append([np.asarray(fs.frames(int(r), layer=layer), dtype=np.float32) for r in rows])
    classes = sorted({lab for lab in labels if lab}) if spec.task != "regression" else []
    index = {c: i for i, c in enumerate(classes)}
    dims = list(store.manifest.targets) if spec.task != "classification" else []
    targets = np.asarray([store.manifest.target_values(u) for u in utts], dtype=np.float32).reshape(
        len(utts), len(dims)) if dims else None
    data = SERData(pooled, np.asarray([index.get(lab, -1) for lab in labels]), ids, classes, frames,
                   [u.speaker for u in utts], targets, dims, selection)
    # recorded with the run (not part of its fingerprint, which uses the identity only)
    metas = {e: {**fs.meta, "n_skipped_at_extraction": n_skipped[e]} for e, fs in zip(encoders, fss)}
    return data, [dict(u.meta) for u in utts], metas


def select_labels(utts: list, spec: RunSpec, where: str) -> tuple[list, list[str], dict]:
    """The run's rows and labels from the store's: the spec's ``labels["label_map"]`` (rename /
    merge, null drops), then ``labels["classes"]`` kept; a classification run leaves out the rows
    without a label, a regression run ignores labels. Returns (rows, their labels, a record of what
    was dropped)."""
    from collections import Counter

    task, label_map, classes = spec.task, dict(spec.labels.get("label_map") or {}), spec.labels.get("classes")
    if task == "regression":
        return utts, [""] * len(utts), {}
    mapped = [label_map.get(u.label, u.label) if u.label else "" for u in utts]
    dropped: Counter[str] = Counter(u.label for u, m in zip(utts, mapped) if u.label and m is None)
    keep = [m is not None for m in mapped]
    present = sorted({m for m, k in zip(mapped, keep) if k and m})
    if classes is not None:
        missing = [c for c in classes if c not in present]
        if missing:
            raise ConfigError(f"{where}: --classes {', '.join(missing)} not among the labels "
                              f"({', '.join(present) or 'none'}{' after the label map' if label_map else ''})")
        for i, m in enumerate(mapped):
            if keep[i] and m and m not in classes:
                dropped[m] += 1
                keep[i] = False
    n_unlabelled = sum(1 for m, k in zip(mapped, keep) if k and not m)
    if task == "classification" and n_unlabelled:
        keep = [k and bool(m) for m, k in zip(mapped, keep)]
    rows = [u for u, k in zip(utts, keep) if k]
    labels = [str(m) for m, k in zip(mapped, keep) if k]
    if not rows:
        raise ConfigError(f"{where}: no row left after the label selection")
    record = {"label_map": label_map, "classes": sorted({lab for lab in labels if lab}),
              "dropped": dict(sorted(dropped.items())),
              ("unlabelled_dropped" if task == "classification" else "unlabelled_kept"): n_unlabelled}
    return rows, labels, record


def _check_complete(features_dir: str | Path, store: Any, fs: Any) -> int:
    """Every row of the store manifest must have features in ``fs`` or be listed in its report as a
    bad file; otherwise the entry is incomplete (e.g. a second extraction into the same store that
    never finished) and training on it would silently drop rows. Returns the number of bad files."""
    skipped = {s.get("utt_id") for s in fs.report().get("skipped", [])}
    have = set(fs.utt_ids)
    missing = [u.utt_id for u in store.manifest.utterances if u.utt_id not in have and u.utt_id not in skipped]
    if missing:
        n = len(store.manifest.utterances)
        raise FeatureStoreError(
            f"{features_dir}/{fs.name}: {len(missing)} of {n} utterances of the store manifest have no features "
            f"and are not listed as bad files (first: {missing[0]}); the entry is incomplete: run `parrot-ser "
            f"extract --manifest {Path(features_dir) / 'manifest.csv'} -e {fs.name} --out {features_dir}` "
            f"(only the missing ones are computed)")
    return len(skipped & {u.utt_id for u in store.manifest.utterances})
