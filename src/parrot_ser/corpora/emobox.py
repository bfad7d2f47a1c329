"""EmoBox interop: read EmoBox's data files as a corpus plus its folds, and write our folds in its format.

EmoBox (github.com/emo-box/EmoBox) describes one dataset as ``data/<ds>/``: ``<ds>.jsonl`` (one JSON
object a line: ``key, wav, emo, length, ...``), ``fold_<k>/<ds>_train_fold_<k>.jsonl`` and
``..._test_fold_<k>.jsonl``, and ``label_map.json`` (emo -> EmoBox's class name). Its jsonl carries
no speaker: give ``speaker_regex`` (on the wav file name), unless the rows have a ``speaker`` field
(the files :func:`write_emobox_folds` writes do).

The folds become the ``split`` meta column of the ``predefined`` protocol: with several folds, the
number of the fold that tests the row; with one fold, train / test. EmoBox's folds are not always
speaker-independent (its CREMA-D and Emo-DB folds share speakers; MESD's "speaker" is gender):
training refuses such folds unless ``--allow-speaker-overlap`` is given, and then says so everywhere.
The ``wav`` paths are relative to EmoBox's checkout: ``audio_root`` says where that is (default: the
first of the data folder and its three parents where the first listed file exists)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated

from parrot_ser.corpora.base import Manifest, Utterance
from parrot_ser.corpora.registry import CorpusSpec, register
from parrot_ser.corpora.scanning import ManifestBuilder, canonical_label, require_dir, speaker_matcher
from parrot_ser.errors import ConfigError, CorpusError
from parrot_ser.files import write_json_atomic, write_text_atomic

FOLD_DIR = re.compile(r"^fold_(\d+)$")
SPEAKER_FIELDS = ("speaker", "spk", "speaker_id")


def read_jsonl(path: Path) -> list[dict]:
    rows = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise CorpusError(f"{path}: unreadable ({e})") from None
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise CorpusError(f"{path}:{i}: not a JSON object ({e.msg})") from None
        if not isinstance(row, dict) or not {"key", "wav", "emo"} <= set(row):
            raise CorpusError(f"{path}:{i}: an EmoBox row needs key, wav and emo")
        rows.append(row)
    return rows


def _folds(root: Path) -> dict[int, dict[str, set[str]]]:
    """fold number -> {"train": keys, "test": keys} from ``fold_<k>/*_{train,test}_fold*<k>.jsonl``."""
    out: dict[int, dict[str, set[str]]] = {}
    for d in sorted(p for p in root.iterdir() if p.is_dir() and FOLD_DIR.match(p.name)):
        k = int(FOLD_DIR.match(d.name).group(1))  # type: ignore[union-attr]
        sides: dict[str, set[str]] = {}
        for side in ("train", "test"):
            # EmoBox ships both spellings (_fold_1 and _fold1); they hold the same rows
            files = sorted(d.glob(f"*_{side}_fold_{k}.jsonl")) or sorted(d.glob(f"*_{side}_fold{k}.jsonl"))
            if not files:
                raise CorpusError(f"{d}: no *_{side}_fold_{k}.jsonl")
            sides[side] = {str(r["key"]) for r in read_jsonl(files[0])}
        out[k] = sides
    return out


def _audio_root(root: Path, first_wav: str, given: str) -> Path:
    if given:
        return Path(given).expanduser()
    for cand in (root, *list(root.parents)[:3]):
        if (cand / first_wav).is_file():
            return cand
    raise CorpusError(f"{root}: the first listed file {first_wav} is not under this folder or its 3 parents; "
                      f"give --corpus-option audio_root=FOLDER (the folder EmoBox's wav paths start from)")


def scan(root: Path, speaker_regex: Annotated[str, "regex on the wav file name giving the speaker (group "
                                                   "'speaker' or 1); needed when the rows have no speaker"] = "",
         audio_root: Annotated[str, "folder the wav paths are relative to"] = "") -> Manifest:
    require_dir(root)
    listed = sorted(p for p in root.glob("*.jsonl") if not p.name.startswith("._"))
    if len(listed) != 1:
        raise CorpusError(f"{root}: expected one <dataset>.jsonl in the EmoBox data folder (found {len(listed)})")
    rows = read_jsonl(listed[0])
    if not rows:
        raise CorpusError(f"{listed[0]}: no rows")
    names = _label_names(root)
    folds = _folds(root)
    base = _audio_root(root, str(rows[0]["wav"]), audio_root)
    speaker_of = _speaker_rule(rows[0], speaker_regex, listed[0])
    test_of = _test_fold(folds)
    b = ManifestBuilder("emobox", base)
    for r in rows:
        key, wav = str(r["key"]), str(r["wav"])
        full = Path(wav) if Path(wav).is_absolute() else base / wav
        if not full.is_file():
            b.problem(wav, f"{listed[0].name}: {key} listed but the file does not exist; skipped")
            continue
        spk = speaker_of(r, full)
        if not spk:
            b.problem(wav, f"file name does not match speaker regex {speaker_regex!r}; skipped")
            continue
        split = _split(key, test_of, len(folds))
        if split is None:
            b.exclude("in no test fold of the EmoBox folds")
            continue
        emo = str(r["emo"])
        name = names.get(emo, emo)
        meta = {"emo": emo, **({"split": split} if split else {})}
        b.add(Utterance(key, wav, canonical_label(emo) or canonical_label(name) or "", spk, name, meta))
    return b.build()


def _label_names(root: Path) -> dict[str, str]:
    path = root / "label_map.json"
    if not path.is_file():
        return {}
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CorpusError(f"{path}: unreadable label map ({e})") from None
    if not isinstance(doc, dict):
        raise CorpusError(f"{path}: a label map is a JSON object emo -> name")
    return {str(k): str(v) for k, v in doc.items()}


def _speaker_rule(first: dict, speaker_regex: str, where: Path):
    field = next((f for f in SPEAKER_FIELDS if f in first), None)
    if speaker_regex:
        speaker_of = speaker_matcher(speaker_regex)
        return lambda _row, full: speaker_of(full.name) or ""
    if field is None:
        raise CorpusError(f"{where}: EmoBox rows carry no speaker; give --corpus-option speaker_regex=REGEX on the "
                          f"file name (e.g. ^(\\d\\d) for Emo-DB's 03a01Fa.wav), needed for speaker-independent folds")
    return lambda row, _full: str(row.get(field, "")).strip()


def _test_fold(folds: dict[int, dict[str, set[str]]]) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for k, sides in folds.items():
        for key in sides["test"]:
            out.setdefault(key, []).append(k)
    return out


def _split(key: str, test_of: dict[str, list[int]], n_folds: int) -> str | None:
    """The row's ``split``: "" without folds, the test fold's number (several folds) or train/test (one)."""
    if n_folds == 0:
        return ""
    ks = test_of.get(key)
    if not ks:
        return "train" if n_folds == 1 else None
    if len(ks) > 1:
        raise CorpusError(f"EmoBox folds: {key} is in the test side of folds {ks}; a row is tested once")
    return "test" if n_folds == 1 else str(ks[0])


def write_emobox_folds(folds_doc: dict, man: Manifest, out_dir: str | Path, dataset: str, seed: int | None = None
                       ) -> list[Path]:
    """Our folds (a ``parrot-ser-folds/1`` document) in EmoBox's layout under ``out_dir``: ``<ds>.jsonl``,
    ``fold_<k>/<ds>_{train,test}_fold_<k>.jsonl`` (validation rows go with train, as EmoBox has no
    validation side) and ``label_map.json``. Rows carry ``speaker``, so reading them back needs no regex."""
    seeds = folds_doc.get("seeds") or {}
    key = str(seed) if seed is not None else next(iter(seeds), None)
    if key not in seeds:
        raise ConfigError(f"folds file has no seed {seed} (has {', '.join(seeds) or 'none'})")
    by_id = {u.utt_id: u for u in man.utterances}
    out = Path(out_dir)
    written = [_write_jsonl(out / f"{dataset}.jsonl", [_row(man, u, dataset) for u in man.utterances])]
    for k, fold in enumerate(seeds[key], 1):
        for side, ids in (("train", [*fold.get("train", []), *fold.get("val", [])]), ("test", fold.get("test", []))):
            unknown = [i for i in ids if i not in by_id]
            if unknown:
                raise ConfigError(f"folds file: fold {k} {side} lists {unknown[0]!r}, not in the manifest")
            written.append(_write_jsonl(out / f"fold_{k}" / f"{dataset}_{side}_fold_{k}.jsonl",
                                        [_row(man, by_id[i], dataset) for i in ids]))
    labels = sorted({u.label for u in man.utterances if u.label})
    write_json_atomic(out / "label_map.json", {lab: lab for lab in labels})
    return [*written, out / "label_map.json"]


def _row(man: Manifest, u: Utterance, dataset: str) -> dict:
    return {"key": u.utt_id, "dataset": dataset, "wav": str(man.abspath(u).resolve()), "emo": u.label,
            "speaker": u.speaker, "channel": 1}


def _write_jsonl(path: Path, rows: list[dict]) -> Path:
    write_text_atomic(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return path


register(CorpusSpec("emobox", "EmoBox data folder: <ds>.jsonl + fold_<k>/ + label_map.json; folds as the "
                              "predefined protocol (speaker via speaker_regex when the rows have none)", scan,
                    layout="emodb.jsonl, fold_1/emodb_test_fold_1.jsonl, label_map.json"))
