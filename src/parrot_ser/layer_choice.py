"""The one meaning of the layer words, their one parser and their one selector.

A layer is always an index into the encoder's hidden states: 0 = the embeddings (the CNN / patch
front end's output), ``num_layers - 1`` = the last layer; the same number in ``extract --layers``,
``train --layer``, bundles, ``predict``, HEAR model specs and the docs.

- ``extract --layers`` chooses which hidden states a store keeps: ``last``, ``all`` (every hidden
  state), one index or a comma list (``parse_layers``; negative indices count from the end);
- ``train --layer`` chooses what feeds the model from the stored ones (``parse_layer``): ``last``
  (the deepest stored layer, the default), an index (must be stored), ``mean`` (the mean over the
  stored layers) or ``weighted`` (a learned softmax weighting of the stored layers; ``all`` is the
  old spelling, accepted with a one-line note).

Inside the code a choice becomes a *position* along a stored layer axis once, with
``layer_position`` (it knows which hidden states are stored), and ``select_layer`` applies that
position to numpy arrays and torch tensors alike (training, serving and ONNX graphs).

Runs and bundles written before this module stored a position (``None`` = last, int = position in
the store's layer list, ``"all"`` = weighting); ``legacy_position`` reads those.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

from parrot_ser.errors import ConfigError

LAST, MEAN, WEIGHTED = "last", "mean", "weighted"
# Stored next to a layer choice in run.json / bundle.json; files without it hold a legacy position.
LAYER_MEANING = "hidden-state index (0 = embeddings)"
DEPRECATED_ALL = "note: --layer all is now spelled --layer weighted (learned layer weighting); 'all' still works"

LayerChoice = int | str  # a hidden-state index >= 0, or LAST / MEAN / WEIGHTED
Position = int | str  # a position along the stored layer axis, or MEAN / WEIGHTED


def _index(token: str, what: str, text: Any) -> int:
    try:
        return int(token)
    except ValueError:
        raise ConfigError(f"{what}: expected {_WORDS[what]}; got {text!r}") from None


_WORDS = {"--layers": "last, all, a hidden-state index or a comma list of indices",
          "--layer": "last, mean, weighted or a hidden-state index (0 = embeddings)"}


def parse_layers(text: str | int | Sequence[int], what: str = "--layers") -> str | int | list[int]:
    """Which hidden states to compute and store: 'last', 'all', '3', '-1', '3,6,9' (HEAR also
    writes '3;6;9') -> 'last' | 'all' | int | list[int]."""
    if not isinstance(text, str):
        return text if isinstance(text, int) else list(text)
    t = text.strip().lower().replace(";", ",")
    if t in (LAST, "all"):
        return t
    vals = [_index(x.strip(), what, text) for x in t.split(",") if x.strip()]
    if not vals:
        raise ConfigError(f"{what}: empty layer list {text!r}")
    return vals[0] if len(vals) == 1 and "," not in t else vals


def parse_layer(value: Any, what: str = "--layer", *, note: bool = True) -> LayerChoice:
    """What feeds the model (CLI text, YAML value or a stored choice) -> LAST | MEAN | WEIGHTED |
    a hidden-state index. ``all`` (the old word for weighting) prints a one-line note on stderr
    unless ``note`` is False."""
    if value is None:
        return LAST
    if isinstance(value, bool):
        raise ConfigError(f"{what}: expected {_WORDS['--layer']}; got {value!r}")
    if isinstance(value, int):
        idx = value
    else:
        t = str(value).strip().lower()
        if t in ("", LAST):
            return LAST
        if t in (MEAN, WEIGHTED):
            return t
        if t == "all":
            if note:
                print(DEPRECATED_ALL, file=sys.stderr)
            return WEIGHTED
        idx = _index(t, "--layer", value)
    if idx < 0:
        raise ConfigError(f"{what}: a layer is a hidden-state index >= 0 (0 = embeddings); "
                          f"got {value!r} (use 'last' for the deepest stored layer)")
    return idx


def layer_position(choice: LayerChoice, stored: Sequence[int], where: str = "features") -> Position:
    """A choice -> a position along a stored layer axis; ``stored``: the hidden-state indices kept
    there, in depth order (a store's / an encoder identity's ``layers``)."""
    stored = [int(x) for x in stored]
    if choice in (MEAN, WEIGHTED):
        return choice
    if choice in (LAST, None):
        return len(stored) - 1
    if isinstance(choice, int) and not isinstance(choice, bool) and choice in stored:
        return stored.index(choice)
    raise ConfigError(f"{where}: layer {choice!r} is not stored; stored hidden states: {stored} "
                      "(extract it with --layers, or choose one of these, 'last', 'mean' or 'weighted')")


def legacy_position(value: Any, n_stored: int, where: str = "run") -> Position:
    """The layer value of a run.json / bundle written before hidden-state indices (None = last,
    int = position among the stored layers, negative from the end, 'mean', 'all' = weighting)."""
    if value in (None, LAST):
        return n_stored - 1
    if value == MEAN:
        return MEAN
    if value in ("all", WEIGHTED):
        return WEIGHTED
    pos = int(value)
    if not -n_stored <= pos < n_stored:
        raise ConfigError(f"{where}: layer position {value} out of range ({n_stored} stored layers)")
    return pos % n_stored


def choice_from_legacy(value: Any, stored: Sequence[Sequence[int]], where: str = "run") -> LayerChoice:
    """The layer choice an old run / bundle meant (``value`` = a legacy position, see
    ``legacy_position``), given each encoder's stored hidden states."""
    positions = [legacy_position(value, len(s), where) for s in stored]
    if positions[0] in (MEAN, WEIGHTED):
        return positions[0]
    if all(p == len(s) - 1 for p, s in zip(positions, stored)):
        return LAST
    picked = {int(list(s)[p]) for s, p in zip(stored, positions)}
    if len(picked) != 1:
        raise ConfigError(f"{where}: layer position {value!r} means different hidden states {sorted(picked)} for "
                          "its encoders; give the layer as a hidden-state index")
    return picked.pop()


def as_legacy(choice: LayerChoice, stored: Sequence[int]) -> Any:
    """A choice written the old way (for run identities computed before hidden-state indices): None
    for the last layer, the position for an index, 'all' for weighting."""
    if choice == LAST:
        return None
    if choice == WEIGHTED:
        return "all"
    if choice == MEAN:
        return MEAN
    return layer_position(choice, stored)


def select_layer(x: Any, position: Position, axis: int = 0) -> Any:
    """The one selector: position ``position`` (from ``layer_position``) of the layer axis ``axis``
    of a numpy array or torch tensor; MEAN averages over it; WEIGHTED keeps it (the model learns the
    mix). A numpy memmap reads only the chosen layer."""
    import numpy as np

    if hasattr(x, "detach"):  # torch tensor (ONNX graphs, served batches)
        if position == WEIGHTED:
            return x
        return x.mean(dim=axis) if position == MEAN else x.select(axis, int(position))
    if position == WEIGHTED:
        return np.asarray(x, dtype=np.float32)
    if position == MEAN:
        return np.asarray(x, dtype=np.float32).mean(axis=axis)
    return np.asarray(np.take(x, int(position), axis=axis), dtype=np.float32)
