"""Emotion over time on a long recording (issue 18): `analyze` against today's `predict --window 10`.

Recording: real Emo-DB clips (2 s each) with silences between them (low noise, 0.5-3.5 s, seeded), so
that about half of the time is speech; 30 min (--quick: 4 min). Model: PARROT-token on whisper-base
(real weights, ../shared/models/whisper-base) + logmel, trained on all 535 Emo-DB clips and exported
with --refit (built once through the CLI into bench/.cache/timeline/; the memory measurement uses a
logmel fcn model, see peak_memory). One run measures:

- speed: the whole analysis (VAD + 2 s windows of speech, encoded in batches) against
  ``predict --window 10`` (10 s windows every 5 s over the whole file, silence included) on the
  same file and model; ratio = predict time / analysis time; how often the two agree on the
  dominant label of each speech region (predict: the label of the windows covering it, by overlap);
  and how often each finds a clip's own Emo-DB label (the clips are the model's training data, so
  this is not an accuracy, but both paths see the same advantage);
- the real-time factor of the analysis (analysis seconds / audio seconds);
- peak memory (VmHWM, own process each, the peak reset after the model is loaded) of the analysis
  of a 3-hour file against a 10-minute one (--quick: 30 min against 5 min);
- streaming: a 3-minute excerpt (--quick: 1 min) fed in 100 ms chunks at real-time pace; latency =
  wall time from feeding the chunk that holds a segment's end to the segment coming out; median, p95.

Threads: torch's default on this machine (printed); the machine is shared, so timings are noisy."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from common import log, record

HERE = Path(__file__).resolve().parent
SHARED = HERE.parent.parent / "shared"
WHISPER = SHARED / "models" / "whisper-base"
EMODB = SHARED / "data" / "emodb"
CACHE = HERE / ".cache" / "timeline"
SR = 16000


def _cli(*args: str) -> None:
    cmd = [sys.executable, "-m", "parrot_ser.cli.main", *args]
    log("$ parrot-ser " + " ".join(args))
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)


def build_model(kind: str = "whisper") -> Path:
    """Through the CLI, cached. ``whisper``: PARROT-token on whisper-base + logmel, all of Emo-DB,
    refit. ``logmel``: fcn on logmel (for the memory measurement, see peak_memory)."""
    model = CACHE / f"model-{kind}"
    if (model / "bundle.json").is_file():
        return model
    feats, run = CACHE / "feats", CACHE / f"run-{kind}"
    if kind == "whisper":
        _cli("extract", str(EMODB), "--corpus", "emodb", "-e", "whisper-base", "-e", "logmel", "--checkpoint",
             f"whisper-base={WHISPER}", "--out", str(feats), "--threads", "1")
        encoders = ["--encoder", "whisper-base", "--encoder", "logmel", "--model", "parrot-token"]
    else:
        _cli("extract", str(EMODB), "--corpus", "emodb", "-e", "logmel", "--out", str(feats), "--threads", "1")
        encoders = ["--encoder", "logmel", "--model", "fcn"]
    _cli("train", "--features", str(feats), *encoders, "--folds", "5", "--epochs", "30", "--out", str(run),
         "--quiet")
    _cli("export", str(run), "--out", str(model), "--refit")
    return model


def make_recording(path: Path, seconds: float, seed: int = 0) -> list[tuple[float, float]]:
    """Write ``seconds`` of clips + silences to ``path`` block by block (nothing long in memory);
    returns the clips' (start, end) seconds."""
    import soundfile as sf

    from parrot_ser.audio import load_audio

    paths = sorted((EMODB / "wav").glob("*.wav"))
    clips = [load_audio(p, SR, warn=False) for p in paths]
    rng = np.random.default_rng(seed)
    truth, t = [], 0
    with sf.SoundFile(str(path), "w", SR, 1, "PCM_16") as f:
        while t < seconds * SR:
            gap = int(rng.uniform(0.5, 3.5) * SR)
            f.write((1e-4 * rng.standard_normal(gap)).astype(np.float32))
            k = int(rng.integers(len(clips)))
            f.write(clips[k])
            truth.append(((t + gap) / SR, (t + gap + len(clips[k])) / SR, paths[k].stem))
            t += gap + len(clips[k])
    return truth


def clip_labels() -> dict[str, str]:
    """Emo-DB file stem -> the corpus label (the model's label set)."""
    from parrot_ser.corpora import scan_corpus

    man = scan_corpus("emodb", str(EMODB))
    return {Path(u.path).stem: u.label for u in man.utterances}


def _dominant_predict(windows: list, start: float, end: float) -> str | None:
    cover: dict[str, float] = {}
    for w in windows:
        ov = min(end, w.end) - max(start, w.start)
        if ov > 0:
            cover[w.label] = cover.get(w.label, 0.0) + ov
    return max(cover, key=cover.__getitem__) if cover else None


def speed(model_dir: Path, quick: bool) -> list[dict]:
    from parrot_ser.audio import load_audio
    from parrot_ser.inference import load_model

    pred = load_model(model_dir, quiet=True)
    minutes = 4 if quick else 30
    path = CACHE / f"speech_{minutes}min.wav"
    truth = make_recording(path, minutes * 60)
    dur = sf_duration(path)
    log(f"recording {path.name}: {dur / 60:.1f} min, {sum(e - s for s, e, _ in truth) / dur:.0%} speech, "
        f"{len(truth)} clips; torch threads {_threads()}")
    pred.predict(sorted((EMODB / "wav").glob("*.wav"))[0])  # warm-up: first calls build lazy state
    t0 = time.perf_counter()
    tl = pred.analyze(path, vad="silero")
    t_an = time.perf_counter() - t0
    t0 = time.perf_counter()
    wave = load_audio(path, pred.sample_rate, warn=False)
    base = pred.predict_waveforms([wave], [str(path)], window=10.0)[0]
    t_pr = time.perf_counter() - t0
    del wave
    pairs = [(tl.dominant(s, e), _dominant_predict(base.windows, s, e)) for s, e in tl.regions]
    agree = sum(a == b for a, b in pairs) / max(len(pairs), 1)
    # each clip's own label (training data of this model: both paths gain equally from that)
    labels = clip_labels()
    hit_an = np.mean([tl.dominant(s, e) == labels[stem] for s, e, stem in truth])
    hit_pr = np.mean([_dominant_predict(base.windows, s, e) == labels[stem] for s, e, stem in truth])
    log(f"analyze {t_an:.1f} s ({len(tl.windows)} windows in {len(tl.regions)} regions) vs predict --window 10 "
        f"{t_pr:.1f} s ({len(base.windows)} windows): {t_pr / t_an:.2f}x; dominant label agrees on "
        f"{agree:.0%} of {len(pairs)} regions; real-time factor {t_an / dur:.4f}; each clip's label found by "
        f"analyze {hit_an:.0%}, by predict --window 10 {hit_pr:.0%}")
    return [record("analyze_time", t_an, "s", "predict --window 10", t_pr),
            record("dominant_label_agreement", 100 * agree, "%"),
            record("clip_label_found_analyze", 100 * hit_an, "%", "predict --window 10", 100 * hit_pr,
                   ratio=hit_an / max(hit_pr, 1e-9)),
            record("analyze_real_time_factor", t_an / dur, "x"),
            record("speech_regions_found_vs_clips", len(tl.regions), "regions", "clips in the recording",
                   len(truth), ratio=len(tl.regions) / len(truth))]


def sf_duration(path: Path) -> float:
    import soundfile as sf

    return sf.info(str(path)).duration


def _threads() -> int:
    import torch

    return torch.get_num_threads()


def peak_memory(model_dir: Path, quick: bool) -> list[dict]:
    """Measured with the logmel model: what grows with a file's length is the pipeline's (decoded
    blocks, VAD state, window buffer, the timeline's records), not the encoder's, whose weights and
    per-batch activations are a constant; a smaller constant makes the ratio the stricter test, and
    the 3-hour file takes minutes instead of most of an hour with whisper-base on this machine."""
    short, long = (5, 30) if quick else (10, 180)
    rss = {}
    for minutes in (short, long):
        path = CACHE / f"speech_{minutes}min.wav"
        if not path.is_file():
            make_recording(path, minutes * 60, seed=minutes)
        out = subprocess.run([sys.executable, __file__, "--rss", str(model_dir), str(path)], check=True,
                             stdout=subprocess.PIPE, text=True).stdout
        rss[minutes] = json.loads(out.strip().splitlines()[-1])
        r = rss[minutes]
        log(f"{minutes} min file: peak RSS during the analysis {r['max_rss_mb']:.0f} MB (after loading the model: "
            f"{r['loaded_mb']:.0f} MB{'' if r['peak_reset'] else '; peak not resettable here'}), analysed in "
            f"{r['seconds']:.0f} s")
    a, b = rss[short]["max_rss_mb"], rss[long]["max_rss_mb"]
    return [record(f"peak_rss_{long}min_vs_{short}min_logmel", b, "MB", f"{short} min file", a, ratio=b / a)]


def _hwm_mb() -> float:
    """Peak resident memory (VmHWM) of this process in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _rss_child(model_dir: str, path: str) -> None:
    from parrot_ser.inference import load_model

    pred = load_model(model_dir, quiet=True)
    pred.predict(sorted((EMODB / "wav").glob("*.wav"))[0])  # warm-up
    loaded = _hwm_mb()
    try:  # Linux: reset the peak, so the next reading is the analysis's own (not the imports')
        Path("/proc/self/clear_refs").write_text("5")
        reset = True
    except OSError:
        reset = False
    t0 = time.perf_counter()
    pred.analyze(path, vad="silero")
    print(json.dumps({"max_rss_mb": _hwm_mb(), "loaded_mb": loaded, "peak_reset": reset,
                      "seconds": time.perf_counter() - t0}))


def streaming(model_dir: Path, quick: bool) -> list[dict]:
    from parrot_ser.audio import load_audio
    from parrot_ser.inference import load_model
    from parrot_ser.inference.timeline import TimelineAnalyzer

    pred = load_model(model_dir, quiet=True)
    seconds = 60 if quick else 180
    path = CACHE / f"stream_{seconds}s.wav"
    make_recording(path, seconds, seed=7)
    audio = load_audio(path, SR, warn=False)
    an = TimelineAnalyzer(pred, vad="silero", eager=True)
    chunk = SR // 10
    fed_at = []  # wall time at which each chunk was fed
    lat = []
    t_start = time.perf_counter()
    for k, i in enumerate(range(0, len(audio), chunk)):
        wait = t_start + i / SR - time.perf_counter()
        if wait > 0:
            time.sleep(wait)  # real-time pace: the next 100 ms of audio "arrives"
        fed_at.append(time.perf_counter())
        for seg in an.feed(audio[i:i + chunk]):
            lat.append(time.perf_counter() - fed_at[min(int(seg.end * SR) // chunk, k)])
    an.finish()
    lat_ms = 1000 * np.asarray(lat)
    log(f"stream of {seconds} s in 100 ms chunks at real-time pace: {len(lat)} segments, latency from the "
        f"chunk holding a segment's end to its line: median {np.median(lat_ms):.0f} ms, p95 "
        f"{np.percentile(lat_ms, 95):.0f} ms (includes the VAD's 0.3 s of silence needed to close a region)")
    return [record("stream_latency_median", float(np.median(lat_ms)), "ms"),
            record("stream_latency_p95", float(np.percentile(lat_ms, 95)), "ms")]


def run(quick: bool = False):
    if not (WHISPER / "model.safetensors").is_file() or not (EMODB / "wav").is_dir():
        log(f"timeline bench: needs {WHISPER} and {EMODB}; skipped")
        return
    CACHE.mkdir(parents=True, exist_ok=True)
    model = build_model("whisper")
    only = os.environ.get("TIMELINE_BENCH_ONLY")  # e.g. "memory": rerun one part
    if only in (None, "speed"):
        yield from speed(model, quick)
    if only in (None, "stream"):
        yield from streaming(model, quick)
    if only in (None, "memory"):
        yield from peak_memory(build_model("logmel"), quick)


if __name__ == "__main__" and len(sys.argv) == 4 and sys.argv[1] == "--rss":
    sys.path.insert(0, os.path.join(HERE.parent, "src"))
    _rss_child(sys.argv[2], sys.argv[3])
