"""MSP-Podcast: ``Audios/<FileName>`` and ``Labels/labels_consensus.csv`` with the columns FileName,
EmoClass, EmoAct, EmoVal, EmoDom, SpkrID, Gender, Split_Set.

Every row carries the consensus ratings as targets arousal (EmoAct), valence (EmoVal) and dominance
(EmoDom), on the corpus' 1-7 scale. EmoClass codes map onto the shared vocabulary (C = contempt, O =
other); ``X`` (no agreement) rows keep their ratings and get no label (classification leaves them
out). ``Split_Set`` becomes the ``split`` meta column the ``predefined`` protocol reads: Train ->
train, Development -> dev, and the chosen test set (``test_set``, default Test1) -> test; rows of the
other test sets are excluded (counted). ``SpkrID`` ``Unknown`` is not one speaker: such rows get a
speaker of their own (``unknown:<utt>``), which the audits count apart."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from parrot_ser.corpora.base import UNKNOWN_SPEAKER, Manifest, Utterance, read_csv_table
from parrot_ser.corpora.registry import CorpusSpec, register
from parrot_ser.corpora.scanning import AUDIO_EXTS, ManifestBuilder, rel, require_dir
from parrot_ser.errors import CorpusError

CLASSES = {"A": "angry", "S": "sad", "H": "happy", "U": "surprise", "F": "fear", "D": "disgust", "C": "contempt",
           "N": "neutral", "O": "other"}
COLUMNS = ("FileName", "EmoClass", "EmoAct", "EmoVal", "EmoDom", "SpkrID", "Split_Set")
TARGETS = {"arousal": "EmoAct", "valence": "EmoVal", "dominance": "EmoDom"}
SPLITS = {"train": "train", "development": "dev"}


def _labels_file(root: Path) -> Path:
    for cand in (root / "Labels" / "labels_consensus.csv", root / "labels_consensus.csv"):
        if cand.is_file():
            return cand
    raise CorpusError(f"{root}: no Labels/labels_consensus.csv (expected the MSP-Podcast release layout: "
                      f"Audios/ and Labels/labels_consensus.csv)")


def scan(root: Path, test_set: Annotated[str, "which Split_Set is the test side of the official split "
                                              "(Test1, Test2, ...)"] = "Test1") -> Manifest:
    b = ManifestBuilder("msp-podcast", require_dir(root))
    table = _labels_file(root)
    cols, rows = read_csv_table(table)
    missing = [c for c in COLUMNS if c not in cols]
    if missing:
        raise CorpusError(f"{table}: lacks column(s) {', '.join(missing)}; has {', '.join(cols)}")
    files, _ = b.walk(root / "Audios", AUDIO_EXTS) if (root / "Audios").is_dir() else ([], 0)
    by_name = {f.name: f for f in files}
    for line, row in rows:
        _add_row(b, root, by_name, f"{table.name}:{line}", {k: (v or "").strip() for k, v in row.items() if k},
                 test_set.lower())
    man = b.build()
    man.targets = list(TARGETS)
    return man


def _add_row(b: ManifestBuilder, root: Path, by_name: dict[str, Path], where: str, row: dict[str, str],
             test_set: str) -> None:
    name = row["FileName"]
    f = by_name.get(name)
    if f is None:
        b.problem(f"Audios/{name}", f"listed in {where} but not found under Audios/; skipped")
        return
    split = row["Split_Set"].lower()
    if split not in SPLITS and split != test_set:
        b.exclude(f"Split_Set {row['Split_Set']} (not the chosen test set {test_set!r})")
        return
    try:
        values = {t: float(row[col]) for t, col in TARGETS.items()}
    except ValueError:
        b.problem(f, f"{where}: a rating (EmoAct/EmoVal/EmoDom) is not a number; skipped")
        return
    utt = Path(name).stem
    code = row["EmoClass"].upper()
    spk = row["SpkrID"]
    speaker = f"{UNKNOWN_SPEAKER}{utt}" if not spk or spk.lower() == "unknown" else spk
    meta = {**{t: f"{v:g}" for t, v in values.items()}, "split": SPLITS.get(split, "test"),
            "split_set": row["Split_Set"], "gender": row.get("Gender", "").lower()}
    b.add(Utterance(utt, rel(f, root), CLASSES.get(code, ""), speaker, code if code in CLASSES else "", meta))


register(CorpusSpec("msp-podcast", "MSP-Podcast: podcast speech, 8 classes + arousal/valence/dominance, official "
                                   "Train/Development/Test split (--protocol predefined)", scan,
                    layout="Audios/MSP-PODCAST_0001_0008.wav + Labels/labels_consensus.csv"))
