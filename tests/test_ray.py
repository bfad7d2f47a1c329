"""--engine ray on a local Ray instance (ray.init(num_cpus=2), no dashboard): extraction bit-identical
to a local run, a grid with the same RUN_DIRs and numbers as a local one, resume of what a previous
driver wrote. Kept few and small: Ray's start-up is most of their time."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import numpy as np
import pytest

ray = pytest.importorskip("ray")

from typer.testing import CliRunner  # noqa: E402

from parrot_ser.cli.main import app  # noqa: E402
from parrot_ser.corpora import Manifest, scan_corpus  # noqa: E402
from parrot_ser.features import open_store  # noqa: E402


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def stores(emodb_root, tmp_path_factory, local_ray):
    """The same 48 utterances (4 speakers) extracted locally and through Ray actors."""
    man = scan_corpus("emodb", emodb_root)
    keep = [u for spk in ("03", "08", "09", "10") for u in [u for u in man.utterances if u.speaker == spk][:12]]
    d = tmp_path_factory.mktemp("ray")
    mp = d / "m.csv"
    Manifest(man.corpus, man.root, keep).to_csv(mp)
    out = {}
    for engine in ("local", "ray"):
        store = d / engine
        for enc, extra in (("logmel", []), ("ssam-tiny", ["--random-init", "--option", "ssam-tiny:depth=1"])):
            r = CliRunner().invoke(app, ["extract", "--manifest", str(mp), "-e", enc, "--out", str(store), "--quiet",
                                         "--threads", "1", "--chunk-size", "12", "--engine", engine, *extra])
            assert r.exit_code == 0, r.output
        out[engine] = store
    return out


def test_ray_extraction_is_bit_identical_to_local(stores):
    for enc in ("logmel", "ssam-tiny"):
        a, b = open_store(stores["local"]).get(enc), open_store(stores["ray"]).get(enc)
        assert a.utt_ids == b.utt_ids and len(a.utt_ids) == 48
        assert np.array_equal(np.asarray(a.pooled_all()), np.asarray(b.pooled_all()))
        assert a.meta["store_identity"] == b.meta["store_identity"]
    rep = json.loads((stores["ray"] / "ssam-tiny" / "report.json").read_text())
    assert rep["last_run"]["chunks"] == 4 and rep["n_ok"] == 48


def test_ray_grid_same_numbers_as_local_and_resumes(stores, tmp_path):
    common = ["grid", "--features", str(stores["local"]), "--encoders", "logmel,ssam-tiny", "--pairs", "all",
              "--folds", "4", "--epochs", "2", "--seeds", "0", "--threads", "1", "--quiet"]
    local = tmp_path / "local"
    r = CliRunner().invoke(app, [*common, "--models", "fcn,concat", "--workers", "1", "--out", str(local)])
    assert r.exit_code == 0, r.output
    rayd = tmp_path / "ray"
    # A first driver finished only the fcn cells; the next one must keep them and add concat.
    r = CliRunner().invoke(app, [*common, "--models", "fcn", "--engine", "ray", "--out", str(rayd)])
    assert r.exit_code == 0, r.output
    stamp = {p: p.stat().st_mtime_ns for p in (rayd / "cells").rglob("folds/*.json")}
    assert len(stamp) == 8
    r = CliRunner().invoke(app, [*common, "--models", "fcn,concat", "--engine", "ray", "--out", str(rayd)])
    assert r.exit_code == 0, r.output
    assert {p: p.stat().st_mtime_ns for p in stamp} == stamp
    assert (local / "table.csv").read_text() == (rayd / "table.csv").read_text()
    for cell in ("logmel/fcn", "ssam-tiny/fcn", "ssam-tiny+logmel/concat"):
        rows = [list(csv.reader(open(d / "cells" / cell / "predictions.csv", encoding="utf-8"))) for d in (local, rayd)]
        assert rows[0] == rows[1] and len(rows[0]) == 49


def test_nothing_imports_ray_unless_asked():
    code = ("import sys, parrot_ser.cli.main, parrot_ser.training.grid, parrot_ser.features.writer; "
            "print('ray' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout.strip() == "False"
