"""Progress as a callback: what lower layers (extraction, training, the demo) report through.

A *progress factory* is ``make(unit, disable=False) -> progress`` returning a context manager with
``add_task(description, total=, rate=)``, ``advance(task, n)`` and ``update(task, **fields)`` (the
shape of rich's Progress). The CLI passes its terminal one (``cli.common.make_progress``); the
default here shows nothing, so library calls are silent."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class SilentProgress:
    """Accepts every progress call and shows nothing."""

    def __enter__(self) -> SilentProgress:
        return self

    def __exit__(self, *exc: Any) -> None:
        return None

    def add_task(self, description: str, total: float | None = None, **fields: Any) -> int:
        return 0

    def advance(self, task: int, advance: float = 1) -> None:
        return None

    def update(self, task: int, **fields: Any) -> None:
        return None


ProgressFactory = Callable[..., Any]


def silent(unit: str = "utt", *, disable: bool = False) -> SilentProgress:
    return SilentProgress()


def rate_text(done: int, seconds: float, unit: str = "utt", extra: str = "") -> str:
    r = done / seconds if seconds > 0 else 0.0
    return f"{r:.1f} {unit}/s" + (f" {extra}" if extra else "")
