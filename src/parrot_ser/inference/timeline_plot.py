"""The timeline picture: speech regions, the label band of merged segments, and each label's
probability over time (one point per window), time in mm:ss. Matplotlib with the Agg backend
(no display needed)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

BREAK_SECONDS = 1.0


def mmss(seconds: float, _pos: Any = None) -> str:
    s = max(0, int(round(seconds)))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


def timeline_png(tl: dict, labels: list[str], title_model: str = "") -> bytes:
    """PNG bytes for one ``Timeline.to_dict()``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    dur = max(float(tl["duration"]), 1e-3)
    px_per_s = 12 * 110 * 0.8 / dur  # figure width x dpi x the axes' share, per second
    colours = {lab: plt.get_cmap("tab10")(i % 10) for i, lab in enumerate(labels)}
    fig, (band, curves) = plt.subplots(2, 1, figsize=(12, 4.8), sharex=True,
                                       gridspec_kw={"height_ratios": [1, 2.6], "hspace": 0.08})
    # band: grey = speech regions found by the VAD, coloured = the merged label segments
    for s, e in tl["regions"]:
        band.axvspan(s, e, ymin=0.0, ymax=0.28, color="0.55", lw=0)
    for seg in tl["segments"]:
        band.axvspan(seg["start"], seg["end"], ymin=0.36, ymax=1.0, color=colours[seg["label"]], lw=0)
    for seg in tl["segments"]:  # names after every span, so no later span covers one
        if (seg["end"] - seg["start"]) * px_per_s > 7.5 * len(seg["label"]) + 6:  # when the name fits
            band.text((seg["start"] + seg["end"]) / 2, 0.68, seg["label"], ha="center", va="center",
                      fontsize=9, color="white", fontweight="bold", clip_on=True)
    band.set_yticks([0.14, 0.68], ["speech", "label"])
    band.set_ylim(0, 1)
    band.tick_params(axis="y", length=0)
    # curves: each label's probability at the centre of each window, joined across short pauses
    # (under BREAK_SECONDS), broken across longer silences
    wins = tl["windows"]
    for lab in labels:
        xs: list[float] = []
        ys: list[float] = []
        for i, w in enumerate(wins):
            if i and w["start"] > wins[i - 1]["end"] + BREAK_SECONDS:
                xs.append(float("nan"))
                ys.append(float("nan"))
            xs.append((w["start"] + w["end"]) / 2)
            ys.append(w["probabilities"][lab])
        curves.plot(xs, ys, color=colours[lab], lw=1.6, marker="o" if len(wins) <= 150 else None, ms=3.5,
                    label=lab)
    curves.set_ylim(0, 1)
    curves.set_ylabel("probability")
    curves.set_xlim(0, dur)
    curves.xaxis.set_major_formatter(FuncFormatter(mmss))
    curves.xaxis.set_major_locator(MaxNLocator(nbins=12, steps=[1, 2, 3, 5, 6, 10]))
    curves.set_xlabel("time (mm:ss)")
    curves.grid(alpha=0.3)
    handles = [Patch(color=colours[lab], label=lab) for lab in labels] + [Patch(color="0.55", label="speech (VAD)")]
    fig.legend(handles=handles, loc="center right", frameon=False, fontsize=9)
    name = Path(tl.get("path") or "stream").name
    speech = tl.get("speech_seconds", 0.0)
    fig.suptitle(f"{name}: {mmss(dur)} long, {speech / dur:.0%} speech, {len(tl['segments'])} segments"
                 + (f"   (model: {Path(title_model).name})" if title_model else ""), fontsize=11)
    fig.subplots_adjust(left=0.07, right=0.87, top=0.9, bottom=0.12)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()
