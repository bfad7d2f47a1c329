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


@pytest.fixture
def drawn(monkeypatch):
    """The figures the plot functions draw, kept open to be inspected instead of closed."""
    from parrot_ser.training import plots

    figs = []
    monkeypatch.setattr(plots.plt, "close", figs.append)
    return figs


def test_learning_curves_of_5_folds_x_3_seeds_are_readable(drawn, tmp_path):
    """Issue 20, item 13: with 15 runs tab10 repeated colours, the legend covered the curves and the
    epoch axis read 1.0, 1.5, ...: one colour per fold, a legend outside the panels, whole epochs."""
    from matplotlib.colors import to_hex

    from parrot_ser.training.plots import plot_learning_curves

    hist = [{"epoch": e, "train_loss": 1 / e, "val_loss": 1.2 / e, "val_macro_f1": 10.0 * e,
             "val_accuracy": 11.0 * e} for e in (1, 2, 3)]
    plot_learning_curves([(s, k, hist, 2) for s in range(3) for k in range(5)], tmp_path / "lc.png")
    (fig,) = drawn
    ax_l, ax_m = fig.axes
    by_fold = [{to_hex(ln.get_color()) for ln in ax_l.get_lines()[2 * (5 * s + k):2 * (5 * s + k) + 2]}
               for s in range(3) for k in range(5)]
    assert all(len(c) == 1 for c in by_fold)  # train and validation loss of one run share its colour
    colours = [c.pop() for c in by_fold]
    assert len(set(colours)) == 5 and colours[:5] == colours[5:10] == colours[10:]  # per fold, not per run
    assert ax_l.get_legend() is None and ax_m.get_legend() is None and len(fig.legends) == 1
    assert [t.get_text() for t in fig.legends[0].get_texts()] == [f"fold {k}" for k in range(5)]
    fig.canvas.draw()
    ticks = [t for t in ax_l.get_xticks() if 1 <= t <= 3]
    assert ticks and all(float(t).is_integer() for t in ticks)


def test_grid_overview_draws_chance_and_majority_and_names_corpus_and_settings(store, drawn, tmp_path):
    """Issue 20, item 12: chance alone (100 / classes) hid the majority-class share; the title named
    neither the corpus nor the settings."""
    out = tmp_path / "grid"
    run_grid(store, ["logmel"], ["fcn"], TrainConfig(epochs=2, batch_size=8), [0], "speaker-kfold", out, n_folds=2)
    fig = next(f for f in drawn if f.axes and "epochs max" in f.axes[0].get_title().replace("\n", " "))
    ax = fig.axes[0]
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    res = json.loads((out / "cells" / "logmel" / "fcn" / "results.json").read_text())
    conf = np.asarray(res["confusion_sum"])
    majority = 100 * conf.sum(axis=1).max() / conf.sum()
    chance = 100 / len(res["classes"])
    assert any(lab.startswith(f"chance: uniform guess ({chance:.1f} %)") for lab in labels)
    assert any(f"majority class ({majority:.1f} %)" in lab for lab in labels)
    refs = {ln.get_label().split(":")[0].split(" (")[0]: ln.get_xdata()[0] for ln in ax.get_lines()
            if "chance" in ln.get_label() or "majority" in ln.get_label()}
    assert refs == {"chance": pytest.approx(chance), "accuracy of always the majority class": pytest.approx(majority)}
    corpus = json.loads((store / "manifest.csv.json").read_text())["corpus"]
    assert ax.get_title().startswith(f"{corpus}:") and "2 epochs max" in ax.get_title().replace("\n", " ")
