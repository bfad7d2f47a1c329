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
