"""The timeline picture: speech regions, the label band of merged segments, each label's
probability over time and each dimension's value (models trained on dimensions; one point per
window), time in mm:ss. Matplotlib with the Agg backend
(no display needed)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

BREAK_SECONDS = 1.0


def mmss(seconds: float, _pos: Any = None) -> str:
    s = max(0, int(round(seconds)))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


def timeline_png(tl: dict, labels: list[str], title_model: str = "", dims: list[str] | None = None) -> bytes:
    """PNG bytes for one ``Timeline.to_dict()``. Panels: the band (speech regions, and the merged
    label segments when the model has labels), each label's probability, each dimension's value
    (models trained on dimensions; a regression-only model has no label band or probability panel)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    dims = list(dims or [])
    dur = max(float(tl["duration"]), 1e-3)
    colours = {lab: plt.get_cmap("tab10")(i % 10) for i, lab in enumerate(labels)}
    # dimensions take the palette's next colours, so no curve shares a label's colour
    dim_colours = {d: plt.get_cmap("tab10")((len(labels) + i) % 10) for i, d in enumerate(dims)}
    ratios = [1.0 if labels else 0.45] + ([2.6] if labels else []) + ([2.0] if dims else [])
    fig, axes = plt.subplots(len(ratios), 1, figsize=(12, 1.3 + 1.35 * sum(ratios)), sharex=True,
                             gridspec_kw={"height_ratios": ratios, "hspace": 0.08})
    band, rest = axes[0], list(axes[1:])
    _band(band, tl, colours, px_per_s=12 * 110 * 0.8 / dur)
    handles = [Patch(color=colours[lab], label=lab) for lab in labels]
    if labels:
        ax = rest.pop(0)
        _curves(ax, tl["windows"], labels, colours, lambda w, lab: w["probabilities"][lab])
        ax.set_ylim(0, 1)
        ax.set_ylabel("probability")
    if dims:
        ax = rest.pop(0)
        _curves(ax, tl["windows"], dims, dim_colours, lambda w, d: w["dimensions"][d], linestyle="--")
        ax.set_ylabel("dimensions\n(data's scale)")
        handles += [Line2D([], [], color=dim_colours[d], ls="--", lw=1.6, label=d) for d in dims]
    last = axes[-1]
    last.set_xlim(0, dur)
    last.xaxis.set_major_formatter(FuncFormatter(mmss))
    last.xaxis.set_major_locator(MaxNLocator(nbins=12, steps=[1, 2, 3, 5, 6, 10]))
    last.set_xlabel("time (mm:ss)")
    handles.append(Patch(color="0.55", label="speech (VAD)"))
    fig.legend(handles=handles, loc="center right", frameon=False, fontsize=9)
    name = Path(tl.get("path") or "stream").name
    speech = tl.get("speech_seconds", 0.0)
    fig.suptitle(f"{name}: {mmss(dur)} long, {speech / dur:.0%} speech, {len(tl['segments'])} segments"
                 + (f"   (model: {Path(title_model).name})" if title_model else ""), fontsize=11)
    fig.subplots_adjust(left=0.08, right=0.87, top=1 - 0.45 / fig.get_figheight(),
                        bottom=0.55 / fig.get_figheight())
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()


def _band(band: Any, tl: dict, colours: dict, px_per_s: float) -> None:
    """Grey = speech regions found by the VAD; coloured = the merged label segments (labelled models)."""
    labelled = [seg for seg in tl["segments"] if seg.get("label") is not None]
    for s, e in tl["regions"]:
        band.axvspan(s, e, ymin=0.0 if labelled else 0.2, ymax=0.28 if labelled else 0.8, color="0.55", lw=0)
    for seg in labelled:
        band.axvspan(seg["start"], seg["end"], ymin=0.36, ymax=1.0, color=colours[seg["label"]], lw=0)
    for seg in labelled:  # names after every span, so no later span covers one
        if (seg["end"] - seg["start"]) * px_per_s > 7.5 * len(seg["label"]) + 6:  # when the name fits
            band.text((seg["start"] + seg["end"]) / 2, 0.68, seg["label"], ha="center", va="center",
                      fontsize=9, color="white", fontweight="bold", clip_on=True)
    band.set_yticks([0.14, 0.68] if labelled else [0.5], ["speech", "label"] if labelled else ["speech"])
    band.set_ylim(0, 1)
    band.tick_params(axis="y", length=0)


def _curves(ax: Any, wins: list[dict], names: list[str], colours: dict, value: Any, linestyle: str = "-") -> None:
    """One curve per name: its value at the centre of each window, joined across short pauses
    (under BREAK_SECONDS), broken across longer silences."""
    for name in names:
        xs: list[float] = []
        ys: list[float] = []
        for i, w in enumerate(wins):
            if i and w["start"] > wins[i - 1]["end"] + BREAK_SECONDS:
                xs.append(float("nan"))
                ys.append(float("nan"))
            xs.append((w["start"] + w["end"]) / 2)
            ys.append(value(w, name))
        ax.plot(xs, ys, color=colours[name], lw=1.6, ls=linestyle, marker="o" if len(wins) <= 150 else None,
                ms=3.5, label=name)
    ax.grid(alpha=0.3)
