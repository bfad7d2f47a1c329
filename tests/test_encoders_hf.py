"""Hugging Face encoders on tiny random models built here (save_pretrained -> local_files_only):
shapes, layer indexing against the model's own hidden states, padding invariance, identities,
offline errors, random init, too-short input."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from parrot_ser.encoders import build_encoder
from parrot_ser.encoders.hf import TINY, TINY_WHISPER, TooShortError
from parrot_ser.errors import CheckpointError, ConfigError

# registry name -> (model_type, attention-mask feature extractor?)
FAMILIES = {
    "wav2vec2-base": ("wav2vec2", False),
    "hubert-base": ("hubert", False),
    "wavlm-base-plus": ("wavlm", True),
    "unispeech-sat-base-plus": ("unispeech-sat", True),
    "xls-r-300m": ("wav2vec2", True),  # layer-norm CNN + stable layer norm, like the large models
    "whisper-base": ("whisper", None),
}


@pytest.fixture(scope="module")
def tiny_dirs(tmp_path_factory):
    from transformers import AutoConfig, AutoModel, Wav2Vec2FeatureExtractor, WhisperFeatureExtractor

    root = tmp_path_factory.mktemp("hf")
    dirs = {}
    for name, (mt, mask) in FAMILIES.items():
        torch.manual_seed(1)
        if mt == "whisper":
            cfg = AutoConfig.for_model(mt, **TINY_WHISPER)
            fe = WhisperFeatureExtractor(feature_size=80)
        else:
            layer = name == "xls-r-300m"
            cfg = AutoConfig.for_model(mt, **TINY, feat_extract_norm="layer" if layer else "group",
                                       do_stable_layer_norm=layer)
            fe = Wav2Vec2FeatureExtractor(do_normalize=True, return_attention_mask=mask)
        AutoModel.from_config(cfg).save_pretrained(root / name)
        fe.save_pretrained(root / name)
        dirs[name] = root / name
    return dirs


def _waves(lengths, seed=0):
    rng = np.random.default_rng(seed)
    t = [np.arange(n) / 16000 for n in lengths]
    return [(0.3 * np.sin(2 * np.pi * (120 + 30 * i) * x) + 0.05 * rng.standard_normal(len(x))).astype(np.float32)
            for i, x in enumerate(t)]


@pytest.mark.parametrize("name", list(FAMILIES))
def test_shapes_and_padding_invariance(tiny_dirs, name):
    enc = build_encoder(name, checkpoint=str(tiny_dirs[name]), layers="all")
    assert enc.identity.layers == [0, 1, 2] and not enc.identity.random_init
    lengths = (9600, 6400, 9600, 3200) if name != "whisper-base" else (8000, 4100)
    waves = _waves(lengths)
    batch = enc.encode(waves, frames=True)
    for w, r in zip(waves, batch):
        if name == "whisper-base":
            t = math.ceil(len(w) / 320)
        else:
            t = int(enc.model._get_feat_extract_output_lengths(torch.tensor([len(w)]))[0])
        assert r.pooled.shape == (3, 64) and r.frames.shape == (3, t, 64)
        np.testing.assert_allclose(r.pooled, r.frames.mean(1), rtol=1e-5, atol=1e-6)
        alone = enc.encode([w], frames=True)[0]
        np.testing.assert_allclose(r.pooled, alone.pooled, atol=2e-5)
        np.testing.assert_allclose(r.frames, alone.frames, atol=5e-5)
    # different utterances give different features (not a constant)
    assert np.abs(batch[0].pooled - batch[1].pooled).max() > 1e-3


def test_layers_match_the_models_own_hidden_states(tiny_dirs):
    from transformers import AutoModel, Wav2Vec2FeatureExtractor

    d = tiny_dirs["wavlm-base-plus"]
    (w,) = _waves((8000,))
    ref_model = AutoModel.from_pretrained(str(d), local_files_only=True).eval()
    fe = Wav2Vec2FeatureExtractor.from_pretrained(str(d))
    with torch.no_grad():
        hs = ref_model(fe(w, sampling_rate=16000, return_tensors="pt")["input_values"],
                       output_hidden_states=True).hidden_states
    last = build_encoder("wavlm-base-plus", checkpoint=str(d)).encode([w])[0]
    np.testing.assert_allclose(last.pooled[0], hs[-1][0].mean(0).numpy(), atol=1e-5)
    cnn = build_encoder("wavlm-base-plus", checkpoint=str(d), layers=0).encode([w])[0]
    np.testing.assert_allclose(cnn.pooled[0], hs[0][0].mean(0).numpy(), atol=1e-5)
    # One layer resolver for every family (issue 8): indices in depth order, whatever order is given.
    pair = build_encoder("wavlm-base-plus", checkpoint=str(d), layers="-1,1")
    assert pair.identity.layers == [1, 2]
    np.testing.assert_allclose(pair.encode([w])[0].pooled, np.stack([hs[1][0].mean(0), hs[2][0].mean(0)]), atol=1e-5)


def test_group_norm_models_run_without_padding(tiny_dirs):
    enc = build_encoder("hubert-base", checkpoint=str(tiny_dirs["hubert-base"]))
    assert not enc.use_mask and "no padding" in enc.identity.preprocessing["batching"]
    enc.encode(_waves((8000, 8000, 5000)))
    assert enc.stats["padded_samples"] == enc.stats["real_samples"] == 21000
    # WavLM base+ asks for a mask but has a group-norm CNN: padding would leak, so no padding
    grouped = build_encoder("wavlm-base-plus", checkpoint=str(tiny_dirs["wavlm-base-plus"]))
    assert not grouped.use_mask and grouped.identity.preprocessing["return_attention_mask"] is True
    masked = build_encoder("xls-r-300m", checkpoint=str(tiny_dirs["xls-r-300m"]))
    assert masked.use_mask and "attention mask" in masked.identity.preprocessing["batching"]
    masked.encode(_waves((8000, 5000)))
    assert masked.stats["padded_samples"] == 16000 and masked.stats["real_samples"] == 13000


def test_identity_hashes_weight_files(tiny_dirs):
    a = build_encoder("hubert-base", checkpoint=str(tiny_dirs["hubert-base"]))
    b = build_encoder("hubert-base", checkpoint=str(tiny_dirs["hubert-base"]))
    c = build_encoder("hubert-base", checkpoint=str(tiny_dirs["wav2vec2-base"]))  # other weights, same shapes
    assert a.identity.checkpoint_sha256 == b.identity.checkpoint_sha256 != c.identity.checkpoint_sha256
    assert a.identity.preprocessing["sha256_of"] == "weight files"
    assert a.identity.checkpoint == str(tiny_dirs["hubert-base"].resolve())


def test_missing_models_give_checkpoint_errors(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(CheckpointError, match=r"could not find 'facebook/hubert-base-ls960' locally.*--checkpoint"):
        build_encoder("hubert-base")
    with pytest.raises(CheckpointError, match="not found"):
        build_encoder("hubert-base", checkpoint=str(tmp_path / "nope"))
    (tmp_path / "w.bin").write_bytes(b"x")
    with pytest.raises(CheckpointError, match="directory"):
        build_encoder("hubert-base", checkpoint=str(tmp_path / "w.bin"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="config.json"):
        build_encoder("hubert-base", checkpoint=str(tmp_path / "empty"))
    with pytest.raises(ConfigError, match="out of range"):
        build_encoder("whisper-base", random_init=True, layers=7)


def test_random_init_is_seeded_tiny_and_loud():
    w = _waves((6400,))
    a = build_encoder("mms-1b", random_init=True, seed=3)
    b = build_encoder("mms-1b", random_init=True, seed=3)
    c = build_encoder("mms-1b", random_init=True, seed=4)
    assert a.identity.random_init and a.identity.seed == 3
    pre = a.identity.preprocessing
    assert pre["random_init_config"]["tiny"] and pre["random_init_config"]["hidden_size"] == 64
    assert "UNTRAINED" in pre["WARNING"]
    pa, pb, pc = (e.encode(w)[0].pooled for e in (a, b, c))
    np.testing.assert_array_equal(pa, pb)
    assert np.abs(pa - pc).max() > 1e-4
    assert a.identity.checkpoint_sha256 == b.identity.checkpoint_sha256 != c.identity.checkpoint_sha256


def test_random_init_from_local_config(tiny_dirs):
    enc = build_encoder("wav2vec2-base", checkpoint=str(tiny_dirs["wav2vec2-base"]), random_init=True, seed=0)
    trained = build_encoder("wav2vec2-base", checkpoint=str(tiny_dirs["wav2vec2-base"]))
    assert "config of" in enc.identity.preprocessing["random_init_config"]
    w = _waves((6400,))
    assert np.abs(enc.encode(w)[0].pooled - trained.encode(w)[0].pooled).max() > 1e-4


def test_too_short_input_is_a_typed_error(tiny_dirs):
    enc = build_encoder("hubert-base", checkpoint=str(tiny_dirs["hubert-base"]))
    with pytest.raises(TooShortError, match="too short"):
        enc.encode([np.zeros(100, np.float32)])


def test_hf_id_found_in_the_local_cache(tiny_dirs, tmp_path, monkeypatch):
    """A default HF id resolves offline from the HF cache layout (models--org--name/snapshots/REV)."""
    import shutil

    import huggingface_hub.constants as hc

    snap = tmp_path / "hub" / "models--facebook--hubert-base-ls960" / "snapshots" / "abc123"
    shutil.copytree(tiny_dirs["hubert-base"], snap)
    (snap.parents[1] / "refs").mkdir()
    (snap.parents[1] / "refs" / "main").write_text("abc123")
    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    enc = build_encoder("hubert-base")
    ref = build_encoder("hubert-base", checkpoint=str(tiny_dirs["hubert-base"]))
    assert enc.identity.checkpoint == "facebook/hubert-base-ls960"
    assert enc.identity.checkpoint_sha256 == ref.identity.checkpoint_sha256
    assert enc.identity.preprocessing["feature_extractor_source"] == "checkpoint"
    w = _waves((6400,))
    np.testing.assert_array_equal(enc.encode(w)[0].pooled, ref.encode(w)[0].pooled)


@pytest.mark.parametrize("env,local_only", [({}, True), ({"HF_HUB_OFFLINE": "1"}, True),
                                            ({"HF_HUB_OFFLINE": "0"}, False), ({"PARROT_ALLOW_DOWNLOAD": "1"}, False)])
def test_hf_ids_stay_offline_unless_downloads_are_asked_for(monkeypatch, env, local_only):
    # README: "nothing is downloaded unless you allow it". Unset HF_HUB_OFFLINE used to mean a hub
    # lookup with 5 retries (35 s) before the error.
    import transformers

    seen = {}

    def fake_from_pretrained(source, **kwargs):
        seen.update(kwargs)
        raise OSError("not in the cache")

    for k in ("HF_HUB_OFFLINE", "PARROT_ALLOW_DOWNLOAD"):
        monkeypatch.delenv(k, raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setattr(transformers.AutoModel, "from_pretrained", fake_from_pretrained)
    with pytest.raises(CheckpointError, match=r"downloads happen only when asked: HF_HUB_OFFLINE=0"):
        build_encoder("hubert-base", checkpoint="someone/uncached-model")
    assert seen["local_files_only"] is local_only
