"""Every registered model: shapes, a training step, fusion beating single branches on a planted
cross-branch signal, batch (in)dependence, layer weighting, config errors."""

from __future__ import annotations

import pytest
import torch

from parrot_ser.errors import ConfigError, RegistryError
from parrot_ser.fusion import FusionInput, build_model, get_model_spec, list_models

TINY = dict(conv_channels=(4, 8), embed_dim=16, hidden=16, ot_tokens=8)
DIMS2 = [24, 16]
ALL = [s.name for s in list_models()]
FUSION = [s.name for s in list_models() if s.n_inputs == 2]
BATCH_INDEPENDENT = [s.name for s in list_models() if not s.batch_dependent]


def _dims(name: str) -> list[int]:
    return DIMS2 if get_model_spec(name).n_inputs == 2 else DIMS2[:1]


def _inp(dims: list[int], bsz: int, seed: int = 0) -> FusionInput:
    g = torch.Generator().manual_seed(seed)
    return FusionInput([torch.randn(bsz, d, generator=g) for d in dims])


def test_registry_lists_every_required_model():
    assert {"cnn", "fcn", "concat", "hadamard", "ot", "parrot", "parrot-token", "gated", "xattn"} <= set(ALL)
    assert get_model_spec("parrot").batch_dependent and get_model_spec("ot").batch_dependent
    spec = get_model_spec("parrot-token")
    assert not spec.batch_dependent and spec.uses_frames
    assert get_model_spec("cnn").n_inputs == 1


@pytest.mark.parametrize("name", ALL)
def test_shapes_and_one_step_lowers_loss(name):
    torch.manual_seed(0)
    dims = _dims(name)
    model = build_model(name, dims, 5, dropout=0.0, **TINY)
    inp = _inp(dims, 16)
    y = torch.arange(16) % 5
    logits = model(inp)
    assert logits.shape == (16, 5) and torch.isfinite(logits).all()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    loss0 = torch.nn.functional.cross_entropy(logits, y)
    loss0.backward()
    opt.step()
    with torch.no_grad():
        loss1 = torch.nn.functional.cross_entropy(model(inp), y)
    assert loss1 < loss0


def _planted(n: int, seed: int) -> tuple[FusionInput, torch.Tensor]:
    """4 classes = 2 * [branch A positive] + [branch B positive]: each branch alone carries one bit."""
    g = torch.Generator().manual_seed(seed)
    bit_a = torch.randint(0, 2, (n,), generator=g)
    bit_b = torch.randint(0, 2, (n,), generator=g)
    xa = torch.randn(n, DIMS2[0], generator=g) + 1.5 * (2 * bit_a[:, None] - 1)
    xb = torch.randn(n, DIMS2[1], generator=g) + 1.5 * (2 * bit_b[:, None] - 1)
    return FusionInput([xa, xb]), 2 * bit_a + bit_b


def _fit_and_score(name: str, train, test, which: int | None = None, epochs: int = 6) -> float:
    torch.manual_seed(0)
    (xtr, ytr), (xte, yte) = train, test
    pick = (lambda inp: FusionInput([inp.pooled[which]])) if which is not None else (lambda inp: inp)
    dims = [DIMS2[which]] if which is not None else DIMS2
    model = build_model(name, dims, 4, dropout=0.0, **TINY)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    n = ytr.numel()
    for _ in range(epochs):
        perm = torch.randperm(n)
        for i in range(0, n, 32):
            idx = perm[i:i + 32]
            batch = pick(FusionInput([x[idx] for x in xtr.pooled]))
            loss = torch.nn.functional.cross_entropy(model(batch), ytr[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        return (model(pick(xte)).argmax(1) == yte).float().mean().item()


@pytest.fixture(scope="module")
def planted():
    train, test = _planted(256, 0), _planted(256, 1)
    single = max(_fit_and_score("cnn", train, test, which=w) for w in (0, 1))
    return train, test, single


@pytest.mark.parametrize("name", FUSION)
def test_fusion_beats_each_single_branch_on_planted_signal(name, planted):
    train, test, single = planted
    assert single < 0.6  # one bit of two: about 50% of the 4 classes
    acc = _fit_and_score(name, train, test)
    assert acc > single + 0.25, f"{name}: {acc:.3f} vs best single branch {single:.3f}"


@pytest.mark.parametrize("name", BATCH_INDEPENDENT)
def test_prediction_same_alone_or_in_a_batch(name):
    torch.manual_seed(0)
    dims = _dims(name)
    model = build_model(name, dims, 3, **TINY).eval()
    inp = _inp(dims, 6, seed=4)
    with torch.no_grad():
        full = model(inp)
        for i in (0, 3, 5):
            alone = model(FusionInput([x[i:i + 1] for x in inp.pooled]))
            torch.testing.assert_close(alone[0], full[i], atol=1e-5, rtol=0)
        rev = model(FusionInput([x.flip(0) for x in inp.pooled]))
        torch.testing.assert_close(rev.flip(0), full, atol=1e-5, rtol=0)


def _frames(bsz: int, lens_p: list[int], lens_q: list[int], seed: int = 5):
    g = torch.Generator().manual_seed(seed)
    fp = torch.randn(bsz, max(lens_p), 10, generator=g)
    fq = torch.randn(bsz, max(lens_q), 6, generator=g)
    mp = torch.arange(max(lens_p))[None] < torch.tensor(lens_p)[:, None]
    mq = torch.arange(max(lens_q))[None] < torch.tensor(lens_q)[:, None]
    return fp, fq, mp, mq


@pytest.mark.parametrize("name", ["parrot-token", "xattn"])
def test_frame_tokens_batch_independent_with_padding(name):
    torch.manual_seed(0)
    model = build_model(name, DIMS2, 3, frame_dims=(10, 6), **TINY).eval()
    lens_p, lens_q = [7, 3, 5], [4, 6, 2]
    fp, fq, mp, mq = _frames(3, lens_p, lens_q)
    pooled = _inp(DIMS2, 3, seed=6).pooled
    with torch.no_grad():
        full = model(FusionInput(pooled, [fp, fq], [mp, mq]))
        for i in range(3):
            alone = model(FusionInput([x[i:i + 1] for x in pooled],
                                      [fp[i:i + 1, :lens_p[i]], fq[i:i + 1, :lens_q[i]]], None))
            torch.testing.assert_close(alone[0], full[i], atol=1e-5, rtol=0)
    if name == "parrot-token":
        plan = model.last_transport["plan"]
        assert plan.shape == (1, lens_p[2], lens_q[2])
        assert model.last_transport["stats"]["marginal_err_b"] < 1e-4


def test_frames_missing_or_empty_are_config_errors():
    model = build_model("parrot-token", DIMS2, 3, token_source="frames", frame_dims=(10, 6), **TINY)
    with pytest.raises(ConfigError, match="frames"):
        model(_inp(DIMS2, 2))
    fp, fq, mp, mq = _frames(2, [3, 2], [2, 2])
    mp[1] = False
    with pytest.raises(ConfigError, match="no valid frame"):
        model(FusionInput(_inp(DIMS2, 2).pooled, [fp, fq], [mp, mq]))


def test_parrot_is_deterministic_batch_dependent_and_identity_for_one_row():
    torch.manual_seed(0)
    model = build_model("parrot", DIMS2, 3, **TINY).eval()
    inp = _inp(DIMS2, 8, seed=7)
    with torch.no_grad():
        a, b = model(inp), model(inp)
        torch.testing.assert_close(a, b, atol=0, rtol=0)
        stats = model.last_transport["stats"]
        assert model.last_transport["plan"].shape == (1, 8, 8)
        assert 1.0 <= stats["eff_partners"] <= 8.0
        assert stats["marginal_err_b"] < 1e-5
        # the paper's OT mixes rows of the batch: row 0 alone differs from row 0 in the batch
        alone = model(FusionInput([x[:1] for x in inp.pooled]))
        assert (alone[0] - a[0]).abs().max() > 1e-4
        # batch of 1: the plan is [[1]], so the transported features are the other branch itself
        assert model.last_transport["plan"].item() == pytest.approx(1.0)
        rp, _ = model.enc_p(inp.pooled[0][:1])
        rq, _ = model.enc_q(inp.pooled[1][:1])
        manual = model.head(torch.cat([rp * rq, rp, rq, rq, rp], -1))
        torch.testing.assert_close(alone, manual, atol=1e-6, rtol=0)


def test_ot_grad_plan_sends_gradient_through_the_plan():
    torch.manual_seed(0)
    inp = _inp(DIMS2, 6)
    grads = {}
    for mode in ("stop", "plan"):
        torch.manual_seed(0)
        model = build_model("parrot", DIMS2, 3, ot_grad=mode, dropout=0.0, **TINY)
        model(inp).sum().backward()
        grads[mode] = model.enc_p.proj.weight.grad.clone()
    assert torch.isfinite(grads["plan"]).all()
    assert (grads["plan"] - grads["stop"]).abs().max() > 1e-7


def test_layer_weighting_and_layer_selection():
    torch.manual_seed(0)
    x = [torch.randn(4, 3, DIMS2[0]), torch.randn(4, 5, DIMS2[1])]
    model = build_model("concat", DIMS2, 3, layer_weighting=True, n_layers=[3, 5], **TINY)
    out = model(FusionInput(x))
    assert out.shape == (4, 3)
    out.sum().backward()
    w = model.select[0].mix.weights
    assert w.shape == (3,) and w.grad is not None and w.grad.abs().sum() > 0
    torch.manual_seed(0)
    plain = build_model("concat", DIMS2, 3, **TINY).eval()
    with torch.no_grad():
        torch.testing.assert_close(plain(FusionInput(x)), plain(FusionInput([t[:, -1] for t in x])))
    with pytest.raises(ConfigError, match="n_layers"):
        build_model("concat", DIMS2, 3, layer_weighting=True)


def test_paper_encoder_size_and_adaptive_pool_option():
    model = build_model("parrot", [3840, 768], 6)
    assert model.enc_p.proj.in_features == 128 * 958  # the paper's flatten: 14.7M-parameter Linear
    assert model.enc_q.proj.in_features == 128 * 190
    small = build_model("parrot", [3840, 768], 6, encoder_pool="adaptive", adaptive_len=16)
    assert small.enc_p.proj.in_features == 128 * 16
    assert sum(p.numel() for p in small.parameters()) < sum(p.numel() for p in model.parameters()) / 10
    assert model.config["embed_dim"] == 120 and model.config["ot_grad"] == "stop"
    assert model.spec.name == "parrot" and model.input_dims == [3840, 768] and model.n_classes == 6


def test_build_errors_are_typed():
    with pytest.raises(RegistryError, match="known"):
        build_model("nope", DIMS2, 3)
    with pytest.raises(ConfigError, match="unknown model config"):
        build_model("parrot", DIMS2, 3, ot_epsilon=0.1)
    with pytest.raises(ConfigError, match="takes 1 input"):
        build_model("cnn", DIMS2, 3)
    with pytest.raises(ConfigError, match="too small"):
        build_model("cnn", [5], 3)
    model = build_model("concat", DIMS2, 3, **TINY)
    with pytest.raises(ConfigError, match="built for"):
        model(FusionInput([torch.randn(2, 24), torch.randn(2, 17)]))


def test_typed_configs_declared_once_on_the_class():
    """Issue 8: each model's config is a dataclass on its class, with the paper's defaults; what a
    model is (inputs, batch dependence, frames) is read from the class."""
    from parrot_ser.fusion import MODELS, ModelConfig, OTConfig, TokenOTConfig

    parrot = MODELS.get("parrot")
    assert parrot.config is OTConfig and OTConfig().ot_eps == 0.05 and OTConfig().embed_dim == 120
    assert MODELS.get("fcn").config is ModelConfig and not hasattr(ModelConfig(), "ot_eps")
    assert MODELS.get("parrot-token").config is TokenOTConfig
    for name, entry in MODELS.items():
        cls = entry.factory
        assert (entry.spec.n_inputs, entry.spec.batch_dependent, entry.spec.uses_frames) == (
            cls.n_inputs, cls.batch_dependent, cls.uses_frames), name
    assert [s.name for s in list_models() if s.batch_dependent] == ["ot", "parrot"]
    assert build_model("fcn", [16], 3).config == {"dropout": 0.3, "hidden": 128, "layer_weighting": False,
                                                  "n_layers": None, "position": -1}


def test_model_options_flat_and_per_model_blocks():
    from parrot_ser.fusion import model_options

    opts = {"hidden": 32, "ot_eps": 0.2, "parrot": {"ot_eps": 0.1}, "cnn": {"hidden": 16}}
    assert model_options("parrot", opts) == {"hidden": 32, "ot_eps": 0.1}  # the block wins
    assert model_options("cnn", opts) == {"hidden": 16}  # ot_eps is another model's key: ignored
    assert model_options("fcn", opts) == {"hidden": 32}
    with pytest.raises(ConfigError, match=r"unknown model config key\(s\) ot_epsilon for model 'parrot'"):
        model_options("cnn", {"parrot": {"ot_epsilon": 0.1}})  # a typo in any block is caught
    with pytest.raises(ConfigError, match="unknown model config"):
        model_options("cnn", {"ot_epsilon": 0.1})


def test_yaml_per_model_blocks_reach_the_model(tmp_path):
    from parrot_ser.models import build_head
    from parrot_ser.training.config import load_config

    p = tmp_path / "c.yaml"
    p.write_text("epochs: 2\nmodel:\n  hidden: 24\n  parrot:\n    ot_iters: 7\n")
    cfg = load_config(p)
    net = build_head("parrot", [64, 48], 3, dropout=cfg.dropout, options=cfg.model)
    assert net.config["ot_iters"] == 7 and net.config["hidden"] == 24
    assert build_head("cnn", [64], 3, options=cfg.model).config["hidden"] == 24


def test_fused_width_is_checked():
    model = build_model("concat", DIMS2, 3, **TINY)
    model.width = 3  # a fuse() that does not give width x embed_dim features
    with pytest.raises(ConfigError, match="fuse gave"):
        model(_inp(DIMS2, 4))


def test_frame_tokens_are_mixed_with_the_pooled_layer_weights():
    """Layer weighting for frame models: (B, T, L, F) frames are mixed with the same softmax weights
    as that input's (B, L, D) pooled vector; with one layer dominating it equals feeding that layer."""
    from parrot_ser.fusion.base import FusionInput
    from parrot_ser.models.head import build_head

    torch.manual_seed(0)
    net = build_head("parrot-token", [[3, 32], [2, 24]], 4, use_frames=True, frame_dims=[32, 24],
                     options={"token_source": "frames", "conv_channels": [4, 8]}).eval()
    pooled = [torch.randn(5, 3, 32), torch.randn(5, 2, 24)]
    frames = [torch.randn(5, 7, 3, 32), torch.randn(5, 7, 2, 24)]
    masks = [torch.ones(5, 7, dtype=torch.bool)] * 2
    out = net(FusionInput(pooled, frames, masks))
    assert out.shape == (5, 4)
    out.sum().backward()
    assert net.select[0].mix.weights.grad.abs().sum() > 0  # the frame path trains the layer weights
    with torch.no_grad():
        for sel in net.select:
            sel.mix.weights.zero_()
            sel.mix.weights[-1] = 50.0  # softmax ~ one-hot on the last layer
        mixed = net(FusionInput(pooled, frames, masks))
        direct = net._mix_frames(frames[0], net.select[0], "p")
    torch.testing.assert_close(direct, frames[0][:, :, -1], atol=1e-5, rtol=0)
    assert torch.isfinite(mixed).all()


def test_one_module_per_model_family():
    """registry.py is the registry and the shared bases; every model lives in its family's module."""
    from parrot_ser.fusion import MODELS

    where = {name: MODELS.get(name).factory.__module__.rsplit(".", 1)[-1] for name in MODELS}
    assert where == {"cnn": "single", "fcn": "single", "concat": "pooled_fusion", "hadamard": "pooled_fusion",
                     "gated": "pooled_fusion", "ot": "batch_ot", "parrot": "batch_ot", "parrot-token": "tokens",
                     "xattn": "tokens"}
