"""Feature store: write/read round trip, bad files skipped and listed, identity conflicts refused,
extension and resume without recomputation, batching rules."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from parrot_ser.corpora.base import Manifest, Utterance
from parrot_ser.encoders import build_encoder
from parrot_ser.encoders.base import EncodedUtterance, Encoder, EncoderIdentity
from parrot_ser.encoders.logmel import SPEC as LOGMEL_SPEC
from parrot_ser.errors import FeatureStoreError
from parrot_ser.features import bucket_batches, extract_features, open_store


def _corpus(tmp_path: Path, tone_writer, n: int = 6, bad: bool = True) -> Manifest:
    root = tmp_path / "corpus"
    utts = []
    for i in range(n):
        # different lengths and rates, so bucketing and resampling are exercised
        tone_writer(root / f"u{i}.wav", seconds=0.3 + 0.1 * i, sr=16000 if i % 2 else 22050, freq=150 + 40 * i)
        utts.append(Utterance(f"u{i}", f"u{i}.wav", "neutral" if i % 2 else "angry", f"s{i % 3}"))
    if bad:
        (root / "bad.wav").write_bytes(b"this is not audio at all")
        utts.insert(2, Utterance("bad", "bad.wav", "sad", "s0"))
    return Manifest("toy", root, utts)


class CountingEncoder(Encoder):
    """logmel wrapped to count calls and fail on demand (a crash mid-extraction)."""

    def __init__(self, fail_after: int | None = None, checkpoint: str | None = None):
        self.inner = build_encoder("logmel")
        self.spec = LOGMEL_SPEC
        self.identity = EncoderIdentity(**{**self.inner.identity.to_dict(), "checkpoint": checkpoint})
        self.calls = 0
        self.encoded = 0
        self.fail_after = fail_after

    def encode(self, waves, *, frames=False) -> list[EncodedUtterance]:
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise RuntimeError("simulated crash")
        self.calls += 1
        self.encoded += len(waves)
        return self.inner.encode(waves, frames=frames)


def test_round_trip_and_bad_file_listed(tmp_path, tone_writer):
    m = _corpus(tmp_path, tone_writer)
    enc = build_encoder("logmel")
    rep = extract_features(m, enc, tmp_path / "store", frames=True, progress=False, chunk_size=2, batch_seconds=1.0)
    assert rep["n_ok"] == 6 and rep["n_skipped"] == 1
    assert rep["skipped"][0]["utt_id"] == "bad" and "bad.wav" in rep["skipped"][0]["error"]
    assert "not an audio file" in rep["skipped"][0]["error"]

    store = open_store(tmp_path / "store")
    assert store.encoders == ["logmel"]
    assert [u.utt_id for u in store.manifest.utterances] == [u.utt_id for u in m.utterances]
    fs = store.get("logmel")
    assert fs.utt_ids == ["u0", "u1", "u2", "u3", "u4", "u5"]  # manifest order, bad one left out
    assert fs.layers == [0] and fs.has_frames
    assert fs.pooled().shape == (6, 320) and fs.pooled().dtype == np.float32
    assert fs.pooled_all().shape == (6, 1, 320)
    np.testing.assert_array_equal(fs.pooled("mean"), fs.pooled(0))  # a layer = a hidden-state index
    np.testing.assert_array_equal(fs.pooled("last"), fs.pooled(0))
    # same numbers as encoding the file directly (features do not depend on batching)
    from parrot_ser.audio import load_audio

    row = int(fs.rows(["u4"])[0])
    direct = enc.encode([load_audio(m.root / "u4.wav", 16000)], frames=True)[0]
    np.testing.assert_allclose(fs.pooled()[row], direct.pooled[0], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(fs.frames(row), direct.frames[0], rtol=1e-5, atol=1e-5)
    assert fs.frames_all(row).shape == (direct.frames.shape[1], 1, 160)
    assert fs.frame_lengths()[row] == direct.frames.shape[1]
    with pytest.raises(FeatureStoreError, match="bad"):
        fs.rows(["u0", "bad"])
    with pytest.raises(FeatureStoreError, match=r"layer 3 is not stored; stored hidden states: \[0\]"):
        fs.pooled(3)
    with pytest.raises(FeatureStoreError, match="hidden-state index >= 0"):
        fs.pooled(-1)
    meta = fs.meta
    assert meta["identity"]["name"] == "logmel" and meta["dtype"] == "float32" and meta["random_init"] is False
    assert meta["package_version"] and meta["created"]
    assert not (tmp_path / "store" / "logmel" / ".partial").exists()
    # memory-mappable as documented
    assert isinstance(np.load(tmp_path / "store" / "logmel" / "pooled.npy", mmap_mode="r"), np.memmap)


def test_float16_storage_and_no_frames(tmp_path, tone_writer):
    m = _corpus(tmp_path, tone_writer, n=3, bad=False)
    extract_features(m, build_encoder("logmel"), tmp_path / "s", dtype="float16", progress=False)
    fs = open_store(tmp_path / "s").get("logmel")
    assert fs.pooled_all().dtype == np.float16 and fs.pooled().dtype == np.float32
    assert not fs.has_frames
    with pytest.raises(FeatureStoreError, match="--frames"):
        fs.frames(0)


def test_identity_conflict_refused_naming_both(tmp_path, tone_writer):
    m = _corpus(tmp_path, tone_writer, n=2, bad=False)
    extract_features(m, CountingEncoder(checkpoint="ckpt-A"), tmp_path / "s", progress=False)
    with pytest.raises(FeatureStoreError) as ei:
        extract_features(m, CountingEncoder(checkpoint="ckpt-B"), tmp_path / "s", progress=False)
    msg = str(ei.value)
    assert "ckpt-A" in msg and "ckpt-B" in msg and "checkpoint" in msg
    with pytest.raises(FeatureStoreError, match="dtype"):
        extract_features(m, CountingEncoder(checkpoint="ckpt-A"), tmp_path / "s", dtype="float16", progress=False)
    # the finished entry is untouched
    assert open_store(tmp_path / "s").get("logmel").meta["identity"]["checkpoint"] == "ckpt-A"


def test_resume_after_crash_skips_committed_chunks(tmp_path, tone_writer):
    m = _corpus(tmp_path, tone_writer, n=6, bad=True)
    crash = CountingEncoder(fail_after=2)
    with pytest.raises(RuntimeError):
        # chunk_size 2 and tiny batches: chunks of 2 utterances, one encode call per chunk
        extract_features(m, crash, tmp_path / "s", progress=False, chunk_size=2, batch_seconds=10)
    with pytest.raises(FeatureStoreError, match="unfinished"):
        open_store(tmp_path / "s")
    again = CountingEncoder()
    rep = extract_features(m, again, tmp_path / "s", progress=False, chunk_size=2, batch_seconds=10)
    assert crash.encoded == 4  # two chunks committed before the crash
    assert again.encoded == 2 and rep["computed_this_run"] == 2 and rep["resumed"] == 5  # 4 done + bad file
    assert sorted(rep["computed_by_run"].values()) == [2, 4]
    full = CountingEncoder()
    extract_features(m, full, tmp_path / "ref", progress=False)
    a, b = open_store(tmp_path / "s").get("logmel"), open_store(tmp_path / "ref").get("logmel")
    assert a.utt_ids == b.utt_ids
    np.testing.assert_array_equal(a.pooled(), b.pooled())
    # rerun when finished: nothing recomputed
    idle = CountingEncoder()
    rep = extract_features(m, idle, tmp_path / "s", progress=False)
    assert rep["up_to_date"] and idle.encoded == 0


def test_extend_with_new_utterances(tmp_path, tone_writer):
    m = _corpus(tmp_path, tone_writer, n=5, bad=False)
    first = Manifest(m.corpus, m.root, m.utterances[:3])
    extract_features(first, CountingEncoder(), tmp_path / "s", progress=False, frames=True)
    more = CountingEncoder()
    rep = extract_features(m, more, tmp_path / "s", progress=False, frames=True)
    assert more.encoded == 2 and rep["n_ok"] == 5
    fs = open_store(tmp_path / "s").get("logmel")
    assert fs.utt_ids == [f"u{i}" for i in range(5)]
    ref = CountingEncoder()
    extract_features(m, ref, tmp_path / "ref", progress=False, frames=True)
    r = open_store(tmp_path / "ref").get("logmel")
    np.testing.assert_array_equal(fs.pooled(), r.pooled())
    np.testing.assert_array_equal(fs.frames(4), r.frames(4))


def test_conflicting_manifest_path_refused(tmp_path, tone_writer):
    m = _corpus(tmp_path, tone_writer, n=2, bad=False)
    extract_features(m, build_encoder("logmel"), tmp_path / "s", progress=False)
    other = Manifest(m.corpus, m.root, [Utterance("u0", "u1.wav", "x", "s")])
    with pytest.raises(FeatureStoreError, match="u0"):
        extract_features(other, build_encoder("logmel"), tmp_path / "s", progress=False)


def test_open_store_errors(tmp_path):
    with pytest.raises(FeatureStoreError, match="not found"):
        open_store(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FeatureStoreError, match="manifest"):
        open_store(tmp_path / "empty")


def test_all_bad_is_an_error_and_report_lists_them(tmp_path):
    root = tmp_path / "c"
    root.mkdir()
    (root / "a.wav").write_bytes(b"")
    m = Manifest("toy", root, [Utterance("a", "a.wav", "x", "s"), Utterance("gone", "gone.wav", "x", "s")])
    with pytest.raises(FeatureStoreError, match="no utterance could be encoded"):
        extract_features(m, build_encoder("logmel"), tmp_path / "s", progress=False)


def test_bucket_batches_cap_and_similar_lengths():
    durs = [1.0, 5.0, 1.1, 4.9, 20.0, 1.05, 5.1]
    batches = bucket_batches(durs, batch_seconds=10.0)
    assert sorted(i for b in batches for i in b) == list(range(len(durs)))
    for b in batches:
        longest = max(durs[i] for i in b)
        assert len(b) == 1 or len(b) * longest <= 10.0
    assert [4] in batches  # longer than the cap: alone
    assert {0, 2, 5} in [set(b) for b in batches]  # similar lengths grouped
    assert json.dumps(batches)  # plain lists
