"""MESD (Mexican Emotional Speech Database): {Emotion}_{F|M|C}_{A|B}_{word}.wav.

MESD names carry no speaker id, only the voice type (F adult female, M adult male, C child) and the
word corpus (A/B). As SPEC section 5 requires, the speaker column is therefore a *group*:
``{voice}_{corpus}`` (6 groups, e.g. ``F_A``). Folds built on it keep each voice-type/word-corpus
group on one side; they are not guaranteed to be speaker-independent (meta ``speaker_kind`` says so)."""

from __future__ import annotations

import re
from pathlib import Path

from parrot_ser.corpora.base import Manifest, Utterance
from parrot_ser.corpora.registry import CorpusSpec, register
from parrot_ser.corpora.scanning import rel, start_scan

EMOTIONS = {"anger": "angry", "disgust": "disgust", "fear": "fear", "happiness": "happy", "neutral": "neutral",
            "sadness": "sad"}
VOICES = {"F": ("female", "adult"), "M": ("male", "adult"), "C": ("unknown", "child")}
NAME = re.compile(r"^([A-Za-z]+)_([FMC])_([AB])_(.+)\.wav$", re.IGNORECASE)


def scan(root: Path) -> Manifest:
    b, files = start_scan("mesd", root)
    for f, m in b.named(files, NAME, "MESD {Emotion}_{F|M|C}_{A|B}_{word}.wav", lambda m: m.group(1).lower() in EMOTIONS):
        emo, voice, corpus, word = m.group(1).capitalize(), m.group(2).upper(), m.group(3).upper(), m.group(4)
        gender, age = VOICES[voice]
        meta = {"voice_type": voice, "word_corpus": corpus, "word": word, "gender": gender, "age_group": age,
                "speaker_kind": "group (voice type x word corpus)"}
        b.add(Utterance(f"{emo}_{voice}_{corpus}_{word}", rel(f, root), EMOTIONS[emo.lower()],
                        f"{voice}_{corpus}", emo, meta))
    return b.build()


register(CorpusSpec("mesd", "MESD (Mexican Spanish): 6 emotions, adult/child voices; speaker = voice x corpus group",
                    scan, layout="Anger_F_A_abajo.wav"))
