"""RAVDESS: Actor_XX/MM-VV-EE-II-SS-RR-AA.wav (modality, vocal channel, emotion, intensity, statement,
repetition, actor). Only audio-only speech (modality 03, channel 01) by default: song files need
``include_song=True``; full-AV and video-only files (modality 01/02, .mp4) are always excluded."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

from parrot_ser.corpora.base import Manifest, Utterance
from parrot_ser.corpora.registry import CorpusSpec, register
from parrot_ser.corpora.scanning import rel, start_scan

EMOTIONS = {"01": "neutral", "02": "calm", "03": "happy", "04": "sad", "05": "angry", "06": "fear",
            "07": "disgust", "08": "surprise"}
STATEMENTS = {"01": "Kids are talking by the door", "02": "Dogs are sitting by the door"}
NAME = re.compile(r"^(0[123])-(0[12])-(0[1-8])-(0[12])-(0[12])-(0[12])-(\d\d)\.(wav|mp4)$", re.IGNORECASE)


def scan(root: Path, include_song: Annotated[bool, "also include the song files (vocal channel 02)"] = False) -> Manifest:
    b, files = start_scan("ravdess", root, (".wav", ".mp4"))
    for f, m in b.named(files, NAME, "RAVDESS MM-VV-EE-II-SS-RR-AA.wav"):
        modality, channel, emo, intensity, statement, rep, actor, ext = m.groups()
        if modality != "03" or ext.lower() != "wav":
            b.exclude("video modalities (01 full-AV, 02 video-only)")
            continue
        if channel == "02" and not include_song:
            b.exclude("song files (vocal channel 02; use include_song)")
            continue
        meta = {
            "gender": "male" if int(actor) % 2 else "female",
            "vocal_channel": "speech" if channel == "01" else "song",
            "intensity": "normal" if intensity == "01" else "strong",
            "statement": statement, "sentence": STATEMENTS[statement], "repetition": rep,
        }
        b.add(Utterance(f.stem, rel(f, root), EMOTIONS[emo], actor, emo, meta))
    return b.build()


register(CorpusSpec("ravdess", "RAVDESS: 24 actors, 8 emotions incl. calm/surprise (speech; song optional)",
                    scan,
                    layout="Actor_01/03-01-01-01-01-01-01.wav"))
