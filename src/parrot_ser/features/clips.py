"""How long the clips behind a feature store are: recorded in a bundle (``training.clip_seconds``)
so that ``predict`` and ``analyze`` cut long recordings into windows of the length the model saw."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def clip_seconds(features_dir: str | Path | None, labels: list[str] | None = None) -> dict | None:
    """Median / 10th / 90th percentile / min / max duration (s) of the store's utterances with one of
    ``labels``, from the audio headers (no decoding). None when the store's manifest or its audio
    cannot be read (e.g. exported on another machine): the windows then fall back to defaults."""
    from parrot_ser.audio import read_info
    from parrot_ser.corpora.base import Manifest
    from parrot_ser.errors import ParrotError

    if not features_dir or not (Path(features_dir) / "manifest.csv").is_file():
        return None
    try:
        man = Manifest.from_csv(Path(features_dir) / "manifest.csv")
    except (ParrotError, OSError, ValueError):
        return None
    durs = []
    for u in man.utterances:
        if labels is None or u.label in labels:
            try:
                durs.append(read_info(man.abspath(u)).duration)
            except (ParrotError, OSError):
                continue
    if not durs:
        return None
    d = np.asarray(durs)
    return {"median": round(float(np.median(d)), 3), "p10": round(float(np.percentile(d, 10)), 3),
            "p90": round(float(np.percentile(d, 90)), 3), "min": round(float(d.min()), 3),
            "max": round(float(d.max()), 3), "n": int(len(d)), "source": "audio headers of the training manifest"}
