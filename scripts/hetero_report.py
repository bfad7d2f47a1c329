"""The report of scripts/emodb_hetero_table.py: reads the finished (seed, fold) entries of every cell
(never trains), writes OUT/hetero_table.md and OUT/hetero_table.json."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from emodb_hetero_table import (
    ENCODERS,
    FRAMES,
    FUSIONS,
    OT_MODELS,
    PAIRS,
    REAL,
    SINGLE_REFS,
    cell_dir,
    cells,
    records,
)
from scipy import stats


def complete_seeds(recs: dict, folds: int) -> list[int]:
    return sorted(s for s in {s for s, _ in recs} if all((s, k) in recs for k in range(folds)))


def summary(recs: dict, seeds: list[int], folds: int) -> dict:
    """accuracy / macro-F1 mean ± sample std over folds (each fold averaged over ``seeds``), as run_cv."""
    from parrot_ser.training.metrics import mean_std

    out = {}
    for m in ("accuracy", "macro_f1"):
        out[m] = mean_std([float(np.mean([recs[(s, k)]["metrics"][m] for s in seeds])) for k in range(folds)])
    out["train_s"] = float(sum(recs[(s, k)]["timings"].get("fit_s", 0) + recs[(s, k)]["timings"].get("predict_s", 0)
                               for s in seeds for k in range(folds)))
    return out


def fmt(h: dict | None) -> str:
    if not h:
        return "not run"
    a, f = h["accuracy"], h["macro_f1"]
    return f"{a['mean']:.2f} ± {a['std']:.2f} / {f['mean']:.2f} ± {f['std']:.2f}"


def correct(recs: dict, seed: int, folds: int) -> dict[str, bool]:
    """Per test utterance of ``seed``: was the prediction right (every utterance is tested once per seed)."""
    out = {}
    for k in range(folds):
        r = recs[(seed, k)]
        proba = r["test_proba"]
        proba = json.loads(proba) if isinstance(proba, str) else proba
        pred = np.asarray(proba).argmax(1)
        out.update({u: bool(p == y) for u, p, y in zip(r["test_utt_ids"], pred, r["test_labels"])})
    return out


def compare(base: dict, other: dict, seed: int, folds: int) -> dict:
    """other - base: McNemar (exact binomial on the discordant utterances of ``seed``) and the
    fold-level paired t-test over the (seed, fold) pairs both have."""
    a, b = correct(base, seed, folds), correct(other, seed, folds)
    common = sorted(set(a) & set(b))
    n01 = sum(1 for u in common if a[u] and not b[u])
    n10 = sum(1 for u in common if b[u] and not a[u])
    p = float(stats.binomtest(min(n01, n10), n01 + n10, 0.5).pvalue) if n01 + n10 else 1.0
    keys = sorted(set(base) & set(other))
    da = np.array([other[k]["metrics"]["accuracy"] - base[k]["metrics"]["accuracy"] for k in keys])
    t_p = float(stats.ttest_1samp(da, 0).pvalue) if len(da) > 1 and da.std() > 0 else float("nan")
    return {"n_utts": len(common), "base_only": n01, "other_only": n10, "mcnemar_p": p,
            "acc_diff": float(da.mean()), "n_pairs": len(keys), "ttest_p": t_p}


def holm(ps: list[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (step-down, monotone)."""
    m = len(ps)
    order = np.argsort(ps)
    adj, run = [0.0] * m, 0.0
    for rank, i in enumerate(order):
        run = max(run, min(1.0, (m - rank) * ps[i]))
        adj[i] = run
    return adj


def ot_stats(recs: dict, seeds: list[int], folds: int) -> str:
    vals = {"eff": [], "frac": [], "rowent": []}
    for s in seeds:
        for k in range(folds):
            t = recs[(s, k)].get("transport") or {}
            eff = t.get("eff_partners", t.get("effective_partners"))  # runs before plan_stats owned it: the old key
            if eff is not None:
                vals["eff"].append(eff)
                vals["frac"].append(t.get("eff_partners_frac", float("nan")))
                vals["rowent"].append(t.get("row_entropy", float("nan")))
    if not vals["eff"]:
        return "| | | |"
    f = lambda v: f"{np.nanmean(v):.2f} ± {np.nanstd(v, ddof=1) if len(v) > 1 else 0:.2f}"  # noqa: E731
    return f"| {f(vals['eff'])} | {f(vals['frac'])} | {f(vals['rowent'])} |"


def _load(out: Path, folds: int) -> dict:
    res = {}
    for c in cells():
        d = cell_dir(out, c)
        recs = records(d) if (d / "folds").is_dir() else {}
        sd = complete_seeds(recs, folds)
        res[(c["row"], c["name"])] = {"recs": recs, "seeds": sd, "cell": c,
                                      "summary": summary(recs, sd, folds) if sd else None}
    return res


def _nested(out: Path, res: dict, folds: int) -> dict:
    from parrot_ser.training.selection import select_nested

    nested = {}
    for e, n in ENCODERS.items():
        for head in ("fcn", "cnn"):
            names = [f"{head}-L{i}" for i in range(n)]
            cands = [res.get((e, nm)) for nm in names]
            if any(c is None or not c["seeds"] for c in cands):
                continue
            seeds = sorted(set.intersection(*[set(c["seeds"]) for c in cands]))
            nested[(e, head)] = select_nested({nm: cell_dir(out, c["cell"]) for nm, c in zip(names, cands)},
                                              seeds, folds) | {"seeds": seeds}
    return nested


def _comparisons(res: dict, folds: int) -> list[dict]:
    rows = []
    for a, b in PAIRS:
        row = f"{a}+{b}"
        for m in FUSIONS:
            other = res[(row, m)]
            refs = ([("concat", res[(row, "concat")])] if m != "concat" else []) + \
                   [(f"{e} alone ({ref})", res[(e, ref)]) for e in (a, b) for ref in SINGLE_REFS]
            if m in ("parrot", "parrot-token"):
                refs.append(("hadamard (= parrot without OT)", res[(row, "hadamard")]))
            if m in ("parrot-token", FRAMES, "gated"):  # our variants against the paper's model
                refs.append(("parrot (the paper's)", res[(row, "parrot")]))
            for label, base in refs:
                if not other["seeds"] or not base["seeds"] or other["seeds"][0] != base["seeds"][0]:
                    rows.append({"pair": row, "model": m, "vs": label, "missing": True})
                    continue
                rows.append({"pair": row, "model": m, "vs": label, "seed": other["seeds"][0],
                             **compare(base["recs"], other["recs"], other["seeds"][0], folds)})
    tested = [r for r in rows if not r.get("missing")]
    for r, p in zip(tested, holm([r["mcnemar_p"] for r in tested])):
        r["holm_p"] = p
    return rows


def write_report(out: Path, args, seeds: list[int]) -> None:
    folds = args.folds
    res = _load(out, folds)
    nested = _nested(out, res, folds)
    comps = _comparisons(res, folds)
    md = ["# Heterogeneous fusion with real pretrained encoders: Emo-DB copy", "",
          f"Made by `python scripts/emodb_hetero_table.py --out {out} --seeds {args.seeds}` ({folds} speaker folds, "
          f"epochs {args.epochs}, patience {args.patience}, conv channels {args.conv_channels} in cnn and every "
          "fusion model; the paper: 64,128). Accuracy / macro-F1 in %, mean ± std over folds (each fold averaged "
          "over the cell's seeds). `seeds` = the seeds whose 5 folds have all finished; `train s` = summed fit + "
          "predict seconds of those runs (1 thread each, on a 2-core CPU shared with other jobs).", "",
          "## Single encoders", "",
          "| encoder | head | layer | seeds | accuracy / macro-F1 | train s |", "|---|---|---|---|---|---|"]
    for e in ENCODERS:
        for head in ("fcn", "cnn"):
            r = res[(e, f"{head}-weighted")]
            md.append(f"| {e} | {head} | learned weighting (all {ENCODERS[e]}) | {','.join(map(str, r['seeds']))} | "
                      f"{fmt(r['summary'])} | {r['summary']['train_s']:.0f} |" if r["summary"] else
                      f"| {e} | {head} | learned weighting | | not run | |")
            n = nested.get((e, head))
            if n:
                ch = ", ".join(f"{k}: {v}" for k, v in sorted(n["choices"].items()))
                md.append(f"| {e} | {head} | chosen on validation speakers per fold ({ch}) | "
                          f"{','.join(map(str, n['seeds']))} | {fmt(n['headline'])} | |")
            elif ENCODERS[e] > 1 or head == "fcn":
                md.append(f"| {e} | {head} | chosen on validation speakers per fold | | not run (per-layer cells "
                          "missing) | |")
    md += ["", "Per-layer cells (inputs of the nested rows; a layer's own test score is NOT a result: picking "
           "the best of these rows would be choosing on the test folds):", "",
           "| encoder | layer | fcn | cnn |", "|---|---|---|---|"]
    for e, n in ENCODERS.items():
        for i in range(n):
            f, c = res[(e, f"fcn-L{i}")], res.get((e, f"cnn-L{i}"))
            md.append(f"| {e} | {i} | {fmt(f['summary'])} | {fmt(c['summary']) if c else ''} |")
    md += ["", "(per-layer cells: seeds and train seconds in hetero_table.json)"]
    md += ["", "## Pairs (layer-weighted inputs; the non-attention encoder is branch p)", "",
           "| pair | " + " | ".join(FUSIONS) + " |", "|---|" + "---|" * len(FUSIONS)]
    for a, b in PAIRS:
        row = f"{a}+{b}"
        cellsx = [res[(row, m)] for m in FUSIONS]
        md.append(f"| {row} | " + " | ".join(
            f"{fmt(c['summary'])} (seeds {','.join(map(str, c['seeds']))}; {c['summary']['train_s']:.0f} s)"
            if c["summary"] else "not run"
            for c in cellsx) + " |")
    md += ["", "`hadamard` is PARROT with its OT branch removed (the same branch encoders; head on R_p * R_q): "
           "the OT ablation. `parrot-token-frames`: parrot-token with OT between the two encoders' frame "
           "sequences (layer-weighted frames).", ""]
    md += _significance_md(comps)
    md += ["", "## OT plans (test batches; mean ± std over (seed, fold) runs)", "",
           "| pair | model | effective partners | as a fraction of the batch / tokens | row entropy |",
           "|---|---|---|---|---|"]
    for a, b in PAIRS:
        for m in OT_MODELS:
            r = res[(f"{a}+{b}", m)]
            if r["seeds"]:
                md.append(f"| {a}+{b} | {m} " + ot_stats(r["recs"], r["seeds"], folds))
    total = sum(r["summary"]["train_s"] for r in res.values() if r["summary"])
    md += ["", f"Summed train time of the finished cells: {total / 3600:.2f} h of single-thread CPU.", ""]
    out.mkdir(parents=True, exist_ok=True)
    (out / "hetero_table.md").write_text("\n".join(md) + "\n", encoding="utf-8")
    js = {"cells": {f"{k[0]}/{k[1]}": {"seeds": v["seeds"], "summary": v["summary"]} for k, v in res.items()},
          "nested": {f"{k[0]}/{k[1]}": {kk: vv for kk, vv in v.items() if kk != "runs"} for k, v in nested.items()},
          "comparisons": comps}
    (out / "hetero_table.json").write_text(json.dumps(js, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {out / 'hetero_table.md'}")


def _significance_md(comps: list[dict]) -> list[str]:
    tested = [r for r in comps if not r.get("missing")]
    missing = [r for r in comps if r.get("missing")]
    md = ["## Paired tests", "",
          f"Family: {len(tested)} comparisons tested (of {len(comps)} planned; {len(missing)} wait for cells), "
          "Holm-corrected over the whole family. Test: McNemar (exact binomial) on the test predictions of the "
          "first seed (each of the 535 clips is tested once per seed); `Δacc` = fold-mean accuracy difference "
          "(fusion - reference) over the (seed, fold) pairs, t-test p uncorrected.", "",
          "| pair | model | vs | Δacc | fusion-only / ref-only right | McNemar p | Holm p | t-test p |",
          "|---|---|---|---|---|---|---|---|"]
    for r in tested:
        star = " **" if r["holm_p"] < 0.05 else ""
        md.append(f"| {r['pair']} | {r['model']} | {r['vs']} | {r['acc_diff']:+.2f} | {r['other_only']}/{r['base_only']} "
                  f"| {r['mcnemar_p']:.3g} | {r['holm_p']:.3g}{star} | {r['ttest_p']:.3g} |")
    wins = [r for r in tested if r["holm_p"] < 0.05]
    beats_both = []
    for a, b in PAIRS:
        for m in FUSIONS:
            sig = [r for r in wins if r["pair"] == f"{a}+{b}" and r["model"] == m and " alone " in r["vs"]
                   and r["acc_diff"] > 0]
            if len(sig) == 2 * len(SINGLE_REFS):
                beats_both.append(f"{a}+{b} {m}")
    md += ["", f"Significant after Holm (p < 0.05): {len(wins)} of {len(tested)}. Fusions significantly above BOTH "
           f"of their single encoders (each with its fcn and its cnn head): {', '.join(beats_both) or 'none'}."]
    return md


__all__ = ["write_report", "REAL", "FRAMES"]
