"""Run plots with matplotlib's Agg backend (no display needed)."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def _wrap(title: str, width: int) -> str:
    # Long titles (model + encoder pair + fold) would be cut at the figure edge.
    return textwrap.fill(title, width)


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
    rows = plan / np.clip(plan.sum(axis=1, keepdims=True), 1e-30, None)
    partners = float(np.exp(-(rows * np.log(np.clip(rows, 1e-30, None))).sum(axis=1)).mean())
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


def plot_learning_curves(curves: Sequence[tuple[str, Sequence[dict], int | None]], path: Path,
                         title: str = "") -> Path:
    """Per-epoch curves of every seed x fold: losses (train solid, validation dashed) on the left,
    validation accuracy / macro-F1 (class tasks) or mean CCC (dimensional tasks: regression, and
    multitask where it joins macro-F1 as a fraction) on the right; a dot marks the restored (best)
    epoch. ``curves``: (name, history records as in fit_model, best_epoch)."""
    fig, (ax_l, ax_m) = plt.subplots(1, 2, figsize=(10, 3.8))
    colours = plt.get_cmap("tab10")
    recs = [r for _, hist, _ in curves for r in hist]
    has_f1 = any(r.get("val_macro_f1") is not None for r in recs)
    has_ccc = any(r.get("val_ccc") is not None for r in recs)
    # CCC is in [-1, 1]: with both, the F1 curve is drawn as a fraction on the same axis
    f1_scale = 0.01 if has_ccc else 1.0
    for i, (name, hist, best) in enumerate(curves):
        c = colours(i % 10)
        ep = [r["epoch"] for r in hist]
        ax_l.plot(ep, [r.get("train_loss") for r in hist], color=c, lw=1.2, label=name)
        if any(r.get("val_loss") is not None for r in hist):
            ax_l.plot(ep, [r.get("val_loss") for r in hist], color=c, lw=1.0, ls="--")
            main = "val_ccc" if has_ccc else "val_macro_f1"
            scale = 1.0 if has_ccc else f1_scale
            if has_f1:
                ax_m.plot(ep, [_scaled(r.get("val_macro_f1"), f1_scale) for r in hist], color=c,
                          lw=1.2 if not has_ccc else 0.8, ls="-" if not has_ccc else "-.")
                if not has_ccc:
                    ax_m.plot(ep, [r.get("val_accuracy") for r in hist], color=c, lw=0.8, ls=":")
            if has_ccc:
                ax_m.plot(ep, [r.get("val_ccc") for r in hist], color=c, lw=1.2)
            rb = next((r for r in hist if r["epoch"] == best), None) if best else None
            if rb is not None and rb.get(main) is not None:
                ax_m.plot([best], [_scaled(rb[main], scale)], "o", color=c, ms=4)
    ax_l.set_xlabel("epoch")
    ax_l.set_ylabel("loss" if has_ccc else "cross-entropy")
    ax_l.set_title("loss (solid: train, dashed: validation)", fontsize=8)
    ax_m.set_xlabel("epoch")
    if has_ccc:
        ax_m.set_ylabel("validation CCC" + (" / macro-F1 (fraction)" if has_f1 else ""))
        ax_m.set_title("validation (solid: mean CCC" + (", dash-dot: macro-F1 / 100" if has_f1 else "")
                       + "; dot: restored epoch)", fontsize=8)
        ax_m.set_ylim(-0.05, 1.02)
    else:
        ax_m.set_ylabel("validation %")
        ax_m.set_title("validation (solid: macro-F1, dotted: accuracy; dot: restored epoch)", fontsize=8)
        ax_m.set_ylim(0, 102)  # a curve at 100 % stays visible above the frame's top edge
    if len(curves) <= 15:
        ax_l.legend(fontsize=7, ncol=2 if len(curves) > 5 else 1)
    fig.suptitle(_wrap(title or "learning curves (dot: restored best epoch)", 100), fontsize=9)
    return _save(fig, path)


def _scaled(v: float | None, scale: float) -> float | None:
    return None if v is None else v * scale


def plot_grid_overview(cells: Sequence[dict], n_classes: int, path: Path, title: str = "") -> Path:
    """Every grid cell as a pair of horizontal bars (accuracy, macro-F1; mean +- std over folds),
    sorted by mean accuracy, best on top, with the chance level (100 / n_classes %, uniform guessing)
    as a dashed line. ``cells``: {"label", "accuracy": {"mean", "std"}, "macro_f1": {...}}."""
    cells = sorted(cells, key=lambda c: -c["accuracy"]["mean"])
    y = np.arange(len(cells))
    fig, ax = plt.subplots(figsize=(8.5, 0.42 * len(cells) + 1.6))
    for off, m, name in ((-0.2, "accuracy", "accuracy (WA)"), (0.2, "macro_f1", "macro-F1")):
        ax.barh(y + off, [c[m]["mean"] for c in cells], 0.4, xerr=[c[m]["std"] for c in cells], label=name,
                capsize=2)
    chance = 100.0 / max(1, n_classes)
    ax.axvline(chance, color="black", ls="--", lw=1, label=f"chance ({chance:.1f} %)")
    ax.set_yticks(y, [c["label"] for c in cells], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 100)
    ax.set_xlabel("% (mean ± std over speaker-independent folds)")
    ax.set_title(_wrap(title or "grid overview", 90), fontsize=9)
    ax.legend(loc="lower right", fontsize=8)
    return _save(fig, path)
