"""Worker processes shared by training (``training.execute``) and extraction (``features.pool``):
how many cores this process may use, and workers that end with the driver that started them."""

from __future__ import annotations

import os


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity, e.g. a container's or taskset's share)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def exit_with_parent(parent: int, poll_s: float = 1.0) -> None:
    """End this worker when the driver that started it is gone. A driver killed with SIGTERM or
    SIGKILL (a job scheduler, ``kill PID``) cannot shut its pool down, and its workers would go on
    working for nobody, then sleep forever holding their memory (seen: 600 MB each).
    Ctrl-C reaches the whole process group and needs none of this. A daemon thread watches the
    parent pid (a dead parent re-parents us), portable where prctl(PR_SET_PDEATHSIG) is Linux-only.
    ``parent`` is the driver's pid as the driver sent it: read here, it would already be the new
    parent's when the driver died while this worker was still importing."""
    import threading
    import time

    if os.getppid() != parent:
        os._exit(1)

    def watch() -> None:
        while True:
            time.sleep(poll_s)
            if os.getppid() != parent:
                os._exit(1)  # no cleanup to wait for: the driver writes every result, the worker none

    threading.Thread(target=watch, name="parrot-exit-with-parent", daemon=True).start()
