"""Header check of every file of a manifest, in parallel (reading headers is I/O bound, so threads)."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed

from parrot_ser.audio import AudioInfo, read_info
from parrot_ser.corpora.base import Manifest, Problem
from parrot_ser.errors import AudioError


def check_audio(man: Manifest, workers: int = 8,
                on_done: Callable[[int], None] | None = None) -> tuple[dict[str, AudioInfo], list[Problem]]:
    """``read_info`` on every utterance (headers only, no decoding). Returns utt_id -> AudioInfo for the
    readable files and one Problem (manifest-relative path, error kind and detail) per bad file.
    ``on_done(n)`` is called after each file (progress bars)."""
    infos: dict[str, AudioInfo] = {}
    problems: list[Problem] = []
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        futs = {pool.submit(read_info, man.abspath(u)): u for u in man.utterances}
        for fut in as_completed(futs):
            u = futs[fut]
            try:
                infos[u.utt_id] = fut.result()
            except AudioError as e:
                problems.append(Problem(u.path, e.problem + (f" ({e.detail})" if e.detail else "")))
            if on_done is not None:
                on_done(1)
    return infos, sorted(problems, key=lambda p: p.path)
