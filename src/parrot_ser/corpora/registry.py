"""The corpus registry: one :class:`CorpusSpec` per corpus module of this package.

A corpus module (``emodb.py``, ...) calls :func:`register` at import; the registry imports every
corpus module on first use (see ``parrot_ser.registry``). The options a corpus takes are the keyword
parameters of its ``scan(root, ...)`` function, with help from their ``Annotated`` text."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from parrot_ser.corpora.base import Manifest
from parrot_ser.errors import CorpusError
from parrot_ser.registry import Option, Registry, check_options, coerce, signature_options


@dataclass(frozen=True)
class CorpusSpec:
    name: str
    description: str  # one line, shown by `parrot-ser corpus list`
    scan: Callable[..., Manifest]  # scan(root: Path, **options) -> Manifest
    layout: str = ""  # example path, quoted when a root holds nothing of the layout

    @property
    def options(self) -> dict[str, Option]:
        """Option name -> Option(default, help), from the keyword parameters of ``scan``."""
        return signature_options(self.scan)


CORPORA: Registry[CorpusSpec] = Registry("corpus", package="parrot_ser.corpora",
                                         skip=("base", "check", "labels", "registry", "scanning"))


def register(spec: CorpusSpec) -> CorpusSpec:
    return CORPORA.add(spec.name, spec)


def list_corpora() -> list[tuple[str, str]]:
    return [(name, spec.description) for name, spec in CORPORA.items()]


def scan_corpus(name: str, root: str | Path, *, labels: str | None = None,
                label_map: dict[str, str | None] | str | Path | None = None, **options: Any) -> Manifest:
    """Scan ``root`` in the official layout of corpus ``name`` (see ``list_corpora()``). Options given
    as text (``--corpus-option KEY=VALUE``) are converted to the type the scanner declares. ``labels``
    (canonical | asis | None = the corpus' default) and ``label_map`` (a mapping or a YAML/JSON file)
    choose the label names (corpora/labels.py); the choice is in ``Manifest.label_policy``.

    Raises RegistryError for an unknown name, ConfigError for an option the corpus does not take,
    CorpusError for a missing root or one that holds no file of the expected layout."""
    spec = CORPORA.get(name)
    known = spec.options
    check_options(options, known, f"corpus {name!r}")
    options = {k: coerce(known[k], v, f"corpus {name!r}") for k, v in options.items()}
    root = Path(root).expanduser()
    if not root.exists():
        raise CorpusError(f"{root}: corpus root not found")
    from parrot_ser.corpora.labels import apply_labels, check_label_map, load_label_map

    source = ""
    if isinstance(label_map, str | Path):
        source, label_map = str(label_map), load_label_map(label_map)
    elif label_map is not None:
        label_map = check_label_map(label_map, "label map")
    man = apply_labels(spec.scan(root, **options), labels, label_map, source)
    if not man.utterances:
        hint = f" (expected e.g. {spec.layout})" if spec.layout else ""
        extra = f"; {len(man.problems)} file(s) did not fit, first: {man.problems[0].path}: " \
                f"{man.problems[0].problem}" if man.problems else ""
        raise CorpusError(f"{root}: no {name} utterances found{hint}{extra}")
    return man
