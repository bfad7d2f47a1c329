"""`parrot-ser extract` on the real Emo-DB copy: a killed run resumes without recomputing committed
chunks and ends identical to an uninterrupted run; bad files are skipped and listed; wrong inputs
give one line and exit 2; random-init HF weights are announced loudly."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from parrot_ser.cli.main import app
from parrot_ser.corpora import Manifest, scan_corpus
from parrot_ser.errors import FeatureStoreError
from parrot_ser.features import STOP_ENV, open_store

CLI = [sys.executable, "-m", "parrot_ser.cli.main"]


@pytest.fixture(scope="module")
def emodb_manifest(emodb_root, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("man") / "emodb.csv"
    scan_corpus("emodb", emodb_root).to_csv(path)
    return path


def _run(args, env_extra=None):
    env = {**os.environ, "OMP_NUM_THREADS": "1", **(env_extra or {})}
    return subprocess.run([*CLI, *args], capture_output=True, text=True, env=env, timeout=120)


def test_killed_extraction_resumes_and_matches_uninterrupted(emodb_manifest, tmp_path):
    args = ["extract", "--manifest", str(emodb_manifest), "-e", "logmel", "--chunk-size", "100", "--quiet"]
    killed = _run([*args, "--out", str(tmp_path / "a")], {STOP_ENV: "2"})
    assert killed.returncode == 75, killed.stderr  # died after committing 2 chunks, without cleanup
    partial = tmp_path / "a" / "logmel" / ".partial"
    assert len(list(partial.glob("chunk_*.npz"))) == 2
    assert not (tmp_path / "a" / "logmel" / "meta.json").exists()
    with pytest.raises(FeatureStoreError, match="unfinished"):
        open_store(tmp_path / "a")

    resumed = _run([*args, "--out", str(tmp_path / "a"), "--json"])
    assert resumed.returncode == 0, resumed.stderr
    rep = json.loads(resumed.stdout)["encoders"]["logmel"]
    assert rep["resumed"] == 200 and rep["computed_this_run"] == 335 and rep["n_ok"] == 535
    full_rep = json.loads((tmp_path / "a" / "logmel" / "report.json").read_text())
    assert sorted(full_rep["computed_by_run"].values()) == [200, 335]  # nobody computed twice
    assert not partial.exists()

    # uninterrupted reference, in process
    res = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "b")])
    assert res.exit_code == 0, res.output
    a, b = open_store(tmp_path / "a").get("logmel"), open_store(tmp_path / "b").get("logmel")
    assert a.utt_ids == b.utt_ids and len(a.utt_ids) == 535
    np.testing.assert_array_equal(a.pooled(), b.pooled())
    assert a.utt_ids[:3] == [u.utt_id for u in Manifest.from_csv(emodb_manifest).utterances[:3]]


def test_corrupt_file_skipped_and_listed(emodb_root, tmp_path):
    m = scan_corpus("emodb", emodb_root)
    bad = tmp_path / "broken.wav"
    bad.write_bytes((emodb_root / "wav" / "03a01Fa.wav").read_bytes()[:30])  # truncated header
    utts = [*m.utterances[:5]]
    for u in utts:
        u.path = str(emodb_root / u.path)
    utts.insert(1, type(utts[0])("broken", str(bad), "sad", "03"))
    Manifest("emodb", tmp_path, utts).to_csv(tmp_path / "m.csv")
    res = CliRunner().invoke(app, ["extract", "--manifest", str(tmp_path / "m.csv"), "-e", "logmel",
                                   "--out", str(tmp_path / "s"), "--json", "--quiet"])
    assert res.exit_code == 0, res.output
    rep = json.loads(res.stdout)["encoders"]["logmel"]
    assert rep["n_ok"] == 5 and rep["n_skipped"] == 1
    assert rep["skipped"][0]["utt_id"] == "broken" and "broken.wav" in rep["skipped"][0]["error"]
    assert "skipped 1 bad file" in res.stderr and "broken.wav" in res.stderr
    assert "broken" not in open_store(tmp_path / "s").get("logmel").utt_ids


def test_wrong_inputs_give_one_line(emodb_manifest, tmp_path):
    r = CliRunner()
    res = r.invoke(app, ["extract", "--manifest", str(tmp_path / "nope.csv"), "-e", "logmel", "--out", str(tmp_path)])
    assert res.exit_code == 2 and "manifest file not found" in res.stderr and "Traceback" not in res.output
    res = r.invoke(app, ["extract", "--manifest", str(emodb_manifest), "-e", "lgomel", "--out", str(tmp_path)])
    assert res.exit_code == 2 and "unknown encoder 'lgomel'" in res.stderr
    res = r.invoke(app, ["extract", "--manifest", str(emodb_manifest), "-e", "logmel", "--out", str(tmp_path),
                         "--checkpoint", "hubert-base=/x"])
    assert res.exit_code == 2 and "not one of the --encoder" in res.stderr
    res = r.invoke(app, ["extract", "-e", "logmel", "--out", str(tmp_path)])
    assert res.exit_code == 2 and "--manifest" in res.stderr


def test_random_init_hf_subset_and_conflict(emodb_root, tmp_path):
    m = scan_corpus("emodb", emodb_root)
    Manifest(m.corpus, m.root, m.utterances[:6]).to_csv(tmp_path / "m.csv")
    base = ["extract", "--manifest", str(tmp_path / "m.csv"), "-e", "hubert-base", "--out", str(tmp_path / "s"),
            "--layers", "all", "--quiet", "--dtype", "float16"]
    res = CliRunner().invoke(app, [*base, "--random-init", "--seed", "1"])
    assert res.exit_code == 0, res.output
    assert res.stderr.count("UNTRAINED random-init encoder hubert-base") == 1  # once, one wording
    fs = open_store(tmp_path / "s").get("hubert-base")
    assert fs.random_init and fs.meta["random_init"] and "UNTRAINED" in fs.meta["WARNING"]
    assert fs.layers == [0, 1, 2] and fs.pooled_all().shape == (6, 3, 64) and fs.pooled_all().dtype == np.float16
    last = fs.report()["last_run"]
    assert last["padding_waste"] == 0.0 and last["model_padding_waste"] == 0.0  # equal 2 s clips: no padding
    # another seed = other weights: refused, naming both identities
    res = CliRunner().invoke(app, [*base, "--random-init", "--seed", "2"])
    assert res.exit_code == 2 and "refusing to mix" in res.stderr and "seed=1" in res.stderr and "seed=2" in res.stderr


def test_encoder_options_reach_the_encoder_and_are_recorded(emodb_root, tmp_path):
    """--option NAME:KEY=VALUE is parsed as YAML, passed to the encoder and kept in its identity;
    an option the encoder does not know is one clear line."""
    man = scan_corpus("emodb", emodb_root)
    man.utterances = man.utterances[:3]
    mpath = man.to_csv(tmp_path / "m.csv")
    runner = CliRunner()
    res = runner.invoke(app, ["extract", "--manifest", str(mpath), "-e", "ssam-tiny", "--random-init", "--quiet",
                              "--option", "ssam-tiny:depth=1", "--option", "ssam-tiny:corrected_grouping=true",
                              "--out", str(tmp_path / "s")])
    assert res.exit_code == 0, res.output
    opts = open_store(tmp_path / "s").get("ssam-tiny").meta["identity"]["options"]
    assert opts == {"depth": 1, "corrected_grouping": True}
    bad = runner.invoke(app, ["extract", "--manifest", str(mpath), "-e", "ssam-tiny", "--random-init",
                              "--option", "ssam-tiny:bogus=1", "--out", str(tmp_path / "b")])
    assert bad.exit_code == 2 and "bogus" in bad.output and "Traceback" not in bad.output
    malformed = runner.invoke(app, ["extract", "--manifest", str(mpath), "-e", "ssam-tiny",
                                    "--option", "depth=1", "--out", str(tmp_path / "c")])
    assert malformed.exit_code == 2 and "NAME:KEY=VALUE" in malformed.output


def test_resume_that_computes_nothing_says_so_without_a_rate(emodb_root, tmp_path):
    """A rerun whose utterances are all in committed chunks computes nothing and says so (issue 20,
    item 19: it printed `0.0 utt/s, real-time factor nan`)."""
    from parrot_ser.features.writer import _chunk_paths, _read_chunk_index

    m = scan_corpus("emodb", emodb_root)
    Manifest(m.corpus, m.root, m.utterances[:12]).to_csv(tmp_path / "m.csv")
    store = tmp_path / "s"
    args = ["extract", "-e", "logmel", "--chunk-size", "6", "--quiet", "--out", str(store)]
    assert _run([*args, "--manifest", str(tmp_path / "m.csv")], {STOP_ENV: "1"}).returncode == 75
    (chunk,) = _chunk_paths(store / "logmel" / ".partial")
    committed = set(_read_chunk_index(chunk)[0])  # the rerun asks for exactly these: nothing to compute
    Manifest(m.corpus, m.root, [u for u in m.utterances if u.utt_id in committed]).to_csv(tmp_path / "m6.csv")
    resumed = _run([*args, "--manifest", str(tmp_path / "m6.csv")])
    assert resumed.returncode == 0, resumed.stderr
    assert "nan" not in resumed.stderr and "utt/s" not in resumed.stderr
    assert "all 6 from committed chunks, none computed now" in resumed.stderr
    assert open_store(store).get("logmel").meta["n"] == 6


def test_finished_store_answers_up_to_date_without_taking_the_lock(emodb_root, tmp_path, monkeypatch):
    """A finished store that holds everything asked answers "up to date" without the write lock, so a
    shared store this user may only read works (issue 20, item 18: permission denied on the lock
    file). Tests run as root in CI, where chmod does not stop writes: the lock is made to fail."""
    import parrot_ser.features.writer as writer
    from parrot_ser.encoders import build_encoder

    m = scan_corpus("emodb", emodb_root)
    small = Manifest(m.corpus, m.root, m.utterances[:6])
    store = tmp_path / "s"
    writer.extract_features(small, build_encoder("logmel"), store)

    def no_lock(*a, **k):
        raise PermissionError(13, "Permission denied", str(store / writer.LOCK_NAME))

    monkeypatch.setattr(writer, "store_lock", no_lock)
    rep = writer.extract_features(small, build_encoder("logmel"), store)
    assert rep["up_to_date"] and rep["computed_this_run"] == 0 and rep["n_ok"] == 6
    with pytest.raises(PermissionError):  # with work to do the lock is still taken
        writer.extract_features(Manifest(m.corpus, m.root, m.utterances[:7]), build_encoder("logmel"), store)


def test_worker_processes_store_what_one_process_stores(emodb_root, tmp_path):
    """The default extraction runs one single-threaded worker process per core (issue 20, item 1:
    one process with an OpenMP team oversubscribed a busy machine 6x): the store is identical to an
    in-process run with one thread, and a killed pooled run resumes."""
    m = scan_corpus("emodb", emodb_root)
    Manifest(m.corpus, m.root, m.utterances[:12]).to_csv(tmp_path / "m.csv")
    args = ["extract", "--manifest", str(tmp_path / "m.csv"), "-e", "ssam-tiny", "--random-init", "--option",
            "ssam-tiny:depth=1", "--chunk-size", "4", "--quiet", "--threads", "1"]
    killed = _run([*args, "--workers", "2", "--out", str(tmp_path / "pool")], {STOP_ENV: "1"})
    assert killed.returncode == 75, killed.stderr
    pooled = _run([*args, "--workers", "2", "--out", str(tmp_path / "pool"), "--json"])
    assert pooled.returncode == 0, pooled.stderr
    rep = json.loads(pooled.stdout)["encoders"]["ssam-tiny"]
    assert rep["resumed"] == 4 and rep["computed_this_run"] == 8
    inline = _run([*args, "--workers", "1", "--out", str(tmp_path / "inline")])
    assert inline.returncode == 0, inline.stderr
    a, b = open_store(tmp_path / "pool").get("ssam-tiny"), open_store(tmp_path / "inline").get("ssam-tiny")
    assert a.utt_ids == b.utt_ids and len(a.utt_ids) == 12
    np.testing.assert_array_equal(a.pooled(), b.pooled())


def test_extraction_worker_rule():
    from parrot_ser.features.pool import extraction_workers
    from parrot_ser.workers import usable_cores

    cores = usable_cores()
    assert extraction_workers(None, None, 100, "cpu") == cores  # one 1-thread worker per core
    assert extraction_workers(None, cores, 100, "cpu") == 1  # --threads = cores: one process, as before
    assert extraction_workers(None, None, 1, "cpu") == 1  # never more workers than chunks
    assert extraction_workers(None, None, 100, "cpu", handcrafted=True) == 1
    assert extraction_workers(None, None, 100, "cuda:0") == 1
    assert extraction_workers(3, None, 100, "cpu") == 3
