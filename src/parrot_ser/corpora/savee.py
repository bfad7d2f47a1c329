"""SAVEE (Surrey Audio-Visual Expressed Emotion): AudioData/{DC,JE,JK,KL}/{code}NN.wav, or the flat
re-packaging {speaker}_{code}NN.wav (e.g. DC_a01.wav). Codes a d f h n sa su; 4 male speakers."""

from __future__ import annotations

import re
from pathlib import Path

from parrot_ser.corpora.base import Manifest, Utterance
from parrot_ser.corpora.registry import CorpusSpec, register
from parrot_ser.corpora.scanning import rel, start_scan

EMOTIONS = {"a": "angry", "d": "disgust", "f": "fear", "h": "happy", "n": "neutral", "sa": "sad", "su": "surprise"}
SPEAKERS = ("DC", "JE", "JK", "KL")
FLAT = re.compile(r"^(DC|JE|JK|KL)_(sa|su|a|d|f|h|n)(\d\d)\.wav$", re.IGNORECASE)
NESTED = re.compile(r"^(sa|su|a|d|f|h|n)(\d\d)\.wav$", re.IGNORECASE)


def scan(root: Path) -> Manifest:
    b, files = start_scan("savee", root)
    for f in files:
        m = FLAT.match(f.name)
        if m:
            spk, code, num = m.group(1).upper(), m.group(2).lower(), m.group(3)
        else:
            m = NESTED.match(f.name)
            if not m or f.parent.name.upper() not in SPEAKERS:
                b.problem(f, "name does not follow SAVEE {DC,JE,JK,KL}/{code}NN.wav or {speaker}_{code}NN.wav; skipped")
                continue
            spk, code, num = f.parent.name.upper(), m.group(1).lower(), m.group(2)
        b.add(Utterance(f"{spk}_{code}{num}", rel(f, root), EMOTIONS[code], spk, code,
                        {"gender": "male", "sentence": num}))
    return b.build()


register(CorpusSpec("savee", "SAVEE: 4 male British speakers, 7 emotions incl. surprise", scan,
                    layout="AudioData/DC/a01.wav or DC_a01.wav"))
