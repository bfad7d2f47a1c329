"""SSAM and SSAMBA: official-format checkpoints built here from the SPEC key list, loaded strictly,
forward on CPU, padding invariance, front ends, safetensors copies, and the real Emo-DB audio."""

from __future__ import annotations

import math
import sys
import types

import numpy as np
import pytest
import soundfile as sf
import soxr
import torch
import torch.nn.functional as F

from parrot_ser.encoders import ssam, ssamba
from parrot_ser.encoders.checkpoint import convert_checkpoint, sha256_file
from parrot_ser.encoders.mamba.preprocessing import kaldi_fbank, mel_filterbank_htk, ssam_logmel, ssamba_input
from parrot_ser.encoders.mamba.ssam_net import regroup_frames, sincos_2d
from parrot_ser.errors import CheckpointError, ConfigError, EmptyAudioError, NonFiniteAudioError

SPECS = {s.name: s for s in ssam.specs() + ssamba.specs()}


def _mixer_keys(prefix: str, D: int, expand: int, d_state: int, backward: bool) -> dict[str, tuple]:
    di, r = expand * D, math.ceil(D / 16)
    shapes = {"in_proj.weight": (2 * di, D), "conv1d.weight": (di, 1, 4), "conv1d.bias": (di,),
              "x_proj.weight": (r + 2 * d_state, di), "dt_proj.weight": (di, r), "dt_proj.bias": (di,),
              "A_log": (di, d_state), "D": (di,), "out_proj.weight": (D, di)}
    if backward:
        shapes.update({"conv1d_b.weight": (di, 1, 4), "conv1d_b.bias": (di,), "x_proj_b.weight": (r + 2 * d_state, di),
                       "dt_proj_b.weight": (di, r), "dt_proj_b.bias": (di,), "A_b_log": (di, d_state), "D_b": (di,)})
    return {prefix + k: v for k, v in shapes.items()}


def official_ssam_state(D: int, depth: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """Key names and shapes as SPEC section 3 lists for checkpoint-<epoch>.pth['model']."""
    shapes = {"patch_embed.proj.weight": (D, 1, 4, 16), "patch_embed.proj.bias": (D,), "cls_token": (1, 1, D),
              "mask_token": (1, 1, D), "pos_embed": (1, 251, D), "encoder_norm.weight": (D,),
              "encoder_norm.bias": (D,), "pred.0.weight": (D, D), "pred.0.bias": (D,), "pred.2.weight": (64, D),
              "pred.2.bias": (64,)}
    for i in range(depth):
        shapes.update({f"blocks.{i}.norm.weight": (D,), f"blocks.{i}.norm.bias": (D,)})
        shapes.update(_mixer_keys(f"blocks.{i}.mixer.", D, 3, 24, backward=False))
    return _random(shapes, seed)


def official_ssamba_state(D: int, depth: int, seed: int = 0, layer_norm: bool = True) -> dict[str, torch.Tensor]:
    shapes = {"module.v.patch_embed.proj.weight": (D, 1, 16, 16), "module.v.patch_embed.proj.bias": (D,),
              "module.v.cls_token": (1, 1, D), "module.v.pos_embed": (1, 513, D), "module.v.norm_f.weight": (D,),
              "module.cpredlayer.0.weight": (D, D), "module.cpredlayer.0.bias": (D,),
              "module.cpredlayer.2.weight": (256, D), "module.cpredlayer.2.bias": (256,),
              "module.gpredlayer.0.weight": (D, D), "module.gpredlayer.0.bias": (D,),
              "module.gpredlayer.2.weight": (256, D), "module.gpredlayer.2.bias": (256,),
              "module.mask_embed": (1, 1, D)}
    if layer_norm:
        shapes["module.v.norm_f.bias"] = (D,)
    for i in range(depth):
        shapes[f"module.v.layers.{i}.norm.weight"] = (D,)
        if layer_norm:
            shapes[f"module.v.layers.{i}.norm.bias"] = (D,)
        shapes.update(_mixer_keys(f"module.v.layers.{i}.mixer.", D, 2, 16, backward=True))
    sd = _random(shapes, seed)
    sd["module.p_input_fdim"] = torch.tensor(128)
    sd["module.p_input_tdim"] = torch.tensor(1024)
    return sd


def _random(shapes: dict[str, tuple], seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    out = {}
    for k, s in shapes.items():
        t = torch.randn(s, generator=g) * 0.2
        if k.endswith(("A_log", "A_b_log")):
            t = torch.log(torch.arange(1, s[1] + 1, dtype=torch.float32)).repeat(s[0], 1) + t
        if k.endswith("norm.weight") or k.endswith("norm_f.weight") or k.endswith("encoder_norm.weight"):
            t = 1 + t
        out[k] = t
    return out


class ConfigDict(dict):
    pass


ConfigDict.__module__ = "ml_collections"


def save_ssam_checkpoint(path, sd, monkeypatch):
    fake = types.ModuleType("ml_collections")
    fake.ConfigDict = ConfigDict
    monkeypatch.setitem(sys.modules, "ml_collections", fake)
    torch.save({"model": sd, "optimizer": {"state": {}}, "epoch": 7, "scaler": {"scale": 2.0},
                "args": ConfigDict(arch="mamba_ssast_tiny")}, path)
    monkeypatch.delitem(sys.modules, "ml_collections")
    return path


def _waves(*secs, seed=0):
    rng = np.random.default_rng(seed)
    t = [np.arange(int(s * 16000)) / 16000 for s in secs]
    return [(0.3 * np.sin(2 * np.pi * (150 + 40 * i) * x) + 0.05 * rng.standard_normal(x.size)).astype(np.float32)
            for i, x in enumerate(t)]


# ---------------------------------------------------------------- front ends

def test_mel_filterbank_is_htk_triangles():
    fb = mel_filterbank_htk(201, 50.0, 8000.0, 80, 16000)
    assert fb.shape == (201, 80) and fb.min() >= 0 and fb.max() <= 1.0 + 1e-6
    freqs = torch.linspace(0, 8000, 201)
    centres = freqs[fb.argmax(0)]
    mel = 2595 * torch.log10(1 + centres / 700)
    steps = mel[40:].diff()  # equal spacing on the HTK scale (above the bin-resolution-limited low end)
    assert steps.std() / steps.mean() < 0.2


def test_ssam_logmel_shape_normalisation_and_tone_peak():
    x = torch.sin(2 * torch.pi * 1000 * torch.arange(8000) / 16000)
    lm = ssam_logmel(x)
    assert lm.shape == (1 + 8000 // 160, 80)
    assert abs(lm.mean().item()) < 1e-5 and abs(lm.std().item() - 1) < 1e-4
    fb = mel_filterbank_htk(201, 50.0, 8000.0, 80, 16000)
    assert lm[10:-10].mean(0).argmax().item() == fb[1000 // 40].argmax().item()  # bin of 1 kHz (40 Hz bins)


def test_kaldi_fbank_semantics():
    x = torch.sin(2 * torch.pi * 1000 * torch.arange(4000) / 16000) * 0.5
    fb = kaldi_fbank(x)
    assert fb.shape == (1 + (4000 - 400) // 160, 128)
    # DC offset removal per frame: adding a constant changes nothing (up to float32 rounding).
    assert (kaldi_fbank(x + 0.3) - fb).abs().max() < 2e-2
    # Kaldi mel scale 1127 ln(1 + f/700), 20 Hz .. 8 kHz, 128 bins: the 1 kHz tone peaks near its bin.
    m = lambda f: 1127 * math.log(1 + f / 700)  # noqa: E731
    expect = (m(1000) - m(20)) / ((m(8000) - m(20)) / 129) - 1
    assert abs(fb.mean(0).argmax().item() - expect) <= 1.5
    assert kaldi_fbank(torch.zeros(100)).shape == (0, 128)
    inp, n_real = ssamba_input(x, 64)
    assert inp.shape == (64, 128) and n_real == fb.shape[0]
    assert torch.allclose(inp[n_real:], torch.full((64 - n_real, 128), 4.2677393 / (2 * 4.5689974)))


# ---------------------------------------------------------------- SSAM

def test_ssam_checkpoint_loads_strictly_and_matches_manual_forward(tmp_path, monkeypatch):
    sd = official_ssam_state(192, depth=2)
    path = save_ssam_checkpoint(tmp_path / "checkpoint-7.pth", sd, monkeypatch)
    enc = ssam.build(SPECS["ssam-tiny"], checkpoint=str(path), layers="all")
    model = enc.model
    assert sorted(enc.ignored_keys) == ["mask_token", "pred.0.bias", "pred.0.weight", "pred.2.bias", "pred.2.weight"]
    consumed = set(model.state_dict())
    assert consumed | set(enc.ignored_keys) == set(sd)  # every official key consumed or listed as ignored
    assert all(torch.equal(model.state_dict()[k], sd[k]) for k in consumed)
    assert enc.identity.checkpoint_sha256 == sha256_file(path) and enc.identity.layers == [0, 1]

    # Manual composition from the SPEC wiring, using the loaded modules.
    x = torch.randn(2, 1, 200, 80)
    with torch.no_grad():
        tok = F.conv2d(x, sd["patch_embed.proj.weight"], sd["patch_embed.proj.bias"], stride=(4, 16))
        tok = tok.permute(0, 2, 3, 1).reshape(2, 250, 192) + sd["pos_embed"][:, 1:]
        h = torch.cat([(sd["cls_token"] + sd["pos_embed"][:, :1]).expand(2, -1, -1), tok], 1)
        res = h
        h = model.blocks[0].mixer(F.layer_norm(res, (192,), sd["blocks.0.norm.weight"], sd["blocks.0.norm.bias"], 1e-6))
        res = res + h
        h = model.blocks[1].mixer(F.layer_norm(res, (192,), sd["blocks.1.norm.weight"], sd["blocks.1.norm.bias"], 1e-6))
        final = F.layer_norm(res + h, (192,), sd["encoder_norm.weight"], sd["encoder_norm.bias"], 1e-6)
        out = model(x, [0, 1])
    assert (out[1] - final[:, 1:]).abs().max() < 1e-4
    assert (out[0] - res[:, 1:]).abs().max() < 1e-4

    # Official regrouping quirk: frame t = tokens f*50 + t; corrected: tokens t*5 + f. Both use every
    # token once, but the pooled 5*D vectors differ block-wise (official block f = mean of tokens
    # f*50..f*50+49, i.e. 10 time steps x 5 bands; corrected block f = mean of frequency band f).
    fr_off, fr_cor = regroup_frames(out[1]), regroup_frames(out[1], corrected=True)
    assert torch.equal(fr_off[0, 3, 192:384], out[1][0, 50 + 3])
    assert torch.equal(fr_cor[0, 3, 192:384], out[1][0, 3 * 5 + 1])
    assert torch.allclose(fr_off.mean(1)[:, :192], out[1][:, :50].mean(1), atol=1e-5)
    assert torch.allclose(fr_cor.mean(1)[:, :192], out[1][:, 0::5].mean(1), atol=1e-5)
    pooled_blocks = lambda fr: fr.mean(1).view(2, 5, 192).mean(1)  # noqa: E731
    assert torch.allclose(pooled_blocks(fr_off), pooled_blocks(fr_cor), atol=1e-5)


def test_ssam_key_mismatch_errors(tmp_path, monkeypatch):
    sd = official_ssam_state(192, depth=1)
    del sd["blocks.0.mixer.D"]
    sd["blocks.0.mixer.extra"] = torch.zeros(1)
    path = save_ssam_checkpoint(tmp_path / "checkpoint-1.pth", sd, monkeypatch)
    with pytest.raises(CheckpointError) as ei:
        ssam.build(SPECS["ssam-tiny"], checkpoint=str(path))
    assert "blocks.0.mixer.D" in str(ei.value) and "blocks.0.mixer.extra" in str(ei.value)
    assert str(path) in str(ei.value)
    with pytest.raises(CheckpointError, match="D=192"):
        ssam.build(SPECS["ssam-small"], checkpoint=str(save_ssam_checkpoint(
            tmp_path / "c2.pth", official_ssam_state(192, 1), monkeypatch)))
    with pytest.raises(CheckpointError, match="Google Drive"):
        ssam.build(SPECS["ssam-base"], checkpoint=None)


def test_ssam_encoder_chunks_trim_and_padding_invariance():
    enc = ssam.build(SPECS["ssam-tiny"], checkpoint=None, random_init=True, seed=3, layers=[-1, 0], depth=2,
                     batch_chunks=3)
    waves = _waves(1.0, 2.0, 2.5)
    res = enc.encode(waves, frames=True)
    for w, r in zip(waves, res):
        T = 1 + w.size // 160
        pad = 200 - T % 200
        n = 50 * ((T + pad) // 200) - int(50 * pad / 200)
        assert r.frames.shape == (2, n, 960) and r.pooled.shape == (2, 960)
        assert np.allclose(r.pooled, r.frames.mean(1), atol=1e-5)
    alone = enc.encode([waves[1]], frames=True)[0]
    assert np.abs(alone.frames - res[1].frames).max() < 1e-4
    assert enc.identity.random_init and enc.identity.seed == 3 and enc.identity.layers == [0, 1]
    # Seeded: the same seed gives the same weights.
    again = ssam.build(SPECS["ssam-tiny"], checkpoint=None, random_init=True, seed=3, layers=[-1, 0], depth=2)
    assert np.abs(again.encode([waves[0]])[0].pooled - res[0].pooled).max() < 1e-5
    pe = enc.model.pos_embed[0]
    assert torch.equal(pe[0], torch.zeros(192)) and torch.allclose(pe, torch.from_numpy(sincos_2d(192, (50, 5))))


def test_ssam_base_shapes():
    enc = ssam.build(SPECS["ssam-base"], checkpoint=None, random_init=True, depth=1)
    r = enc.encode(_waves(0.5))[0]
    assert r.pooled.shape == (1, 3840) and np.isfinite(r.pooled).all()
    assert SPECS["ssam-base"].pooled_dim == 3840 and SPECS["ssam-base"].frame_rate == 25.0


def test_bad_input_and_options():
    enc = ssam.build(SPECS["ssam-tiny"], checkpoint=None, random_init=True, depth=1)
    with pytest.raises(EmptyAudioError, match="waveform 1"):
        enc.encode([np.zeros(800, np.float32), np.zeros(0, np.float32)])
    with pytest.raises(NonFiniteAudioError):
        enc.encode([np.array([0.0, np.nan] * 400, np.float32)])
    with pytest.raises(ConfigError, match="unknown option"):
        ssam.build(SPECS["ssam-tiny"], checkpoint=None, random_init=True, colour="red")
    with pytest.raises(ConfigError, match="out of range"):
        ssam.build(SPECS["ssam-tiny"], checkpoint=None, random_init=True, layers=12)


# ---------------------------------------------------------------- SSAMBA

@pytest.mark.parametrize("layer_norm", [True, False])
def test_ssamba_checkpoint_loads_and_matches_manual_forward(tmp_path, layer_norm):
    sd = official_ssamba_state(192, depth=2, layer_norm=layer_norm)
    path = tmp_path / "amba_tiny_400.pth"
    torch.save(sd, path)
    enc = ssamba.build(SPECS["ssamba-tiny"], checkpoint=str(path), target_length=128, layers="all")
    model = enc.model
    assert isinstance(model.norm_f, torch.nn.LayerNorm if layer_norm else torch.nn.RMSNorm)
    loaded = {"module.v." + k for k in model.state_dict()}
    assert loaded | {"module." + k for k in enc.ignored_keys} == set(sd)
    assert {"cpredlayer.0.weight", "mask_embed", "p_input_tdim"} <= set(enc.ignored_keys)

    fb = torch.randn(1, 128, 128)
    norm = (lambda t, w, b: F.layer_norm(t, (192,), w, b, 1e-5)) if layer_norm else (
        lambda t, w, b: F.rms_norm(t, (192,), w, 1e-5))
    g = lambda k: sd.get("module.v." + k)  # noqa: E731
    with torch.no_grad():
        p = F.conv2d(fb.unsqueeze(1).transpose(2, 3), g("patch_embed.proj.weight"), g("patch_embed.proj.bias"),
                     stride=16)  # (1, D, 8, 8)
        pe = g("pos_embed")[:, 1:].transpose(1, 2).reshape(1, 192, 8, 64)[:, :, :, 28:36]  # centre cut 8 of 64
        h = torch.cat([g("cls_token"), p.flatten(2).transpose(1, 2)], 1)
        h = h + torch.cat([g("pos_embed")[:, :1], pe.reshape(1, 192, 64).transpose(1, 2)], 1)
        n0 = norm(h, g("layers.0.norm.weight"), g("layers.0.norm.bias"))
        n1 = norm(h.flip(1), g("layers.1.norm.weight"), g("layers.1.norm.bias"))
        hid = model.layers[0].mixer(n0) + model.layers[1].mixer(n1).flip(1)
        res = h + h.flip(1).flip(1)
        out_ref = norm(norm(res + hid, g("norm_f.weight"), g("norm_f.bias")), g("norm_f.weight"), g("norm_f.bias"))
        out, grid = model(fb, [0])
    assert grid == (8, 8)
    assert (out[0] - out_ref).abs().max() < 1e-4

    res_enc = enc.encode(_waves(1.0), frames=True)[0]
    n_cols = math.ceil((1 + (16000 - 400) // 160) / 16)
    assert res_enc.frames.shape == (1, n_cols, 192) and res_enc.pooled.shape == (1, 192)


def test_ssamba_missing_keys_and_hub_message(tmp_path):
    sd = official_ssamba_state(192, depth=2)
    del sd["module.v.layers.1.mixer.A_b_log"]
    path = tmp_path / "amba.pth"
    torch.save(sd, path)
    with pytest.raises(CheckpointError, match="layers.1.mixer.A_b_log"):
        ssamba.build(SPECS["ssamba-tiny"], checkpoint=str(path))
    with pytest.raises(CheckpointError, match="attentionisallyouneed369/ssamba"):
        ssamba.build(SPECS["ssamba-small"], checkpoint=None)


def test_ssamba_padding_invariance_and_pooling():
    waves = _waves(0.6, 1.3, 0.9)
    for target in (None, 160):
        enc = ssamba.build(SPECS["ssamba-tiny"], checkpoint=None, random_init=True, depth=4, target_length=target,
                           layers="all", batch_size=2)
        res = enc.encode(waves, frames=True)
        alone = enc.encode([waves[2]], frames=True)[0]
        assert np.abs(alone.pooled - res[2].pooled).max() < 1e-4
        assert np.abs(alone.frames - res[2].frames).max() < 1e-4
        assert res[0].pooled.shape == (2, 192)
    short = enc.encode([np.full(100, 0.1, np.float32)], frames=True)[0]  # < one 25 ms frame: padded
    assert short.frames.shape == (2, 1, 192) and np.isfinite(short.pooled).all()
    with pytest.raises(EmptyAudioError):
        enc.encode([np.zeros(0, np.float32)])
    valid = ssamba.build(SPECS["ssamba-tiny"], checkpoint=None, random_init=True, depth=2, pooling="mean_valid")
    r = valid.encode(waves[:1], frames=True)[0]
    assert np.allclose(r.pooled, r.frames.mean(1), atol=1e-5)
    with pytest.raises(ConfigError, match="pooling"):
        ssamba.build(SPECS["ssamba-tiny"], checkpoint=None, random_init=True, pooling="max")


# ---------------------------------------------------------------- safetensors copies, real audio

def test_safetensors_copy_gives_identical_outputs(tmp_path, monkeypatch):
    sd = official_ssam_state(192, depth=1, seed=4)
    src = save_ssam_checkpoint(tmp_path / "checkpoint-3.pth", sd, monkeypatch)
    dst = convert_checkpoint(src, tmp_path / "ssam-tiny.safetensors")
    a = ssam.build(SPECS["ssam-tiny"], checkpoint=str(src))
    b = ssam.build(SPECS["ssam-tiny"], checkpoint=str(dst))
    w = _waves(0.7)
    assert np.array_equal(a.encode(w)[0].pooled, b.encode(w)[0].pooled)
    assert a.identity.checkpoint_sha256 == b.identity.checkpoint_sha256 == sha256_file(src)

    sd2 = official_ssamba_state(192, depth=2, seed=5)
    src2 = tmp_path / "amba.pth"
    torch.save(sd2, src2)
    dst2 = convert_checkpoint(src2, tmp_path / "ssamba-tiny.safetensors")
    c = ssamba.build(SPECS["ssamba-tiny"], checkpoint=str(src2), target_length=64)
    d = ssamba.build(SPECS["ssamba-tiny"], checkpoint=str(dst2), target_length=64)
    assert np.array_equal(c.encode(w)[0].pooled, d.encode(w)[0].pooled)


def test_real_emodb_clip(emodb_root):
    path = sorted((emodb_root / "wav").glob("*.wav"))[0]
    x, sr = sf.read(str(path), dtype="float32")
    x = soxr.resample(x, sr, 16000).astype(np.float32)
    enc = ssam.build(SPECS["ssam-tiny"], checkpoint=None, random_init=True, depth=2)
    r = enc.encode([x], frames=True)[0]
    T = 1 + x.size // 160
    pad = 200 - T % 200
    assert r.frames.shape[1] == 50 * ((T + pad) // 200) - int(50 * pad / 200)
    assert np.isfinite(r.frames).all() and r.frames.std() > 0
    enc2 = ssamba.build(SPECS["ssamba-tiny"], checkpoint=None, random_init=True, depth=2, target_length=None)
    r2 = enc2.encode([x], frames=True)[0]
    n_fb = 1 + (x.size - 400) // 160  # 2.000 s -> 198 Kaldi frames -> 13 columns of 16
    assert r2.frames.shape == (1, math.ceil(n_fb / 16), 192) and np.isfinite(r2.pooled).all()


def test_bfloat16_runs_close_to_float32():
    w = _waves(0.75)
    a = ssam.build(SPECS["ssam-tiny"], checkpoint=None, random_init=True, depth=2)
    b = ssam.build(SPECS["ssam-tiny"], checkpoint=None, random_init=True, depth=2, dtype=torch.bfloat16)
    pa, pb = a.encode(w)[0].pooled, b.encode(w)[0].pooled
    assert pb.dtype == np.float32 and np.abs(pa - pb).max() < 0.05 * np.abs(pa).max()
    assert b.identity.preprocessing["dtype"] == "bfloat16"


# ---------------------------------------------------------------- hardening (issue 12)

def test_ssam_accepts_the_official_download_folder_and_takes_the_latest_epoch(tmp_path, monkeypatch):
    ckdir = tmp_path / "ssam_tiny" / "checkpoints"
    ckdir.mkdir(parents=True)
    for epoch, seed in ((9, 1), (10, 2), (99, 3)):  # 99 > 10 > 9 numerically, not as text
        save_ssam_checkpoint(ckdir / f"checkpoint-{epoch}.pth", official_ssam_state(192, 1, seed=seed), monkeypatch)
    enc = ssam.build(SPECS["ssam-tiny"], checkpoint=str(tmp_path / "ssam_tiny"))
    assert enc.identity.checkpoint == str(ckdir / "checkpoint-99.pth")
    assert enc.identity.checkpoint_sha256 == sha256_file(ckdir / "checkpoint-99.pth")
    assert ssam.build(SPECS["ssam-tiny"], checkpoint=str(ckdir)).identity.checkpoint == enc.identity.checkpoint
    dst = convert_checkpoint(tmp_path / "ssam_tiny", tmp_path / "ssam-tiny.safetensors")  # convert takes it too
    assert ssam.build(SPECS["ssam-tiny"], checkpoint=str(dst)).identity.checkpoint_sha256 == enc.identity.checkpoint_sha256
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(CheckpointError, match=r"empty: folder holds no checkpoint-<epoch>.pth"):
        ssam.build(SPECS["ssam-tiny"], checkpoint=str(empty))


def test_checkpoint_of_the_other_family_is_named(tmp_path, monkeypatch):
    p = save_ssam_checkpoint(tmp_path / "checkpoint-3.pth", official_ssam_state(192, 1), monkeypatch)
    with pytest.raises(CheckpointError, match=r"checkpoint-3.pth: this is an SSAM \(Audio-Mamba\) checkpoint; use it "
                                              r"with an ssam-\* encoder"):
        ssamba.build(SPECS["ssamba-tiny"], checkpoint=str(p))
    q = tmp_path / "amba_tiny_400.pth"
    torch.save(official_ssamba_state(192, 2), q)
    with pytest.raises(CheckpointError, match=r"amba_tiny_400.pth: this is an SSAMBA checkpoint"):
        ssam.build(SPECS["ssam-tiny"], checkpoint=str(q))


def test_depth_option_with_a_checkpoint_is_refused(tmp_path, monkeypatch):
    p = save_ssam_checkpoint(tmp_path / "checkpoint-1.pth", official_ssam_state(192, 2), monkeypatch)
    with pytest.raises(ConfigError, match=r"ssam-tiny: option depth=5 applies only with random_init; the checkpoint "
                                          r"has depth 2"):
        ssam.build(SPECS["ssam-tiny"], checkpoint=str(p), depth=5)
    assert ssam.build(SPECS["ssam-tiny"], checkpoint=str(p), depth=2).model.depth == 2  # consistent: accepted
    q = tmp_path / "amba.pth"
    torch.save(official_ssamba_state(192, 2), q)
    with pytest.raises(ConfigError, match=r"ssamba-tiny: option depth=4 applies only with random_init"):
        ssamba.build(SPECS["ssamba-tiny"], checkpoint=str(q), depth=4)


def test_integer_options_parse_none_and_refuse_garbage():
    # "None" is what `--option ssamba-tiny:target_length=None` delivers (YAML reads it as a string).
    enc = ssamba.build(SPECS["ssamba-tiny"], checkpoint=None, random_init=True, depth=2, target_length="None")
    assert enc.target_length is None and enc.identity.preprocessing["target_length"] is None
    assert ssamba.build(SPECS["ssamba-tiny"], checkpoint=None, random_init=True, depth=2,
                        target_length="64").target_length == 64
    with pytest.raises(ConfigError, match=r"ssamba-tiny: option target_length must be an integer, got 'long'"):
        ssamba.build(SPECS["ssamba-tiny"], checkpoint=None, random_init=True, target_length="long")
    with pytest.raises(ConfigError, match=r"ssam-tiny: option depth must be an integer, got 'None'"):
        ssam.build(SPECS["ssam-tiny"], checkpoint=None, random_init=True, depth="None")
    with pytest.raises(ConfigError, match=r"ssamba-tiny: option tstride must be >= 1, got 0"):
        ssamba.build(SPECS["ssamba-tiny"], checkpoint=None, random_init=True, depth=2, tstride=0)


def test_option_none_on_the_command_line_is_one_line(tmp_path, tone_writer):
    from typer.testing import CliRunner

    from parrot_ser.cli.main import app

    tone_writer(tmp_path / "c" / "angry" / "a.wav", seconds=0.3)
    res = CliRunner().invoke(app, ["extract", str(tmp_path / "c"), "--corpus", "folders", "-e", "ssamba-tiny",
                                   "--random-init", "--option", "ssamba-tiny:target_length=None",
                                   "--option", "ssamba-tiny:depth=oops", "--out", str(tmp_path / "f")])
    assert res.exit_code == 2, res.output
    # typed once, by the option's declared type (registry.typed_value in build_encoder)
    assert "encoder 'ssamba-tiny': option depth expects int, got 'oops'" in res.output and "Traceback" not in res.output


def test_ssam_rms_norm_checkpoint_keeps_encoder_norm_a_layernorm(tmp_path, monkeypatch):
    # Official MambaSSAST: rms_norm=True makes the blocks' norms RMSNorm (no bias); encoder_norm comes
    # from the base class and stays a LayerNorm with a bias.
    sd = {k: v for k, v in official_ssam_state(192, 2).items() if not (k.startswith("blocks.") and k.endswith("norm.bias"))}
    p = save_ssam_checkpoint(tmp_path / "checkpoint-5.pth", sd, monkeypatch)
    model = ssam.build(SPECS["ssam-tiny"], checkpoint=str(p)).model
    assert isinstance(model.blocks[0].norm, torch.nn.RMSNorm)
    assert isinstance(model.encoder_norm, torch.nn.LayerNorm)
    assert torch.equal(model.encoder_norm.bias, sd["encoder_norm.bias"])


@pytest.mark.parametrize("depth", [1, 3])
def test_ssamba_odd_depth_is_a_one_line_error(depth):
    # Layers run in (forward, backward) pairs: an odd depth used to build 0 pair outputs and fail
    # with KeyError: -1 deep inside encode().
    from parrot_ser.encoders import build_encoder
    from parrot_ser.errors import ConfigError
    with pytest.raises(ConfigError, match="even"):
        build_encoder("ssamba-tiny", random_init=True, depth=depth)


def test_ssamba_depth_two_encodes():
    from parrot_ser.encoders import build_encoder
    enc = build_encoder("ssamba-tiny", random_init=True, depth=2)
    out = enc.encode([np.zeros(8000, dtype=np.float32)])
    assert out[0].pooled.shape[-1] == 192
