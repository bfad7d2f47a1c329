"""Whisper encoder speed: ``window=clip`` (the clip's own frames, positional table cut to its length)
against ``window=30s`` (the official path: every clip zero-padded to a 30 s window), same weights,
same clips, interleaved in one run (best of N per batch).

Real weights: ../shared/models/whisper-base (OpenAI whisper-base, float16 files, computed in
float32). Clips: the Emo-DB copy (2.000 s each) and, to show the clip window's cost growing with
length, the same clips concatenated to 8 s. Metrics per length: utt/s and real-time factor
(compute seconds / audio seconds) of each window, ratio = 30 s time / clip time. The downstream
accuracy of the two windows is measured by scripts/emodb_real_table.py (docs/results.md).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from common import best_time, log, record

ROOT = Path(__file__).resolve().parents[1].parent / "shared"
WHISPER = ROOT / "models" / "whisper-base"
EMODB = ROOT / "data" / "emodb"


def run(quick: bool = False):
    if not (WHISPER / "model.safetensors").is_file() or not (EMODB / "wav").is_dir():
        log(f"whisper bench: needs {WHISPER} and {EMODB}; skipped")
        return
    import torch

    from parrot_ser.audio import load_audio
    from parrot_ser.encoders import build_encoder

    n = 4 if quick else 8
    paths = sorted((EMODB / "wav").glob("*.wav"))[:4 * n]
    clips = [load_audio(p, 16000, warn=False) for p in paths]
    sets = {"2s": clips[:n], "8s": [np.concatenate(clips[4 * i:4 * i + 4]) for i in range(n)]}
    encs = {w: build_encoder("whisper-base", checkpoint=str(WHISPER), layers="all", window=w)
            for w in ("clip", "30s")}
    log(f"whisper-base, {torch.get_num_threads()} thread(s), {n} clips per length, batches of {n}")
    for name, waves in sets.items():
        audio_s = sum(len(w) for w in waves) / 16000
        times = {}
        for w, enc in encs.items():  # clip and 30 s measured back to back on the same batch
            times[w] = best_time(lambda enc=enc, waves=waves: enc.encode(waves), repeats=1 if quick else 2, warmup=1)
        for w, t in times.items():
            log(f"{name} clips, window={w}: {t:.2f} s for {len(waves)} clips = {len(waves) / t:.2f} utt/s, "
                f"RTF {t / audio_s:.4f}")
        yield record(f"whisper-base {name} clips, window=clip, time per batch of {n}", times["clip"], "s",
                     baseline=f"window=30s (official padding), same {n} clips", baseline_value=times["30s"])
        yield record(f"whisper-base {name} clips, window=clip, utt/s", n / times["clip"], "utt/s",
                     baseline="window=30s utt/s", baseline_value=n / times["30s"],
                     ratio=times["30s"] / times["clip"])
        yield record(f"whisper-base {name} clips, window=clip, real-time factor", times["clip"] / audio_s, "x",
                     baseline="window=30s real-time factor", baseline_value=times["30s"] / audio_s,
                     ratio=times["30s"] / times["clip"])
