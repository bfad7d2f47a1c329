"""The hand-written training kernels against the torch modules they replace, the bf16 precision
option, and the allocator setting (docs/benchmarks.md has the speed measurements; these tests only
check that the numbers are the ones the plain modules give)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from parrot_ser.fusion import FusionInput, build_model
from parrot_ser.fusion.layers import ConvStack, relu_max2
from parrot_ser.training import RunSpec, SERData, TrainConfig, fit_model, predict_proba


@pytest.mark.parametrize("length", [3838, 3837, 7, 2])
def test_relu_max2_equals_relu_then_maxpool_values_and_gradients(length):
    torch.manual_seed(length)
    x = torch.randn(3, 5, length, dtype=torch.float64, requires_grad=True)
    ref = nn.MaxPool1d(2)(torch.relu(x))
    out = relu_max2(x)
    assert torch.equal(out, ref)
    g = torch.randn_like(ref)
    (g_ref,) = torch.autograd.grad(ref, x, g)
    (g_out,) = torch.autograd.grad(relu_max2(x), x, g)
    assert torch.equal(g_out, g_ref)  # bit for bit: the gradient is routed, not computed


def test_relu_max2_ties_and_zeros_route_the_gradient_as_maxpool():
    # ties of positive values go to the first position; pairs that are both <= 0 get no gradient
    x = torch.tensor([[[1.0, 1.0, 0.0, 0.0, -1.0, 2.0, -3.0, -2.0, 5.0]]], requires_grad=True)
    (g_ref,) = torch.autograd.grad(nn.MaxPool1d(2)(torch.relu(x)).sum(), x)
    (g_out,) = torch.autograd.grad(relu_max2(x).sum(), x)
    assert g_out.tolist() == g_ref.tolist() == [[[1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0]]]


def test_relu_max2_under_vmap_matches_a_loop():
    from torch.func import grad, vmap

    f = lambda x: (relu_max2(x) ** 2).sum()  # noqa: E731
    xs = torch.randn(4, 2, 3, 11)
    assert torch.allclose(vmap(grad(f))(xs), torch.stack([grad(f)(x) for x in xs]))


@pytest.mark.parametrize("pool", ["max2", "adaptive"])
def test_conv_stack_equals_its_plain_sequential(pool):
    torch.manual_seed(0)
    cs = ConvStack(101, (8, 16), pool=pool, adaptive_len=6)
    x = torch.randn(7, 101, requires_grad=True)
    out, ref = cs(x), cs.net(x[:, None, :])  # cs.net: the Conv1d/ReLU/MaxPool1d modules themselves
    assert out.shape == ref.shape
    assert torch.allclose(out, ref, atol=1e-6)
    g = torch.randn_like(out)
    params = [x, *cs.parameters()]
    for a, b in zip(torch.autograd.grad(out, params, g), torch.autograd.grad(ref, params, g)):
        assert torch.allclose(a, b, atol=1e-5, rtol=1e-5)
    # the state_dict keys are the Sequential's (bundles written before the change still load)
    assert set(cs.state_dict()) == {"net.0.weight", "net.0.bias", "net.3.weight", "net.3.bias"}


def _toy(n_spk=4, per=12, dims=(40, 24), seed=0):
    rng = np.random.default_rng(seed)
    n = n_spk * per
    labels = np.arange(n) % 3
    pooled = [(rng.normal(size=(n, d)) + labels[:, None] * 0.8).astype(np.float32) for d in dims]
    ids = [f"u{i:03d}" for i in range(n)]
    return SERData(pooled, labels.astype(np.int64), ids, ["a", "b", "c"], None,
                   [f"s{i // per}" for i in range(n)])


def test_bf16_precision_trains_and_differs_only_by_rounding():
    data = _toy()
    common = dict(epochs=3, patience=0, dropout=0.0, num_threads=1, model={"conv_channels": (4, 8)})
    fp32, bf16 = RunSpec.build("parrot", TrainConfig(**common)), RunSpec.build("parrot", TrainConfig(**common, precision="bf16"))
    m32, h32 = fit_model(data, None, fp32, seed=0)
    m16, h16 = fit_model(data, None, bf16, seed=0)
    assert [r["epoch"] for r in h16["epochs"]] == [1, 2, 3]
    p32, p16 = predict_proba(m32, data, fp32), predict_proba(m16, data, fp32)
    assert np.isfinite(p16).all()
    assert not np.array_equal(p32, p16)  # bf16 matmuls really ran
    assert np.abs(p32 - p16).max() < 0.1  # ... and only rounding separates them after 3 epochs
    again, _ = fit_model(data, None, bf16, seed=0)
    assert np.array_equal(predict_proba(again, data, fp32), p16)  # deterministic on CPU


@pytest.mark.parametrize("name", ["parrot", "parrot-token"])
def test_bf16_autocast_keeps_the_optimal_transport_in_float32(name):
    # Under --precision bf16 the branches and head run in bf16, but the OT step (distances, Sinkhorn,
    # transport) runs in float32 on float32 copies of its inputs: its plan is the one the float32
    # solver gives for those inputs, and it meets its marginals as closely as in float32.
    from parrot_ser.fusion.layers import pairwise_dist
    from parrot_ser.fusion.sinkhorn import sinkhorn

    torch.manual_seed(0)
    model = build_model(name, [40, 24], 3, conv_channels=(4, 8), ot_tokens=6, dropout=0.0).eval()
    inp = FusionInput([torch.randn(8, 40), torch.randn(8, 24)])
    seen = {}
    hook = model.enc_p.register_forward_hook(lambda m, a, out: seen.setdefault("rp", out))
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(inp)
    hook.remove()
    assert seen["rp"][0].dtype == torch.bfloat16  # the branch really ran in bf16
    plan = model.last_transport["plan"]
    assert plan.dtype == torch.float32 and torch.isfinite(logits.float()).all()
    rows = plan.sum(-1)  # every row carries 1 / (points on its side)
    assert torch.allclose(rows, torch.full_like(rows, 1.0 / plan.shape[-2]), rtol=1e-4, atol=0)
    if name == "parrot":  # the batch-level plan is the float32 solver's on the float32 embeddings
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            rp16, rq16 = model.enc_p(inp.pooled[0])[0], model.enc_q(inp.pooled[1])[0]
        cfg = model.cfg
        ref = sinkhorn(pairwise_dist(rp16.float(), rq16.float())[None], eps=cfg.ot_eps, n_iters=cfg.ot_iters,
                       normalize_cost=cfg.ot_cost_scale, grad="stop", domain="scaling")
        assert torch.allclose(plan, ref, rtol=1e-5, atol=1e-7)


def test_precision_is_validated_and_part_of_the_run_identity_only_when_not_fp32(tmp_path):
    from parrot_ser.errors import ConfigError
    from parrot_ser.training.run import run_cv

    with pytest.raises(ConfigError, match="precision must be one of fp32, bf16"):
        TrainConfig(precision="fp16").validate()
    data = _toy(n_spk=5, per=6, dims=(16,))
    data = (data, [{"utt_id": u, "speaker": s} for u, s in zip(data.utt_ids, data.speakers)], {"x": {}})
    cfg = TrainConfig(epochs=1, patience=0, num_threads=1)
    out = tmp_path / "run"
    run_cv(None, ["x"], "fcn", cfg, [0], "speaker-kfold", out, data=data, workers=1, batched=False)
    # fp32 (the default) leaves the key out of the identity, so runs made before the key existed resume
    run_cv(None, ["x"], "fcn", TrainConfig(epochs=1, patience=0, precision="fp32"), [0], "speaker-kfold", out,
           data=data, workers=1, batched=False)
    with pytest.raises(ConfigError, match="holds a different run"):
        run_cv(None, ["x"], "fcn", TrainConfig(epochs=1, patience=0, precision="bf16"), [0], "speaker-kfold",
               out, data=data, workers=1, batched=False)


def test_fused_adam_is_the_default_optimizer():
    from parrot_ser.training.trainer import make_adam

    opt = make_adam(build_model("fcn", [8], 3).parameters(), RunSpec.build("fcn"))
    assert opt.defaults["fused"] is True


def test_keep_freed_memory_is_in_effect_on_linux_and_a_no_op_elsewhere():
    import sys

    from parrot_ser.device import keep_freed_memory

    expected = sys.platform.startswith("linux")  # glibc's mallopt; other platforms keep their allocator
    assert keep_freed_memory() is expected
    assert keep_freed_memory() is expected  # idempotent


def test_paper_model_forward_is_the_same_with_the_plain_modules():
    torch.manual_seed(0)
    m = build_model("parrot", [64, 48], 4, conv_channels=(4, 8)).eval()
    x = FusionInput([torch.randn(6, 64), torch.randn(6, 48)])
    with torch.no_grad():
        fast = m(x)
        import parrot_ser.fusion.layers as layers

        layers.REFERENCE_KERNELS = True
        try:
            ref = m(x)
        finally:
            layers.REFERENCE_KERNELS = False
    assert torch.allclose(fast, ref, atol=1e-5)
