"""The README's step-2 extraction (`extract -e ssam-tiny -e hubert-base --random-init`) under the default worker
rule against the old one, on an idle machine and on a busy one, in the same run (issue 20, item 1).

- ``old``: one process with one torch thread per core (torch's default before: the OpenMP team that
  ran 6x slower on a busy 2-core machine);
- ``threads1``: one process, ``--threads 1`` (what the issue measured as the good speed when busy);
- ``new``: today's default, one single-threaded worker process per core (``features/pool.py``).

"Busy" = one pure-Python busy loop per core running beside the extraction at the same priority (the
other engineers' jobs on a shared machine). Wall times through the real CLI, worker start included;
ratio = old / new. The load average before each condition is printed: on a shared machine "idle" is
only as idle as the machine was. ``--chunk-size 32`` (16 with --quick) so that the subset has chunks for every worker.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import log, record
from parrot_ser.workers import usable_cores

EMODB = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "emodb"
HOG = "import os\nparent = os.getppid()\nwhile os.getppid() == parent:\n    pass\n"  # ends with the bench


def _extract(manifest: Path, out: Path, chunk: int, *extra: str) -> float:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}  # as the README's users run it
    cmd = [sys.executable, "-m", "parrot_ser.cli.main", "extract", "--manifest", str(manifest), "-e", "ssam-tiny",
           "-e", "hubert-base",
           "--random-init", "--chunk-size", str(chunk), "--quiet", "--out", str(out), *extra]
    t0 = time.perf_counter()
    r = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"extract failed: {r.stderr[-2000:]}")
    return time.perf_counter() - t0


def run(quick: bool = False):
    from parrot_ser.corpora import Manifest, scan_corpus

    if not (EMODB / "wav").is_dir():
        log(f"Emo-DB copy not found at {EMODB}; skipping")
        return
    cores = usable_cores()
    n = 32 if quick else 128
    variants = {"old": ["--workers", "1", "--threads", str(cores)], "threads1": ["--workers", "1", "--threads", "1"],
                "new": []}
    with tempfile.TemporaryDirectory(prefix="bench_extract_workers_") as tmp:
        m = scan_corpus("emodb", EMODB)
        man = Path(tmp) / "m.csv"
        Manifest(m.corpus, m.root, m.utterances[:n]).to_csv(man)
        for cond in ("idle", "busy"):
            hogs = [subprocess.Popen([sys.executable, "-c", HOG]) for _ in range(cores if cond == "busy" else 0)]
            try:
                log(f"{cond}: load average {os.getloadavg()[0]:.1f} before, {len(hogs)} busy loop(s) beside, "
                    f"{cores} cores, {n} clips")
                t = {k: _extract(man, Path(tmp) / f"{cond}-{k}", 16 if quick else 32, *v) for k, v in variants.items()}
            finally:
                for h in hogs:
                    h.kill()
                    h.wait()
            log(f"{cond}: old {t['old']:.1f} s, --threads 1 {t['threads1']:.1f} s, new {t['new']:.1f} s "
                f"({n / t['new']:.2f} utt/s)")
            yield record(f"extract_workers/{cond}/new_vs_old", t["new"], "s",
                         f"one process, {cores} torch threads (the old default)", t["old"], bench="extract_workers")
            yield record(f"extract_workers/{cond}/new_vs_threads1", t["new"], "s", "one process, --threads 1",
                         t["threads1"], bench="extract_workers")
