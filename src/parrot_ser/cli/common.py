"""Helpers shared by every CLI command: error guard, consoles, progress bars."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from parrot_ser.errors import ParrotError

F = TypeVar("F", bound=Callable[..., Any])

# stdout is reserved for machine-readable output (--json); humans read stderr.
out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)  # soft_wrap: an error stays one line


def guard(fn: F) -> F:
    """Turn a ParrotError (a problem the user can fix) into one clear line and exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ParrotError as e:
            err.print(f"[bold red]error:[/] {e}", markup=True, highlight=False)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            err.print("interrupted; rerun the same command to resume where supported")
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


def print_json(obj: Any) -> None:
    """Exactly one JSON document on stdout."""
    sys.stdout.write(json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")
    sys.stdout.flush()


def make_progress(unit: str = "utt", *, disable: bool = False) -> Progress:
    """A progress bar on stderr showing count, rate (unit/s), elapsed and time left."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        console=err,
        disable=disable,
        transient=False,
    )


def rate_text(done: int, seconds: float, unit: str = "utt", extra: str = "") -> str:
    r = done / seconds if seconds > 0 else 0.0
    return f"{r:.1f} {unit}/s" + (f" {extra}" if extra else "")
