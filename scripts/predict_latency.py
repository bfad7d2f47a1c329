"""What one more clip costs an exported model once it is loaded (issue 20, item 2: a 15-model
ensemble took 15 s a clip): load the bundle, predict one clip to warm up (lazy initialisation,
allocator), then predict each further clip alone and report the median and the worst time.

    python scripts/predict_latency.py MODEL_DIR CLIP [CLIP ...] [--json]

Prints load time, members, and seconds per clip (wall and CPU of this process); one thread, as
`parrot-ser predict` runs with OMP_NUM_THREADS=1."""

from __future__ import annotations

import argparse
import json
import statistics
import time


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("clips", nargs="+", help="the first warms up; each further one is timed alone")
    ap.add_argument("--json", action="store_true", help="one JSON object on stdout")
    args = ap.parse_args()
    if len(args.clips) < 2:
        ap.error("give at least two clips: one to warm up, one to time")
    import parrot_ser

    t0 = time.perf_counter()
    model = parrot_ser.load_model(args.model)
    load_s = time.perf_counter() - t0
    model.predict(args.clips[0])
    walls, cpus = [], []
    for clip in args.clips[1:]:
        w, c = time.perf_counter(), time.process_time()
        model.predict(clip)
        walls.append(time.perf_counter() - w)
        cpus.append(time.process_time() - c)
    doc = {"model": args.model, "members": len(model.heads),
           "load_s": round(load_s, 3), "timed_clips": len(walls),
           "per_clip_wall_s": {"median": round(statistics.median(walls), 4), "max": round(max(walls), 4)},
           "per_clip_cpu_s": {"median": round(statistics.median(cpus), 4), "max": round(max(cpus), 4)}}
    if args.json:
        print(json.dumps(doc))
    else:
        print(f"{args.model}: loaded in {doc['load_s']:.2f} s; one more clip: median {doc['per_clip_wall_s']['median']:.3f} s "
              f"wall / {doc['per_clip_cpu_s']['median']:.3f} s CPU, worst {doc['per_clip_wall_s']['max']:.3f} s wall "
              f"({len(walls)} clips)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
