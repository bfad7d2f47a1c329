"""Tasks on tiny tensors: every registered model trained for classification, regression and multitask
(one output layer of task.n_outputs() units), the CCC loss against metrics.ccc, target scaling carried
by the model, and the errors a wrong task setting gives."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from parrot_ser.errors import ConfigError
from parrot_ser.fusion import FusionInput, get_model_spec, list_models
from parrot_ser.models import StandardisedModel, Standardiser, build_head
from parrot_ser.training.metrics import ccc
from parrot_ser.training.tasks import TASK_KINDS, UNLABELLED, TargetScaler, Task, ccc_loss, get_task

TINY = dict(conv_channels=(4, 8), embed_dim=16, hidden=16, ot_tokens=8)
DIMS2 = [24, 16]
ALL = [s.name for s in list_models()]


def _planted(n: int, n_inputs: int, seed: int = 0):
    """Class = sign pattern of the first feature; arousal/valence on a 1-7 scale read off the features."""
    g = torch.Generator().manual_seed(seed)
    xs = [torch.randn(n, d, generator=g) for d in DIMS2[:n_inputs]]
    y = (xs[0][:, 0] > 0).long() + (xs[-1][:, 1] > 0).long()  # 3 classes
    t = torch.stack([4 + 1.5 * xs[0][:, 2], 4 - 1.0 * xs[-1][:, 3]], dim=1)
    return FusionInput(xs), y, t


def _data(y: torch.Tensor, t: torch.Tensor) -> SimpleNamespace:
    """What a task reads of SERData: classes, dims, labels, targets."""
    return SimpleNamespace(classes=["a", "b", "c"], dims=["arousal", "valence"], labels=y.numpy(),
                           targets=t.numpy().astype(np.float32))


def _model(name: str, task, data) -> StandardisedModel:
    dims = DIMS2[:get_model_spec(name).n_inputs]
    net = build_head(name, dims, task.n_outputs(), dropout=0.0, options=TINY)
    return task.head(net, Standardiser.identity_dims(dims), data)


@pytest.mark.parametrize("kind", TASK_KINDS)
@pytest.mark.parametrize("name", ALL)
def test_every_model_trains_for_every_task(name, kind):
    torch.manual_seed(0)
    x, y, t = _planted(32, get_model_spec(name).n_inputs)
    data = _data(y, t)
    task = get_task(kind, None, data)
    model = _model(name, task, data)
    out = model(x)
    assert out.shape == (32, task.n_outputs()) and torch.isfinite(out).all()
    out = out.detach()
    if task.has_dims:  # an untrained head answers near the training mean, in the data's own scale
        assert abs(float(out[:, task.n_classes:].mean()) - float(t.mean())) < 2.0
    targets = task.targets(data)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    loss0 = float(task.loss(out, targets))
    for _ in range(15):
        opt.zero_grad()
        task.loss(model(x), targets).backward()
        opt.step()
    with torch.no_grad():
        outputs = model(x).numpy()
    assert float(task.loss(torch.from_numpy(outputs), targets)) < loss0
    m = task.test_metrics(task.predict(outputs), data)
    assert ("macro_f1" in m) == task.has_classes and ("ccc" in m) == task.has_dims
    rec = task.validate(outputs, data)
    assert task.early_stop_key(rec, task.monitor("auto"))[0] == pytest.approx(
        {"classification": rec.get("val_macro_f1"), "regression": rec.get("val_ccc"),
         "multitask": (rec.get("val_macro_f1", 0) / 100 + rec.get("val_ccc", 0)) / 2}[kind])


def test_ccc_loss_is_one_minus_ccc_per_dimension():
    g = torch.Generator().manual_seed(1)
    p, t = torch.randn(40, 2, generator=g), torch.randn(40, 2, generator=g)
    want = 1 - np.mean([ccc(t[:, i].numpy(), p[:, i].numpy()) for i in range(2)])
    assert float(ccc_loss(p, t)) == pytest.approx(want, abs=1e-5)


def test_model_unscales_with_its_training_side_statistics():
    class FirstInput(torch.nn.Module):
        def forward(self, x: FusionInput) -> torch.Tensor:
            return x.pooled[0]

    t = torch.tensor([[2.5, -2.5], [5.5, -1.5]])  # mean (4, -2), std (1.5, 0.5)
    data = _data(torch.tensor([0, 1]), t)
    task = get_task("multitask", None, data)
    model = task.head(FirstInput(), Standardiser.identity_dims([5]), data)
    assert task.scaler.mean.tolist() == [4.0, -2.0] and task.scaler.std.tolist() == [1.5, 0.5]
    out = model(FusionInput([torch.tensor([[0.3, -0.3, 0.1, 1.0, 2.0]])]))
    assert out.tolist()[0] == pytest.approx([0.3, -0.3, 0.1, 5.5, -1.0])  # logits untouched, z * std + mean
    assert set(model.state_dict()) >= {"tgt_mean", "tgt_std"} and task.n_outputs() == 5


def test_multitask_rows_without_a_label_train_the_dimensions_only():
    y = torch.full((6,), UNLABELLED)
    data = SimpleNamespace(classes=["a", "b"], dims=["arousal"], labels=y.numpy(),
                           targets=np.random.default_rng(0).normal(size=(6, 1)).astype(np.float32))
    task = get_task("multitask", None, data)
    task.scaler = TargetScaler(np.zeros(1, np.float32), np.ones(1, np.float32))
    out = torch.randn(6, 3, requires_grad=True)
    loss = task.loss(out, task.targets(data))
    loss.backward()
    assert torch.isfinite(loss) and out.grad[:, :2].abs().sum() == 0 and out.grad[:, 2].abs().sum() > 0
    data.labels = np.array([0, 1, -1, -1, 0, 1])
    m = task.test_metrics(task.predict(np.random.default_rng(0).normal(size=(6, 3))), data)
    assert m["n"] == 4 and m["regression"]["n"] == 6  # classification scored on the labelled rows


@pytest.mark.parametrize("kind", TASK_KINDS)
@pytest.mark.parametrize("regression_loss", ["ccc", "mse"])
def test_stacked_loss_equals_each_models_own_loss(kind, regression_loss):
    """The batched variant's loss of G stacked models, each with its own training side's target
    scaling (its own task copy) and, in multitask, unlabelled rows (one model's batch has none
    labelled) = each model's own ``loss`` on its own batch; the gradients too."""
    import copy

    g = torch.Generator().manual_seed(3)
    cfg = {"regression_loss": regression_loss, "multitask_weight": 0.3}
    tasks, outs, ys = [], [], []
    for m in range(4):
        y = torch.randint(0, 3, (20,), generator=g)
        if kind == "multitask":  # rows without a class; model 1's batch has none labelled
            y[torch.rand(20, generator=g) < 0.3] = UNLABELLED
            y[:] = UNLABELLED if m == 1 else y
        data = _data(y, 4 + (1 + m) * torch.randn(20, 2, generator=g))  # a different scale per model
        task = get_task(kind, cfg, data)
        task.head(torch.nn.Identity(), Standardiser.identity_dims([3]), data)
        tasks.append(copy.copy(task))
        rows = torch.randperm(20, generator=g)[:7]
        ys.append(task.targets(data)[rows])
        outs.append(3 + 2 * torch.randn(7, task.n_outputs(), generator=g))
    out = torch.stack(outs).requires_grad_(True)
    stacked = tasks[0].stacked_loss(out, torch.stack(ys), tasks)
    stacked.sum().backward()
    one = [t.loss(o, y) for t, o, y in zip(tasks, outs, ys)]
    assert stacked.shape == (4,) and torch.allclose(stacked, torch.stack(one), rtol=1e-5, atol=1e-6)
    each = [torch.autograd.grad(t.loss(o.requires_grad_(True), y), o)[0] for t, o, y in zip(tasks, outs, ys)]
    assert torch.allclose(out.grad, torch.stack(each), atol=1e-6)
    # the Task default (model by model through ``loss``) gives the same, for any registered task
    assert torch.allclose(Task.stacked_loss(tasks[0], out.detach(), torch.stack(ys), tasks), stacked.detach(),
                          rtol=1e-5, atol=1e-6)
    if kind != "classification" and regression_loss == "mse":  # the scaling is each model's own
        shared = tasks[0].stacked_loss(out.detach(), torch.stack(ys))
        assert not torch.allclose(shared, stacked.detach(), rtol=1e-3)


def test_task_errors_say_what_to_do():
    none = SimpleNamespace(classes=[], dims=[], labels=np.zeros(0), targets=None)
    with pytest.raises(ConfigError, match="needs numeric targets"):
        get_task("regression", None, none)
    with pytest.raises(ConfigError, match="at least 2 classes"):
        get_task("classification", None, SimpleNamespace(classes=["only"], dims=[]))
    with pytest.raises(ConfigError, match="regression_loss"):
        get_task("regression", {"regression_loss": "l1", "multitask_weight": 0.5})
    with pytest.raises(ConfigError, match="unknown task 'ordinal'"):
        get_task("ordinal")
    reg = get_task("regression", None, SimpleNamespace(classes=[], dims=["a"]))
    assert reg.monitor("auto") == "ccc" and reg.n_outputs() == 1
    with pytest.raises(ConfigError, match="does not apply to a regression run"):
        reg.monitor("macro_f1")
    assert get_task("multitask", None, SimpleNamespace(classes=["a", "b"], dims=["v"])).monitor("auto") == "f1_ccc"


def test_regression_folds_are_stratified_on_target_tertiles():
    from parrot_ser.training.data import SERData

    t = np.array([[1.0, 9.0], [2.0, 8.0], [3.0, 7.0], [4.0, 6.0], [5.0, 5.0], [6.0, 4.0]], np.float32)
    data = SERData([np.zeros((6, 2), np.float32)], np.full(6, -1), [f"u{i}" for i in range(6)], [],
                   speakers=[f"s{i}" for i in range(6)], targets=t, dims=["a", "v"])
    assert data.strata() == ["0-2", "0-2", "1-1", "1-1", "2-0", "2-0"]
    sub = data.subset([0, 5])
    assert sub.targets.tolist() == [[1.0, 9.0], [6.0, 4.0]] and sub.dims == ["a", "v"]


def test_run_spec_records_task_labels_and_overlap_only_when_used():
    from parrot_ser.training.config import TrainConfig
    from parrot_ser.training.spec import RunSpec

    plain = RunSpec.build("fcn", TrainConfig(), encoders=["logmel"])
    assert not {"task_options", "labels", "folds"} & set(plain.identity())
    assert plain.optimisation.early_stop_metric == "macro_f1"  # auto = classification's own metric
    same = RunSpec.build("fcn", TrainConfig(early_stop_metric="macro_f1"), encoders=["logmel"])
    assert same.fingerprint({}) == plain.fingerprint({})
    cfg = TrainConfig(task="regression", classes=["a", "b"], label_map={"x": "a"}, allow_speaker_overlap=True)
    spec = RunSpec.build("fcn", cfg, encoders=["logmel"], protocol="predefined", n_folds=1).identity()
    assert spec["task"] == "regression" and spec["optimisation"]["early_stop_metric"] == "ccc"
    assert spec["task_options"] == {"regression_loss": "ccc", "multitask_weight": 0.5}
    assert spec["labels"] == {"classes": ["a", "b"], "label_map": {"x": "a"}}
    assert spec["folds"] == {"allow_speaker_overlap": True}
