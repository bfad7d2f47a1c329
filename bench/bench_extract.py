"""Feature extraction throughput on the real Emo-DB copy: our store writer (length buckets, padding
masks, audio prefetch in threads, atomic chunks) against a naive same-run baseline (manifest
order, fixed batches of 16, audio read in the main thread, nothing written).

Emo-DB here is cut to exactly 2.000 s per file, which hides padding; the clips are therefore
cropped to seeded random lengths of 0.6-2.0 s (still 22050 Hz, so resampling stays in the loop).

Metrics per encoder: wall time (ratio = naive / ours), share of wall time outside the model
forward (goal < 5 %), padding waste = share of batched samples that are padding (goal < 10 %),
real-time factor. Encoders: logmel, and a small random-init HF model (wav2vec2 architecture with a
layer-norm CNN + attention mask, hidden 256, 4 layers) built and saved here, loaded offline.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from common import log, record

EMODB = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "emodb"
NAIVE_BATCH = 16


def _cropped_corpus(tmp: Path, n: int):
    from parrot_ser.corpora import Manifest, scan_corpus

    m = scan_corpus("emodb", EMODB)
    rng = np.random.default_rng(0)
    utts = m.utterances[:n]
    for u in utts:
        x, sr = sf.read(str(m.abspath(u)), dtype="float32")
        k = int(sr * rng.uniform(0.6, 2.0))
        dst = tmp / "wav" / Path(u.path).name
        dst.parent.mkdir(parents=True, exist_ok=True)
        sf.write(str(dst), x[:k], sr, subtype="PCM_16")
    return Manifest(m.corpus, tmp, utts)


def _small_hf(tmp: Path) -> str:
    import torch
    from transformers import AutoConfig, AutoModel, Wav2Vec2FeatureExtractor

    torch.manual_seed(0)
    cfg = AutoConfig.for_model("wav2vec2", hidden_size=256, num_hidden_layers=4, num_attention_heads=4,
                               intermediate_size=1024, conv_dim=[256] * 7, feat_extract_norm="layer",
                               do_stable_layer_norm=True, num_conv_pos_embeddings=32, num_conv_pos_embedding_groups=8)
    d = tmp / "small-w2v2"
    AutoModel.from_config(cfg).save_pretrained(d)
    Wav2Vec2FeatureExtractor(do_normalize=True, return_attention_mask=True).save_pretrained(d)
    return str(d)


def _naive(manifest, enc) -> dict:
    """Manifest order, fixed batches, sequential reads: what a first script would do."""
    from parrot_ser.audio import load_audio

    t0 = time.perf_counter()
    fwd = 0.0
    real = padded = 0
    utts = manifest.utterances
    for k in range(0, len(utts), NAIVE_BATCH):
        waves = [load_audio(manifest.abspath(u), enc.sample_rate, warn=False) for u in utts[k:k + NAIVE_BATCH]]
        real += sum(len(w) for w in waves)
        padded += len(waves) * max(len(w) for w in waves)
        t = time.perf_counter()
        enc.encode(waves)
        fwd += time.perf_counter() - t
    wall = time.perf_counter() - t0
    return {"wall": wall, "outside": 1 - fwd / wall, "waste": 1 - real / padded}


def run(quick: bool = False):
    import torch

    from parrot_ser.encoders import build_encoder
    from parrot_ser.features import extract_features

    if not (EMODB / "wav").is_dir():
        log(f"Emo-DB copy not found at {EMODB}; skipping")
        return
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    n_all = 96 if quick else 535
    tmp = Path(tempfile.mkdtemp(prefix="bench_extract_"))
    try:
        corpus = _cropped_corpus(tmp, n_all)
        # the HF model is ~100x slower per clip on 2 CPU cores: a subset keeps the bench a few minutes
        for label, name, ckpt, n in (("logmel", "logmel", None, n_all),
                                     ("small-hf", "xls-r-300m", _small_hf(tmp), 48 if quick else 160)):
            manifest = type(corpus)(corpus.corpus, corpus.root, corpus.utterances[:n])
            enc = build_encoder(name, checkpoint=ckpt)
            enc.encode([np.zeros(16000, np.float32)])  # warm-up (lazy init, allocator)
            base = _naive(manifest, enc)
            t0 = time.perf_counter()
            rep = extract_features(manifest, enc, tmp / f"store-{label}", progress=False, batch_seconds=32.0)
            wall = time.perf_counter() - t0
            last = rep["last_run"]
            audio_s = last["audio_s"]
            fwd = last.get("model_forward_s") or last["encode_s"]
            ours_outside = 1 - fwd / wall
            log(f"{label}: {n} clips ({audio_s:.0f} s audio, threads {torch.get_num_threads()}): ours {wall:.2f} s "
                f"(outside forward {ours_outside:.1%}, padding {last['padding_waste']:.1%}, RTF {wall / audio_s:.4f}); "
                f"naive {base['wall']:.2f} s (outside {base['outside']:.1%}, padding {base['waste']:.1%})")
            b = f"extract/{label}"
            yield record(f"{b}/wall", wall, "s", "naive unbucketed batches of 16, sequential reads", base["wall"],
                         bench="extract")
            yield record(f"{b}/outside_forward_share", 100 * ours_outside, "%", "naive", 100 * base["outside"],
                         bench="extract")
            yield record(f"{b}/padding_waste", 100 * last["padding_waste"], "%", "naive", 100 * base["waste"],
                         bench="extract")
            yield record(f"{b}/real_time_factor", wall / audio_s, "x", bench="extract")
            yield record(f"{b}/utt_per_s", n / wall, "utt/s", "naive", n / base["wall"], bench="extract")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
