"""The README's timeline picture: a 1.5-minute "conversation" of real Emo-DB clips in four blocks of
one emotion each (anger, neutral, sadness, happiness), clips 0.3-0.8 s apart inside a block and 3 s
of silence between blocks, then `parrot-ser analyze MODEL FILE --out OUT`. The bench model is trained
on all of Emo-DB, so these clips are its training data: the picture shows the tool, not an accuracy.

    python scripts/timeline_example.py --model bench/.cache/timeline/model-whisper --out docs/img

writes OUT/conversation.wav's timeline as docs/img/timeline.png (and the JSON/CSV next to it in a
temporary folder). The model is the timeline bench's (python bench/run.py timeline builds it)."""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
EMODB = ROOT.parent / "shared" / "data" / "emodb" / "wav"
BLOCKS = [("W", 9), ("N", 9), ("T", 9), ("F", 9)]  # Emo-DB emotion letter (6th character), clips
SR = 16000


def build(path: Path, seed: int = 0) -> None:
    sys.path.insert(0, str(ROOT / "src"))
    from parrot_ser.audio import load_audio

    rng = np.random.default_rng(seed)
    parts = [np.zeros(SR, np.float32)]
    for letter, n in BLOCKS:
        files = sorted(p for p in EMODB.glob("*.wav") if p.stem[5] == letter)
        for p in rng.choice(files, size=n, replace=False):
            parts.append(load_audio(p, SR, warn=False))
            parts.append((1e-4 * rng.standard_normal(int(rng.uniform(0.3, 0.8) * SR))).astype(np.float32))
        parts.append((1e-4 * rng.standard_normal(3 * SR)).astype(np.float32))
    sf.write(str(path), np.concatenate(parts), SR, subtype="PCM_16")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--out", default="docs/img")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "conversation.wav"
        build(wav)
        subprocess.run([sys.executable, "-m", "parrot_ser.cli.main", "analyze", args.model, str(wav)], check=True)
        subprocess.run([sys.executable, "-m", "parrot_ser.cli.main", "analyze", args.model, str(wav), "--out", tmp,
                        "--formats", "png"], check=True)
        Path(args.out).mkdir(parents=True, exist_ok=True)
        shutil.copy(Path(tmp) / "conversation.timeline.png", Path(args.out) / "timeline.png")


if __name__ == "__main__":
    main()
