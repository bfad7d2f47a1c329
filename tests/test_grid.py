"""The grid: cell planning (single / hetero / homo pairs), tables, significance, resume, CLI."""

from __future__ import annotations

import csv
import json
import re

import numpy as np
import pytest
from typer.testing import CliRunner

from parrot_ser.cli.main import app
from parrot_ser.errors import ConfigError
from parrot_ser.training import TrainConfig, fold_runs
from parrot_ser.training.grid import _paired, grid_cells, run_grid
from test_training import build_store

CELL = re.compile(r"^\d+\.\d\d ± \d+\.\d\d / \d+\.\d\d ± \d+\.\d\d / \d+\.\d\d ± \d+\.\d\d$")  # WA / UA / F1


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return build_store(tmp_path_factory.mktemp("gstore"), n_spk=4, per=2)


def test_grid_cells_pairs():
    kinds = {"ssam-tiny": "mamba", "hubert-base": "attention", "wavlm-base": "attention"}
    encs = ["hubert-base", "ssam-tiny", "wavlm-base"]
    cells = grid_cells(encs, ["cnn", "concat", "parrot"], kinds, "all")
    singles = [c for c in cells if c.pair_kind == "single"]
    assert [(c.row, c.model) for c in singles] == [(e, "cnn") for e in encs]
    rows = {c.row: c.pair_kind for c in cells if c.pair_kind != "single"}
    # the Mamba encoder is branch p (first) in a heterogeneous pair
    assert rows == {"ssam-tiny+hubert-base": "hetero", "hubert-base+wavlm-base": "homo",
                    "ssam-tiny+wavlm-base": "hetero"}
    assert {c.model for c in cells if c.pair_kind != "single"} == {"concat", "parrot"}
    hetero = grid_cells(encs, ["concat"], kinds, "hetero")
    assert sorted(c.row for c in hetero) == ["ssam-tiny+hubert-base", "ssam-tiny+wavlm-base"]
    assert [c.row for c in grid_cells(encs, ["concat"], kinds, "homo")] == ["hubert-base+wavlm-base"]
    with pytest.raises(ConfigError, match="--pairs"):
        grid_cells(encs, ["concat"], kinds, "mixed")
    with pytest.raises(ConfigError, match="empty"):
        grid_cells(["ssam-tiny"], ["concat"], kinds, "all")


def test_paired_tests():
    base = [60.0, 62.0, 58.0, 61.0, 59.0, 63.0]
    same = _paired(base, base)
    assert same["wilcoxon_p"] == 1.0 and same["mean_diff"] == 0.0
    better = _paired(base, [b + d for b, d in zip(base, [3.0, 2.5, 4.0, 3.5, 2.0, 5.0])])
    assert better["mean_diff"] == pytest.approx(3.333333, abs=1e-5)
    assert better["wilcoxon_p"] == pytest.approx(0.03125)  # exact: all 6 differences positive
    assert better["ttest_p"] < 0.01


def test_grid_tables_significance_and_resume(store, tmp_path, monkeypatch):
    out = tmp_path / "grid"
    cfg = TrainConfig(epochs=2, batch_size=8, model={"encoder_pool": "adaptive"})
    res = run_grid(store, ["logmel", "toy-mamba"], ["cnn", "concat", "parrot"], cfg, [0, 1], "speaker-kfold",
                   out, n_folds=2)
    rows = list(csv.reader(open(out / "table.csv", encoding="utf-8")))
    assert rows[0] == ["encoders", "kind", "cnn", "concat", "parrot"]
    body = {r[0]: r for r in rows[1:]}
    assert set(body) == {"logmel", "toy-mamba", "toy-mamba+logmel"}
    assert CELL.match(body["logmel"][2]) and body["logmel"][3] == ""
    assert body["toy-mamba+logmel"][1] == "other" and CELL.match(body["toy-mamba+logmel"][4])
    md = (out / "table.md").read_text(encoding="utf-8")
    assert "| toy-mamba+logmel | other |" in md and "2 seed(s)" in md
    sig = list(csv.DictReader(open(out / "significance.csv", encoding="utf-8")))
    assert len(sig) == 1 and sig[0]["model"] == "parrot" and sig[0]["n_pairs"] == "4"
    for k in ("acc_wilcoxon_p", "acc_ttest_p", "mcnemar_p"):
        v = float(sig[0][k])
        assert np.isnan(v) or 0.0 <= v <= 1.0
    assert int(sig[0]["mcnemar_n"]) == 24  # first seed: every utterance tested once
    smd = (out / "significance.md").read_text(encoding="utf-8")
    # the floor of the Wilcoxon p follows this grid's pair count (2 seeds x 2 folds), not a fixed 5
    assert "exact Wilcoxon p (2/2^n) with 4 pairs: 0.125." in smd and "0.0625" not in smd
    assert "b utterances only concat got right / c utterances only the fusion model got right" in smd
    cells = list(csv.DictReader(open(out / "cells.csv", encoding="utf-8")))
    assert len(cells) == 4 and all(0 <= float(c["acc_mean"]) <= 100 for c in cells)
    assert (out / "cells" / "toy-mamba+logmel" / "parrot" / "transport.png").is_file()
    assert json.loads((out / "grid.json").read_text())["encoder_kinds"]["toy-mamba"] == "mamba"
    assert res["significance"][0]["pair"] == "toy-mamba+logmel"

    calls = []
    monkeypatch.setattr(fold_runs, "fit_model", lambda *a, **k: calls.append(1))
    again = run_grid(store, ["logmel", "toy-mamba"], ["cnn", "concat", "parrot"], cfg, [0, 1], "speaker-kfold",
                     out, n_folds=2)
    assert calls == [] and again["cells"] == json.loads(json.dumps(res["cells"]))


def test_grid_cli(store, tmp_path):
    out = tmp_path / "g"
    r = CliRunner().invoke(app, ["grid", "--features", str(store), "--encoders", "logmel,toy-mamba",
                                 "--models", "fcn,concat,hadamard", "--pairs", "all", "--folds", "2",
                                 "--epochs", "1", "--out", str(out), "--quiet", "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert {(c["row"], c["model"]) for c in doc["cells"]} == {
        ("logmel", "fcn"), ("toy-mamba", "fcn"), ("toy-mamba+logmel", "concat"), ("toy-mamba+logmel", "hadamard")}
    assert (out / "table.md").is_file() and (out / "significance.md").is_file()
    bad = CliRunner().invoke(app, ["grid", "--features", str(store), "--encoders", "logmel", "--models", "concat",
                                   "--out", str(tmp_path / "h")])
    assert bad.exit_code == 2 and "grid is empty" in bad.output
    # this store has no frame features: asking for them is a one-line error naming the encoder
    nof = CliRunner().invoke(app, ["train", "--features", str(store), "--encoder", "toy-mamba", "--encoder",
                                   "logmel", "--model", "parrot-token", "--frames", "--out", str(tmp_path / "f")])
    assert nof.exit_code == 2 and "toy-mamba: frame features were not extracted" in nof.output


def test_untrained_tiny_stand_ins_are_labelled_in_tables():
    from parrot_ser.training.run import random_init_label

    tiny = {"identity": {"random_init": True, "preprocessing": {"random_init_config": {
        "tiny": True, "num_hidden_layers": 2, "hidden_size": 64}}}}
    assert random_init_label("hubert-base", tiny) == "hubert-base [untrained tiny 2-layer stand-in]"
    assert random_init_label("ssam-tiny", {"random_init": True}) == "ssam-tiny [untrained]"
    assert random_init_label("hubert-base", {"identity": {"random_init": False}}) == "hubert-base"
    # the demo's ssam-tiny runs 2 of its 12 blocks: a stand-in too, labelled as such (issue 20, item 9)
    shallow = {"identity": {"random_init": True, "options": {"depth": 2}}}
    assert random_init_label("ssam-tiny", shallow) == "ssam-tiny [untrained 2-of-12-block stand-in]"


def test_run_plots_name_untrained_encoders_in_their_titles(tmp_path, monkeypatch):
    """Issue 20, item 9: the confusion, per-class F1 and learning-curve plots were titled
    `cnn [wavlm-base-plus]` with no UNTRAINED."""
    import json

    from parrot_ser.training import TrainConfig, plots
    from parrot_ser.training.run import run_cv
    from test_training import build_store

    store = build_store(tmp_path / "s", n_spk=4, per=2)
    meta_path = store / "logmel" / "meta.json"
    meta = json.loads(meta_path.read_text())
    meta["identity"]["random_init"] = True  # as if logmel had untrained weights
    meta_path.write_text(json.dumps(meta))
    titles = []
    monkeypatch.setattr(plots.plt, "close", lambda fig: titles.extend(
        [fig._suptitle.get_text() if fig._suptitle else ""] + [ax.get_title() for ax in fig.axes]))
    run_cv(store, ["logmel"], "fcn", TrainConfig(epochs=2, batch_size=8), [0], "speaker-kfold", tmp_path / "r",
           n_folds=2)
    named = [t for t in titles if "fcn [" in t]
    assert len(named) >= 3 and all("fcn [logmel [untrained]]" in t.replace("\n", " ") for t in named)
