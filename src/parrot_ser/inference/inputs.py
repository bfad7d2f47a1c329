"""What ``parrot-ser predict`` scores: files, folders (recursive) and manifests (.csv)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from parrot_ser.audio import AUDIO_SUFFIXES
from parrot_ser.errors import AudioMissingError, ParrotError


@dataclass
class InputItem:
    path: Path
    reference: str | None = None  # the manifest's label, when scored from a manifest
    utt_id: str | None = None


@dataclass
class InputProblem:
    path: str
    error: str


def collect_inputs(args: list[str | Path]) -> tuple[list[InputItem], list[InputProblem]]:
    """Expand command-line arguments into audio items (in argument order; folders sorted) and
    problems (missing paths, unreadable manifests). Duplicates are kept once."""
    items: list[InputItem] = []
    problems: list[InputProblem] = []
    seen: set[Path] = set()

    def add(item: InputItem) -> None:
        key = item.path.resolve()
        if key not in seen:
            seen.add(key)
            items.append(item)

    for a in args:
        p = Path(a)
        if p.is_dir():
            from parrot_ser.corpora.scanning import walk_files

            unreadable: list[tuple[Path, str]] = []
            found, _ = walk_files(p, AUDIO_SUFFIXES, unreadable=unreadable)  # each real folder once
            for sub, why in unreadable:
                problems.append(InputProblem(str(sub), f"{sub}: folder could not be read ({why}); "
                                                       "the files in it were skipped"))
            if not found:
                what = "is a folder, not an audio file" if p.suffix.lower() in AUDIO_SUFFIXES else \
                    "is a folder with no audio files in it"
                problems.append(InputProblem(str(p), f"{p}: {what} (looked for "
                                                     f"{', '.join(sorted(AUDIO_SUFFIXES))})"))
            for f in found:
                add(InputItem(f))
        elif p.is_file() and p.suffix.lower() == ".csv":
            from parrot_ser.corpora.base import Manifest

            try:
                if _columns(p) >= {"path", "label", "speaker"}:
                    man = Manifest.from_csv(p)
                    for u in man.utterances:
                        add(InputItem(man.abspath(u), u.label or None, u.utt_id))
                else:  # a plain list of files: only a ``path`` column is needed to predict
                    for path in _paths_only(p):
                        add(InputItem(path))
            except ParrotError as e:
                problems.append(InputProblem(str(p), str(e)))
            except OSError as e:  # an unreadable manifest is one problem; the other arguments go on
                problems.append(InputProblem(str(p), f"{p}: cannot be read ({e.strerror or e})"))
        elif p.exists():
            add(InputItem(p))
        else:
            problems.append(InputProblem(str(p), str(AudioMissingError(p))))
    return items, problems


def _columns(path: Path) -> set[str]:
    from parrot_ser.corpora.base import read_csv_table

    return set(read_csv_table(path)[0])


def _paths_only(path: Path) -> list[Path]:
    from parrot_ser.corpora.base import read_csv_table
    from parrot_ser.errors import CorpusError

    cols, rows = read_csv_table(path)
    if "path" not in cols:
        raise CorpusError(f"{path}: a manifest needs a 'path' column; has {', '.join(cols)}")
    out = []
    for _, row in rows:
        if row.get("path"):
            q = Path(row["path"])
            out.append(q if q.is_absolute() else path.parent / q)
    return out
