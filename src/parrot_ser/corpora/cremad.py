"""CREMA-D: AudioWAV/{actor}_{sentence}_{emotion}_{level}.wav, e.g. 1001_DFA_ANG_XX.wav.

The clip 1076_MTI_SAD_XX has no signal (a known defect of the release): it is excluded and reported in
``Manifest.problems`` so that feature extraction never sees it."""

from __future__ import annotations

import csv
import re
from pathlib import Path

from parrot_ser.corpora.base import Manifest, Utterance
from parrot_ser.corpora.registry import CorpusSpec, register
from parrot_ser.corpora.scanning import rel, start_scan

EMOTIONS = {"ANG": "angry", "DIS": "disgust", "FEA": "fear", "HAP": "happy", "NEU": "neutral", "SAD": "sad"}
SENTENCES = {"IEO", "TIE", "IOM", "IWW", "TAI", "MTI", "IWL", "ITH", "DFA", "ITS", "TSI", "WSI"}
LEVELS = {"LO": "low", "MD": "medium", "HI": "high", "XX": "unspecified"}
KNOWN_EMPTY = {"1076_MTI_SAD_XX"}
NAME = re.compile(r"^(\d{4})_([A-Z]{3})_([A-Z]{3})_([A-Z]{2})\.wav$", re.IGNORECASE)


def _demographics(root: Path) -> dict[str, dict[str, str]]:
    """VideoDemographics.csv (ActorID, Age, Sex, Race, Ethnicity), when the package carries it."""
    hits = sorted(root.rglob("VideoDemographics.csv"))
    if not hits:
        return {}
    out: dict[str, dict[str, str]] = {}
    with open(hits[0], newline="", encoding="utf-8-sig") as f:
        for row in csv.DictReader(f):
            actor = (row.get("ActorID") or "").strip()
            if actor:
                out[actor] = {"gender": (row.get("Sex") or "").strip().lower(), "age": (row.get("Age") or "").strip()}
    return out


def scan(root: Path) -> Manifest:
    b, files = start_scan("cremad", root)
    demo = _demographics(root)
    known = lambda m: (m.group(2).upper() in SENTENCES and m.group(3).upper() in EMOTIONS  # noqa: E731
                       and m.group(4).upper() in LEVELS)
    for f, m in b.named(files, NAME, "CREMA-D {actor}_{sentence}_{emotion}_{level}.wav", known):
        actor, sent, emo, level = m.group(1), m.group(2).upper(), m.group(3).upper(), m.group(4).upper()
        utt_id = f"{actor}_{sent}_{emo}_{level}"
        if utt_id in KNOWN_EMPTY:
            b.problem(f, "known empty clip of CREMA-D (no signal); excluded")
            continue
        meta = {"sentence": sent, "intensity": LEVELS[level]}
        meta.update(demo.get(actor, {}))
        b.add(Utterance(utt_id, rel(f, root), EMOTIONS[emo], actor, emo, meta))
    return b.build()


register(CorpusSpec("cremad", "CREMA-D: 91 actors, 6 emotions, 12 sentences, 4 intensity levels", scan,
                    layout="AudioWAV/1001_DFA_ANG_XX.wav"))
