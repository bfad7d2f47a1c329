"""Ray on one machine against the local engine: extraction (Ray actors, the driver writes) and a
small grid (Ray tasks), each measured right after the local run with the same threads. Ray's own
start-up (ray.init) is timed separately; the ratios are local time / Ray time (< 1 = overhead)."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

from common import log, record

ROOT = Path(__file__).resolve().parents[1]
EMODB = ROOT.parent / "shared" / "data" / "emodb"


def run(quick: bool = False) -> Iterable[dict]:
    try:
        import ray
    except ImportError:
        log("ray is not installed (pip install 'parrot-ser[ray]'): skipped")
        return
    from typer.testing import CliRunner

    from parrot_ser.cli.main import app
    from parrot_ser.corpora import Manifest, scan_corpus

    t0 = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    t_init = time.perf_counter() - t0
    log(f"ray.init (local, 2 CPUs): {t_init:.1f} s")
    man = scan_corpus("emodb", EMODB)
    n = 96 if quick else 240
    keep = [u for spk in sorted({u.speaker for u in man.utterances})
            for u in [x for x in man.utterances if x.speaker == spk][: n // 10]]
    try:
        with tempfile.TemporaryDirectory() as tmp:
            mp = Path(tmp) / "m.csv"
            Manifest(man.corpus, man.root, keep).to_csv(mp)
            times = {}
            for engine in ("local", "ray"):
                t0 = time.perf_counter()
                r = CliRunner().invoke(app, ["extract", "--manifest", str(mp), "-e", "ssam-tiny", "--random-init",
                                             "--out", f"{tmp}/{engine}", "--quiet", "--threads", "1",
                                             "--chunk-size", "24", "--engine", engine])
                assert r.exit_code == 0, r.output
                times[engine] = time.perf_counter() - t0
            log(f"extract ssam-tiny ({len(keep)} clips): local 1 thread {times['local']:.1f} s, Ray 2 actors x 1 "
                f"thread {times['ray']:.1f} s")
            yield record(f"extract ssam-tiny random-init, {len(keep)} clips, Ray (2 actors x 1 thread)",
                         times["ray"], "s", baseline="local, 1 thread", baseline_value=times["local"])
            g = {}
            for engine, extra in (("local", ["--workers", "2"]), ("ray", ["--engine", "ray"])):
                t0 = time.perf_counter()
                r = CliRunner().invoke(app, ["grid", "--features", f"{tmp}/local", "--encoders", "ssam-tiny",
                                             "--models", "cnn,fcn", "--seeds", "0,1", "--epochs", "3", "--threads",
                                             "1", "--no-batched", "--quiet", "--out", f"{tmp}/g{engine}", *extra])
                assert r.exit_code == 0, r.output
                g[engine] = time.perf_counter() - t0
            same = Path(f"{tmp}/glocal/table.csv").read_text() == Path(f"{tmp}/gray/table.csv").read_text()
            log(f"grid (2 cells x 10 seed/folds): local 2 workers {g['local']:.1f} s, Ray {g['ray']:.1f} s; "
                f"same table: {same}")
            yield record("grid ssam-tiny x cnn,fcn, 2 seeds x 5 folds, 3 epochs, Ray tasks", g["ray"], "s",
                         baseline="local, 2 worker processes", baseline_value=g["local"])
    finally:
        ray.shutdown()
    yield record("ray.init, local instance, 2 CPUs", t_init, "s")
