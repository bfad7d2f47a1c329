"""The RUN_DIR layout, in one place: what ``parrot-ser train`` / ``grid`` write and ``export``, the grid
tables and the demo report read.

RUN_DIR/
  run.json                       everything needed to rebuild a fold's model (see docs/protocol.md)
  results.json                   metrics per run, summaries (mean +- std), confusion, folds, meta
  predictions.csv                utt_id, speaker, fold, seed, label, predicted, prob_<class>...
  confusion.png, per_class_f1.png, learning_curves.png, transport.png (OT models only)
  logs/seed{S}_fold{K}.csv       per-epoch train loss, validation metrics, learning rate (logs.py)
  tensorboard/seed{S}_fold{K}/   the same as TensorBoard events, when tensorboard is installed
  models/seed{S}_fold{K}.safetensors   weights + standardiser buffers of one seed/fold
  folds/seed{S}_fold{K}.json     finished-run entry (written atomically, last): resume marker
"""

from __future__ import annotations

from pathlib import Path

RUN_FORMAT = "parrot-ser-run/1"
RESULTS_FORMAT = "parrot-ser-results/1"
RUN_JSON = "run.json"
RESULTS_JSON = "results.json"
PREDICTIONS_CSV = "predictions.csv"


def entry_name(seed: int, fold: int) -> str:
    return f"seed{seed}_fold{fold}"


def weights_rel(name: str) -> str:
    """Weights of one seed/fold, relative to RUN_DIR (as run.json lists them)."""
    return f"models/{name}.safetensors"


def weights_path(run_dir: str | Path, name: str) -> Path:
    return Path(run_dir) / weights_rel(name)


def entry_path(run_dir: str | Path, name: str) -> Path:
    """The finished-run entry of one seed/fold: written last, its presence marks the fold done."""
    return Path(run_dir) / "folds" / f"{name}.json"


def transport_plan_path(run_dir: str | Path, name: str) -> Path:
    """The first test batch's OT plan of one seed/fold (OT models)."""
    return Path(run_dir) / "folds" / f"{name}_plan.npy"


def log_csv_path(run_dir: str | Path, name: str) -> Path:
    return Path(run_dir) / "logs" / f"{name}.csv"
