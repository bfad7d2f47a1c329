"""Write a relabelled Emo-DB manifest for the README's own-labels and dimensional examples.

Labels: three arousal levels (high = anger, happiness, fear; neutral = neutral, disgust; low =
boredom, sadness). Targets arousal and valence on a 1-5 scale are DERIVED from the acted emotion
(Emo-DB has no ratings) with a small offset per sentence so they are not constant within a class:
a test target, NOT a real result. The scan of this CSV records that sentence as the data's note
(``--corpus-option note=...``), which every run on it repeats.

    python scripts/emodb_levels.py ../shared/data/emodb work/levels.csv
    parrot-ser corpus inspect work/levels.csv --corpus csv --corpus-option targets=arousal,valence
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

LEVEL = {"W": "high", "F": "high", "A": "high", "N": "neutral", "E": "neutral", "L": "low", "T": "low"}
AROUSAL = {"W": 4.5, "F": 4.0, "A": 4.0, "N": 2.5, "E": 3.0, "L": 1.5, "T": 1.5}
VALENCE = {"W": 1.5, "F": 4.5, "A": 1.5, "N": 3.0, "E": 1.5, "L": 2.5, "T": 1.5}
NOTE = "arousal/valence derived from the acted emotion, NOT a real result"


def rows(emodb_root: Path) -> list[list[str]]:
    out = []
    for wav in sorted((emodb_root / "wav").glob("*.wav")):
        spk, emo = wav.name[:2], wav.name[5]
        offset = (int(wav.name[3:5]) % 5 - 2) * 0.1  # sentence a01..b10 -> -0.2 .. +0.2
        out.append([str(wav.resolve()), LEVEL[emo], spk, f"{AROUSAL[emo] + offset:.2f}",
                    f"{VALENCE[emo] - offset:.2f}"])
    return out


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__)
        return 2
    root, out = Path(argv[0]), Path(argv[1])
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["path", "label", "speaker", "arousal", "valence"])
        w.writerows(rows(root))
    print(f"wrote {out}; note for the scan: --corpus-option 'note={NOTE}'")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
