"""TESS (Toronto emotional speech set): {OAF|YAF}_{word}_{emotion}.wav, usually in per-emotion folders
(OAF_angry/, YAF_pleasant_surprised/, ...). Two speakers: OAF (older) and YAF (younger), both female.
The emotion comes from the file name; a folder that names a different emotion is reported."""

from __future__ import annotations

import re
from pathlib import Path

from parrot_ser.corpora.base import Manifest, Utterance
from parrot_ser.corpora.registry import CorpusSpec, register
from parrot_ser.corpora.scanning import rel, start_scan

# Codes as found in the official files plus the spellings of common re-packagings.
EMOTIONS = {"angry": "angry", "disgust": "disgust", "fear": "fear", "happy": "happy", "neutral": "neutral",
            "ps": "surprise", "pleasant_surprise": "surprise", "pleasant_surprised": "surprise", "sad": "sad"}
NAME = re.compile(r"^(OAF|YAF)_(.+?)_(ps|pleasant_surprised?|angry|disgust|fear|happy|neutral|sad)\.wav$",
                  re.IGNORECASE)
FOLDER = re.compile(r"^(OAF|YAF)_(.+)$", re.IGNORECASE)


def scan(root: Path) -> Manifest:
    b, files = start_scan("tess", root)
    for f, m in b.named(files, NAME, "TESS {OAF|YAF}_{word}_{emotion}.wav"):
        spk, word, code = m.group(1).upper(), m.group(2).lower(), m.group(3).lower()
        label = EMOTIONS[code]
        fm = FOLDER.match(f.parent.name)
        if fm:
            folder_label = EMOTIONS.get(fm.group(2).lower().replace(" ", "_"))
            if folder_label is not None and (folder_label != label or fm.group(1).upper() != spk):
                b.problem(f, f"file name says {spk}/{code} but folder is {f.parent.name}; skipped")
                continue
        meta = {"gender": "female", "age_group": "older" if spk == "OAF" else "younger", "word": word}
        b.add(Utterance(f"{spk}_{word}_{code}", rel(f, root), label, spk, code, meta))
    return b.build()


register(CorpusSpec("tess", "TESS (Toronto): 2 female speakers, 7 emotions incl. pleasant surprise, 200 words",
                    scan, layout="OAF_angry/OAF_back_angry.wav"))
