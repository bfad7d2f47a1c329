"""Emo-DB (Berlin Database of Emotional Speech): wav/{spk}{text}{emotion}{version}.wav, e.g. 03a01Fa.wav."""

from __future__ import annotations

import re
from pathlib import Path

from parrot_ser.corpora.base import Manifest, Utterance
from parrot_ser.corpora.registry import CorpusSpec, register
from parrot_ser.corpora.scanning import rel, start_scan

EMOTIONS = {"W": "angry", "L": "boredom", "E": "disgust", "A": "fear", "F": "happy", "T": "sad", "N": "neutral"}
SPEAKERS = ("03", "08", "09", "10", "11", "12", "13", "14", "15", "16")
MALE = {"03", "10", "11", "12", "15"}
NAME = re.compile(r"^(\d\d)([ab]\d\d)([A-Z])([a-z])\.wav$", re.IGNORECASE)


def scan(root: Path) -> Manifest:
    b, files = start_scan("emodb", root)
    for f, m in b.named(files, NAME, "Emo-DB {speaker}{text}{emotion}{version}.wav",
                        lambda m: m.group(3).upper() in EMOTIONS):
        spk, text, emo, version = m.group(1), m.group(2).lower(), m.group(3).upper(), m.group(4).lower()
        if spk not in SPEAKERS:
            b.problem(f, f"speaker {spk} is not one of the 10 Emo-DB speakers; skipped")
            continue
        b.add(Utterance(
            utt_id=f"{spk}{text}{emo}{version}", path=rel(f, root), label=EMOTIONS[emo], speaker=spk,
            original_label=emo,
            meta={"gender": "male" if spk in MALE else "female", "sentence": text, "version": version},
        ))
    return b.build()


register(CorpusSpec("emodb", "Emo-DB (Berlin): 10 speakers, 7 emotions incl. boredom, German", scan,
                    layout="wav/03a01Fa.wav"))
