#!/usr/bin/env python
"""Does `--precision bf16` change the results? One resumable command:

    python scripts/precision_check.py [--root ../shared/data/emodb] [--whisper ../shared/models/whisper-base]
                                      [--out runs/precision] [--seeds 0,1,2] [--models cnn,parrot]

On the Emo-DB copy with REAL features (logmel, and OpenAI whisper-base with window=clip, last
layer, pooled), every model is cross-validated twice with the same seeds and speaker folds: once in
fp32 (the default) and once with --precision bf16, with the README's defaults otherwise (up to 50
epochs, early stopping on validation speakers). Single-input models use whisper-base; two-input
models use logmel + whisper-base. The table (OUT/precision.md) gives accuracy and macro-F1 as mean
± std over the 5 folds (seeds averaged first), the paired difference bf16 - fp32 over the
seeds x folds runs with a Wilcoxon signed-rank p-value, and the training time per epoch: the runs'
recorded fit times (validation included) over the epochs they trained, so early stopping at
another epoch, or a resumed run, does not skew it (both precisions on this machine with the same
default workers: the ratio is the point).
Rerun the same command to resume: finished (seed, fold) runs are kept.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from scipy import stats

ROOT = Path(__file__).resolve().parents[1]
PRECISIONS = ("fp32", "bf16")


def cli(*args: str) -> None:
    r = subprocess.run([sys.executable, "-m", "parrot_ser.cli.main", *args], capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"parrot-ser {' '.join(args[:3])} failed:\n{r.stderr.strip()[-2000:]}")


def per_run(results: dict) -> dict[tuple[int, int], dict]:
    return {(r["seed"], r["fold"]): r["metrics"] for r in results["runs"]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", default=str(ROOT.parent / "shared" / "data" / "emodb"))
    ap.add_argument("--whisper", default=str(ROOT.parent / "shared" / "models" / "whisper-base"))
    ap.add_argument("--out", default="runs/precision")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--models", default="cnn,parrot")
    args = ap.parse_args()
    out = Path(args.out)
    feats = out / "features"
    if not (feats / "whisper-base" / "meta.json").is_file() or not (feats / "logmel" / "meta.json").is_file():
        print(f"extracting logmel and whisper-base (window=clip) into {feats}", file=sys.stderr)
        cli("extract", args.root, "--corpus", "emodb", "-e", "logmel", "-e", "whisper-base",
            "--checkpoint", f"whisper-base={args.whisper}", "--option", "whisper-base:window=clip",
            "--out", str(feats), "--quiet")
    from parrot_ser.fusion import get_model_spec

    rows = []
    for model in args.models.split(","):
        encoders = ["whisper-base"] if get_model_spec(model).n_inputs == 1 else ["logmel", "whisper-base"]
        res, secs = {}, {}
        for prec in PRECISIONS:
            run_dir = out / f"{model}-{prec}"
            print(f"{model} on {'+'.join(encoders)}, {prec} -> {run_dir}", file=sys.stderr)
            enc_args = [a for e in encoders for a in ("--encoder", e)]
            cli("train", "--features", str(feats), *enc_args, "--model", model, "--seeds", args.seeds,
                "--precision", prec, "--out", str(run_dir), "--quiet")
            res[prec] = json.loads((run_dir / "results.json").read_text())
            runs = res[prec]["runs"]
            secs[prec] = sum(r["timings"]["fit_s"] for r in runs) / sum(r["stopped_epoch"] for r in runs)
        a, b = per_run(res["fp32"]), per_run(res["bf16"])
        keys = sorted(set(a) & set(b))
        row = {"model": model, "encoders": "+".join(encoders), "runs": len(keys), "s_per_epoch": secs}
        for metric in ("accuracy", "macro_f1"):
            d = np.array([b[k][metric] - a[k][metric] for k in keys])
            p = 1.0 if np.allclose(d, 0) else float(stats.wilcoxon(d, zero_method="zsplit").pvalue)
            row[metric] = {prec: res[prec]["summary"]["over_folds"][metric] for prec in PRECISIONS}
            row[metric]["diff"] = float(d.mean())
            row[metric]["wilcoxon_p"] = p
        rows.append(row)
    lines = ["| model | features | fp32 accuracy | bf16 accuracy | bf16 - fp32 (p) | fp32 macro-F1 | bf16 macro-F1 | "
             "bf16 - fp32 (p) | training s/epoch fp32 / bf16 |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        cells = [r["model"], r["encoders"]]
        for metric in ("accuracy", "macro_f1"):
            m = r[metric]
            cells += [f"{m[p]['mean']:.2f} ± {m[p]['std']:.2f}" for p in PRECISIONS]
            cells.append(f"{m['diff']:+.2f} (p = {m['wilcoxon_p']:.2f}, {r['runs']} runs)")
        sp = r["s_per_epoch"]
        cells.append(f"{sp['fp32']:.2f} / {sp['bf16']:.2f} ({sp['fp32'] / sp['bf16']:.2f}x)")
        lines.append("| " + " | ".join(cells) + " |")
    table = "\n".join(lines) + "\n"
    (out / "precision.md").write_text(table, encoding="utf-8")
    (out / "precision.json").write_text(json.dumps(rows, indent=2), encoding="utf-8")
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
