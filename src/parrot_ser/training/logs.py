"""Per-epoch training logs: one CSV per seed x fold (always) and TensorBoard event files (when the
``tensorboard`` package is installed: ``pip install parrot-ser[tensorboard]``).

``EpochLog`` is an ``on_epoch`` callback for ``fit_model`` (trainer.py), so the trainer loop stays
as it is; run_cv chains it with its progress callback.

RUN_DIR/logs/seed{S}_fold{K}.csv      epoch, train_loss, val_loss, val_accuracy, val_macro_f1, lr, val_ccc
RUN_DIR/tensorboard/seed{S}_fold{K}/  the same scalars (tags train/loss, val/loss, val/accuracy,
                                      val/macro_f1, lr); view with ``tensorboard --logdir RUN_DIR``

A fold that is retrained (after a crash) rewrites its CSV from epoch 1; a resumed, finished fold
keeps its files untouched. The CSV is flushed every epoch so a long run can be watched live."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path
from typing import Any

from parrot_ser.training.rundir import log_csv_path

# val_ccc: the validation mean CCC of regression / multitask runs (empty for classification)
CSV_COLUMNS = ("epoch", "train_loss", "val_loss", "val_accuracy", "val_macro_f1", "lr", "val_ccc")
TB_TAGS = {"train_loss": "train/loss", "val_loss": "val/loss", "val_accuracy": "val/accuracy",
           "val_macro_f1": "val/macro_f1", "lr": "lr", "val_ccc": "val/ccc"}


def tensorboard_available() -> bool:
    """True when torch.utils.tensorboard can write event files (it needs the tensorboard package)."""
    try:
        from torch.utils.tensorboard import SummaryWriter  # noqa: F401
    except Exception:  # ImportError, or a tensorboard that breaks on import (e.g. on a stand-in tensorflow)
        return False
    return True


class EpochLog:
    """Writes one fold's epochs; call it as ``log(epoch, record)`` and ``close()`` at the end.
    ``lr``: the learning rate to log when the record has none (the trainer adds ``lr`` itself)."""

    def __init__(self, run_dir: str | Path, tag: str, *, lr: float | None = None,
                 tensorboard: bool | None = None):
        self.run_dir = Path(run_dir)
        self.tag = tag
        self.lr = lr
        self.csv_path = log_csv_path(self.run_dir, tag)
        self.csv_path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.csv_path, "w", newline="", encoding="utf-8")  # noqa: SIM115 - closed in close()
        self._csv = csv.writer(self._file)
        self._csv.writerow(CSV_COLUMNS)
        self._file.flush()
        self.tb_dir: Path | None = None
        self._tb: Any = None
        if tensorboard is None:
            tensorboard = tensorboard_available()
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.tb_dir = self.run_dir / "tensorboard" / tag
            # A retrained fold starts a fresh event history (old events would overlay the new curve).
            shutil.rmtree(self.tb_dir, ignore_errors=True)
            self._tb = SummaryWriter(log_dir=str(self.tb_dir))

    def __call__(self, epoch: int, rec: dict) -> None:
        row = dict(rec)
        row.setdefault("lr", self.lr)
        self._csv.writerow([_cell(row.get(c)) for c in CSV_COLUMNS])
        self._file.flush()
        if self._tb is not None:
            for key, tag in TB_TAGS.items():
                v = row.get(key)
                if isinstance(v, (int, float)):
                    self._tb.add_scalar(tag, float(v), epoch)

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()
        if self._tb is not None:
            self._tb.close()
            self._tb = None

    def __enter__(self) -> EpochLog:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def read_epoch_csv(path: str | Path) -> list[dict[str, float | None]]:
    """The rows of a logs/*.csv as numbers (empty cells -> None)."""
    with open(path, newline="", encoding="utf-8") as f:
        return [{k: (float(v) if v not in ("", None) else None) for k, v in r.items()} for r in csv.DictReader(f)]
