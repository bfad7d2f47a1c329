"""Feature extraction on a Ray cluster (``parrot-ser extract ... --engine ray [--address ADDR]``).

Ray is an optional extra (``pip install 'parrot-ser[ray]'``) and is imported only here, only when
asked. The split of work:

- the driver (the ``parrot-ser extract`` process) scans the manifest, reads durations, cuts the
  resumable chunks exactly as a local run does, holds the store lock and is the **only writer**: it
  commits each returned chunk atomically and consolidates at the end (``writer.extract_features``
  with ``remote=RayChunkRunner(...)``), so resume and crash safety are those of a local run;
- Ray actors (one per CPU slot of ``threads`` CPUs, or one per GPU for a CUDA device) each build the
  encoder **once** and encode whole chunks with ``writer.encode_chunk``, i.e. the same
  length-bucketed batches a local run makes. On CPU with the same thread count the stored features
  are bit-identical to a local run (tested); on GPUs they agree to kernel tolerance.

Actors read the audio by path: the corpus must be at the same path on every node (a shared file
system), as must checkpoint files. Each actor's encoder identity (checkpoint sha256, layers, options)
is checked against the driver's before any chunk is sent, so a node with another checkpoint file
cannot mix features into the store.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from parrot_ser.encoders.base import Encoder
from parrot_ser.errors import FeatureStoreError
from parrot_ser.features.pool import ChunkEncoder
from parrot_ser.features.writer import ChunkJob, ChunkResult, ChunkRunner
from parrot_ser.files import json_plain


class RayChunkRunner(ChunkRunner):
    """Sends chunks to Ray actors that each load the encoder once (module doc).

    ``build_kwargs``: ``build_encoder`` arguments (``name`` plus checkpoint, layers, random_init,
    seed, device and options), the same the driver used for its own encoder. ``threads``: CPUs per
    actor (torch threads); ``n_actors``: default = cluster CPUs // threads, or the GPUs for CUDA."""

    def __init__(self, build_kwargs: dict, *, address: str | None = None, threads: int = 1,
                 n_actors: int | None = None):
        from parrot_ser.raycluster import ray_init

        self.ray = ray_init(address)
        self.build_kwargs = dict(build_kwargs)
        self.threads = max(1, int(threads))
        res = self.ray.cluster_resources()
        self.gpu = str(self.build_kwargs.get("device") or "cpu").startswith("cuda")
        if n_actors is None:
            n_actors = int(res.get("GPU", 0)) if self.gpu else int(res.get("CPU", 1)) // self.threads
        if n_actors < 1:
            raise FeatureStoreError(f"the Ray cluster has no room for an encoder actor ({res.get('CPU', 0)} CPUs, "
                                    f"{res.get('GPU', 0)} GPUs; each actor asks for {self.threads} CPU(s)"
                                    f"{' and 1 GPU' if self.gpu else ''})")
        self.n_actors = int(n_actors)
        self.actors: list[Any] = []

    def _start(self) -> None:
        if self.actors:
            return
        cls = self.ray.remote(ChunkEncoder).options(num_cpus=self.threads, num_gpus=1 if self.gpu else 0)
        self.actors = [cls.remote(self.build_kwargs, self.threads) for _ in range(self.n_actors)]

    def check_identity(self, encoder: Encoder) -> None:
        self._start()
        want = json_plain(encoder.identity.to_dict())
        for got in self.ray.get([a.identity.remote() for a in self.actors]):
            if json_plain(got) != want:
                diff = sorted(k for k in set(want) | set(got) if want.get(k) != got.get(k))
                raise FeatureStoreError(f"a Ray worker built {encoder.spec.name!r} with another identity (differs "
                                        f"in {', '.join(diff)}): is the checkpoint the same file on every node?")

    def run(self, jobs: list[ChunkJob], *, frames: bool, batch_seconds: float,
            max_batch: int) -> Iterator[tuple[int, ChunkResult]]:
        self._start()
        queue = list(enumerate(jobs))
        pending: dict = {}
        free = list(self.actors) * 2  # two chunks in flight per actor: the next one waits at the actor
        try:
            while queue or pending:
                while queue and free:
                    ci, job = queue.pop(0)
                    actor = free.pop(0)
                    pending[actor.encode.remote(job, frames, batch_seconds, max_batch)] = (ci, actor)
                done, _ = self.ray.wait(list(pending), num_returns=1)
                for ref in done:
                    ci, actor = pending.pop(ref)
                    free.append(actor)
                    yield ci, self.ray.get(ref)
        finally:
            for ref in pending:
                self.ray.cancel(ref)

    def close(self) -> None:
        for a in self.actors:
            self.ray.kill(a)
        self.actors = []
