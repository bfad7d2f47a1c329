"""RunSpec (training/spec.py): one resolved description of a run; identity vs execution."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace

import pytest
import torch

from parrot_ser.errors import ConfigError
from parrot_ser.training import TrainConfig
from parrot_ser.training.spec import SPEC_FORMAT, Execution, RunSpec

DATA = {"classes": ["a", "b"], "utt_ids": "x", "features": {"logmel": "y"}}


def _spec(model="cnn", config=None, **kw):
    return RunSpec.build(model, config or TrainConfig(), encoders=["logmel"] if model in ("cnn", "fcn") else ["m", "a"],
                         protocol="speaker-kfold", n_folds=5, **kw)


def test_the_model_config_is_resolved_for_its_model():
    s = _spec("cnn")
    # the cnn's own typed config with every default filled in, nothing another model takes
    assert s.model_config["conv_channels"] == [64, 128] and s.model_config["dropout"] == 0.3
    assert "ot_eps" not in s.model_config and "n_heads" not in s.model_config
    # a grid shares one TrainConfig: a parrot setting leaves the cnn cell's identity alone...
    tuned = TrainConfig(model={"ot_eps": 0.1, "parrot": {"ot_iters": 20}})
    assert _spec("cnn", tuned).fingerprint(DATA) == s.fingerprint(DATA)
    # ...and changes the parrot cell's
    assert _spec("parrot", tuned).model_config["ot_iters"] == 20
    assert _spec("parrot", tuned).fingerprint(DATA) != _spec("parrot").fingerprint(DATA)
    with pytest.raises(ConfigError, match="unknown model config key"):
        _spec("cnn", TrainConfig(model={"no_such_key": 1}))


def test_identity_vs_execution():
    s = _spec("fcn")
    fast = _spec("fcn", replace(TrainConfig(), num_threads=3), execution=Execution("cpu", 3, 4, "local", True))
    assert fast.execution != s.execution and fast.fingerprint(DATA) == s.fingerprint(DATA)
    assert "execution" not in s.identity() and s.identity()["format"] == SPEC_FORMAT
    for change in ({"lr": 1e-4}, {"layer": "mean"}, {"precision": "bf16"}, {"standardise": False}):
        assert _spec("fcn", TrainConfig(**change)).fingerprint(DATA) != s.fingerprint(DATA), change
    assert s.fingerprint({**DATA, "classes": ["a", "c"]}) != s.fingerprint(DATA)  # the data is identity too
    d = s.to_dict()
    assert d["inputs"] == {"encoders": ["logmel"], "layer": "last", "use_frames": False, "standardise": True}
    assert d["optimisation"]["lr"] == 1e-3 and d["task"] == "classification" and d["protocol"]["n_folds"] == 5


def test_from_dict_round_trip_and_the_former_format():
    s = _spec("parrot", TrainConfig(model={"ot_eps": 0.1}, task="multitask", classes=["a", "b"]),
              execution=Execution("cpu", 2, 3, "local", False))
    assert RunSpec.from_dict(s.to_dict()) == s
    assert RunSpec.from_dict(json.loads(json.dumps(s.to_dict()))).fingerprint(DATA) == s.fingerprint(DATA)
    # format /1 named the model config's store position "layer": read as "position"...
    v1 = s.to_dict()
    v1["model_config"] = {("layer" if k == "position" else k): v for k, v in v1["model_config"].items()}
    v1["format"] = "parrot-ser-runspec/1"
    assert "position" not in v1["model_config"] and RunSpec.from_dict(v1) == s
    # ...and its fingerprint (what a /1 run folder holds) is recognised as this run's, once
    old = hashlib.sha256(json.dumps({"spec": {k: v for k, v in v1.items() if k != "execution"}, "data": DATA},
                                    sort_keys=True).encode()).hexdigest()[:16]
    assert s.former_fingerprints(DATA) == {old} and old != s.fingerprint(DATA)
    with pytest.raises(ConfigError, match="run spec format 'parrot-ser-runspec/9'"):
        RunSpec.from_dict({**v1, "format": "parrot-ser-runspec/9"})


def test_model_option_layer_is_read_as_position_with_a_note(monkeypatch, capsys):
    from parrot_ser.fusion import registry

    monkeypatch.setattr(registry, "_noted", set())
    s = _spec("cnn", TrainConfig(model={"layer": 0}))
    assert s.model_config["position"] == 0 and "layer" not in s.model_config
    assert _spec("cnn", TrainConfig(model={"cnn": {"layer": 0}})).fingerprint(DATA) == s.fingerprint(DATA)
    assert _spec("cnn", TrainConfig(model={"position": 0})).fingerprint(DATA) == s.fingerprint(DATA)
    err = capsys.readouterr().err
    assert err.count("the model option 'layer'") == 1 and "'position'" in err  # once per process


def test_layer_weighting_off_contradicts_the_weighted_layer():
    with pytest.raises(ConfigError, match="layer_weighting=false contradicts it"):
        _spec("cnn", TrainConfig(layer="weighted", model={"layer_weighting": False}))
    assert _spec("cnn", TrainConfig(layer="weighted")).model_config["layer_weighting"] is False  # set from the data


def test_forward_context_is_bf16_autocast_only_for_bf16():
    assert _spec("fcn").forward_context().__class__.__name__ == "nullcontext"
    with _spec("fcn", TrainConfig(precision="bf16")).forward_context():
        assert torch.get_autocast_dtype("cpu") == torch.bfloat16 and torch.is_autocast_enabled("cpu")
