"""The one training loop (training/loop.py) and its Task interface (training/tasks.py): a new task
plugs into the single, batched (vmap) and bf16 variants without touching them."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from parrot_ser.errors import ConfigError
from parrot_ser.training import RunSpec, TrainConfig, fit_model
from parrot_ser.training.batched import fit_models_batched
from parrot_ser.training.tasks import TASKS, Classification, Task, get_task, register_task
from test_training import synthetic


class ToyRegression(Task):
    """A throwaway task: predict the class index as a number (one output, MSE), early stopping on
    the validation loss. Only this class is written; the loop and its variants are unchanged."""

    monitors = ("loss",)

    def n_outputs(self, data):
        return 1

    def targets(self, data):
        return torch.from_numpy(data.labels.astype(np.float32))

    def loss(self, outputs, targets):
        return F.mse_loss(outputs[..., 0], targets)

    def validate(self, outputs, data):
        return {"val_loss": float(np.mean((outputs[:, 0] - data.labels) ** 2))}

    def early_stop_key(self, record, monitor):
        return (-record["val_loss"],)

    def test_metrics(self, predictions, data):
        return {"mse": float(np.mean((predictions[:, 0] - data.labels) ** 2))}


def test_a_new_task_plugs_into_every_variant():
    data = synthetic(48)
    tr, va, te = data.subset(range(30)), data.subset(range(30, 40)), data.subset(range(40, 48))
    config = TrainConfig(epochs=4, batch_size=8, patience=2, early_stop_metric="loss", dropout=0.0)
    cfg = RunSpec.build("concat", config)
    task = ToyRegression()
    model, hist = fit_model(tr, va, cfg, seed=0, task=task)
    assert hist["monitor"] == "val_loss" and set(hist["epochs"][0]) >= {"epoch", "train_loss", "lr", "val_loss"}
    assert hist["epochs"][-1]["train_loss"] < hist["epochs"][0]["train_loss"]  # it learns
    out = model(te_batch(te))
    assert out.shape == (len(te), 1)
    # the batched (vmap) variant: same task, default stacked_loss (each model's own loss)
    fitted = fit_models_batched([(tr, va, 0), (tr, va, 1)], cfg, task=task)
    assert [f[0](te_batch(te)).shape for f in fitted] == [(len(te), 1)] * 2
    # dropout 0: one model alone and the same model stacked compute the same thing
    assert fitted[0][1]["best_epoch"] == hist["best_epoch"]
    assert np.allclose([r["val_loss"] for r in fitted[0][1]["epochs"]], [r["val_loss"] for r in hist["epochs"]],
                       rtol=1e-4)
    # bf16 is the variants' forward context, the task does not know about it
    _, h16 = fit_model(tr, va, RunSpec.build("concat", replace(config, precision="bf16")), seed=0, task=task)
    assert len(h16["epochs"]) >= 1


def te_batch(te):
    from parrot_ser.training.data import make_batch

    return make_batch(te, np.arange(len(te)))


def test_one_loop_records_the_same_fields_on_every_path():
    data = synthetic(48)
    tr, va = data.subset(range(36)), data.subset(range(36, 48))
    cfg = RunSpec.build("concat", TrainConfig(epochs=2, batch_size=8))
    _, single = fit_model(tr, va, cfg, seed=0)
    (_, batched), = fit_models_batched([(tr, va, 0)], cfg)
    # the batched copy used to drop the learning rate from its records
    assert [sorted(r) for r in single["epochs"]] == [sorted(r) for r in batched["epochs"]]
    assert all(r["lr"] == cfg.optimisation.lr for r in batched["epochs"])


def test_task_registry_and_config():
    assert isinstance(get_task(None), Classification) and get_task("classification").name == "classification"
    assert "classification" in TASKS
    with pytest.raises(ConfigError, match="unknown task 'valence'"):
        TrainConfig(task="valence").validate()
    with pytest.raises(ConfigError, match="early_stop_metric must be one of macro_f1, loss"):
        TrainConfig(early_stop_metric="ccc").validate()

    @register_task("toy-regression")
    class Registered(ToyRegression):
        pass

    try:
        cfg = TrainConfig(task="toy-regression", early_stop_metric="loss", epochs=1, batch_size=8).validate()
        data = synthetic(30)
        model, _ = fit_model(data.subset(range(20)), data.subset(range(20, 30)), RunSpec.build("concat", cfg), seed=0)
        assert model(te_batch(data.subset(range(3)))).shape == (3, 1)  # the config's task was used
    finally:
        TASKS.pop("toy-regression")


@pytest.mark.parametrize("kind", ["regression", "multitask"])
def test_batched_dimensional_models_are_what_fit_model_returns(kind):
    """Each stacked model is the task's head with its own fold's target scaling: the same class,
    state-dict keys and buffers as fit_model gives, and (dropout 0) the same outputs and history."""
    from parrot_ser.training.data import SERData

    base = synthetic(60)
    rng = np.random.default_rng(1)
    labels = base.labels.copy()
    labels[::5] = -1  # multitask: rows without a class
    targets = np.stack([3 + base.labels + rng.normal(size=60), 10 * rng.normal(size=60)], 1).astype(np.float32)
    data = SERData(base.pooled, labels if kind == "multitask" else np.full(60, -1), base.utt_ids,
                   base.classes if kind == "multitask" else [], speakers=base.speakers, targets=targets,
                   dims=["arousal", "valence"])
    cfg = RunSpec.build("concat", TrainConfig(epochs=3, batch_size=8, patience=2, dropout=0.0, task=kind))
    jobs = [(data.subset(range(0, 36)), data.subset(range(36, 48)), 0),
            (data.subset(range(12, 48)), data.subset(range(48, 60)), 1)]
    batched = fit_models_batched(jobs, cfg)
    te = te_batch(data.subset(range(48, 60)))
    for (tr, va, seed), (model, hist) in zip(jobs, batched):
        alone, h1 = fit_model(tr, va, cfg, seed)
        assert type(model) is type(alone) and list(model.state_dict()) == list(alone.state_dict())
        assert torch.equal(model.tgt_mean, alone.tgt_mean) and torch.equal(model.tgt_std, alone.tgt_std)
        assert hist["best_epoch"] == h1["best_epoch"] and hist["monitor"] == h1["monitor"]
        assert np.allclose([r["val_loss"] for r in hist["epochs"]], [r["val_loss"] for r in h1["epochs"]], rtol=1e-4)
        assert torch.allclose(model(te), alone(te), atol=1e-4)
    assert not torch.equal(batched[0][0].tgt_mean, batched[1][0].tgt_mean)  # per fold, not shared
