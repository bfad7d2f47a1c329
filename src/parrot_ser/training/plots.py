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


def plot_confusion(cm: np.ndarray, classes: Sequence[str], path: Path, title: str = "") -> Path:
    cm = np.asarray(cm, dtype=np.float64)
    rows = cm.sum(axis=1, keepdims=True)
    norm = np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0)
    n = len(classes)
    fig, ax = plt.subplots(figsize=(1.0 + 0.75 * n, 0.8 + 0.7 * n))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    for i in range(n):
        for j in range(n):
            ax.text(j, i, f"{int(cm[i, j])}", ha="center", va="center", fontsize=8,
                    color="white" if norm[i, j] > 0.5 else "black")
    ax.set_xticks(range(n), classes, rotation=45, ha="right")
    ax.set_yticks(range(n), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(_wrap(title or "confusion (counts; colour = row-normalised recall)", 60), fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_per_class_f1(f1_mean: Sequence[float], f1_std: Sequence[float], classes: Sequence[str],
                      path: Path, title: str = "") -> Path:
    n = len(classes)
    fig, ax = plt.subplots(figsize=(1.5 + 0.6 * n, 3.2))
    ax.bar(range(n), f1_mean, yerr=f1_std, capsize=3, color="tab:blue")
    ax.set_xticks(range(n), classes, rotation=45, ha="right")
    ax.set_ylim(0, 100)
    ax.set_ylabel("F1 (%)")
    ax.set_title(_wrap(title or "per-class F1 (mean +- std over folds)", 60), fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_transport(plan: np.ndarray, path: Path, title: str = "") -> Path:
    plan = np.asarray(plan, dtype=np.float64)
    fig, ax = plt.subplots(figsize=(4.6, 4.0))
    im = ax.imshow(plan, cmap="viridis", aspect="auto")
    ax.set_xlabel("target point (attention branch)")
    ax.set_ylabel("source point (Mamba branch)")
    ax.set_title(_wrap(title or "transport plan", 50), fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
