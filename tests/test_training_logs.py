"""Per-epoch logs (CSV always, TensorBoard events when installed), learning_curves.png per run and
the grid's overview.png, on a tiny real feature store (logmel of synthetic tones)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from parrot_ser.training import TrainConfig
from parrot_ser.training.grid import run_grid
from parrot_ser.training.logs import CSV_COLUMNS, EpochLog, read_epoch_csv, tensorboard_available
from parrot_ser.training.run import run_cv
from test_training import build_store


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return build_store(tmp_path_factory.mktemp("lstore"), n_spk=4, per=2)


def _png(path) -> None:
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000


def test_every_fold_logs_its_epochs_and_the_run_draws_curves(store, tmp_path):
    out = tmp_path / "run"
    cfg = TrainConfig(epochs=4, patience=0, batch_size=8, lr=2e-3)
    res = run_cv(store, ["logmel"], "fcn", cfg, [0], "speaker-kfold", out, n_folds=2)
    for k in (0, 1):
        rows = read_epoch_csv(out / "logs" / f"seed0_fold{k}.csv")
        assert list(rows[0]) == list(CSV_COLUMNS)
        entry = json.loads((out / "folds" / f"seed0_fold{k}.json").read_text())
        # the CSV holds exactly the trainer's history, epoch by epoch, plus the optimiser's lr
        assert [r["epoch"] for r in rows] == [1, 2, 3, 4]
        for r, h in zip(rows, entry["history"]):
            assert r["train_loss"] == pytest.approx(h["train_loss"], rel=1e-5)
            assert r["val_macro_f1"] == pytest.approx(h["val_macro_f1"], rel=1e-5)
            assert r["lr"] == pytest.approx(2e-3)
    _png(out / "learning_curves.png")
    assert res["plots"]["learning_curves"] == "learning_curves.png"


@pytest.mark.skipif(not tensorboard_available(), reason="tensorboard not installed (optional extra)")
def test_tensorboard_events_hold_the_same_scalars(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    with EpochLog(tmp_path, "seed0_fold0", lr=1e-3) as log:
        for ep in (1, 2, 3):
            log(ep, {"epoch": ep, "train_loss": 1.0 / ep, "val_loss": 2.0 / ep, "val_accuracy": 10.0 * ep,
                     "val_macro_f1": 9.0 * ep})
    acc = EventAccumulator(str(tmp_path / "tensorboard" / "seed0_fold0"))
    acc.Reload()
    assert {"train/loss", "val/loss", "val/accuracy", "val/macro_f1", "lr"} <= set(acc.Tags()["scalars"])
    assert [e.step for e in acc.Scalars("val/macro_f1")] == [1, 2, 3]
    assert np.allclose([e.value for e in acc.Scalars("train/loss")], [1.0, 0.5, 1 / 3])
    assert np.allclose([e.value for e in acc.Scalars("lr")], 1e-3)  # filled from the config when absent


def test_csv_without_tensorboard(tmp_path):
    with EpochLog(tmp_path, "t", tensorboard=False) as log:
        log(1, {"epoch": 1, "train_loss": 0.5, "lr": 1e-3})  # no validation side: empty cells
    rows = read_epoch_csv(tmp_path / "logs" / "t.csv")
    assert rows == [{"epoch": 1.0, "train_loss": 0.5, "val_loss": None, "val_accuracy": None,
                     "val_macro_f1": None, "lr": 1e-3, "val_ccc": None}]
    assert not (tmp_path / "tensorboard").exists()


def test_grid_writes_an_overview_plot(store, tmp_path):
    out = tmp_path / "grid"
    g = run_grid(store, ["logmel", "toy-mamba"], ["fcn", "concat"], TrainConfig(epochs=2, batch_size=8), [0],
                 "speaker-kfold", out, n_folds=2)
    _png(out / "overview.png")
    assert g["plots"]["overview"] == "overview.png"
