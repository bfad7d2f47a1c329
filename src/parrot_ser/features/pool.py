"""Extraction on every core of this machine: worker processes that each load the encoder once and
encode whole chunks with one torch thread, while this process stays the only writer of the store.

Why processes and not threads: one extraction with an OpenMP team of 2 threads on a 2-core machine
that is busy with other work ran 0.7 utt/s where ``--threads 1`` ran 6.2 utt/s (issue 20): a team
waits at every barrier for its slowest, descheduled thread. Single-threaded workers never wait for
each other, so on a busy machine each runs at the ``--threads 1`` speed, and on an idle one the
workers fill every core (``python bench/run.py extract`` measures both against the old rule).

The chunks and their batches are those of an in-process run, and a worker with one thread computes
what this process computes with one thread: the stored features are identical (tested)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

from parrot_ser.encoders.base import Encoder
from parrot_ser.errors import FeatureStoreError
from parrot_ser.features.writer import ChunkJob, ChunkResult, ChunkRunner, encode_chunk
from parrot_ser.files import json_plain
from parrot_ser.workers import exit_with_parent, usable_cores


class ChunkEncoder:
    """One encoder, built once per worker (a process here, a Ray actor in ``distributed``), or
    inherited from the driver by a forked worker (``encoder``)."""

    def __init__(self, build_kwargs: dict, threads: int, encoder: Encoder | None = None):
        import torch

        torch.set_num_threads(int(threads))
        if encoder is None:
            from parrot_ser.encoders import build_encoder

            kw = dict(build_kwargs)
            encoder = build_encoder(kw.pop("name"), **kw)
        self.encoder = encoder
        self.pool = ThreadPoolExecutor(max_workers=2)  # audio of the next batch loads meanwhile

    def identity(self) -> dict:
        return self.encoder.identity.to_dict()

    def encode(self, job: ChunkJob, frames: bool, batch_seconds: float, max_batch: int) -> ChunkResult:
        stats: dict = {}
        out = encode_chunk(self.encoder, job, frames=frames, batch_seconds=batch_seconds, max_batch=max_batch,
                           pool=self.pool, stats=stats)
        out.stats = {k: v for k, v in stats.items() if isinstance(v, (int, float))}
        return out


def extraction_workers(workers: int | None, threads: int | None, n_chunks: int, device: str, *,
                       handcrafted: bool = False) -> int:
    """Worker processes for a local extraction; 1 = encode in this process.

    Default: one worker per usable core (``threads`` each, default 1), at most one per chunk. A GPU
    device encodes in this process (one model on the card, not one per core), and so does a
    handcrafted encoder (logmel: reading the audio costs more than the features; a worker's start,
    seconds of importing torch, would cost more than it saves)."""
    if str(device).startswith("cuda") or str(device).startswith("mps"):
        return 1
    if workers is None:
        if handcrafted:
            return 1
        workers = usable_cores() // max(1, threads or 1)
    return max(1, min(int(workers), n_chunks))


_WORKER: ChunkEncoder | None = None
_INHERITED: Encoder | None = None  # the driver's encoder, set just before forking the workers


def _worker_init(build_kwargs: dict, threads: int, driver_pid: int) -> None:
    import signal

    global _WORKER
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the driver's to handle: it stops us
    exit_with_parent(driver_pid)
    _WORKER = ChunkEncoder(build_kwargs, threads, encoder=_INHERITED)


def _worker_identity() -> dict:
    assert _WORKER is not None
    return _WORKER.identity()


def _worker_encode(job: ChunkJob, frames: bool, batch_seconds: float, max_batch: int) -> ChunkResult:
    assert _WORKER is not None
    return _WORKER.encode(job, frames, batch_seconds, max_batch)


def _can_fork(threads: int) -> bool:
    """Forking copies the driver's loaded encoder for free, where a spawned worker spends seconds
    importing torch and transformers and building the model again (measured: 14 s of wall time per
    worker on a busy 2-core machine, more than the whole README subset's encoding). Safe only while
    no OpenMP team exists: the driver and the workers run one torch thread each."""
    import multiprocessing as mp

    import torch

    return "fork" in mp.get_all_start_methods() and int(threads) == 1 and torch.get_num_threads() == 1


class ProcessChunkRunner(ChunkRunner):
    """Encodes chunks in ``n_workers`` local processes of ``threads`` torch threads each.
    ``build_kwargs`` as for ``build_encoder`` plus ``name``. With one thread everywhere the workers
    are forked from this process and inherit ``encoder`` (the driver's, already built); otherwise
    they are spawned (a fresh interpreter: no forked OpenMP runtime) and build their own."""

    def __init__(self, build_kwargs: dict, *, n_workers: int, threads: int = 1, encoder: Encoder | None = None):
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        global _INHERITED
        self.n_workers = max(1, int(n_workers))
        threads = max(1, int(threads))
        fork = encoder is not None and _can_fork(threads)
        _INHERITED = encoder if fork else None
        self.pool = ProcessPoolExecutor(max_workers=self.n_workers, mp_context=mp.get_context("fork" if fork else
                                                                                               "spawn"),
                                        initializer=_worker_init, initargs=(dict(build_kwargs), threads, os.getpid()))
        if fork:  # fork now, while _INHERITED is this encoder
            import warnings

            with warnings.catch_warnings():
                # Python >= 3.12 warns on any fork of a process with threads (here: a progress bar's
                # refresh thread); the workers only encode, they never touch what those threads hold.
                warnings.simplefilter("ignore", DeprecationWarning)
                for f in [self.pool.submit(os.getpid) for _ in range(self.n_workers)]:
                    f.result()
            _INHERITED = None

    def check_identity(self, encoder: Encoder) -> None:
        # Same machine, same files, same seed: a differing identity would be a bug, and cheap to rule out.
        got = self.pool.submit(_worker_identity).result()
        if json_plain(got) != json_plain(encoder.identity.to_dict()):
            raise FeatureStoreError(f"an extraction worker built {encoder.spec.name!r} with another identity")

    def run(self, jobs: list[ChunkJob], *, frames: bool, batch_seconds: float,
            max_batch: int) -> Iterator[tuple[int, ChunkResult]]:
        from concurrent.futures import FIRST_COMPLETED, wait

        pending = {self.pool.submit(_worker_encode, job, frames, batch_seconds, max_batch): ci
                   for ci, job in enumerate(jobs)}
        self.busy = True
        while pending:
            done, _ = wait(list(pending), return_when=FIRST_COMPLETED)
            for f in sorted(done, key=lambda f: pending[f]):
                yield pending.pop(f), f.result()
        self.busy = False

    def close(self) -> None:
        """All chunks returned: let the workers exit. Stopped early (an error, Ctrl-C): end them now
        rather than wait for chunks nobody will commit."""
        if getattr(self, "busy", False):
            for proc in list(getattr(self.pool, "_processes", {}).values()):  # no public API for this
                proc.terminate()
        self.pool.shutdown(wait=True, cancel_futures=True)
