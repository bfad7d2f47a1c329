"""Batched fold x seed training against one-at-a-time training on the real Emo-DB copy, worker
processes, and execution settings outside the run identity (resume with only --threads changed).

Inputs: the logmel features of all 535 files (pooled 320 dims) and, for the two-input models, the
same features split in two (mean half, std half) so that `parrot` (batch-level OT) runs without a
second neural encoder; small conv channels keep it CI-sized."""

from __future__ import annotations

import csv
import json
import os
import sys

import numpy as np
import pytest

from parrot_ser.training.config import TrainConfig
from parrot_ser.training.data import SERData
from parrot_ser.training.run import load_features, run_cv
from parrot_ser.training.spec import RunSpec


@pytest.fixture(scope="module")
def emo_logmel(emodb_root, tmp_path_factory):
    from parrot_ser.corpora import scan_corpus
    from parrot_ser.encoders import build_encoder
    from parrot_ser.features import extract_features

    out = tmp_path_factory.mktemp("scale") / "store"
    extract_features(scan_corpus("emodb", emodb_root), build_encoder("logmel"), out, progress=False)
    return out


def _two_inputs(store):
    data, rows, metas = load_features(store, RunSpec.build("fcn", encoders=["logmel"]))
    p = data.pooled[0]
    two = SERData([p[:, :160].copy(), p[:, 160:].copy()], data.labels, data.utt_ids, data.classes, None,
                  data.speakers)
    return two, rows, {"mean": metas["logmel"], "std": metas["logmel"]}


def _proba(run_dir):
    with open(run_dir / "predictions.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    key = [(r["seed"], r["utt_id"]) for r in rows]
    probs = np.asarray([[float(v) for k, v in r.items() if k.startswith("prob_")] for r in rows])
    return dict(zip(key, probs))


def test_batched_parrot_equals_one_at_a_time_without_dropout(emo_logmel, tmp_path):
    """Dropout 0: batched and one-at-a-time compute the same thing (same init, batches, Adam, early
    stopping, documented eval batching for the batch-dependent OT) up to float rounding."""
    data = _two_inputs(emo_logmel)
    cfg = TrainConfig(epochs=3, patience=2, dropout=0.0, model={"conv_channels": [8, 16]})
    a = run_cv(None, ["mean", "std"], "parrot", cfg, [0], "speaker-kfold", tmp_path / "single", data=data,
               batched=False, workers=1)
    b = run_cv(None, ["mean", "std"], "parrot", cfg, [0], "speaker-kfold", tmp_path / "batched", data=data,
               batched=True, workers=1)
    ra, rb = {(r["seed"], r["fold"]): r for r in a["runs"]}, {(r["seed"], r["fold"]): r for r in b["runs"]}
    assert [r["timings"]["training"] for r in rb.values()] == ["batched"] * 5
    assert [r["timings"]["training"] for r in ra.values()] == ["single"] * 5
    for k in ra:
        assert ra[k]["best_epoch"] == rb[k]["best_epoch"] and ra[k]["stopped_epoch"] == rb[k]["stopped_epoch"]
        assert ra[k]["metrics"]["confusion"] == rb[k]["metrics"]["confusion"]
    pa, pb = _proba(tmp_path / "single"), _proba(tmp_path / "batched")
    assert pa.keys() == pb.keys() and len(pa) == 535
    diff = max(float(np.abs(pa[k] - pb[k]).max()) for k in pa)
    assert diff < 1e-4, diff


def test_batched_with_dropout_is_deterministic_and_within_tolerance(emo_logmel, tmp_path):
    """Dropout 0.3 (default): batched draws other dropout masks, so the numbers are another random
    draw: identical run to run, and the headline within 4 points of one-at-a-time (documented)."""
    data = load_features(emo_logmel, RunSpec.build("fcn", encoders=["logmel"]))
    cfg = TrainConfig(epochs=5, patience=3)
    seeds = [0, 1]
    single = run_cv(None, ["logmel"], "fcn", cfg, seeds, "speaker-kfold", tmp_path / "s", data=data,
                    batched=False, workers=1)
    b1 = run_cv(None, ["logmel"], "fcn", cfg, seeds, "speaker-kfold", tmp_path / "b1", data=data, batched=True,
                workers=1)
    b2 = run_cv(None, ["logmel"], "fcn", cfg, seeds, "speaker-kfold", tmp_path / "b2", data=data, batched=True,
                workers=1)
    assert b1["headline"] == b2["headline"]
    assert _proba(tmp_path / "b1").keys() == _proba(tmp_path / "b2").keys()
    p1, p2 = _proba(tmp_path / "b1"), _proba(tmp_path / "b2")
    assert all(np.array_equal(p1[k], p2[k]) for k in p1)
    for m in ("accuracy", "macro_f1"):
        assert abs(single["headline"][m]["mean"] - b1["headline"][m]["mean"]) < 4.0, (m, single["headline"],
                                                                                     b1["headline"])
    assert single["headline"]["accuracy"]["mean"] > 35.0 and b1["headline"]["accuracy"]["mean"] > 35.0


def test_threads_and_device_do_not_change_the_run_identity(emo_logmel, tmp_path):
    from parrot_ser.errors import ConfigError

    data = load_features(emo_logmel, RunSpec.build("fcn", encoders=["logmel"]))
    cfg = TrainConfig(epochs=1, patience=0)
    out = tmp_path / "run"
    run_cv(None, ["logmel"], "fcn", cfg, [0], "speaker-kfold", out, data=data, workers=1)
    stamp = {p.name: p.stat().st_mtime_ns for p in (out / "folds").glob("*.json")}
    again = TrainConfig(epochs=1, patience=0, num_threads=1, device="cpu")
    res = run_cv(None, ["logmel"], "fcn", again, [0], "speaker-kfold", out, data=data, workers=1, batched=True)
    assert {p.name: p.stat().st_mtime_ns for p in (out / "folds").glob("*.json")} == stamp  # resumed, not retrained
    assert json.loads((out / "run.json").read_text())["config"]["num_threads"] == 1
    assert len(res["runs"]) == 5
    with pytest.raises(ConfigError, match="holds a different run"):
        run_cv(None, ["logmel"], "fcn", TrainConfig(epochs=1, patience=0, lr=5e-4), [0], "speaker-kfold", out,
               data=data, workers=1)


def test_worker_processes_give_the_same_numbers_as_this_process(emo_logmel, tmp_path):
    """Two spawned workers (one thread each) train the seed/folds; this process writes them: the
    same predictions as training them here."""
    cfg = TrainConfig(epochs=2, patience=0, num_threads=1)
    here = run_cv(emo_logmel, ["logmel"], "fcn", cfg, [0], "speaker-kfold", tmp_path / "here", batched=False,
                  workers=1)
    there = run_cv(emo_logmel, ["logmel"], "fcn", cfg, [0], "speaker-kfold", tmp_path / "there", batched=False,
                   workers=2)
    assert here["headline"] == there["headline"]
    pa, pb = _proba(tmp_path / "here"), _proba(tmp_path / "there")
    assert all(np.array_equal(pa[k], pb[k]) for k in pa)


def test_units_carry_the_run_spec_as_plain_data(emo_logmel, tmp_path):
    """Workers and Ray tasks get the spec (RunSpec.to_dict), not a TrainConfig, and rebuild it with
    their own thread count: the same identity, only the execution differs."""
    import json
    import pickle

    from parrot_ser.training.execute import make_units
    from parrot_ser.training.run import prepare_run

    prepared = prepare_run(emo_logmel, ["logmel"], "fcn", TrainConfig(epochs=1, num_threads=4), [0], "speaker-kfold",
                           tmp_path / "run", n_folds=2)
    assert not hasattr(prepared, "config")
    unit, = make_units([prepared], batched=True)
    assert json.loads(json.dumps(unit.spec)) == unit.spec == prepared.spec.to_dict() and unit.model == "fcn"
    rebuilt = pickle.loads(pickle.dumps(unit)).run_spec(threads=1)
    assert rebuilt.execution.num_threads == 1 and prepared.spec.execution.num_threads == 4
    assert rebuilt.identity() == prepared.spec.identity() and rebuilt.with_threads(4) == prepared.spec


def _children(pid: int) -> list[int]:
    from pathlib import Path

    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmd = (stat.parent / "cmdline").read_bytes()
        except OSError:  # the process ended while we looked
            continue
        if int(fields[1]) == pid and b"spawn_main" in cmd:
            kids.append(int(stat.parent.name))
    return kids


def _alive(pid: int) -> bool:
    from pathlib import Path

    try:  # an ended worker whose new parent has not reaped it yet is a zombie: ended
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds the workers through /proc (Linux); CI is Linux")
def test_workers_end_when_their_driver_is_killed(emo_logmel, tmp_path):
    # A driver killed with SIGKILL cannot shut its pool down; its workers must not go on training for
    # nobody and then sleep forever holding their features (execute._exit_with_parent).
    import signal
    import subprocess
    import time

    driver = subprocess.Popen([sys.executable, "-m", "parrot_ser.cli.main", "train", "--features", str(emo_logmel),
                               "--encoder", "logmel", "--model", "cnn", "--seeds", "0,1,2", "--epochs", "50",
                               "--workers", "2", "--no-batched", "--quiet", "--out", str(tmp_path / "run")],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    workers: list[int] = []
    try:
        deadline = time.monotonic() + 120
        while len(workers) < 2 and time.monotonic() < deadline and driver.poll() is None:
            time.sleep(0.5)
            workers = _children(driver.pid)
        assert len(workers) == 2, "the driver never started its 2 worker processes"
        time.sleep(2.0)  # let them take a unit each
        driver.send_signal(signal.SIGKILL)
        driver.wait()
        deadline = time.monotonic() + 20
        while any(_alive(w) for w in workers) and time.monotonic() < deadline:
            time.sleep(0.25)
        assert not any(_alive(w) for w in workers), "workers outlived their killed driver"
    finally:
        if driver.poll() is None:
            driver.kill()
        for w in workers:
            if _alive(w):
                os.kill(w, signal.SIGKILL)


def test_gpu_check_script_runs_its_scan_check_as_a_cpu_rehearsal(capsys, monkeypatch):
    # bench/device_check.py waits for a GPU lease whose minutes are too few to debug it there; its
    # CPU rehearsal (the whole script: `--quick --rehearse-on-cpu`, under 1.5 min, docs/benchmarks.md)
    # runs the same code with device "cpu". This runs its kernel check that way, so a change to the
    # scan module's API breaks a test here, not the GPU run.
    import importlib
    from pathlib import Path

    bench = Path(__file__).resolve().parents[1] / "bench"
    monkeypatch.syspath_prepend(str(bench))
    dc = importlib.import_module("device_check")
    monkeypatch.setattr(dc, "DEV", "cpu")
    dc.check_env()
    dc.check_scan(quick=True)
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.strip()]
    assert all(r["rehearsal"] for r in lines)
    by = {r["metric"].split(":")[-1].strip(): r for r in lines}
    assert by["max abs diff, mamba-ssm vs ours (GPU)"]["value"] == 0.0  # our scan against itself on CPU
    assert by["max abs diff, kernel vs torch conv1d"]["value"] < 1e-5
    assert by["mamba-ssm time"]["baseline_value"] > 0
