"""`parrot-ser models list | show`: the registered models and the keys --model-option takes."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from parrot_ser.cli.main import app
from parrot_ser.fusion import MODELS, list_models

runner = CliRunner()


def test_list_names_every_registered_model():
    r = runner.invoke(app, ["models", "list"])
    assert r.exit_code == 0, r.output
    names = [line.split()[0] for line in r.stdout.splitlines()[1:] if line and not line.startswith("settings")]
    assert names == MODELS.names()
    assert any(line.split()[:4] == ["parrot", "2", "yes", "no"] for line in r.stdout.splitlines())
    r = runner.invoke(app, ["models", "list", "--json"])
    assert [m["name"] for m in json.loads(r.stdout)] == [s.name for s in list_models()]


def test_show_gives_the_keys_model_option_takes():
    from parrot_ser.training import TrainConfig
    from parrot_ser.training.spec import RunSpec

    r = runner.invoke(app, ["models", "show", "parrot", "--json"])
    assert r.exit_code == 0, r.output
    keys = json.loads(r.stdout)["config"]
    assert keys["ot_eps"] == {"type": "float", "default": 0.05} and keys["conv_channels"]["default"] == [64, 128]
    # every key it shows is one --model-option accepts, and its default is what the run spec resolves to
    given = {k: v["default"] for k, v in keys.items() if v["default"] is not None}
    resolved = RunSpec.build("parrot", TrainConfig(model=given), encoders=["a", "b"]).model_config
    assert {k: resolved[k] for k in given} == given
    text = runner.invoke(app, ["models", "show", "parrot"]).stdout
    assert "ot_iters" in text and "tuple[int, ...]" in text and "set by train --layer" in text


def test_show_an_unknown_model_is_one_line():
    r = runner.invoke(app, ["models", "show", "parot"])
    assert r.exit_code == 2 and "unknown model 'parot'" in r.output and "Traceback" not in r.output
