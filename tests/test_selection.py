"""Nested selection (training/selection.py): the knob is chosen per (seed, fold) on the validation
speakers' score, and the reported number is that choice's test score - never the best test score."""

from __future__ import annotations

import json

import pytest

from parrot_ser.errors import ConfigError
from parrot_ser.training.selection import select_nested, validation_score


def _run(tmp_path, name, val, test, monitor="val_macro_f1"):
    d = tmp_path / name
    (d / "folds").mkdir(parents=True)
    for fold, (v, t) in enumerate(zip(val, test)):
        rec = {"seed": 0, "fold": fold, "monitor": monitor, "best_epoch": 2,
               "history": [{"epoch": 1, monitor: -1.0}, {"epoch": 2, monitor: v}, {"epoch": 3, monitor: 99.0}],
               "metrics": {"accuracy": t, "macro_f1": t - 1}}
        (d / "folds" / f"seed0_fold{fold}.json").write_text(json.dumps(rec))
    return d


def test_choice_follows_validation_not_test(tmp_path):
    # layer A: better on validation in fold 0, worse on test; layer B: the reverse in fold 1
    a = _run(tmp_path, "A", val=[60.0, 40.0], test=[50.0, 90.0])
    b = _run(tmp_path, "B", val=[50.0, 45.0], test=[80.0, 30.0])
    res = select_nested({"A": a, "B": b}, [0], 2)
    assert [r["choice"] for r in res["runs"]] == ["A", "B"]
    assert res["headline"]["accuracy"]["mean"] == pytest.approx((50.0 + 30.0) / 2)  # not max(test) per fold
    assert res["choices"] == {"A": 1, "B": 1}


def test_ties_take_the_first_candidate_and_loss_monitors_are_negated(tmp_path):
    a = _run(tmp_path, "A", val=[50.0], test=[10.0])
    b = _run(tmp_path, "B", val=[50.0], test=[90.0])
    assert select_nested({"A": a, "B": b}, [0], 1)["runs"][0]["choice"] == "A"
    rec = {"monitor": "val_loss", "best_epoch": 1, "history": [{"epoch": 1, "val_loss": 0.7}]}
    assert validation_score(rec) == -0.7


def test_unfinished_candidate_is_a_clear_error(tmp_path):
    a = _run(tmp_path, "A", val=[50.0], test=[10.0])
    with pytest.raises(ConfigError, match="seed 0 fold 1 has not finished"):
        select_nested({"A": a}, [0], 2)
