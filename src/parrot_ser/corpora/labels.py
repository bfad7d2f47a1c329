"""Which label names a manifest carries: chosen where the manifest is made, recorded in it.

- ``canonical``: the shared vocabulary (``CANONICAL_LABELS``); built-in corpora map their codes onto
  it, user corpora (csv, folders) map the common spellings (anger -> angry).
- ``asis``: the strings of the data (``original_label``: Emo-DB's ``W``, a CSV's ``high``).
- default (``None``): canonical for the built-in corpora; for csv and folders canonical when every
  label is a known spelling (so existing CSVs behave as before), the data's own labels otherwise.
- ``label_map`` (a YAML/JSON mapping, ``--label-map FILE``), applied after the mode: renames
  (``exc: happy`` merges excited into happy) and drops (``xxx: null`` leaves those rows out, counted
  in ``Manifest.excluded``).

Scanners set ``label`` to the canonical name or ``""`` when the string has none, and always keep the
string in ``original_label``; :func:`apply_labels` decides the rest."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import replace
from pathlib import Path

from parrot_ser.corpora.base import Manifest, Problem, Utterance
from parrot_ser.errors import ConfigError

LABEL_MODES = ("canonical", "asis")
USER_CORPORA = ("csv", "folders", "emobox")  # the default picks between canonical and asis for these


def load_label_map(path: str | Path) -> dict[str, str | None]:
    """A label map file: a YAML or JSON mapping of label -> new label (or null to drop)."""
    import yaml

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: label map unreadable ({e})") from None
    try:  # YAML is a superset of JSON; JSON first keeps its error message for .json files
        doc = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as e:
        raise ConfigError(f"{path}: label map is not valid {'JSON' if path.suffix == '.json' else 'YAML'} "
                          f"({str(e).splitlines()[0]})") from None
    return check_label_map(doc, str(path))


def check_label_map(doc: object, where: str) -> dict[str, str | None]:
    if not isinstance(doc, dict) or not doc:
        raise ConfigError(f"{where}: a label map is a non-empty mapping of label: new_label (null drops the label)")
    out: dict[str, str | None] = {}
    for k, v in doc.items():
        if v is not None and not (isinstance(v, str | int | float) and str(v).strip()):
            raise ConfigError(f"{where}: {k!r} maps to {v!r}; give a label name or null (drop)")
        out[str(k)] = None if v is None else str(v).strip()
    return out


def apply_labels(man: Manifest, mode: str | None = None, label_map: dict[str, str | None] | None = None,
                 map_source: str = "") -> Manifest:
    """The manifest with its labels chosen (see the module doc) and ``label_policy`` recorded, whose
    ``note`` says in one sentence what was done."""
    if mode is not None and mode not in LABEL_MODES:
        raise ConfigError(f"--labels must be one of {', '.join(LABEL_MODES)}; got {mode!r}")
    chosen, note = _choose_mode(man, mode)
    problems = list(man.problems)
    excluded = Counter(man.excluded)
    utts: list[Utterance] = []
    for u in man.utterances:
        label = u.original_label.strip() if chosen == "asis" else u.label
        if not label and u.original_label.strip() and not man.targets:  # canonical: no known spelling
            problems.append(Problem(u.path, f"label {u.original_label!r} is not a known spelling of a canonical "
                                            f"label; skipped (--labels asis keeps the data's own labels)"))
            continue
        utts.append(replace(u, label=label))
    if label_map:
        utts, dropped, unused = _map(utts, label_map)
        for old, n in dropped.items():
            excluded[f"label {old!r} dropped by the label map"] += n
        if unused:
            note += f"; label map keys matching no label: {', '.join(sorted(unused))}"
    policy = {"mode": chosen, "chosen_by": "option" if mode else "default",
              **({"map": label_map, "map_source": map_source} if label_map else {}), "note": note}
    return Manifest(man.corpus, man.root, utts, sorted(problems, key=lambda p: p.path),
                    dict(sorted(excluded.items())), label_policy=policy, targets=list(man.targets), note=man.note)


def _choose_mode(man: Manifest, mode: str | None) -> tuple[str, str]:
    if mode is not None:
        return mode, f"labels: {mode} (--labels {mode})"
    if man.corpus not in USER_CORPORA:
        return "canonical", "labels: canonical (the shared vocabulary; --labels asis keeps the corpus' own codes)"
    unknown = sorted({u.original_label for u in man.utterances if not u.label and u.original_label.strip()})
    if not unknown:
        return "canonical", ("labels: canonical (every label is a known spelling of the shared vocabulary; "
                             "--labels asis keeps the strings as written)")
    shown = ", ".join(repr(x) for x in unknown[:5]) + (" ..." if len(unknown) > 5 else "")
    return "asis", (f"labels: the data's own ({len(unknown)} label(s) are not spellings of the shared vocabulary: "
                    f"{shown}); --labels canonical maps the known ones and skips the rest")


def _map(utts: list[Utterance], label_map: dict[str, str | None]) -> tuple[list[Utterance], Counter, set[str]]:
    out: list[Utterance] = []
    dropped: Counter[str] = Counter()
    used: set[str] = set()
    for u in utts:
        if u.label in label_map:
            used.add(u.label)
            new = label_map[u.label]
            if new is None:
                dropped[u.label] += 1
                continue
            u = replace(u, label=new)
        out.append(u)
    return out, dropped, set(label_map) - used
