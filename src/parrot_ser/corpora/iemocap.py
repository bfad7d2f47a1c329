"""IEMOCAP: Session{1-5}/sentences/wav/<dialog>/<utt>.wav with labels in
Session{n}/dialog/EmoEvaluation/<dialog>.txt, lines ``[start - end]<TAB>UTT<TAB>emo<TAB>[V, A, D]``.

Default: the standard 4 classes, exc merged into hap (neutral, happy, sad, angry; 5531 utterances in
the full release); other codes are excluded (counted in ``Manifest.excluded``). ``full_labels=True``
keeps every annotated class (exc as ``excited``). ``xxx`` (no majority) is excluded in both modes,
except with ``dimensions=True``: then every rated row is kept with its ``[V, A, D]`` as the targets
valence, arousal, dominance (1-5 scale), and the rows outside the label set get no label (``""``;
classification leaves them out, dimensional runs use them).
Speaker = session + talker gender (``Ses01F``); the gender is the first letter of the last ``_`` token
of the utterance id (Ses01F_impro01_M000 is spoken by the male actor of session 1)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

from parrot_ser.corpora.base import Manifest, Utterance
from parrot_ser.corpora.registry import CorpusSpec, register
from parrot_ser.corpora.scanning import ManifestBuilder, rel, require_dir
from parrot_ser.errors import CorpusError

FOUR = {"neu": "neutral", "hap": "happy", "exc": "happy", "sad": "sad", "ang": "angry"}
FULL = {"neu": "neutral", "hap": "happy", "exc": "excited", "sad": "sad", "ang": "angry", "fru": "frustration",
        "fea": "fear", "sur": "surprise", "dis": "disgust", "oth": "other"}
# Tokens, not fixed columns: the release mixes tabs and spaces in places.
LINE = re.compile(r"^\[\s*([\d.]+)\s*-\s*([\d.]+)\s*\]\s+(\S+)\s+(\S+)\s+\[([^\]]*)\]")
SESSION = re.compile(r"^Session([1-5])$")


def _sessions(root: Path) -> list[Path]:
    """Session folders at the root or up to two levels below it (IEMOCAP_full_release/...)."""
    for depth in range(3):
        pattern = "/".join(["*"] * depth + ["Session*"])
        found = sorted(p for p in root.glob(pattern) if p.is_dir() and SESSION.match(p.name))
        if found:
            return found
    return []


def parse_emo_evaluation(path: Path) -> dict[str, tuple[str, dict[str, str]]]:
    """utt_id -> (emotion code, meta with start/end/valence/arousal/dominance; IEMOCAP says activation)."""
    out: dict[str, tuple[str, dict[str, str]]] = {}
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        m = LINE.match(line.strip())
        if not m:
            continue
        start, end, utt, emo, vad = m.groups()
        parts = [v.strip() for v in vad.split(",")]
        meta = {"start": start, "end": end}
        if len(parts) == 3:
            meta.update(valence=parts[0], arousal=parts[1], dominance=parts[2])
        out[utt] = (emo.lower(), meta)
    return out


DIMENSIONS = ("valence", "arousal", "dominance")


def scan(root: Path, full_labels: Annotated[bool, "keep every annotated class (exc as excited) instead of the "
                                                 "4-class set"] = False,
         dimensions: Annotated[bool, "valence/arousal/dominance as targets; keeps xxx and other-class rows "
                                     "(no label) for dimensional runs"] = False) -> Manifest:
    b = ManifestBuilder("iemocap", require_dir(root))
    sessions = _sessions(root)
    if not sessions:
        raise CorpusError(f"{root}: no IEMOCAP Session1..Session5 folder found (expected Session1/sentences/wav)")
    mapping = FULL if full_labels else FOUR
    for sess in sessions:
        n = SESSION.match(sess.name).group(1)  # type: ignore[union-attr]
        labels: dict[str, tuple[str, dict[str, str]]] = {}
        for txt in sorted((sess / "dialog" / "EmoEvaluation").glob("*.txt")):
            if not txt.name.startswith("._"):
                labels.update(parse_emo_evaluation(txt))
        files, _ = b.walk(sess / "sentences" / "wav")
        seen: set[str] = set()
        for f in files:
            utt = f.stem
            if utt not in labels:
                b.problem(f, f"no label for {utt} in Session{n}/dialog/EmoEvaluation; skipped")
                continue
            seen.add(utt)
            code, meta = labels[utt]
            if dimensions and not all(k in meta for k in DIMENSIONS):
                b.problem(f, f"no [V, A, D] rating for {utt} in Session{n}/dialog/EmoEvaluation; skipped")
                continue
            if code == "xxx" and not dimensions:
                b.exclude("xxx (no annotator majority)")
                continue
            if code not in mapping and not dimensions:
                b.exclude(f"{code} (not in the {'full' if full_labels else '4-class'} label set)")
                continue
            talker = utt.split("_")[-1][:1].upper()
            dialog = f.parent.name
            meta = {**meta, "session": n, "dialog": dialog, "gender": {"F": "female", "M": "male"}.get(talker, ""),
                    "style": "improvised" if "_impro" in dialog else "scripted"}
            # original_label stays the code; labels.py keeps the row unlabelled when the code has no class
            b.add(Utterance(utt, rel(f, root), mapping.get(code, ""), f"Ses0{n}{talker}",
                            code if code in mapping else "", meta))
        for utt in sorted(set(labels) - seen):
            b.problem(f"{rel(sess, root)}/sentences/wav/{utt.rsplit('_', 1)[0]}/{utt}.wav",
                      "labelled in EmoEvaluation but the wav file is missing")
    man = b.build()
    man.targets = list(DIMENSIONS) if dimensions else []
    return man


register(CorpusSpec("iemocap", "IEMOCAP: 5 sessions x 2 actors, 4 classes (exc->hap) or full label set", scan,
                    layout="Session1/sentences/wav/Ses01F_impro01/Ses01F_impro01_F000.wav"))
