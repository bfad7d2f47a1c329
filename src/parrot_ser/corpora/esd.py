"""ESD (Emotional Speech Dataset): {spk}/{Emotion}/[train|evaluation|test/]{spk}_{NNNNNN}.wav.
Speakers 0001-0010 Mandarin, 0011-0020 English; 5 emotions. The emotion comes from the folder; the
split folder (when present) goes to meta ``split``."""

from __future__ import annotations

import re
from pathlib import Path

from parrot_ser.corpora.base import Manifest, Utterance
from parrot_ser.corpora.registry import CorpusSpec, register
from parrot_ser.corpora.scanning import rel, start_scan

EMOTIONS = {"angry": "angry", "happy": "happy", "neutral": "neutral", "sad": "sad", "surprise": "surprise"}
SPLITS = {"train", "evaluation", "test"}
NAME = re.compile(r"^(\d{4})_(\d{6})\.wav$")


def scan(root: Path) -> Manifest:
    b, files = start_scan("esd", root)
    for f in files:
        m = NAME.match(f.name)
        parents = [p.name for p in f.relative_to(root).parents][:-1]  # nearest first, root excluded
        split = parents[0].lower() if parents and parents[0].lower() in SPLITS else ""
        emo_dir = parents[1 if split else 0] if len(parents) > (1 if split else 0) else ""
        if not m or emo_dir.lower() not in EMOTIONS:
            b.problem(f, "path does not follow ESD {spk}/{Emotion}/[split/]{spk}_{NNNNNN}.wav; skipped")
            continue
        spk, num = m.groups()
        meta = {"language": "mandarin" if int(spk) <= 10 else "english", "number": num}
        if split:
            meta["split"] = split
        b.add(Utterance(f"{spk}_{num}", rel(f, root), EMOTIONS[emo_dir.lower()], spk, emo_dir, meta))
    return b.build()


register(CorpusSpec("esd", "ESD: 10 Mandarin + 10 English speakers, 5 emotions, train/evaluation/test", scan,
                    layout="0011/Angry/train/0011_000351.wav"))
