"""Golden numbers: tiny runs on every training path (one model at a time, batched with vmap, bf16
autocast, frame inputs, a grid; batched regression and multitask) frozen as JSON under tests/golden/.
A refactor of the training code must leave them equal (same seeds -> same folds, epochs, metrics and
test probabilities / dimensions).

Regenerate (only when a change is MEANT to change the numbers, and say so in the commit):
    PARROT_UPDATE_GOLDEN=1 python -m pytest tests/test_golden.py
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from parrot_ser.training import TrainConfig
from parrot_ser.training.grid import run_grid
from parrot_ser.training.run import run_cv
from test_training import build_store

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("PARROT_UPDATE_GOLDEN") == "1"

# name -> (model, encoders, config keys, batched)
CASES = {
    "single_concat": ("concat", ["toy-mamba", "logmel"], {}, False),
    "single_parrot": ("parrot", ["toy-mamba", "logmel"], {"eval_batch_size": 4}, False),
    "batched_fcn": ("fcn", ["logmel"], {}, True),
    "batched_parrot": ("parrot", ["toy-mamba", "logmel"], {"eval_batch_size": 4}, True),
    "bf16_cnn": ("cnn", ["logmel"], {"precision": "bf16"}, False),
    "frames_parrot_token": ("parrot-token", ["toy-mamba", "logmel"], {"use_frames": True}, False),
}
BASE = {"epochs": 3, "batch_size": 6, "patience": 2}
# The run fingerprints older code wrote for these runs: folders holding them must still resume
# (recognised as the same run, nothing retrained). Before RunSpec (training/spec.py):
OLD_FINGERPRINTS = {"single_concat": "5bfcd2d6862beb1c", "single_parrot": "1747e09350b0e4e7",
                    "batched_fcn": "f0051f01b4c8d2bf", "batched_parrot": "1747e09350b0e4e7",
                    "bf16_cnn": "072adf1bb6f64837", "frames_parrot_token": "45e815a0e25744d6"}
# RunSpec format /1 (the model config's store position under the key "layer"):
V1_FINGERPRINTS = {"single_concat": "a31865ae766a21fb", "single_parrot": "0cf2229326714a29",
                   "batched_fcn": "bb67b79a3fa6ab60", "batched_parrot": "0cf2229326714a29",
                   "bf16_cnn": "1f9b989606744f4d", "frames_parrot_token": "910c908012a1d6bb",
                   "batched_regression": "ff1b3f102dca95c1", "batched_multitask": "053559a7f5ede7c9"}


# Dimensional tasks on the batched path, dropout 0 (name -> model, encoders, config keys): the same
# numbers one model at a time, up to float rounding (checked against the golden run in the test).
TASK_CASES = {
    "batched_regression": ("fcn", ["logmel"], {"task": "regression"}),
    "batched_multitask": ("concat", ["toy-mamba", "logmel"], {"task": "multitask", "regression_loss": "mse"}),
}


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    return build_store(tmp_path_factory.mktemp("golden"), n_spk=4, per=2, frames=True)


@pytest.fixture(scope="module")
def target_store(tmp_path_factory) -> Path:
    return build_store(tmp_path_factory.mktemp("golden_targets"), n_spk=4, per=2, targets=True)


def _numbers(res: dict, run_dir: Path) -> dict:
    """What a run computed, without timings, paths or versions."""
    runs = []
    for r in res["runs"]:
        entry = json.loads((run_dir / "folds" / f"seed{r['seed']}_fold{r['fold']}.json").read_text())
        runs.append({"seed": r["seed"], "fold": r["fold"], "metrics": r["metrics"], "best_epoch": r["best_epoch"],
                     "stopped_epoch": r["stopped_epoch"], "monitor": r["monitor"], "transport": r["transport"],
                     "history": [{k: v for k, v in h.items() if k != "lr"} for h in entry["history"]],
                     "test_utt_ids": entry["test_utt_ids"],
                     **{k: entry[k] for k in ("test_proba", "test_dims") if k in entry}})
    fingerprint = json.loads((run_dir / "run.json").read_text())["fingerprint"]
    return {"headline": res["headline"], "classes": res["classes"], "runs": runs, "transport": res["transport"],
            "fingerprint": fingerprint}


def _close(a, b, tol: float, where: str = "") -> None:
    if isinstance(a, dict):
        assert isinstance(b, dict) and sorted(a) == sorted(b), f"{where}: keys {sorted(a)} != {sorted(b)}"
        for k in a:
            _close(a[k], b[k], tol, f"{where}.{k}")
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), f"{where}: length {len(a)} != {len(b)}"
        for i, (x, y) in enumerate(zip(a, b)):
            _close(x, y, tol, f"{where}[{i}]")
    elif isinstance(a, float) or isinstance(b, float):
        assert b is not None and abs(a - b) <= tol * max(1.0, abs(a)), f"{where}: {a} != {b} (golden)"
    else:
        assert a == b, f"{where}: {a!r} != {b!r} (golden)"


def _check(name: str, got: dict, tol: float) -> None:
    path = GOLDEN / f"{name}.json"
    if UPDATE:
        path.write_text(json.dumps(got, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    want = json.loads(path.read_text(encoding="utf-8"))
    _close(want, json.loads(json.dumps(got)), tol, name)


@pytest.mark.parametrize("name", list(CASES))
def test_golden_run(name, store, tmp_path):
    model, encoders, extra, batched = CASES[name]
    cfg = TrainConfig(**{**BASE, **extra})
    res = run_cv(store, encoders, model, cfg, [0, 1] if batched else [0], "speaker-kfold", tmp_path / "run",
                 n_folds=2, batched=batched, workers=1)
    for r in res["runs"]:
        assert r["timings"]["training"] == ("batched" if batched else "single")
    # bf16 rounds differently on CPUs with and without native bfloat16 instructions
    _check(name, _numbers(res, tmp_path / "run"), 2e-2 if cfg.precision == "bf16" else 1e-5)
    def rerun():
        run_cv(store, encoders, model, cfg, [0, 1] if batched else [0], "speaker-kfold", tmp_path / "run",
               n_folds=2, batched=batched, workers=1)

    _check_old_folder_resumes(tmp_path / "run", OLD_FINGERPRINTS[name], rerun)
    _check_old_folder_resumes(tmp_path / "run", V1_FINGERPRINTS[name], rerun, v1=True)


@pytest.mark.parametrize("name", list(TASK_CASES))
def test_golden_batched_task_equals_one_at_a_time(name, target_store, tmp_path):
    """Regression / multitask (every fourth row unlabelled) on the batched path: golden numbers, and
    with dropout 0 the same per-fold metrics, histories and test outputs as one model at a time."""
    model, encoders, extra = TASK_CASES[name]
    cfg = TrainConfig(**{**BASE, "dropout": 0.0, **extra})
    got = {}
    for batched in (True, False):
        out = tmp_path / ("batched" if batched else "single")
        res = run_cv(target_store, encoders, model, cfg, [0, 1], "speaker-kfold", out, n_folds=2, batched=batched,
                     workers=1)
        assert [r["timings"]["training"] for r in res["runs"]] == ["batched" if batched else "single"] * 4
        got[batched] = _numbers(res, out)
    runs = got[True]["runs"]
    assert runs[0]["monitor"] == ("val_ccc" if cfg.task == "regression" else "val_f1_ccc") and "test_dims" in runs[0]
    if cfg.task == "multitask":
        assert -1 in json.loads((tmp_path / "batched" / "folds" / "seed0_fold0.json").read_text())["test_labels"]
    _check(name, got[True], 1e-5)
    _close(got[True], got[False], 1e-4, f"{name}: batched vs one at a time")
    _check_old_folder_resumes(tmp_path / "batched", V1_FINGERPRINTS[name], lambda: run_cv(
        target_store, encoders, model, cfg, [0, 1], "speaker-kfold", tmp_path / "batched", n_folds=2, batched=True,
        workers=1), v1=True)


def _v1_spec(spec: dict) -> dict:
    """A spec as format /1 wrote it: the model config's store position under the key "layer"."""
    mc = dict(spec["model_config"])
    mc["layer"] = mc.pop("position")
    return {**spec, "format": "parrot-ser-runspec/1", "model_config": mc}


def _check_old_folder_resumes(run_dir: Path, old: str, rerun, v1: bool = False) -> None:
    """Make ``run_dir`` look as older code wrote it (old fingerprint everywhere; before RunSpec: no
    spec; ``v1``: the format /1 spec), rerun: it must resume without training and then hold the
    current spec and fingerprint."""
    run = json.loads((run_dir / "run.json").read_text())
    new, spec = run.pop("fingerprint"), run.pop("spec")
    assert spec["model"] == run["model"] and "execution" in spec and new != old
    (run_dir / "run.json").write_text(json.dumps({**run, "fingerprint": old, **({"spec": _v1_spec(spec)} if v1 else {})}))
    entries = sorted((run_dir / "folds").glob("*.json"))
    for p in entries:
        p.write_text(json.dumps({**json.loads(p.read_text()), "fingerprint": old}))
    stamps = [p.stat().st_mtime_ns for p in entries]
    rerun()
    assert [p.stat().st_mtime_ns for p in entries] == stamps  # nothing retrained
    again = json.loads((run_dir / "run.json").read_text())
    assert again["fingerprint"] == new and again["spec"] == spec


def test_golden_grid(store, tmp_path):
    cfg = TrainConfig(**BASE)
    res = run_grid(store, ["logmel", "toy-mamba"], ["cnn", "concat"], cfg, [0], "speaker-kfold", tmp_path / "grid",
                   n_folds=2, pairs="all", batched=False, workers=1)
    got = {}
    for cell in res["cells"]:
        run_dir = tmp_path / "grid" / "cells" / cell["row"] / cell["model"]
        got[f"{cell['row']}/{cell['model']}"] = _numbers(json.loads((run_dir / "results.json").read_text()),
                                                          run_dir)
    _check("grid", got, 1e-5)
