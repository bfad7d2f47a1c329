"""Helpers shared by every CLI command: error guard, consoles, progress bars."""

from __future__ import annotations

import contextlib
import errno
import functools
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.text import Text

from parrot_ser.errors import ConfigError, ParrotError
from parrot_ser.notices import untrained_text
from parrot_ser.progress import rate_text as rate_text  # re-exported for the commands

F = TypeVar("F", bound=Callable[..., Any])

def _width(stream: Any) -> int | None:
    """Console width: the terminal's when there is one; otherwise (a log file, a pipe, CI) rich would
    assume 80 columns and cut tables, so use $COLUMNS or a width no table of ours reaches."""
    try:
        if stream.isatty():
            return None
    except (AttributeError, ValueError):
        pass
    cols = os.environ.get("COLUMNS", "")
    return int(cols) if cols.isdigit() and int(cols) > 0 else NON_TTY_WIDTH


NON_TTY_WIDTH = 400

# stdout is reserved for machine-readable output (--json); humans read stderr.
out = Console(highlight=False, soft_wrap=True, width=_width(sys.stdout))
err = Console(stderr=True, highlight=False, soft_wrap=True, width=_width(sys.stderr))  # soft_wrap: errors stay one line


# What to do about the OS errors a user meets (disk full, read-only, permissions, a file where a
# folder is expected); anything else gets its strerror only.
_OS_HINTS = {
    errno.ENOSPC: "no space left on the device; free space (or choose another --out) and rerun: finished "
                  "work is kept",
    errno.EDQUOT: "disk quota exceeded; free space and rerun: finished work is kept",
    errno.EROFS: "read-only file system; choose a writable --out",
    errno.EACCES: "permission denied; check the permissions or choose another path",
    errno.EPERM: "operation not permitted; check the permissions or choose another path",
    errno.ENOTDIR: "a file is in the way where a folder is needed; choose another path",
    errno.EISDIR: "is a folder where a file is needed; give a file name",
    errno.EEXIST: "already exists and is not what is needed here; choose another path",
}


def os_error_message(e: OSError, context: str | Path | None = None) -> str:
    """One line for an OSError: the file it concerns, what happened and what to do. ``context``
    (a store or run folder) is not repeated when the error concerns exactly that path."""
    hint = _OS_HINTS.get(e.errno or -1) or (e.strerror or str(e) or type(e).__name__)
    if e.filename is None or (context is not None and str(e.filename) == str(context)):
        return hint  # e.g. a write on an open file: the caller's context names it
    where = str(e.filename) if e.filename2 is None else f"{e.filename} -> {e.filename2}"
    return f"{where}: {hint}"


# What a rerun of an interrupted command keeps (the commands whose work is worth keeping resume).
RESUMES = {
    "extract": "rerun the same command to resume: committed chunks of utterances are kept",
    "train": "rerun the same command to resume: finished folds are kept",
    "grid": "rerun the same command to resume: finished cells and folds are kept",
    "demo": "rerun the same command to resume: finished steps are kept",
}


def interrupt_message(command: str) -> str:
    keeps = RESUMES.get(command, f"{command} does not resume: rerun it (only extract, train, grid and demo resume)")
    return f"interrupted; {keeps}"


def guard(fn: F) -> F:
    """Turn a ParrotError (a problem the user can fix) or an OSError (disk full, read-only, no
    permission, a file where a folder should be) into one clear line and exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        _warned_untrained.clear()  # "once" means once per command, also when commands share a process (tests)
        try:
            return fn(*args, **kwargs)
        except ParrotError as e:
            err.print(f"[bold red]error:[/] {escape(str(e))}", markup=True, highlight=False)
            raise typer.Exit(2) from None
        except BrokenPipeError:
            # stdout closed by the reader (`... --json | head`): not an error to report. Point stdout
            # at /dev/null so the interpreter's final flush does not raise again; 141 = killed by SIGPIPE.
            with contextlib.suppress(OSError, ValueError, AttributeError):
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise typer.Exit(141) from None
        except OSError as e:
            err.print(f"[bold red]error:[/] {escape(os_error_message(e))}", markup=True, highlight=False)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            err.print(interrupt_message(fn.__name__))
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


_warned_untrained: set[str] = set()


def parse_checkpoints(items: list[str] | None, encoders: list[str] | None = None) -> dict[str, str]:
    """``--checkpoint NAME=PATH_OR_HF_ID`` (repeatable) -> {name: path}, through the one KEY=VALUE
    parser; ``encoders``: the names the command was given (others are an error)."""
    from parrot_ser.registry import parse_key_values

    return parse_key_values(items or [], "--checkpoint", form="NAME=PATH_OR_HF_ID (e.g. hubert-base=/models/hubert)",
                            option_keys=False, names=encoders)


def warn_untrained(names: Any) -> None:
    """Print :func:`untrained_text` once per encoder per command (train warns before the run and the
    results would repeat it; extract knows it when building the encoder and again in the report)."""
    for n in names:
        if n not in _warned_untrained:
            _warned_untrained.add(n)
            err.print(f"[bold yellow]{escape(untrained_text(n))}[/]", markup=True)


def check_out_dir(path: Path, option: str = "--out") -> Path:
    """A folder to write into: refuse an existing file before any work (and before mkdir's error)."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise ConfigError(f"{p}: {option} is a file, not a folder; give a folder (new, or one from an earlier run)")
    for parent in p.parents:
        if parent.exists():
            if not parent.is_dir():
                raise ConfigError(f"{parent}: {option} {p} lies under a file, not a folder; choose another path")
            break
    return p


def write_stdout(data: bytes) -> None:
    """A writer's bytes (inference/writers.py) as the one document on stdout."""
    sys.stdout.flush()
    sys.stdout.buffer.write(data) if hasattr(sys.stdout, "buffer") else sys.stdout.write(data.decode())
    sys.stdout.flush()


def print_columns(rows: list[tuple[str, ...]]) -> None:
    """Rows of text as aligned plain columns on stdout (the first row: the header). Not a rich table:
    rich truncates names when stdout is not a wide terminal."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        out.print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip(), markup=False)


def print_json(obj: Any) -> None:
    """Exactly one JSON document on stdout."""
    sys.stdout.write(json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")
    sys.stdout.flush()


def _clock(seconds: float | None) -> str:
    if seconds is None or seconds != seconds or seconds == float("inf"):
        return "?"
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


# No ETA before this share of a task is done: the first steps carry the start-up (worker processes,
# loading features), and an extrapolation from them was wild (issue 20: `eta 0:10:21` on a cell that
# finished a second later).
MIN_ETA_SHARE = 0.05


def average_eta(task: Task) -> float | None:
    """Seconds left at the task's average rate since it started. Training advances a fold's unused
    epochs at once when it stops early, so the average over the whole run already counts early
    stopping (rich's default, a 30 s speed window, swings wildly at those jumps)."""
    if not task.total or not task.completed or task.elapsed is None or task.completed < MIN_ETA_SHARE * task.total:
        return None
    return max(0.0, task.elapsed * (task.total - task.completed) / task.completed)


def eta_text(task: Task, upper: bool = False) -> str:
    """The ETA; ``upper``: "<= ", for epochs, where early stopping can only make the rest shorter."""
    eta = average_eta(task)
    return ("<= " if upper and eta is not None else "") + _clock(eta)


def count_text(task: Task) -> str:
    """``done/total (pct)``: whole units done (a grid counts cells, not the running cells' fractions,
    which printed `0.0666667/2`), and the percentage of the work, below 100 until the task is done."""
    if task.total is None:
        return f"{task.completed:g}"
    share = task.completed / task.total if task.total else 1.0
    pct = 100 * share if share >= 1 else min(99.0, 100 * share)
    return f"{int(task.completed + 1e-9):d}/{task.total:g} ({pct:.0f}%)"


class AverageETAColumn(ProgressColumn):
    def __init__(self, upper: bool = False):
        super().__init__()
        self.upper = upper

    def render(self, task: Task) -> Text:
        return Text(eta_text(task, self.upper), style="progress.remaining")


class PlainProgress(Progress):
    """For a stderr that is not a terminal (a log file, nohup, CI): no live bar, which would print
    nothing until the end, but one plain line per task every ``interval`` seconds and when it ends."""

    def __init__(self, *columns: Any, interval: float, quiet: bool = False, upper_eta: bool = False, **kwargs: Any):
        super().__init__(*columns, disable=True, **kwargs)
        self.interval, self.quiet, self.upper_eta = interval, quiet, upper_eta
        self._said: dict[Any, float] = {}

    def update(self, task_id: TaskID, **kwargs: Any) -> None:
        super().update(task_id, **kwargs)
        self._report(task_id)

    def advance(self, task_id: TaskID, advance: float = 1) -> None:
        super().advance(task_id, advance)
        self._report(task_id)

    def _report(self, task_id: TaskID) -> None:
        if self.quiet:
            return
        task = self._tasks[task_id]
        now = self.get_time()  # the progress clock (injectable in tests)
        finished = task.total is not None and task.completed >= task.total
        last = self._said.get(task_id)
        if last == float("inf") or (not finished and last is not None and now - last < self.interval):
            return
        self._said[task_id] = float("inf") if finished else now
        if last is None and not finished and not task.completed:
            return  # nothing to say at 0 yet; the clock starts now
        rate = task.fields.get("rate") or ""
        line = (f"{task.description}: {count_text(task)} {rate} elapsed {_clock(task.elapsed)} "
                + ("done" if finished else f"eta {eta_text(task, self.upper_eta)}"))
        self.console.print(" ".join(line.split()), markup=False, highlight=False)


def progress_interval() -> float:
    """Seconds between plain progress lines (PARROT_PROGRESS_SECONDS, default 30)."""
    try:
        return max(0.0, float(os.environ.get("PARROT_PROGRESS_SECONDS", "30")))
    except ValueError:
        return 30.0


def make_progress(unit: str = "utt", *, disable: bool = False) -> Progress:
    """A progress bar on stderr showing count, rate (unit/s), elapsed and time left; plain periodic
    lines instead when stderr is not a terminal."""
    upper = unit == "epoch"  # early stopping only shortens the rest: the ETA is a bound
    if not err.is_terminal:
        return PlainProgress(console=err, interval=progress_interval(), quiet=disable, upper_eta=upper)
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TextColumn("eta"),
        AverageETAColumn(upper),
        console=err,
        disable=disable,
        transient=False,
    )


