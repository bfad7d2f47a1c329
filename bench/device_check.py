"""GPU check, prepared to run as one script on a CUDA machine (it has NOT run yet: no session of
this project has had a GPU so far; docs/benchmarks.md says so).

    python bench/device_check.py [--quick]              # JSON lines on stdout, text on stderr
    python bench/device_check.py --quick --rehearse-on-cpu   # the same code paths on the CPU

``--rehearse-on-cpu`` runs every check with ``cpu`` in place of ``cuda`` (the kernel comparisons of
1. then compare our scan with itself, as mamba-ssm needs CUDA), so the script is tested before a
GPU lease, whose minutes are too few to debug it there. Its numbers mean nothing; its JSON lines
say ``"rehearsal": true``.

Checks, each one JSON line (same contract as bench/run.py) and none stopping the others:
1. mamba-ssm's CUDA selective scan vs our scan (``selective_scan_torch``, run on the same GPU and
   on the CPU) on SSAM (d_inner 3*D, d_state 24) and SSAMBA (d_inner 2*D, d_state 16) shapes:
   max abs difference and speed; causal-conv1d's kernel vs our conv likewise; skipped with a
   reason when the packages are not installed (``pip install 'parrot-ser[cuda]'``).
2. ``parrot-ser extract --device cuda`` on 40 (--quick) or 80 Emo-DB clips (ssam-tiny and a tiny HF model,
   random-init) vs the same on CPU: max abs difference of the stored features, wall times.
3. batched fold x seed training on CUDA (``train --batched --device cuda``, parrot on the features
   of 2.) vs one at a time on CUDA: wall times and the headline difference.
4. Ray with a GPU actor (``extract --engine ray --device cuda``): features equal to 2.'s CUDA run
   to kernel tolerance; skipped when ray is not installed.
5. batched dimensional training on CUDA: a multitask cnn (three arousal levels + arousal/valence
   DERIVED from the acted emotion by scripts/emodb_levels.py, not a real result) on logmel features,
   ``--batched`` vs one at a time on CUDA: wall times and the headline CCC of each.

Needs the Emo-DB copy at ../shared/data/emodb (as the tests). Every subprocess has a timeout, so a
hanging check cannot eat a short device lease (the CPU rehearsal with --quick takes under 1.5 minutes
here; a GPU run has not been timed).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
ROOT = HERE.parent
EMODB = ROOT.parent / "shared" / "data" / "emodb"
DEV = "cuda"  # "cpu" with --rehearse-on-cpu


def emit(metric: str, value, unit: str, **extra) -> None:
    line = {"bench": "device_check", "metric": metric, "value": value, "unit": unit, "baseline": extra.pop(
        "baseline", None), "baseline_value": extra.pop("baseline_value", None), "ratio": extra.pop("ratio", None)}
    line.update(extra)
    if DEV != "cuda":
        line["rehearsal"] = True
    print(json.dumps(line), flush=True)


def _sync() -> None:
    import torch

    if DEV == "cuda":
        torch.cuda.synchronize()


def log(*a) -> None:
    print(*a, file=sys.stderr, flush=True)


def _time_cuda(fn, repeats: int = 5) -> float:
    fn()
    _sync()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        _sync()
        best = min(best, time.perf_counter() - t0)
    return best


def check_env() -> None:
    import torch

    info = {"torch": torch.__version__, "cuda": torch.version.cuda, "available": torch.cuda.is_available()}
    if torch.cuda.is_available():
        info["device"] = torch.cuda.get_device_name(0)
    for mod in ("mamba_ssm", "causal_conv1d", "ray"):
        try:
            m = __import__(mod)
            info[mod] = getattr(m, "__version__", "installed")
        except ImportError:
            info[mod] = None
    log(json.dumps(info))
    emit("environment", info.get("device", "no CUDA"), "", **{"info": info})
    if DEV == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA device: this script is for a GPU machine (--rehearse-on-cpu tests it on the CPU)")


def check_scan(quick: bool) -> None:
    import torch

    from parrot_ser.encoders.mamba import scan

    kern = scan._mamba_ssm_scan()
    if kern is None and DEV == "cuda":
        emit("mamba-ssm selective scan vs ours", None, "", skipped="mamba-ssm not installed")
        return
    g = torch.Generator(device=DEV).manual_seed(0)
    shapes = {"ssam-base (B 8, L 251, d_inner 2304, N 24)": (8, 251, 2304, 24),
              "ssamba-base (B 8, L 513, d_inner 1536, N 16)": (8, 513, 1536, 16)}
    if quick:
        shapes = dict(list(shapes.items())[:1])
    for name, (b, L, di, n) in shapes.items():
        if DEV != "cuda":  # rehearsal: small shapes, the CPU scan would take minutes at full size
            b, L, di = 2, 32, 64
        u = torch.randn(b, L, di, device=DEV, generator=g)
        delta = torch.nn.functional.softplus(torch.randn(b, L, di, device=DEV, generator=g) - 2)
        A = -torch.exp(torch.randn(di, n, device=DEV, generator=g) * 0.5)
        Bm = torch.randn(b, L, n, device=DEV, generator=g)
        Cm = torch.randn(b, L, n, device=DEV, generator=g)
        D = torch.randn(di, device=DEV, generator=g)
        with torch.no_grad():
            y_k = scan.selective_scan(u, delta, A, Bm, Cm, D)  # dispatches to mamba-ssm on CUDA
            y_t = scan.selective_scan_torch(u, delta, A, Bm, Cm, D)  # ours, same GPU
            y_c = scan.selective_scan_torch(u.cpu(), delta.cpu(), A.cpu(), Bm.cpu(), Cm.cpu(), D.cpu())
            args = (u, delta, A, Bm, Cm, D)
            t_k = _time_cuda(lambda a=args: scan.selective_scan(*a))
            t_t = _time_cuda(lambda a=args: scan.selective_scan_torch(*a))
        d_gpu = float((y_k - y_t).abs().max())
        d_cpu = float((y_k.cpu() - y_c).abs().max())
        scale = float(y_k.abs().max())
        log(f"{name}: max |kernel - ours on GPU| {d_gpu:.2e}, vs ours on CPU {d_cpu:.2e} (max |y| {scale:.2e}); "
            f"kernel {t_k * 1e3:.2f} ms, ours on GPU {t_t * 1e3:.2f} ms")
        emit(f"selective scan {name}: max abs diff, mamba-ssm vs ours (GPU)", d_gpu, "", max_abs_y=scale,
             diff_vs_ours_cpu=d_cpu)
        emit(f"selective scan {name}: mamba-ssm time", t_k, "s", baseline="ours on the same GPU",
             baseline_value=t_t, ratio=t_t / t_k)
    conv = scan._causal_conv1d_kernel()
    if conv is None and DEV == "cuda":
        emit("causal-conv1d kernel vs ours", None, "", skipped="causal-conv1d not installed")
        return
    x = torch.randn(8, 251, 2304, device=DEV, generator=g)  # (B, L, D), time-major as the mixer has it
    w = torch.randn(2304, 1, 4, device=DEV, generator=g)  # nn.Conv1d's depthwise weight
    bias = torch.randn(2304, device=DEV, generator=g)
    with torch.no_grad():
        y_k = scan.causal_conv1d_silu(x, w, bias)
        ref = torch.nn.functional.silu(torch.nn.functional.conv1d(x.transpose(1, 2), w, bias, padding=3,
                                                                  groups=2304)[..., :251]).transpose(1, 2)
    emit("causal conv1d + SiLU: max abs diff, kernel vs torch conv1d", float((y_k - ref).abs().max()), "")


def _cli(args: list[str], timeout: int) -> tuple[float, str]:
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "parrot_ser.cli.main", *args], capture_output=True, text=True,
                       timeout=timeout)
    if r.returncode != 0:
        raise RuntimeError(f"parrot-ser {' '.join(args[:1])}: {r.stderr.strip()[-800:]}")
    return time.perf_counter() - t0, r.stdout


def check_pipeline(quick: bool, tmp: Path) -> dict:
    import numpy as np

    from parrot_ser.corpora import Manifest, scan_corpus
    from parrot_ser.features import open_store

    man = scan_corpus("emodb", EMODB)
    keep = [u for spk in sorted({u.speaker for u in man.utterances})
            for u in [x for x in man.utterances if x.speaker == spk][: (4 if quick else 8)]]
    mp = tmp / "m.csv"
    Manifest(man.corpus, man.root, keep).to_csv(mp)
    stores = {}
    for dev in dict.fromkeys(("cpu", DEV)):  # one extraction in the rehearsal, where both are the CPU
        store = tmp / f"feats-{dev}"
        t, _ = _cli(["extract", "--manifest", str(mp), "-e", "ssam-tiny", "-e", "hubert-base", "--random-init",
                     "--out", str(store), "--device", dev, "--quiet"], timeout=600)
        stores[dev] = store
        emit(f"extract ssam-tiny + tiny hubert-base, {len(keep)} clips, --device {dev}", t, "s")
    for enc in ("ssam-tiny", "hubert-base"):
        a = np.asarray(open_store(stores["cpu"]).get(enc).pooled_all())
        b = np.asarray(open_store(stores[DEV]).get(enc).pooled_all())
        emit(f"{enc} pooled features: max abs diff cuda vs cpu", float(np.abs(a - b).max()), "",
             max_abs=float(np.abs(a).max()))
    times, heads = {}, {}
    for flag in ("--batched", "--no-batched"):
        out = tmp / f"run{flag}"
        t, stdout = _cli(["train", "--features", str(stores[DEV]), "--encoder", "ssam-tiny", "--encoder",
                          "hubert-base", "--model", "parrot", "--seeds", "0,1", "--folds", "5", "--epochs",
                          "5" if quick else "15", "--device", DEV, flag, "--workers", "1", "--quiet", "--json",
                          "--out", str(out)], timeout=900)
        times[flag] = t
        heads[flag] = json.loads(stdout)["headline"]["accuracy"]["mean"]
    emit("train parrot on CUDA, 5 folds x 2 seeds, --batched", times["--batched"], "s",
         baseline="--no-batched (one at a time) on CUDA", baseline_value=times["--no-batched"],
         ratio=times["--no-batched"] / times["--batched"],
         accuracy_batched=heads["--batched"], accuracy_single=heads["--no-batched"])
    return stores


def check_ray(tmp: Path, stores: dict) -> None:
    import numpy as np

    from parrot_ser.features import open_store

    try:
        import ray  # noqa: F401
    except ImportError:
        emit("Ray GPU actor extraction", None, "", skipped="ray not installed")
        return
    store = tmp / "feats-ray"
    t, _ = _cli(["extract", "--manifest", str(tmp / "m.csv"), "-e", "ssam-tiny", "--random-init", "--out",
                 str(store), "--device", DEV, "--engine", "ray", "--quiet"], timeout=600)
    a = np.asarray(open_store(stores[DEV]).get("ssam-tiny").pooled_all())
    b = np.asarray(open_store(store).get("ssam-tiny").pooled_all())
    emit("Ray GPU actor extract ssam-tiny: max abs diff vs local CUDA run", float(np.abs(a - b).max()), "",
         wall_s=t)


def check_dimensional(quick: bool, tmp: Path) -> None:
    import csv

    sys.path.insert(0, str(ROOT / "scripts"))
    from emodb_levels import NOTE, rows

    per_speaker: dict[str, int] = {}
    mp = tmp / "levels.csv"
    with open(mp, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["path", "label", "speaker", "arousal", "valence"])
        for r in rows(EMODB):
            if per_speaker.get(r[2], 0) < (8 if quick else 20):  # the first clips of every speaker
                per_speaker[r[2]] = per_speaker.get(r[2], 0) + 1
                w.writerow(r)
    store = tmp / "feats-levels"
    _cli(["extract", str(mp), "--corpus", "csv", "--corpus-option", "targets=arousal,valence", "--corpus-option",
          f"note={NOTE}", "-e", "logmel", "--out", str(store), "--quiet"], timeout=600)
    times, ccc = {}, {}
    for flag in ("--batched", "--no-batched"):
        t, stdout = _cli(["train", "--features", str(store), "--encoder", "logmel", "--model", "cnn", "--task",
                          "multitask", "--seeds", "0,1", "--folds", "5", "--epochs", "5" if quick else "15",
                          "--device", DEV, flag, "--workers", "1", "--quiet", "--json", "--out", str(tmp / f"mt{flag}")],
                         timeout=900)
        times[flag], ccc[flag] = t, json.loads(stdout)["headline"]["ccc"]["mean"]
    emit("train multitask cnn on CUDA, 5 folds x 2 seeds, --batched", times["--batched"], "s",
         baseline="--no-batched (one at a time) on CUDA", baseline_value=times["--no-batched"],
         ratio=times["--no-batched"] / times["--batched"], ccc_batched=ccc["--batched"], ccc_single=ccc["--no-batched"])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer shapes, clips and epochs")
    ap.add_argument("--rehearse-on-cpu", action="store_true",
                    help="every check on the CPU instead of CUDA, to test this script before a GPU lease")
    args = ap.parse_args()
    global DEV
    DEV = "cpu" if args.rehearse_on_cpu else "cuda"
    os.environ.setdefault("PYTHONPATH", str(ROOT / "src"))
    check_env()
    failed = 0
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        stores: dict | None = None
        for name in ("scan", "pipeline", "ray", "dimensional"):
            try:
                if name == "scan":
                    check_scan(args.quick)
                elif name == "pipeline":
                    stores = check_pipeline(args.quick, tmp)
                elif name == "dimensional":
                    check_dimensional(args.quick, tmp)
                elif stores is not None:
                    check_ray(tmp, stores)
            except Exception as e:  # noqa: BLE001 - report and go on with the next check
                failed += 1
                log(f"check {name} FAILED: {e}")
                traceback.print_exc(file=sys.stderr)
                emit(f"check {name}", None, "", failed=str(e)[:500])
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
