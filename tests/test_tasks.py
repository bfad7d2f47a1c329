"""Tasks on tiny tensors: every registered model trained for classification, regression and multitask
(one output layer of task.n_outputs units), the CCC loss against metrics.ccc, target scaling carried
by the model, and the errors a wrong task setting gives."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from parrot_ser.errors import ConfigError
from parrot_ser.fusion import FusionInput, get_model_spec, list_models
from parrot_ser.models import StandardisedModel, Standardiser, build_head
from parrot_ser.training.metrics import ccc
from parrot_ser.training.tasks import TASK_KINDS, UNLABELLED, TargetScaler, Task, ccc_loss

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


def _model(name: str, task: Task, scaler: TargetScaler | None) -> StandardisedModel:
    dims = DIMS2[:get_model_spec(name).n_inputs]
    net = build_head(name, dims, task.n_outputs, dropout=0.0, options=TINY)
    std = Standardiser.identity_dims(dims)
    if scaler is None:
        return StandardisedModel(net, std)
    return StandardisedModel(net, std, n_classes=task.n_classes, target_mean=scaler.mean, target_std=scaler.std)


@pytest.mark.parametrize("kind", TASK_KINDS)
@pytest.mark.parametrize("name", ALL)
def test_every_model_trains_for_every_task(name, kind):
    torch.manual_seed(0)
    task = Task(kind, ["a", "b", "c"], ["arousal", "valence"])
    x, y, t = _planted(32, get_model_spec(name).n_inputs)
    scaler = TargetScaler.fit(t.numpy()) if task.has_dims else None
    model = _model(name, task, scaler)
    out = model(x)
    assert out.shape == (32, task.n_outputs) and torch.isfinite(out).all()
    out = out.detach()
    if task.has_dims:  # an untrained head answers near the training mean, in the data's own scale
        assert abs(float(out[:, task.n_classes:].mean()) - float(t.mean())) < 2.0
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    loss0 = float(task.loss(out, y, t, scaler))
    for _ in range(15):
        opt.zero_grad()
        task.loss(model(x), y, t, scaler).backward()
        opt.step()
    with torch.no_grad():
        loss1 = float(task.loss(model(x), y, t, scaler))
    assert loss1 < loss0
    m = task.evaluate(model(x).detach().numpy(), y.numpy(), t.numpy())
    assert ("macro_f1" in m) == task.has_classes and ("ccc" in m) == task.has_dims


def test_ccc_loss_is_one_minus_ccc_per_dimension():
    g = torch.Generator().manual_seed(1)
    p, t = torch.randn(40, 2, generator=g), torch.randn(40, 2, generator=g)
    want = 1 - np.mean([ccc(t[:, i].numpy(), p[:, i].numpy()) for i in range(2)])
    assert float(ccc_loss(p, t)) == pytest.approx(want, abs=1e-5)


def test_model_unscales_with_its_training_side_statistics():
    scaler = TargetScaler(np.array([4.0, -2.0], np.float32), np.array([1.5, 0.5], np.float32))
    task = Task("multitask", ["x", "y"], ["arousal", "valence"])
    class FirstInput(torch.nn.Module):
        def forward(self, x: FusionInput) -> torch.Tensor:
            return x.pooled[0]

    net = FirstInput()
    model = StandardisedModel(net, Standardiser.identity_dims([4]), n_classes=2, target_mean=scaler.mean,
                              target_std=scaler.std)
    out = model(FusionInput([torch.tensor([[0.3, -0.3, 1.0, 2.0]])]))
    assert out.tolist()[0] == pytest.approx([0.3, -0.3, 5.5, -1.0])  # logits untouched, z * std + mean
    state = model.state_dict()
    assert set(state) >= {"tgt_mean", "tgt_std"}
    assert task.n_outputs == 4


def test_multitask_rows_without_a_label_train_the_dimensions_only():
    task = Task("multitask", ["a", "b"], ["arousal"])
    out = torch.randn(6, 3, requires_grad=True)
    labels = torch.full((6,), UNLABELLED)
    scaler = TargetScaler(np.zeros(1, np.float32), np.ones(1, np.float32))
    loss = task.loss(out, labels, torch.randn(6, 1), scaler)
    loss.backward()
    assert torch.isfinite(loss) and out.grad[:, :2].abs().sum() == 0 and out.grad[:, 2].abs().sum() > 0
    m = task.evaluate(np.random.default_rng(0).normal(size=(6, 3)), np.array([0, 1, -1, -1, 0, 1]),
                      np.random.default_rng(1).normal(size=(6, 1)))
    assert m["n"] == 4 and m["regression"]["n"] == 6  # classification scored on the labelled rows


def test_task_errors_say_what_to_do():
    with pytest.raises(ConfigError, match="needs numeric targets"):
        Task("regression", [], [])
    with pytest.raises(ConfigError, match="at least 2 classes"):
        Task("classification", ["only"], [])
    with pytest.raises(ConfigError, match="regression_loss"):
        Task("regression", [], ["a"], regression_loss="l1")
    reg = Task("regression", [], ["a"])
    assert reg.check_monitor("auto") == "ccc" and reg.n_outputs == 1
    with pytest.raises(ConfigError, match="does not apply to a regression run"):
        reg.check_monitor("macro_f1")
    assert Task("multitask", ["a", "b"], ["v"]).check_monitor("auto") == "f1_ccc"


def test_regression_folds_are_stratified_on_target_tertiles():
    from parrot_ser.training.data import SERData

    t = np.array([[1.0, 9.0], [2.0, 8.0], [3.0, 7.0], [4.0, 6.0], [5.0, 5.0], [6.0, 4.0]], np.float32)
    data = SERData([np.zeros((6, 2), np.float32)], np.full(6, -1), [f"u{i}" for i in range(6)], [],
                   speakers=[f"s{i}" for i in range(6)], targets=t, dims=["a", "v"])
    assert data.strata() == ["0-2", "0-2", "1-1", "1-1", "2-0", "2-0"]
    sub = data.subset([0, 5])
    assert sub.targets.tolist() == [[1.0, 9.0], [6.0, 4.0]] and sub.dims == ["a", "v"]
