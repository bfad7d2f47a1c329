"""The synthetic acted-prosody corpus: counts, format, determinism, prosody, fallback, errors."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from parrot_ser.corpora.base import Manifest
from parrot_ser.demo import synth
from parrot_ser.demo.synth import EMOTIONS, SENTENCES, SPEAKERS, prosody_stats, synthesize_corpus
from parrot_ser.errors import ConfigError


def _hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*.wav"))}


@pytest.fixture(scope="module")
def full_corpus(tmp_path_factory):
    # every speaker and emotion, 5 of the 8 sentences (keeps the test fast; counts are checked below)
    return synthesize_corpus(tmp_path_factory.mktemp("demo_full"), seed=0, backend="espeak", n_sentences=5)


def test_full_corpus_counts_layout_and_manifest(full_corpus):
    c = full_corpus
    assert c.backend == "espeak-ng"
    assert len(c.emotions) >= 6 and {"neutral", "happy", "sad", "angry", "fear", "disgust"} <= set(c.emotions)
    assert len(c.speakers) == 8 and c.n_sentences == 5
    m = Manifest.from_csv(c.manifest_csv)
    assert len(m) == c.n_utterances == len(c.speakers) * len(c.emotions) * c.n_sentences
    assert m.speakers() == sorted(c.speakers)
    assert m.labels() == sorted(c.emotions)
    # every (speaker, emotion) cell has every sentence
    cells = {(u.speaker, u.label, u.meta["sentence"]) for u in m.utterances}
    assert len(cells) == len(m)
    info = json.loads((c.root / "corpus.json").read_text())
    assert info["backend"] == "espeak-ng" and info["n_utterances"] == len(m)


def test_files_are_16k_mono_pcm16_and_speech_like(full_corpus):
    m = full_corpus.manifest()
    for u in m.utterances[::37]:
        info = sf.info(str(m.abspath(u)))
        assert (info.samplerate, info.channels, info.subtype, info.format) == (16000, 1, "PCM_16", "WAV")
        x, _ = sf.read(str(m.abspath(u)), dtype="float32")
        assert 1.0 < len(x) / 16000 < 6.0
        assert np.isfinite(x).all() and np.abs(x).max() < 1.0
        assert 70 < prosody_stats(x)["f0_hz"] < 400  # voiced, in the human range


def _paired(m: Manifest, a: str, b: str, key: str) -> tuple[float, float]:
    """Mean of a prosody statistic over matching (speaker, sentence) pairs for emotions a and b."""
    stats: dict[tuple[str, str, str], float] = {}
    for u in m.utterances:
        if u.label in (a, b):
            x, sr = sf.read(str(m.abspath(u)), dtype="float32")
            stats[(u.label, u.speaker, u.meta["sentence"])] = prosody_stats(x, sr)[key]
    keys = sorted({(s, t) for _, s, t in stats})
    return (float(np.nanmean([stats[(a, *k)] for k in keys])), float(np.nanmean([stats[(b, *k)] for k in keys])))


def test_angry_vs_sad_prosody_goes_the_expected_way(full_corpus):
    m = full_corpus.manifest()
    ang_db, sad_db = _paired(m, "angry", "sad", "rms_db")
    ang_f0, sad_f0 = _paired(m, "angry", "sad", "f0_hz")
    ang_dur, sad_dur = _paired(m, "angry", "sad", "duration_s")
    assert ang_db > sad_db + 4.0  # louder
    assert ang_f0 > sad_f0 * 1.2  # higher
    assert ang_dur < sad_dur * 0.85  # faster
    # and the female voices are higher than the male ones (speakers are really different voices)
    f_f0, m_f0 = (np.nanmean([prosody_stats(sf.read(str(m.abspath(u)))[0])["f0_hz"]
                              for u in m.utterances if u.label == "neutral" and u.meta["gender"] == g])
                  for g in ("female", "male"))
    assert f_f0 > m_f0 * 1.3


def test_same_seed_same_bytes_and_subset_matches_full(tmp_path, full_corpus):
    kw = dict(seed=0, emotions=["angry", "fear"], speakers=["m1", "f3"], n_sentences=2, backend="espeak")
    a = synthesize_corpus(tmp_path / "a", **kw)
    b = synthesize_corpus(tmp_path / "b", **kw)
    ha, hb = _hashes(a.root), _hashes(b.root)
    assert len(ha) == 8 and ha == hb
    assert (a.root / "manifest.csv").read_bytes() == (b.root / "manifest.csv").read_bytes()
    full = _hashes(full_corpus.root)
    assert all(full[k] == v for k, v in ha.items())  # per-utterance seeding: a subset renders the same
    c = synthesize_corpus(tmp_path / "c", **{**kw, "seed": 1})
    hc = _hashes(c.root)
    assert hc.keys() == ha.keys() and all(hc[k] != ha[k] for k in ha)


def test_numpy_fallback_same_layout_and_prosody(tmp_path, caplog, monkeypatch):
    kw = dict(seed=3, emotions=["angry", "sad", "neutral"], speakers=["m2", "f1"], n_sentences=2)
    esp = synthesize_corpus(tmp_path / "esp", backend="espeak", **kw)

    from parrot_ser.demo import espeak

    def broken():
        raise espeak.EspeakUnavailable("simulated: libespeak-ng missing")

    monkeypatch.setattr(espeak.Espeak, "get", staticmethod(broken))
    with caplog.at_level(logging.WARNING, logger="parrot_ser.demo.synth"):
        fb = synthesize_corpus(tmp_path / "fb", backend="auto", **kw)
    assert fb.backend == "numpy-source-filter"
    assert "numpy source-filter fallback" in caplog.text
    assert json.loads((fb.root / "corpus.json").read_text())["backend"] == "numpy-source-filter"
    assert _hashes(fb.root).keys() == _hashes(esp.root).keys()
    mf, me = fb.manifest(), esp.manifest()
    assert [(u.utt_id, u.path, u.label, u.speaker) for u in mf.utterances] == \
           [(u.utt_id, u.path, u.label, u.speaker) for u in me.utterances]
    assert _paired(mf, "angry", "sad", "rms_db")[0] > _paired(mf, "angry", "sad", "rms_db")[1] + 4.0
    assert _paired(mf, "angry", "sad", "f0_hz")[0] > _paired(mf, "angry", "sad", "f0_hz")[1] * 1.2
    with pytest.raises(espeak.EspeakUnavailable):
        synthesize_corpus(tmp_path / "strict", backend="espeak", **kw)


def test_bad_arguments_are_typed_errors(tmp_path):
    f = tmp_path / "file.txt"
    f.write_text("x")
    with pytest.raises(ConfigError, match="not a folder"):
        synthesize_corpus(f)
    with pytest.raises(ConfigError, match="unknown demo emotion"):
        synthesize_corpus(tmp_path / "x", emotions=["joy"])
    with pytest.raises(ConfigError, match="unknown demo speaker"):
        synthesize_corpus(tmp_path / "x", speakers=["zz"])
    with pytest.raises(ConfigError, match="n_sentences"):
        synthesize_corpus(tmp_path / "x", n_sentences=len(SENTENCES) + 1)
    with pytest.raises(ConfigError, match="backend"):
        synthesize_corpus(tmp_path / "x", backend="festival")


def test_profiles_cover_the_promise():
    assert len(SPEAKERS) == 8 and len({s.voice for s in SPEAKERS}) == 8
    assert len(EMOTIONS) >= 6 and len(SENTENCES) >= 5
    # the SSML carries the profile's prosody
    r = synth.Rendering("Hello", SPEAKERS[0], EMOTIONS["sad"], 0.7, 0.8, 0.5, 0.6)
    assert 'rate="70%"' in synth._ssml(r) and 'volume="60%"' in synth._ssml(r)
