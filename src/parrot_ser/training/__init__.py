"""Speaker-independent cross-validation, the trainer, run outputs, grid tables and significance.

The names below are imported on first use, so ``parrot_ser.training.config`` (TrainConfig, YAML)
stays light for the CLI: importing it does not import torch."""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "StandardisedModel": "parrot_ser.models", "Standardiser": "parrot_ser.models",
    "TrainConfig": "parrot_ser.training.config", "load_config": "parrot_ser.training.config",
    "SERData": "parrot_ser.training.data",
    "PROTOCOLS": "parrot_ser.training.splits", "Fold": "parrot_ser.training.splits",
    "assert_speaker_independent": "parrot_ser.training.splits", "make_folds": "parrot_ser.training.splits",
    "RunSpec": "parrot_ser.training.spec",
    "run_cv": "parrot_ser.training.run", "run_grid": "parrot_ser.training.grid",
    "fit_model": "parrot_ser.training.trainer", "predict_proba": "parrot_ser.training.trainer",
    "seed_everything": "parrot_ser.training.trainer",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'parrot_ser.training' has no attribute {name!r}")
    return getattr(importlib.import_module(_WHERE[name]), name)
