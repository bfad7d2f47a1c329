"""One meaning per layer word (issue 21): a layer is a hidden-state index everywhere; one parser,
one selector; old runs / bundles (which stored a position) keep working."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from parrot_ser.errors import ConfigError, FeatureStoreError
from parrot_ser.layer_choice import (
    DEPRECATED_ALL,
    LAST,
    MEAN,
    WEIGHTED,
    as_legacy,
    choice_from_legacy,
    layer_position,
    legacy_position,
    parse_layer,
    parse_layers,
    select_layer,
)
from parrot_ser.training import TrainConfig, load_config
from test_training import build_store


def test_one_parser_for_every_word(capsys):
    assert [parse_layer(v) for v in (None, "", "last", "mean", "weighted", "6", 0)] == \
        [LAST, LAST, LAST, MEAN, WEIGHTED, 6, 0]
    assert capsys.readouterr().err == ""
    assert parse_layer("all") == WEIGHTED  # the old word, with a one-line note
    assert capsys.readouterr().err.strip() == DEPRECATED_ALL
    for bad in ("-1", -2, "first", True):
        with pytest.raises(ConfigError, match="--layer"):
            parse_layer(bad)
    # extract's sets of hidden states: the same parser module (HEAR writes ';' lists)
    assert parse_layers("all") == "all" and parse_layers("3,6") == parse_layers("3;6") == [3, 6]
    assert parse_layers("-1") == -1
    with pytest.raises(ConfigError, match="--layers"):
        parse_layers("x")
    # YAML and CLI spell it the same way
    assert load_config(None, {"layer": "all"}).layer == WEIGHTED
    assert TrainConfig(layer="4").validate().layer == 4


def test_positions_and_one_selector():
    stored = [3, 6, 9]
    assert [layer_position(c, stored) for c in (LAST, 3, 6, MEAN, WEIGHTED)] == [2, 0, 1, MEAN, WEIGHTED]
    with pytest.raises(ConfigError, match=r"layer 4 is not stored; stored hidden states: \[3, 6, 9\]"):
        layer_position(4, stored)
    x = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4)
    t = torch.from_numpy(x)
    for pos in (0, 2, MEAN, WEIGHTED):  # numpy (training, serving) and torch (ONNX graphs) agree
        assert np.array_equal(select_layer(x, pos, axis=1), select_layer(t, pos, axis=1).numpy())
    assert np.array_equal(select_layer(x, 1, axis=1), x[:, 1])
    assert np.array_equal(select_layer(x, MEAN, axis=1), x.mean(1))


def test_legacy_positions_are_read_as_they_were_meant():
    # old run.json / bundle.json: None = last, int = position among the stored layers, 'all' = weighting
    assert [legacy_position(v, 3) for v in (None, 0, -1, "mean", "all")] == [2, 0, 2, MEAN, WEIGHTED]
    assert choice_from_legacy(0, [[3, 6, 9]]) == 3 and choice_from_legacy(None, [[3], [5]]) == LAST
    assert choice_from_legacy("all", [[3, 6]]) == WEIGHTED
    with pytest.raises(ConfigError, match="different hidden states"):
        choice_from_legacy(0, [[3, 6], [4, 6]])
    assert [as_legacy(c, [3, 6]) for c in (LAST, 3, 6, MEAN, WEIGHTED)] == [None, 0, 1, MEAN, "all"]


def test_predictor_positions_new_and_legacy_bundles():
    from parrot_ser.inference.predictor import Predictor

    enc = SimpleNamespace(identity=SimpleNamespace(layers=[3, 6, 9], name="e"), sample_rate=16000)
    head = torch.nn.Identity()
    assert Predictor(["a"], [enc], [head], layer=6).layer_positions() == [1]
    assert Predictor(["a"], [enc], [head]).layer_positions() == [2]  # default: the last layer
    assert Predictor(["a"], [enc], [head], layer=1, legacy_layer=True).layer_positions() == [1]
    with pytest.raises(ConfigError, match="layer 1 is not stored"):
        Predictor(["a"], [enc], [head], layer=1).layer_positions()


@pytest.fixture(scope="module")
def two_layer_store(tmp_path_factory):
    """The logmel entry rewritten as a store of hidden states [3, 6] (6 = the features, 3 = noise)."""
    store = build_store(tmp_path_factory.mktemp("layers"), n_spk=4, per=2)
    d = store / "logmel"
    pooled = np.load(d / "pooled.npy")
    np.save(d / "pooled.npy", np.concatenate([np.random.default_rng(0).normal(size=pooled.shape).astype(pooled.dtype),
                                                 pooled], axis=1))
    meta = json.loads((d / "meta.json").read_text())
    meta["layers"] = meta["identity"]["layers"] = [3, 6]
    (d / "meta.json").write_text(json.dumps(meta))
    return store


def test_train_layer_is_a_hidden_state_index(two_layer_store, tmp_path):
    from parrot_ser.features import open_store
    from parrot_ser.training.run import _identity_layer, run_cv

    fs = open_store(two_layer_store).get("logmel")
    assert np.array_equal(fs.pooled(6), fs.pooled()) and not np.array_equal(fs.pooled(3), fs.pooled())
    with pytest.raises(FeatureStoreError, match=r"layer 1 is not stored; stored hidden states: \[3, 6\]"):
        fs.pooled(1)  # it used to mean "position 1"
    cfg = TrainConfig(epochs=2, batch_size=6)
    runs = {}
    for layer in ("last", 6, 3):
        out = tmp_path / str(layer)
        runs[layer] = run_cv(two_layer_store, ["logmel"], "fcn", TrainConfig(**{**cfg.to_dict(), "layer": layer}),
                             [0], "speaker-kfold", out, n_folds=2, workers=1)
        run = json.loads((out / "run.json").read_text())
        assert run["layer"] == layer and run["layer_meaning"].startswith("hidden-state index")

    def proba(layer):
        return json.loads((tmp_path / str(layer) / "folds" / "seed0_fold0.json").read_text())["test_proba"]

    assert runs["last"]["headline"] == runs[6]["headline"] and proba("last") == proba(6)
    assert proba(3) != proba(6)  # hidden state 3 (position 0) really is another input
    # the identity of a run uses the old spelling, so run folders made before still resume
    assert _identity_layer(6, {"logmel": {"layers": [3, 6]}}) == 1
    assert _identity_layer(LAST, {"logmel": {"layers": [3, 6]}}) is None
    assert _identity_layer(3, {"a": {"layers": [3, 6]}, "b": {"layers": [0, 3]}}) == 3  # no old spelling
    with pytest.raises(FeatureStoreError, match="not stored"):
        run_cv(two_layer_store, ["logmel"], "fcn", TrainConfig(**{**cfg.to_dict(), "layer": 0}), [0],
               "speaker-kfold", tmp_path / "bad", n_folds=2, workers=1)
