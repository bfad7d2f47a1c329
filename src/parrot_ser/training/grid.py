"""The grid: every single encoder with the single-input models, every encoder pair with the fusion
models, all folds and seeds; paper-style tables and paired significance tests against ``concat``.

OUT/
  cells/<row>/<model>/      one run_cv RUN_DIR per cell (resumable; finished cells are skipped)
  table.md, table.csv       rows: encoder or pair; columns: models; cells "acc ± std / F1 ± std"
  cells.csv                 the same numbers in long form (means and stds as numbers)
  significance.md/.csv      each fusion model vs concat on the same pair, folds and seeds
  grid.json                 the plan, per-cell summaries and the random-init warnings
  overview.png              every cell's accuracy and macro-F1 (mean ± std), sorted, chance line

Significance (why these tests): the primary test is the Wilcoxon signed-rank test over the paired
(seed, fold) accuracies (and macro-F1s) of the two models, because there are few pairs (5 folds x
a few seeds) and no reason to assume normal differences; the paired t-test is given alongside. Both
treat the fold pairs as independent, which they are not (training sides overlap), so their p-values
are optimistic (Nadeau & Bengio 2003); with n pairs the smallest two-sided exact Wilcoxon p is 2/2^n
(0.0625 for 5 pairs; significance.md states it for the grid's own n). An
exact McNemar test on the first seed's pooled test predictions (each utterance tested exactly once)
adds a per-utterance view.
"""

from __future__ import annotations

import csv
import itertools
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from parrot_ser.errors import ConfigError
from parrot_ser.files import write_json_atomic
from parrot_ser.notices import untrained_text
from parrot_ser.training.config import TrainConfig
from parrot_ser.training.data import load_features
from parrot_ser.training.run import is_random_init, random_init_label
from parrot_ser.training.rundir import PREDICTIONS_CSV
from parrot_ser.training.spec import Execution, RunSpec

PAIR_MODES = ("all", "hetero", "homo")
BASELINE = "concat"


@dataclass
class Cell:
    row: str  # "A" or "A+B"
    encoders: tuple[str, ...]
    model: str
    pair_kind: str  # "single" | "hetero" | "homo" | "other"

    @property
    def key(self) -> str:
        return f"{self.row}/{self.model}"


# Encoder kinds that are not attention models; in a pair they take the paper's Mamba branch (input 0,
# branch p), in this order of preference (the state-space model first, then its recurrent relative).
SEQUENTIAL_KINDS = ("mamba", "recurrent", "convolutional")
BRANCH_ORDER = (*SEQUENTIAL_KINDS, "handcrafted", "attention")


def encoder_kind(name: str, meta: dict | None = None) -> str:
    """"mamba" | "recurrent" | "convolutional" | "attention" | "handcrafted": from the store meta's
    spec, else the encoder registry."""
    spec = (meta or {}).get("spec") or {}
    if isinstance(spec, dict) and spec.get("kind"):
        return str(spec["kind"])
    try:
        from parrot_ser.encoders import get_spec

        return get_spec(name).kind
    except Exception:  # noqa: BLE001 - unknown/custom encoder name: fall back to its name
        return "mamba" if name.startswith(("ssam", "mamba")) else "attention"


def pair_kind(ka: str, kb: str) -> str:
    """"homo" (same kind), "hetero" (a non-attention PTM - Mamba, recurrent or convolutional - with an
    attention PTM, the paper's thesis) or "other"."""
    if ka == kb:
        return "homo"
    if {ka, kb} & {"attention"} and {ka, kb} & set(SEQUENTIAL_KINDS):
        return "hetero"
    return "other"


def branch_rank(kind: str) -> int:
    return BRANCH_ORDER.index(kind) if kind in BRANCH_ORDER else len(BRANCH_ORDER)


def grid_cells(encoders: Sequence[str], models: Sequence[str], kinds: dict[str, str], pairs: str = "all",
              ) -> list[Cell]:
    """Single encoders x single-input models, then pairs x two-input models. In a pair the Mamba
    encoder comes first (branch p, as in the paper; a recurrent or convolutional one takes its place,
    see BRANCH_ORDER). ``pairs``: all | hetero (one Mamba / recurrent / convolutional PTM + one
    attention PTM) | homo (two encoders of the same kind)."""
    from parrot_ser.fusion import get_model_spec

    if pairs not in PAIR_MODES:
        raise ConfigError(f"--pairs must be one of {', '.join(PAIR_MODES)} (got {pairs!r})")
    if len(set(encoders)) != len(encoders):
        raise ConfigError("an encoder is listed twice in --encoders")
    specs = {m: get_model_spec(m) for m in models}
    singles = [m for m in models if specs[m].n_inputs == 1]
    fusions = [m for m in models if specs[m].n_inputs == 2]
    cells = [Cell(e, (e,), m, "single") for e in encoders for m in singles]
    for a, b in itertools.combinations(encoders, 2):
        ka, kb = kinds[a], kinds[b]
        kind = pair_kind(ka, kb)
        if pairs != "all" and kind != pairs:
            continue
        if branch_rank(kb) < branch_rank(ka):
            a, b = b, a
        cells.extend(Cell(f"{a}+{b}", (a, b), m, kind) for m in fusions)
    if not cells:
        raise ConfigError("the grid is empty: no model fits the encoders / --pairs given")
    return cells


def _fmt(summary: dict) -> str:
    """WA / UA / macro-F1 of a cell (UA next to WA: on imbalanced corpora they differ, and the field
    reports both)."""
    parts = []
    if "accuracy" in summary:
        a, u, f = summary["accuracy"], summary["ua"], summary["macro_f1"]
        parts.append(f"{a['mean']:.2f} ± {a['std']:.2f} / {u['mean']:.2f} ± {u['std']:.2f} / "
                     f"{f['mean']:.2f} ± {f['std']:.2f}")
    if "ccc" in summary:  # dimensional runs: the mean CCC over dimensions
        parts.append(f"CCC {summary['ccc']['mean']:.3f} ± {summary['ccc']['std']:.3f}")
    return " / ".join(parts)


def _paired(a: Sequence[float], b: Sequence[float]) -> dict:
    d = np.asarray(b, dtype=np.float64) - np.asarray(a, dtype=np.float64)
    out = {"n_pairs": int(d.size), "mean_diff": float(d.mean()) if d.size else float("nan"),
           "wilcoxon_p": float("nan"), "ttest_p": float("nan")}
    if d.size >= 2:
        if np.allclose(d, 0):
            out["wilcoxon_p"] = out["ttest_p"] = 1.0
        else:
            out["wilcoxon_p"] = float(stats.wilcoxon(d, zero_method="zsplit").pvalue)
            if np.std(d) > 0:
                out["ttest_p"] = float(stats.ttest_rel(b, a).pvalue)
    return out


def _mcnemar(base_dir: Path, other_dir: Path, seed: int) -> dict:
    def correct(p: Path) -> dict[str, bool]:
        with open(p / PREDICTIONS_CSV, newline="", encoding="utf-8") as f:
            return {r["utt_id"]: r["label"] == r["predicted"] for r in csv.DictReader(f) if int(r["seed"]) == seed}

    a, b = correct(base_dir), correct(other_dir)
    common = sorted(set(a) & set(b))
    n01 = sum(1 for u in common if a[u] and not b[u])  # baseline right, other wrong
    n10 = sum(1 for u in common if b[u] and not a[u])
    p = float(stats.binomtest(min(n01, n10), n01 + n10, 0.5).pvalue) if n01 + n10 else 1.0
    return {"mcnemar_n": len(common), "base_only_correct": n01, "other_only_correct": n10, "mcnemar_p": p}


def significance(cells: Sequence[Cell], results: dict[str, dict], out: Path, seeds: Sequence[int]) -> list[dict]:
    rows = []
    for c in cells:
        if c.model == BASELINE or len(c.encoders) != 2:
            continue
        base = results.get(f"{c.row}/{BASELINE}")
        other = results.get(c.key)
        if base is None or other is None:
            continue
        if base["folds"] != other["folds"]:  # same seeds + protocol + data give the same folds
            continue
        key = lambda r: (r["seed"], r["fold"])  # noqa: E731
        rb = {key(r): r["metrics"] for r in base["runs"]}
        ro = {key(r): r["metrics"] for r in other["runs"]}
        ks = sorted(set(rb) & set(ro))
        row = {"pair": c.row, "model": c.model, "baseline": BASELINE, "n_pairs": len(ks)}
        for name, m in (("acc", "accuracy"), ("f1", "macro_f1"), ("ccc", "ccc")):
            if ks and m in rb[ks[0]]:
                t = _paired([rb[k][m] for k in ks], [ro[k][m] for k in ks])
                row.update({f"{name}_diff": t["mean_diff"], f"{name}_wilcoxon_p": t["wilcoxon_p"],
                            f"{name}_ttest_p": t["ttest_p"]})
        if "acc_diff" in row:  # McNemar needs right/wrong per utterance: class tasks only
            row.update(_mcnemar(out / "cells" / c.row / BASELINE, out / "cells" / c.row / c.model, int(seeds[0])))
        rows.append(row)
    return rows


def run_grid(features_dir: str | Path, encoders: Sequence[str], models: Sequence[str], config: TrainConfig,
             seeds: Sequence[int], protocol: str, out_dir: str | Path, *, n_folds: int = 5,
             pairs: str = "all", progress: Any = None, batched: bool | None = None, workers: int | None = None,
             engine: str = "local", address: str | None = None, folds_file: str | Path | None = None) -> dict:
    """Run every cell (see ``grid_cells``) into OUT/cells/<row>/<model>/ and write the tables and
    significance files (module doc). Every cell is prepared first (identity, folds, run.json), then
    all their missing seed/folds run as one pool of work (``execute.run_prepared``: batched, on every
    core by default, or on Ray); finished seed/folds and cells are skipped (resume).
    ``folds_file``: as in ``run_cv``; the first cell prepared writes it when absent, every cell then
    reads it, so all cells share the same folds (the paired significance tests rely on that)."""
    from parrot_ser.training.data import SERData
    from parrot_ser.training.execute import run_prepared
    from parrot_ser.training.run import finish_run, prepare_run

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    from parrot_ser.features import open_store

    store = open_store(features_dir)
    metas = {}
    for e in encoders:
        if e not in store.encoders:
            raise ConfigError(f"{features_dir}: no features for encoder {e!r}; the store has "
                              f"{', '.join(store.encoders) or 'none'}")
        metas[e] = dict(store.get(e).meta)
    kinds = {e: encoder_kind(e, metas[e]) for e in encoders}
    cells = grid_cells(encoders, models, kinds, pairs)
    total = progress.add_task("grid cells", total=len(cells), rate="") if progress is not None else None
    runs = {}
    by_combo: dict[tuple[str, ...], list[Cell]] = {}
    for c in cells:
        by_combo.setdefault(c.encoders, []).append(c)
    for combo, cs in by_combo.items():
        # one combination in memory at a time, read as its cells' specs read it (inputs, labels, task)
        data = load_features(features_dir, RunSpec.build(cs[0].model, config, encoders=combo))
        light = None
        for c in cs:
            runs[c.key] = p = prepare_run(features_dir, c.encoders, c.model, config, seeds, protocol,
                                           out / "cells" / c.row / c.model, n_folds=n_folds, data=data,
                                           folds_file=folds_file,
                                           execution=Execution.of(config, workers, engine, batched))
            # Tables only need ids, labels and speakers; the features are read again where units run.
            if light is None:
                sd = p.sdata
                light = SERData([], sd.labels, sd.utt_ids, sd.classes, None, sd.speakers, sd.targets, sd.dims,
                                sd.selection)
            p.sdata = light
        del data
    results: dict[str, dict] = {}
    key_of = {id(p): k for k, p in runs.items()}
    shared = _GridProgress(progress, total) if total is not None else progress

    def done(prepared) -> None:
        k = key_of[id(prepared)]
        results[k] = res = finish_run(prepared)
        if total is not None:
            shared.cell_done(_task_name(prepared.model, prepared.encoders), rate=f"{k}: {_fmt(res['headline'])}")

    run_prepared(list(runs.values()), batched=batched, workers=workers, engine=engine, address=address,
              progress=shared, on_run_done=done)
    return write_tables(out, cells, {c.key: results[c.key] for c in cells}, kinds, metas, seeds,
                        corpus=store.manifest.corpus)


def _task_name(model: str, encoders: Sequence[str]) -> str:
    return f"{model} ({'+'.join(encoders)})"  # as execute.run_prepared names each cell's progress task


class _GridProgress:
    """The progress handed to run_prepared: forwards everything, and sets the "grid cells" task to the
    finished cells plus the completed fraction of every running cell, so the overall grid ETA
    (average rate, cli/common.py) moves while cells train instead of jumping once per cell."""

    def __init__(self, progress: Any, grid_task: Any):
        self.progress, self.grid_task = progress, grid_task
        self.cell_tasks: dict[str, Any] = {}
        self.finished: set[str] = set()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.progress, name)

    def add_task(self, description: str, *args: Any, **kwargs: Any) -> Any:
        tid = self.progress.add_task(description, *args, **kwargs)
        self.cell_tasks[description] = tid
        return tid

    def update(self, task_id: Any, **kwargs: Any) -> None:
        self.progress.update(task_id, **kwargs)
        if task_id != self.grid_task:
            self._share()

    def advance(self, task_id: Any, advance: float = 1) -> None:
        self.progress.advance(task_id, advance)
        self._share()

    def cell_done(self, name: str, **fields: Any) -> None:
        self.finished.add(name)
        self._share(**fields)

    def _share(self, **fields: Any) -> None:
        tasks = {t.id: t for t in self.progress.tasks}
        running = sum(min(1.0, tasks[tid].completed / tasks[tid].total)
                      for name, tid in self.cell_tasks.items()
                      if name not in self.finished and tid in tasks and tasks[tid].total)
        grid = tasks.get(self.grid_task)
        cap = grid.total if grid is not None and grid.total else float("inf")
        if len(self.finished) < cap:  # "done" comes with the last cell_done, whose result the line names
            cap -= 1e-6
        self.progress.update(self.grid_task, completed=min(cap, len(self.finished) + running), **fields)


def _wilcoxon_floor(n_pairs: Sequence[int]) -> str:
    """The smallest two-sided exact Wilcoxon p each pair count allows (2 / 2^n): below it no result
    can be "significant", so readers must see it for the n of this grid, not a fixed 5."""
    ns = sorted({int(n) for n in n_pairs if n})
    if not ns:
        return ""
    parts = [f"{n} pairs: {2.0 / 2 ** n:.3g}" for n in ns]
    return f"Smallest possible two-sided exact Wilcoxon p (2/2^n) with {'; '.join(parts)}."


def _write_significance(out: Path, cells: Sequence[Cell], results: dict[str, dict], seeds: Sequence[int]) -> list:
    """significance.csv and significance.md: every fusion model against concat, paired tests."""
    sig = significance(cells, results, out, seeds)
    sig_cols = ["pair", "model", "baseline", "n_pairs", "acc_diff", "acc_wilcoxon_p", "acc_ttest_p", "f1_diff",
                "f1_wilcoxon_p", "f1_ttest_p", "mcnemar_n", "base_only_correct", "other_only_correct",
                "mcnemar_p"]
    if any("ccc_diff" in r for r in sig):
        sig_cols += ["ccc_diff", "ccc_wilcoxon_p", "ccc_ttest_p"]
    if sig and "acc_diff" not in sig[0]:
        return _write_ccc_significance(out, sig, sig_cols)
    with open(out / "significance.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=sig_cols)
        w.writeheader()
        for r in sig:
            w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})
    smd = ["# Fusion models vs concat (paired over the same folds and seeds)", "",
           "Wilcoxon signed-rank over (seed, fold) pairs is the primary test (few pairs, no normality "
           "assumption); paired t-test alongside. Folds share training data, so the pairs are not "
           "independent and both p-values are optimistic. " + _wilcoxon_floor([r["n_pairs"] for r in sig]),
           "McNemar (exact binomial test on the discordant utterances of the first seed's pooled test predictions, "
           "each utterance tested once): column `b/c` = b utterances only concat got right / c utterances only the "
           "fusion model got right; p is the chance of a split at least this uneven if b and c were equally likely.",
           ""]
    smd += ["| pair | model | pairs | Δacc | p Wilcoxon | p t-test | ΔF1 | p Wilcoxon (F1) | McNemar b/c | p McNemar |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    for r in sig:
        smd.append(f"| {r['pair']} | {r['model']} | {r['n_pairs']} | {r['acc_diff']:+.2f} | "
                   f"{r['acc_wilcoxon_p']:.3g} | {r['acc_ttest_p']:.3g} | {r['f1_diff']:+.2f} | "
                   f"{r['f1_wilcoxon_p']:.3g} | {r['base_only_correct']}/{r['other_only_correct']} | "
                   f"{r['mcnemar_p']:.3g} |")
    if not sig:
        smd.append("\n(no fusion model paired with concat in this grid)")
    (out / "significance.md").write_text("\n".join(smd) + "\n", encoding="utf-8")
    return sig


def _mean_std(headline: dict, metric: str) -> list[str]:
    return [f"{headline[metric][s]:.4f}" for s in ("mean", "std")] if metric in headline else ["", ""]


def _write_ccc_significance(out: Path, sig: list[dict], cols: list[str]) -> list[dict]:
    """significance.csv / .md of a regression grid: paired tests on the per-fold mean CCC."""
    with open(out / "significance.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=[c for c in cols if not c.startswith(("acc", "f1", "mcnemar", "base_",
                                                                                "other_"))])
        w.writeheader()
        for r in sig:
            w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})
    smd = ["# Fusion models vs concat (paired over the same folds and seeds): mean CCC", "",
           "Wilcoxon signed-rank over (seed, fold) pairs (primary) and paired t-test; the folds share training "
           "data, so both p-values are optimistic. " + _wilcoxon_floor([r["n_pairs"] for r in sig]), "",
           "| pair | model | pairs | ΔCCC | p Wilcoxon | p t-test |", "|---|---|---|---|---|---|"]
    smd += [f"| {r['pair']} | {r['model']} | {r['n_pairs']} | {r['ccc_diff']:+.3f} | {r['ccc_wilcoxon_p']:.3g} | "
            f"{r['ccc_ttest_p']:.3g} |" for r in sig]
    (out / "significance.md").write_text("\n".join(smd) + "\n", encoding="utf-8")
    return sig


def _plot_overview(out: Path, overview: list[dict], first: dict, seeds: Sequence[int], untrained: list[str],
                   corpus: str | None) -> None:
    """overview.png, titled with the corpus and the settings, with the chance and majority-class lines
    (issue 20, item 12: a chance line alone at 14.3 % on Emo-DB hid that 23.7 % is one class)."""
    from parrot_ser.training.plots import plot_grid_overview

    conf = np.asarray(first.get("confusion_sum") or [[0]], dtype=float)  # rows: true classes
    majority = 100.0 * conf.sum(axis=1).max() / conf.sum() if conf.sum() else None
    cfg = first.get("config") or {}
    settings = ", ".join(x for x in (f"{cfg['epochs']} epochs max" if cfg.get("epochs") else "",
                                     f"patience {cfg['patience']}" if cfg.get("patience") else "") if x)
    title = (f"{corpus or 'features'}: {first['n_utterances']} utterances, {first['n_speakers']} speakers, "
             f"{first['n_folds']} {first['protocol']} folds, {len(seeds)} seed(s), {settings}"
             + (f" (UNTRAINED: {', '.join(untrained)})" if untrained else ""))
    plot_grid_overview(overview, len(first["classes"]), out / "overview.png", title, majority=majority)


def write_tables(out: Path, cells: Sequence[Cell], results: dict[str, dict], kinds: dict[str, str],
                 metas: dict[str, dict], seeds: Sequence[int], corpus: str | None = None) -> dict:
    models = list(dict.fromkeys(c.model for c in cells))
    rows = list(dict.fromkeys(c.row for c in cells))
    row_kind = {c.row: c.pair_kind for c in cells}
    random_init = sorted(e for e, m in metas.items() if is_random_init(m))
    first = next(iter(results.values()))
    head = ["encoders", "kind", *models]
    table = []
    # table.md labels say which encoders are untrained (tiny stand-ins included); the CSV keeps the
    # plain names as machine-readable keys.
    labels = {r: "+".join(random_init_label(e, metas.get(e, {})) for e in r.split("+")) for r in rows}
    for r in rows:
        table.append([r, row_kind[r], *[_fmt(results[f"{r}/{m}"]["headline"]) if f"{r}/{m}" in results else ""
                                        for m in models]])
    with open(out / "table.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(head)
        w.writerows(table)
    with open(out / "cells.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["encoders", "kind", "model", "acc_mean", "acc_std", "ua_mean", "ua_std", "f1_mean", "f1_std",
                    "wf1_mean", "wf1_std", "n_folds", "n_seeds", "ccc_mean", "ccc_std"])
        for c in cells:
            res = results.get(c.key)
            if res is None:
                continue
            h = res["headline"]
            w.writerow([c.row, c.pair_kind, c.model, *[v for m in ("accuracy", "ua", "macro_f1", "weighted_f1")
                                                       for v in _mean_std(h, m)],
                        res["summary"]["n_folds"], res["summary"]["n_seeds"], *_mean_std(h, "ccc")])
    what = ("accuracy (WA) / UA (balanced accuracy) / macro-F1 in %" if first.get("classes") else "")
    if "ccc" in first["headline"]:
        what += (" / " if what else "") + "CCC = concordance correlation, mean over " + ", ".join(
            (first.get("task") or {}).get("dims") or [])
    std_note = (f"{what}, mean ± sample std over {first['n_folds']} "
                f"{first['protocol']} folds (each fold averaged over {len(seeds)} seed(s): {', '.join(map(str, seeds))})")
    md = [f"# Grid: {first['protocol']}, {first['n_utterances']} utterances, {first['n_speakers']} speakers", "",
          std_note, ""]
    overlap = [w for w in first.get("warnings", []) if w.startswith(("NOT speaker-independent", "DATA NOTE"))]
    md += [f"**{w}.**" for w in overlap] + ([""] if overlap else [])
    for e in random_init:
        md.append(f"**{untrained_text(random_init_label(e, metas[e]))}.**")
    if random_init:
        md.append("")
    md += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    md += ["| " + " | ".join([labels[r[0]], *r[1:]]) + " |" for r in table]
    (out / "table.md").write_text("\n".join(md) + "\n", encoding="utf-8")

    sig = _write_significance(out, cells, results, seeds)
    grid = {"cells": [{"row": c.row, "model": c.model, "encoders": list(c.encoders), "kind": c.pair_kind,
                       "dir": f"cells/{c.row}/{c.model}",
                       "headline": results[c.key]["headline"] if c.key in results else None} for c in cells],
            "encoder_kinds": kinds, "random_init_encoders": random_init, "seeds": list(seeds),
            "significance": sig, "std_note": std_note, **({"warnings": overlap} if overlap else {})}
    overview = [{"label": f"{c.model} [{c.row}]", "accuracy": results[c.key]["headline"]["accuracy"],
                 "macro_f1": results[c.key]["headline"]["macro_f1"]} for c in cells
                if c.key in results and "accuracy" in results[c.key]["headline"]]  # class tasks: the overview
    if overview:
        _plot_overview(out, overview, first, seeds, [random_init_label(e, metas[e]) for e in random_init], corpus)
        grid["plots"] = {"overview": "overview.png"}
    write_json_atomic(out / "grid.json", json.loads(json.dumps(grid, default=str)))
    return grid
