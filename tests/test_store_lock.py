"""One store, one writer: a second `parrot-ser extract` on a store that is being written stops with
a one-line message (or waits with --wait), and two concurrent writers never leave a store that
claims more than it has. Real processes (the lock is per process)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from parrot_ser.corpora import Manifest, scan_corpus
from parrot_ser.features import open_store
from parrot_ser.features.writer import store_lock


@pytest.fixture(scope="module")
def small_manifest(emodb_root, tmp_path_factory) -> Path:
    man = scan_corpus("emodb", emodb_root)
    sub = Manifest(man.corpus, man.root, man.utterances[:40])
    p = tmp_path_factory.mktemp("lock") / "m.csv"
    sub.to_csv(p)
    return p


def _extract(manifest: Path, store: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "parrot_ser.cli.main", "extract", "--manifest", str(manifest),
                             "-e", "logmel", "--out", str(store), "--quiet", "--json", "--threads", "1", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def test_second_writer_stops_with_one_line_and_leaves_the_store_alone(small_manifest, tmp_path):
    store = tmp_path / "store"
    store.mkdir()
    with store_lock(store):  # this test process is the first writer
        p = _extract(small_manifest, store)
        out, errs = p.communicate(timeout=120)
        assert p.returncode == 2, errs
        lines = [ln for ln in errs.strip().splitlines() if ln.strip()]
        assert len(lines) == 1 and "is being written by parrot-ser extract (pid" in lines[0], errs
        assert "--wait" in lines[0] and "Traceback" not in errs
        assert not (store / "logmel").exists()
    p = _extract(small_manifest, store)  # lock released: the same command now runs
    out, errs = p.communicate(timeout=120)
    assert p.returncode == 0, errs
    assert open_store(store).get("logmel").meta["n"] == 40
    assert not (store / ".parrot-ser.lock.owner").exists()


def test_two_concurrent_writers_with_wait_give_one_complete_store(small_manifest, tmp_path):
    store = tmp_path / "store"
    procs = [_extract(small_manifest, store, "--wait") for _ in range(2)]
    docs = []
    for p in procs:
        out, errs = p.communicate(timeout=180)
        assert p.returncode == 0, errs
        docs.append(json.loads(out)["encoders"]["logmel"])
    # one of them computed everything, the other found it done (never both half)
    assert sorted(d["computed_this_run"] for d in docs) == [0, 40]
    fs = open_store(store).get("logmel")
    assert fs.meta["complete"] and fs.meta["n"] == 40 and len(fs.utt_ids) == 40
    assert fs.pooled().shape[0] == 40 and not (store / "logmel" / ".partial").exists()
