"""The one atomic-write helper: write a temporary sibling, then rename it over the target, so a
crash (or a concurrent reader) never sees a half-written file."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def temp_sibling(path: Path) -> Path:
    """A hidden, unique temporary name next to ``path`` (same folder, so the rename is atomic)."""
    return path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")


@contextmanager
def atomic_path(path: str | Path, *, fsync: bool = False) -> Iterator[Path]:
    """``with atomic_path(p) as tmp: write tmp`` -> tmp renamed onto ``p`` when the block succeeds,
    removed when it fails. The parent folder is created."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_sibling(path)
    try:
        yield tmp
        if fsync:
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_text_atomic(path: str | Path, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def json_default(o: Any) -> Any:
    """numpy scalars and arrays as plain values, anything else (paths, ...) as its text."""
    import numpy as np

    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


def write_json_atomic(path: str | Path, obj: Any, *, indent: int = 1, default: Callable[[Any], Any] = json_default,
                      newline: bool = False) -> Path:
    """JSON (numpy scalars/arrays and paths as plain values) written atomically."""
    return write_text_atomic(path, json.dumps(obj, indent=indent, default=default) + ("\n" if newline else ""))
