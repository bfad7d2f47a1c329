"""The options train and grid share: one typed object, gathered at the CLI edge, one way into TrainConfig."""

import inspect
from dataclasses import fields

import pytest

from parrot_ser.cli.train import RunOptions, grid, train
from parrot_ser.errors import ConfigError


@pytest.mark.parametrize("command", [train, grid])
def test_every_option_is_a_parameter_of_both_commands(command):
    params = inspect.signature(inspect.unwrap(command)).parameters
    missing = [f.name for f in fields(RunOptions) if f.name not in params]
    assert not missing, f"{command.__name__} lacks {missing}"


def test_options_become_the_config_once():
    cfg = RunOptions(layer="weighted", frames=True, epochs=3, early_stop="loss", threads=2,
                     precision="bf16", dropout=0.1).to_config()
    assert (cfg.layer, cfg.use_frames, cfg.epochs, cfg.early_stop_metric) == ("weighted", True, 3, "loss")
    assert (cfg.num_threads, cfg.precision, cfg.dropout) == (2, "bf16", 0.1)
    # None keeps the default; frames off leaves the config's value
    default = RunOptions().to_config()
    assert (default.layer, default.use_frames, default.epochs) == ("last", False, 50)


def test_config_file_then_options(tmp_path):
    yml = tmp_path / "c.yaml"
    yml.write_text("epochs: 7\nlr: 0.01\n", encoding="utf-8")
    cfg = RunOptions(config=yml, epochs=2).to_config()
    assert (cfg.epochs, cfg.lr) == (2, 0.01)


def test_bad_layer_word_is_a_config_error():
    with pytest.raises(ConfigError):
        RunOptions(layer="deepest").to_config()


def test_model_options_flat_per_model_and_over_the_config_file(tmp_path):
    from parrot_ser.training.spec import RunSpec

    yml = tmp_path / "c.yaml"
    yml.write_text("model:\n  hidden: 64\n  parrot:\n    ot_iters: 20\n", encoding="utf-8")
    cfg = RunOptions(config=yml, model_option=("conv_channels=16,32", "parrot.ot_eps=0.1",
                                               "parrot-token.ot-tokens=8", "track_transport=false")).to_config()
    # flat keys for every model that takes them; a MODEL. prefix is that model's block, merged with the file's
    assert cfg.model == {"hidden": 64, "conv_channels": [16, 32], "track_transport": False,
                         "parrot": {"ot_iters": 20, "ot_eps": 0.1}, "parrot-token": {"ot_tokens": 8}}
    parrot = RunSpec.build("parrot", cfg, encoders=["a", "b"]).model_config
    assert (parrot["conv_channels"], parrot["ot_eps"], parrot["ot_iters"], parrot["hidden"]) == ([16, 32], 0.1, 20, 64)
    cnn = RunSpec.build("cnn", cfg, encoders=["a"]).model_config
    assert cnn["conv_channels"] == [16, 32] and "ot_eps" not in cnn
    assert RunSpec.build("parrot-token", cfg, encoders=["a", "b"]).model_config["ot_tokens"] == 8


@pytest.mark.parametrize("option, message", [
    ("hidden=1.5", "option hidden expects int, got 1.5"),
    ("parrot.ot_eps=abc", "option ot_eps expects float, got 'abc'"),
    ("no_such_key=1", "unknown model config key"),
    ("parrot.hidden", "--model-option expects KEY=VALUE or MODEL.KEY=VALUE"),
])
def test_bad_model_options_are_one_line_config_errors(option, message):
    from parrot_ser.training.spec import RunSpec

    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        RunSpec.build("parrot", RunOptions(model_option=(option,)).to_config(), encoders=["a", "b"])


def test_train_takes_model_options_into_the_run_spec(tmp_path):
    import json

    from typer.testing import CliRunner

    from parrot_ser.cli.main import app
    from test_training import build_store

    store = build_store(tmp_path / "store", n_spk=4, per=2)
    base = ["train", "--features", str(store), "--encoder", "logmel", "--model", "fcn", "--folds", "2",
            "--epochs", "1", "--quiet"]
    r = CliRunner().invoke(app, [*base, "--out", str(tmp_path / "run"), "--model-option", "hidden=16"])
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "run" / "run.json").read_text())["spec"]["model_config"]["hidden"] == 16
    r = CliRunner().invoke(app, [*base, "--out", str(tmp_path / "bad"), "--model-option", "hidden=1.5"])
    assert r.exit_code == 2 and "option hidden expects int" in r.output and "Traceback" not in r.output


def test_the_python_api_names_resolve():
    """README's Python training example imports run_cv from parrot_ser.training (lazy names)."""
    import parrot_ser.training as training
    from parrot_ser.training.grid import run_grid
    from parrot_ser.training.run import run_cv

    assert training.run_cv is run_cv and training.run_grid is run_grid
    for name in training.__all__:
        assert getattr(training, name) is not None, name


def test_a_single_model_run_notes_the_model_options_it_ignores(tmp_path):
    from typer.testing import CliRunner

    from parrot_ser.cli.main import app
    from test_training import build_store

    store = build_store(tmp_path / "store", n_spk=4, per=2)
    r = CliRunner().invoke(app, ["train", "--features", str(store), "--encoder", "logmel", "--model", "fcn",
                                 "--folds", "2", "--epochs", "1", "--quiet", "--out", str(tmp_path / "run"),
                                 "--model-option", "ot_eps=0.1", "--model-option", "parrot.ot_iters=5",
                                 "--model-option", "hidden=16"])
    assert r.exit_code == 0, r.output
    assert "note: model fcn does not take ot_eps, the parrot: block: ignored" in r.output
    assert "hidden" not in r.output.split("note:")[1].splitlines()[0]  # a key fcn takes is not named
