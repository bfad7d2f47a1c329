"""Run plots with matplotlib's Agg backend (no display needed)."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402


def _wrap(title: str, width: int) -> str:
    # Long titles (model + encoder pair + fold) would be cut at the figure edge.
    return textwrap.fill(title, width, break_on_hyphens=False)


def _save(fig: plt.Figure, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_confusion(cm: np.ndarray, classes: Sequence[str], path: Path, title: str = "", n_seeds: int = 1) -> Path:
    """Cells show test-utterance counts; with several seeds each utterance is tested once per seed, so
    the counts are averaged over seeds (they then sum to the number of utterances, not n_seeds times
    it). Colour = row-normalised recall, on a labelled colour bar."""
    cm = np.asarray(cm, dtype=np.float64) / max(1, int(n_seeds))
    rows = cm.sum(axis=1, keepdims=True)
    norm = np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0)
    n = len(classes)
    fig, ax = plt.subplots(figsize=(1.6 + 0.75 * n, 1.0 + 0.7 * n))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    for i in range(n):
        for j in range(n):
            v = cm[i, j]
            ax.text(j, i, f"{int(v)}" if n_seeds <= 1 else f"{v:.1f}".rstrip("0").rstrip("."), ha="center",
                    va="center", fontsize=8, color="white" if norm[i, j] > 0.5 else "black")
    ax.set_xticks(range(n), classes, rotation=45, ha="right")
    ax.set_yticks(range(n), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    what = "test utterances" if n_seeds <= 1 else f"test utterances, mean over {n_seeds} seeds"
    ax.set_title(_wrap(f"{title + ': ' if title else ''}counts = {what}", 60), fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.046).set_label("share of the true class (row-normalised recall)", fontsize=8)
    return _save(fig, path)


def plot_per_class_f1(f1_mean: Sequence[float], f1_std: Sequence[float], classes: Sequence[str],
                      path: Path, title: str = "") -> Path:
    n = len(classes)
    fig, ax = plt.subplots(figsize=(1.5 + 0.6 * n, 3.2))
    ax.bar(range(n), f1_mean, yerr=f1_std, capsize=3, color="tab:blue")
    ax.set_xticks(range(n), classes, rotation=45, ha="right")
    ax.set_ylim(0, 100)
    ax.set_ylabel("F1 (%)")
    ax.set_title(_wrap(title or "per-class F1 (mean ± std over folds)", 60), fontsize=9)
    return _save(fig, path)


def plot_scatter(true: np.ndarray, pred: np.ndarray, dims: Sequence[str], ccc: Sequence[float], path: Path,
                 title: str = "") -> Path:
    """Predicted against true value, one panel per dimension, in the data's scale; the diagonal is a
    perfect prediction and each panel names its CCC over the points shown."""
    n = len(dims)
    fig, axes = plt.subplots(1, n, figsize=(3.4 * n + 0.4, 3.6), squeeze=False)
    for i, (ax, d) in enumerate(zip(axes[0], dims)):
        t, q = true[:, i], pred[:, i]
        lo, hi = float(min(t.min(), q.min())), float(max(t.max(), q.max()))
        pad = 0.05 * (hi - lo or 1.0)
        ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], color="0.6", lw=1, ls="--")
        ax.scatter(t, q, s=8, alpha=0.5, color="tab:blue", edgecolors="none")
        ax.set_xlim(lo - pad, hi + pad)
        ax.set_ylim(lo - pad, hi + pad)
        ax.set_aspect("equal")
        ax.set_xlabel(f"true {d}")
        ax.set_ylabel(f"predicted {d}")
        ax.set_title(f"{d}: CCC {ccc[i]:.3f} over these points", fontsize=9)
    fig.suptitle(_wrap(title, 30 * n), fontsize=9)
    return _save(fig, path)


def plot_transport(plan: np.ndarray, path: Path, title: str = "", *, source: str = "source point (Mamba branch)",
                   target: str = "target point (attention branch)") -> Path:
    """The plan as a ratio to the uniform plan 1/(n m) (n x m valid points; all-zero rows and columns
    are padding and dropped): 1 = uniform, so a near-uniform plan shows as an even mid-colour, which is
    what the paper's batch OT tends to (SPEC section 2)."""
    plan = np.asarray(plan, dtype=np.float64)
    keep_r, keep_c = plan.sum(axis=1) > 0, plan.sum(axis=0) > 0
    plan = plan[keep_r][:, keep_c]
    n, m = plan.shape
    uniform = 1.0 / (n * m)
    ratio = plan / max(plan.sum(), 1e-30) / uniform
    from parrot_ser.fusion.sinkhorn import plan_stats  # the one owner of transport statistics

    partners = plan_stats(torch.from_numpy(plan))["eff_partners"]
    from matplotlib.colors import TwoSlopeNorm

    hi = max(float(ratio.max()), 1.0 + 1e-6)
    fig, ax = plt.subplots(figsize=(5.6, 5.0))
    im = ax.imshow(ratio, cmap="RdBu_r", aspect="auto", norm=TwoSlopeNorm(vmin=0.0, vcenter=1.0, vmax=max(hi, 2.0)))
    ax.set_xlabel(target)
    ax.set_ylabel(source)
    stats = (f"{n} x {m} plan; uniform 1/(n·m) = {uniform:.3g}; entries {ratio.min():.2f} to {ratio.max():.2f} "
             f"x uniform; effective partners {partners:.1f} of {m}")
    ax.set_title("\n".join(p for p in (_wrap(title, 62) if title else "", _wrap(stats, 62)) if p), fontsize=8)
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.yaxis.get_major_locator().set_params(integer=True)
    fig.colorbar(im, ax=ax, fraction=0.046).set_label("plan entry ÷ uniform 1/(n·m)  (1 = uniform)", fontsize=8)
    return _save(fig, path)


def plot_learning_curves(curves: Sequence[tuple[int, int, Sequence[dict], int | None]], path: Path,
                         title: str = "") -> Path:
    """Per-epoch curves of every seed x fold: losses (train solid, validation dashed) on the left,
    validation macro-F1 on the right (and accuracy, dotted, when there are at most 5 runs), or the
    validation mean CCC for dimensional runs (multitask: CCC solid, macro-F1 / 100 dash-dot); a dot
    marks the restored (best) epoch. One colour per fold, the same for its seeds (15 runs of 5 folds x
    3 seeds in 15 colours could not be told apart: tab10 repeats), the legend below the panels, never
    over a curve, and whole epochs on the x axis. ``curves``: (seed, fold, history records as in
    fit_model, best_epoch)."""
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator

    folds = sorted({fold for _, fold, _, _ in curves})
    seeds = sorted({seed for seed, _, _, _ in curves})
    colours = plt.get_cmap("tab10" if len(folds) <= 10 else "turbo")
    colour = {f: colours(i if len(folds) <= 10 else i / max(1, len(folds) - 1)) for i, f in enumerate(folds)}
    has_ccc = any(r.get("val_ccc") is not None for _, _, hist, _ in curves for r in hist)
    with_acc = len(curves) <= 5 and not has_ccc
    fig, (ax_l, ax_m) = plt.subplots(1, 2, figsize=(10, 4.2))
    for _, fold, hist, best in curves:
        _draw_run(ax_l, ax_m, colour[fold], hist, best, has_ccc, with_acc)
    for ax in (ax_l, ax_m):
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax_l.set_ylabel("loss" if has_ccc else "cross-entropy")
    ax_l.set_title("loss (solid: train, dashed: validation)", fontsize=8)
    if has_ccc:
        ax_m.set_ylabel("validation CCC")
        both = any(r.get("val_macro_f1") is not None for _, _, hist, _ in curves for r in hist)
        ax_m.set_title("validation mean CCC" + (" (dash-dot: macro-F1 / 100)" if both else "")
                       + "; dot: restored epoch", fontsize=8)
        ax_m.set_ylim(-0.05, 1.02)
    else:
        ax_m.set_ylabel("validation %")
        ax_m.set_title("validation macro-F1" + (" (solid; dotted: accuracy)" if with_acc else "")
                       + "; dot: restored epoch", fontsize=8)
        ax_m.set_ylim(0, 102)  # a curve at 100 % stays visible above the frame's top edge
    handles = [Line2D([], [], color=colour[f], lw=2, label=f"fold {f}") for f in folds]
    per = f"one line per seed ({', '.join(map(str, seeds))})" if len(seeds) > 1 else f"seed {seeds[0]}" if seeds else ""
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 10), fontsize=8, frameon=False,
               title=per, title_fontsize=8)
    fig.suptitle(_wrap(title or "learning curves (dot: restored best epoch)", 100), fontsize=9)
    fig.tight_layout(rect=(0, 0.1 + 0.04 * ((len(handles) - 1) // 10), 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _draw_run(ax_l, ax_m, c, hist: Sequence[dict], best: int | None, has_ccc: bool,  # noqa: ANN001
              with_acc: bool) -> None:
    """One seed x fold's curves on the two panels."""
    ep = [r["epoch"] for r in hist]
    ax_l.plot(ep, [r.get("train_loss") for r in hist], color=c, lw=1.1, alpha=0.85)
    if not any(r.get("val_loss") is not None for r in hist):
        return
    ax_l.plot(ep, [r.get("val_loss") for r in hist], color=c, lw=0.9, ls="--", alpha=0.85)
    main = "val_ccc" if has_ccc else "val_macro_f1"
    if has_ccc:
        ax_m.plot(ep, [r.get("val_ccc") for r in hist], color=c, lw=1.1, alpha=0.85)
        if any(r.get("val_macro_f1") is not None for r in hist):
            ax_m.plot(ep, [None if r.get("val_macro_f1") is None else r["val_macro_f1"] / 100 for r in hist],
                      color=c, lw=0.8, ls="-.")
    else:
        ax_m.plot(ep, [r.get("val_macro_f1") for r in hist], color=c, lw=1.1, alpha=0.85)
        if with_acc:
            ax_m.plot(ep, [r.get("val_accuracy") for r in hist], color=c, lw=0.8, ls=":")
    rb = next((r for r in hist if r["epoch"] == best), None) if best else None
    if rb is not None and rb.get(main) is not None:
        ax_m.plot([best], [rb[main]], "o", color=c, ms=4)


def plot_grid_overview(cells: Sequence[dict], n_classes: int, path: Path, title: str = "",
                       majority: float | None = None) -> Path:
    """Every grid cell as a pair of horizontal bars (accuracy, macro-F1; mean +- std over folds),
    sorted by mean accuracy, best on top, with two reference lines: chance (100 / n_classes %, uniform
    guessing) and, when given, ``majority`` (%: the accuracy of always answering the largest class,
    23.7 % on Emo-DB where uniform guessing is 14.3 %). ``cells``: {"label", "accuracy": {"mean",
    "std"}, "macro_f1": {...}}."""
    cells = sorted(cells, key=lambda c: -c["accuracy"]["mean"])
    y = np.arange(len(cells))
    fig, ax = plt.subplots(figsize=(8.5, 0.42 * len(cells) + 2.1))
    for off, m, name in ((-0.2, "accuracy", "accuracy (WA)"), (0.2, "macro_f1", "macro-F1")):
        ax.barh(y + off, [c[m]["mean"] for c in cells], 0.4, xerr=[c[m]["std"] for c in cells], label=name,
                capsize=2)
    chance = 100.0 / max(1, n_classes)
    ax.axvline(chance, color="black", ls="--", lw=1, label=f"chance: uniform guess ({chance:.1f} %)")
    if majority is not None:
        ax.axvline(majority, color="dimgray", ls=":", lw=1.3,
                   label=f"accuracy of always the majority class ({majority:.1f} %)")
    ax.set_yticks(y, [c["label"] for c in cells], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 100)
    ax.set_xlabel("% (mean ± std over speaker-independent folds)")
    ax.set_title(_wrap(title or "grid overview", 90), fontsize=9)
    fig.legend(*ax.get_legend_handles_labels(), loc="lower center", ncol=2, fontsize=7, frameon=False)
    fig.tight_layout(rect=(0, 0.45 / (0.42 * len(cells) + 2.1), 1, 1))  # the legend below, never over a bar
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
