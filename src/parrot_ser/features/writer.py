"""Writing a feature store: length-bucketed batches, resumable atomic chunks, atomic consolidation.

Crash safety (a kill at any instant never leaves a half-written entry that a reader accepts):
- work is committed in chunks ``DIR/<enc>/.partial/chunk_*.npz``, each written to a temp name and
  moved into place with ``os.replace`` (atomic on POSIX); a rerun skips the utterances of committed
  chunks (bad files recorded there are not retried);
- the finished arrays are written to temp names and replaced one by one, and ``meta.json`` is
  written last: readers only accept an entry whose meta.json says complete; before an existing
  entry is modified (extended), its data is first saved as a chunk and its meta.json removed.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
import uuid
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from parrot_ser import __version__
from parrot_ser.corpora.base import Manifest, Utterance
from parrot_ser.encoders.base import Encoder
from parrot_ser.errors import ConfigError, FeatureStoreError, ParrotError
from parrot_ser.features.store import (
    FORMAT_VERSION,
    FRAMES,
    MANIFEST,
    META,
    OFFSETS,
    PARTIAL,
    POOLED,
    REPORT,
    UTT_IDS,
    EncoderFeatures,
    read_meta,
)
from parrot_ser.files import atomic_path, json_plain, temp_sibling, write_json_atomic, write_text_atomic
from parrot_ser.progress import ProgressFactory, rate_text, silent

# Test / resume-check hook: exit hard (no cleanup, like a kill) after this many chunks of one run.
STOP_ENV = "PARROT_SER_STOP_AFTER_CHUNKS"
STOP_EXIT_CODE = 75
DTYPES = ("float16", "float32")


# --- small atomic-file helpers -------------------------------------------------------------------

def _atomic_json(path: Path, obj: object) -> None:
    write_json_atomic(path, obj, indent=2, default=str)


def _atomic_npz(path: Path, **arrays: np.ndarray) -> None:
    with atomic_path(path, fsync=True) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)


def _reserve(path: Path) -> None:
    """Allocate the disk blocks of a freshly created (sparse) memmap file before writing into it: on
    a full disk a write through a memory map is a SIGBUS that kills the process (no cleanup, no
    message); posix_fallocate turns it into an ENOSPC OSError here, which the CLI reports."""
    import errno

    if not hasattr(os, "posix_fallocate"):
        return
    with open(path, "r+b") as f:
        try:
            os.posix_fallocate(f.fileno(), 0, os.fstat(f.fileno()).st_size)
        except OSError as e:
            if e.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):  # fs cannot: best effort
                path.unlink(missing_ok=True)  # give the space back; the chunks stay for the rerun
                raise


def _clean_tmp(d: Path) -> None:
    for p in d.glob(".*.tmp"):  # left by a kill between write and replace: never read, safe to drop
        with contextlib.suppress(OSError):
            p.unlink()


# --- manifest of the store -----------------------------------------------------------------------

def _merge_manifest(out: Path, manifest: Manifest) -> Manifest:
    """Store manifest = union of every manifest extracted into this store (first seen order), written
    when it grew. The same utt_id with another audio file is refused: features would silently mix."""
    merged, grew = _merged_manifest(out, manifest)
    if grew:
        with atomic_path(out / MANIFEST) as tmp:
            merged.to_csv(tmp)
            os.replace(str(tmp) + ".json", str(out / MANIFEST) + ".json")
    return merged


def _merged_manifest(out: Path, manifest: Manifest) -> tuple[Manifest, bool]:
    """(the store manifest with ``manifest`` merged in, whether that added rows); reads only."""
    path = out / MANIFEST
    new_root = Path(manifest.root).resolve()
    if path.is_file():
        old = Manifest.from_csv(path)
        _check_same_labels(path, old, manifest)
        by_id = {u.utt_id: u for u in old.utterances}
        same_root = Path(old.root).resolve() == new_root
        added = []
        for u in manifest.utterances:
            p = u.path if same_root else str(manifest.abspath(u).resolve())
            if u.utt_id in by_id:
                o = by_id[u.utt_id]
                if Path(old.abspath(o)).resolve() != manifest.abspath(u).resolve():
                    raise FeatureStoreError(
                        f"{path}: utterance {u.utt_id!r} is {old.abspath(o)} in this store but "
                        f"{manifest.abspath(u)} in the new manifest; use another --out")
                continue
            added.append(Utterance(u.utt_id, p, u.label, u.speaker, u.original_label, dict(u.meta)))
        if not added:
            return old, False
        return Manifest(old.corpus, old.root, old.utterances + added, old.problems, label_policy=old.label_policy,
                        targets=old.targets, note=old.note or manifest.note), True
    return Manifest(manifest.corpus, new_root, list(manifest.utterances), list(manifest.problems),
                    label_policy=manifest.label_policy, targets=list(manifest.targets), note=manifest.note), True


def _check_same_labels(path: Path, old: Manifest, new: Manifest) -> None:
    """One store, one label policy and one target list: rows labelled two ways (canonical here, the
    data's own there) would train as different classes without a word."""
    def mode(m: Manifest) -> tuple:
        pol = m.label_policy or {"mode": "canonical"}  # stores written before policies were recorded
        return pol.get("mode"), pol.get("map") or {}
    if mode(old) != mode(new) or list(old.targets) != list(new.targets):
        raise FeatureStoreError(
            f"{path}: this store holds labels {mode(old)[0]!r}{' + a label map' if mode(old)[1] else ''} and targets "
            f"{old.targets or 'none'}; the new manifest has {mode(new)[0]!r}{' + a label map' if mode(new)[1] else ''}"
            f" and {new.targets or 'none'}; extract with the same --labels/--label-map, or use another --out")


# --- batching ------------------------------------------------------------------------------------

def bucket_batches(durations: list[float], batch_seconds: float, max_batch: int = 64) -> list[list[int]]:
    """Indices grouped into batches of similar length (input sorted longest first), each capped so
    that n x longest <= batch_seconds of padded audio (a longer single utterance gets its own batch)."""
    order = sorted(range(len(durations)), key=lambda i: (-durations[i], i))
    batches: list[list[int]] = []
    cur: list[int] = []
    for i in order:
        longest = durations[cur[0]] if cur else durations[i]
        if cur and ((len(cur) + 1) * longest > batch_seconds or len(cur) >= max_batch):
            batches.append(cur)
            cur = []
        cur.append(i)
    if cur:
        batches.append(cur)
    return batches


# --- identity -----------------------------------------------------------------------------------

def _store_identity(encoder: Encoder, frames: bool, dtype: str) -> dict:
    return json_plain({"encoder": encoder.spec.name, "identity": encoder.identity.to_dict(),
                  "frames": bool(frames), "dtype": dtype})


def _describe(ident: dict) -> str:
    i = ident.get("identity", {})
    sha = (i.get("checkpoint_sha256") or "")[:12] or "-"
    return (f"checkpoint={i.get('checkpoint')} sha256={sha} random_init={i.get('random_init')} seed={i.get('seed')} "
            f"layers={i.get('layers')} frames={ident.get('frames')} dtype={ident.get('dtype')}")


def _check_identity(where: Path, old: dict, new: dict) -> None:
    if json_plain(old) != json_plain(new):
        diff = sorted(k for k in set(old.get("identity", {})) | set(new.get("identity", {}))
                      if old.get("identity", {}).get(k) != new.get("identity", {}).get(k))
        diff += [k for k in ("frames", "dtype") if old.get(k) != new.get(k)]
        raise FeatureStoreError(
            f"{where}: refusing to mix features of different encoder identities for {new.get('encoder')!r} "
            f"(differ in {', '.join(diff)}): store has [{_describe(old)}], request is [{_describe(new)}]; "
            f"use another --out")


# --- chunks --------------------------------------------------------------------------------------

def _chunk_paths(partial: Path) -> list[Path]:
    return sorted(partial.glob("chunk_*.npz"))


def _read_chunk_index(p: Path) -> tuple[list[str], list[dict], dict]:
    try:
        with np.load(p, allow_pickle=False) as z:
            ids = [str(x) for x in z["utt_ids"]]
            skipped = json.loads(str(z["skipped"]))
            stats = json.loads(str(z["stats"]))
    except Exception as e:  # atomic writes make this external damage; say which file
        raise FeatureStoreError(f"{p}: damaged chunk ({e}); delete it and rerun to recompute it") from None
    return ids, skipped, stats


def _next_chunk_path(partial: Path) -> Path:
    nums = [int(p.stem.split("_")[1]) for p in _chunk_paths(partial) if p.stem.split("_")[1].isdigit()]
    return partial / f"chunk_{(max(nums) + 1 if nums else 0):06d}.npz"


def _finished_to_chunk(enc_dir: Path, meta: dict, partial: Path) -> None:
    """Save a finished entry as chunk 'base' so that it can be extended with new utterances."""
    fs = EncoderFeatures(enc_dir, meta)
    rep = fs.report()
    arrays = {"utt_ids": np.asarray(fs.utt_ids, dtype=str), "pooled": np.asarray(fs.pooled_all()),
              "skipped": np.asarray(json.dumps(rep.get("skipped", []))),
              "stats": np.asarray(json.dumps({"run_id": "base", "n_computed": 0}))}
    if fs.has_frames:
        arrays["frames"] = np.asarray(fs._frames)
        arrays["lengths"] = np.diff(fs._offsets)
    _atomic_npz(partial / "chunk_base.npz", **arrays)
    _atomic_json(partial / "runs.json", rep.get("runs", []))


# --- audio prefetch ------------------------------------------------------------------------------

def _load_one(path: Path, sr: int) -> tuple[np.ndarray | None, str | None, list[str]]:
    from parrot_ser.audio import load_with_warnings

    try:
        x, texts = load_with_warnings(path, sr)  # texts from the signal as decoded, header checks too
    except ParrotError as e:
        return None, str(e), []
    return x, None, texts


def _prefetch(batches: list[list[int]], paths: list[Path], sr: int, pool: ThreadPoolExecutor,
              ahead: int = 2) -> Iterator[tuple[list[int], list[tuple]]]:
    """Yield (batch, loaded) while the next ``ahead`` batches load in threads (soundfile and soxr
    release the GIL), so reading audio overlaps the model forward."""
    q: deque[tuple[list[int], list[Future]]] = deque()
    it = iter(batches)
    for b in it:
        q.append((b, [pool.submit(_load_one, paths[i], sr) for i in b]))
        if len(q) > ahead:
            break
    while q:
        b, futs = q.popleft()
        nxt = next(it, None)
        if nxt is not None:
            q.append((nxt, [pool.submit(_load_one, paths[i], sr) for i in nxt]))
        yield b, [f.result() for f in futs]


# --- one writer per store -----------------------------------------------------------------------

LOCK_NAME = ".parrot-ser.lock"
OWNER_NAME = ".parrot-ser.lock.owner"


@contextlib.contextmanager
def store_lock(out_dir: str | Path, *, wait: bool = False) -> Iterator[None]:
    """Hold the store's write lock (``filelock``: fcntl.flock on POSIX, released by the OS when the
    process dies, so a killed writer never leaves a stale lock). Held: FeatureStoreError naming the
    holder, unless ``wait``. A second writer could otherwise extend an entry the first is
    consolidating, or remove its meta.json mid-read."""
    from filelock import FileLock, Timeout

    out = Path(out_dir)
    lock = FileLock(str(out / LOCK_NAME))
    owner = out / OWNER_NAME
    try:
        lock.acquire(timeout=-1 if wait else 0)
    except Timeout:
        try:
            who = owner.read_text(encoding="utf-8").strip()
        except OSError:
            who = "another process"
        raise FeatureStoreError(f"{out}: the store is being written by {who}; wait for it, rerun with --wait, "
                                f"or use another --out") from None
    try:
        with contextlib.suppress(OSError):
            write_text_atomic(owner, f"parrot-ser extract (pid {os.getpid()} on {os.uname().nodename}, since "
                                f"{datetime.now(timezone.utc).isoformat(timespec='seconds')})")
        yield
    finally:
        with contextlib.suppress(OSError):
            owner.unlink()
        lock.release()


# --- one chunk: load, batch, encode (here or in a remote worker) ---------------------------------

@dataclass
class ChunkJob:
    """Utterances of one resumable chunk (similar lengths), with their audio paths and durations."""

    utt_ids: list[str]
    paths: list[str]
    durations: list[float]


@dataclass
class ChunkResult:
    ids: list[str]
    pooled: list[np.ndarray]
    frames: list[np.ndarray]
    skipped: list[dict]
    warnings: list[str]
    stats: dict = field(default_factory=dict)


def encode_chunk(encoder: Encoder, job: ChunkJob, *, frames: bool, batch_seconds: float, max_batch: int,
                 pool: ThreadPoolExecutor, on_batch: Any = None, stats: dict | None = None) -> ChunkResult:
    """Load and encode one chunk in padded-seconds-capped, length-bucketed batches (the same batches
    wherever it runs, so a remote worker computes exactly what this process would). Bad files are
    returned as skipped, never raised. ``stats``: the run's timing counters, added to in place."""
    run = stats if stats is not None else {}
    for k in ("load_wait_s", "encode_s", "audio_s", "batch_real_samples", "batch_padded_samples"):
        run.setdefault(k, 0.0 if k.endswith("_s") else 0)
    sr = encoder.sample_rate
    name = encoder.spec.name
    paths = [Path(p) for p in job.paths]
    batches = bucket_batches(list(job.durations), batch_seconds, max_batch)
    ids: list[str] = []
    pooled: list[np.ndarray] = []
    frm: list[np.ndarray] = []
    skipped: list[dict] = []
    warns: list[str] = []
    t_wait = time.perf_counter()
    for b, loaded in _prefetch(batches, paths, sr, pool):
        run["load_wait_s"] += time.perf_counter() - t_wait
        ok = []
        for i, (x, err, w) in zip(b, loaded):
            if err is not None:
                skipped.append({"utt_id": job.utt_ids[i], "path": str(paths[i]), "error": err})
            else:
                ok.append((i, x))
                warns.extend(w)
        if ok:
            res, bad = _encode_isolating(encoder, ok, frames, run)
            for i, e in bad:  # the encoder saw only samples: put the file name in the message
                msg = e if str(paths[i]) in e else f"{paths[i]}: {e.replace('<memory>: ', '')}"
                skipped.append({"utt_id": job.utt_ids[i], "path": str(paths[i]), "error": msg})
            for i, r in res:
                ids.append(job.utt_ids[i])
                pooled.append(np.asarray(r.pooled, dtype=np.float32))
                if frames:
                    if r.frames is None:
                        raise FeatureStoreError(f"encoder {name!r} returned no frames although asked")
                    f = np.asarray(r.frames)  # (L, T, F) -> stored (T, L, F)
                    frm.append(np.ascontiguousarray(f.transpose(1, 0, 2)))
            n_real = sum(len(x) for _, x in ok)
            run["audio_s"] += n_real / sr
            run["batch_real_samples"] += n_real
            run["batch_padded_samples"] += len(ok) * max(len(x) for _, x in ok)
        if on_batch is not None:
            on_batch(len(b), len(ids))
        t_wait = time.perf_counter()
    return ChunkResult(ids, pooled, frm, skipped, warns)


class ChunkRunner(ABC):
    """Encodes chunks somewhere else (``features.distributed``); yields (chunk index, ChunkResult)."""

    @abstractmethod
    def check_identity(self, encoder: Encoder) -> None:
        """Refuse workers whose encoder identity differs from the driver's (the store holds one)."""

    @abstractmethod
    def run(self, jobs: list[ChunkJob], *, frames: bool, batch_seconds: float,
            max_batch: int) -> Iterator[tuple[int, ChunkResult]]:
        """Encode ``jobs`` and yield each finished chunk (any order); the driver commits them."""

    def close(self) -> None:  # noqa: B027 - optional: runners with workers to stop override it
        """Stop the workers (after ``run``, or when the driver stops early)."""


# A ChunkRunner, or a factory called with (number of chunks to encode, this process's encoder) that
# returns a runner (None: encode in this process), so the workers can follow the work left.
RunnerChoice = ChunkRunner | Callable[[int, Encoder], ChunkRunner | None] | None


# --- main entry ----------------------------------------------------------------------------------

def extract_features(manifest: Manifest, encoder: Encoder, out_dir: str | Path, *, frames: bool = False,
                     dtype: str = "float32", batch_seconds: float = 64.0, progress: ProgressFactory | bool | None = None,
                     chunk_size: int = 128, max_batch: int = 64, load_workers: int = 2,
                     wait: bool = False, remote: RunnerChoice = None) -> dict:
    """Extract ``encoder`` features for every utterance of ``manifest`` into the store ``out_dir``
    (created or extended). Resumes from committed chunks; bad audio files are skipped and listed in
    the report (never fatal). Returns the report (also written to DIR/<encoder>/report.json) with
    ``computed_this_run`` = utterances encoded by this call.

    One writer per store: the store is locked for the whole call (``store_lock``); a second writer
    stops with a one-line FeatureStoreError, or waits for the lock with ``wait=True``.
    ``remote``: a ChunkRunner (``features.pool.ProcessChunkRunner``: local worker processes,
    ``features.distributed.RayChunkRunner``: Ray actors) that encodes chunks elsewhere, or a factory
    ``(n_chunks, encoder) -> ChunkRunner | None``; this process stays the only writer (it commits each returned
    chunk atomically)."""
    if dtype not in DTYPES:
        raise ConfigError(f"dtype must be one of {', '.join(DTYPES)}; got {dtype!r}")
    if batch_seconds <= 0 or chunk_size <= 0 or max_batch <= 0:
        raise ConfigError("batch_seconds, chunk_size and max_batch must be positive")
    done = _finished_report(Path(out_dir), manifest, encoder, frames, dtype)
    if done is not None:  # nothing to write: no lock, so a store this user may only read still answers
        return done
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    with store_lock(out_dir, wait=wait):
        return _extract_locked(manifest, encoder, out_dir, frames=frames, dtype=dtype, batch_seconds=batch_seconds,
                               progress=progress, chunk_size=chunk_size, max_batch=max_batch,
                               load_workers=load_workers, remote=remote)


def _extract_locked(manifest: Manifest, encoder: Encoder, out_dir: str | Path, *, frames: bool, dtype: str,
                    batch_seconds: float, progress: bool, chunk_size: int, max_batch: int, load_workers: int,
                    remote: RunnerChoice) -> dict:
    """plan/resume -> encode -> commit (chunk by chunk) -> consolidate."""
    t_start = time.perf_counter()
    run_id = f"{datetime.now(timezone.utc).strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:6]}"
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    enc_dir = out / encoder.spec.name
    partial = enc_dir / PARTIAL
    ident = _store_identity(encoder, frames, dtype)
    requested = [u.utt_id for u in manifest.utterances]
    store_manifest, up_to_date = _resume_entry(out, enc_dir, partial, manifest, ident, requested)
    if up_to_date is not None:
        return up_to_date
    todo = _todo(partial, manifest)
    good, durs, header_skipped = _header_durations(manifest, todo)
    run = {"run_id": run_id, "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
           "n_computed": 0, "n_skipped": len(header_skipped), "chunks": 0, "load_wait_s": 0.0, "encode_s": 0.0,
           "forward_s": 0.0, "write_s": 0.0, "audio_s": 0.0, "batch_real_samples": 0, "batch_padded_samples": 0}
    enc_stats0 = dict(getattr(encoder, "stats", {}) or {})
    _encode_and_commit(encoder, manifest, good, durs, header_skipped, len(todo), partial, run, frames=frames,
                       dtype=dtype, batch_seconds=batch_seconds, progress=progress, chunk_size=chunk_size,
                       max_batch=max_batch, load_workers=load_workers, remote=remote)
    enc_stats1 = dict(getattr(encoder, "stats", {}) or {})
    for k in ("forward_s", "real_samples", "padded_samples"):
        if k in enc_stats1:
            run["model_" + k] = float(enc_stats1.get(k, 0)) - float(enc_stats0.get(k, 0))
    t_c = time.perf_counter()
    report = _consolidate(enc_dir, partial, store_manifest, requested, encoder, ident, frames, dtype, run,
                          t_start, t_c)
    report["computed_this_run"] = run["n_computed"]
    report["resumed"] = len(requested) - len(todo)
    report["up_to_date"] = False
    return report


def _finished_report(out: Path, manifest: Manifest, encoder: Encoder, frames: bool, dtype: str) -> dict | None:
    """The report of a finished entry that already holds every utterance of ``manifest`` (same
    identity, same audio files), read without writing anything; None when there is work to do (the
    locked path then checks again and says what is wrong, if anything)."""
    enc_dir = out / encoder.spec.name
    try:
        meta = read_meta(enc_dir)
        if meta is None or json_plain(meta["store_identity"]) != json_plain(_store_identity(encoder, frames, dtype)):
            return None
        if (enc_dir / PARTIAL).exists() or _merged_manifest(out, manifest)[1]:
            return None
        rep = json.loads((enc_dir / REPORT).read_text(encoding="utf-8"))
        known = set((enc_dir / UTT_IDS).read_text(encoding="utf-8").splitlines())
    except (OSError, ValueError, KeyError, FeatureStoreError):
        return None
    known |= {s["utt_id"] for s in rep.get("skipped", [])}
    if not all(u.utt_id in known for u in manifest.utterances):
        return None
    rep.update(computed_this_run=0, resumed=len(manifest.utterances), up_to_date=True)
    return rep


def _resume_entry(out: Path, enc_dir: Path, partial: Path, manifest: Manifest, ident: dict,
                  requested: list[str]) -> tuple[Manifest, dict | None]:
    """Plan/resume: an existing finished entry must have the same identity (else refused); up to date
    -> its report; otherwise it is turned back into a committed chunk. Returns (the store manifest,
    the report when there is nothing to do)."""
    meta = read_meta(enc_dir)
    if meta is not None:
        _check_identity(enc_dir / META, meta["store_identity"], ident)
        store_manifest = _merge_manifest(out, manifest)
        rep = json.loads((enc_dir / REPORT).read_text(encoding="utf-8"))
        known = set((enc_dir / UTT_IDS).read_text(encoding="utf-8").splitlines())
        known |= {s["utt_id"] for s in rep.get("skipped", [])}
        if partial.exists():
            shutil.rmtree(partial)  # leftovers of a run killed after its commit: superseded
        if all(u in known for u in requested):
            rep["computed_this_run"] = 0
            rep["resumed"] = len(requested)
            rep["up_to_date"] = True
            return store_manifest, rep
        partial.mkdir(parents=True)
        _atomic_json(partial / "identity.json", ident)
        _finished_to_chunk(enc_dir, meta, partial)
        (enc_dir / META).unlink()  # from here on the old arrays are not a finished entry
    else:
        partial.mkdir(parents=True, exist_ok=True)
        idp = partial / "identity.json"
        if idp.is_file():
            _check_identity(idp, json.loads(idp.read_text(encoding="utf-8")), ident)
        else:
            _atomic_json(idp, ident)
        store_manifest = _merge_manifest(out, manifest)
    _clean_tmp(partial)
    _clean_tmp(enc_dir)
    return store_manifest, None


def _todo(partial: Path, manifest: Manifest) -> list[Utterance]:
    """The utterances not in a committed chunk yet (encoded, or skipped as bad files)."""
    done: set[str] = set()
    for p in _chunk_paths(partial):
        ids, skipped, _ = _read_chunk_index(p)
        done.update(ids)
        done.update(s["utt_id"] for s in skipped)
    todo = [u for u in manifest.utterances if u.utt_id not in done]

    return todo


def _header_durations(manifest: Manifest, todo: list[Utterance]) -> tuple[list[Utterance], list[float], list[dict]]:
    """Durations from the headers (no decoding); an unreadable header is a skipped file right away."""
    from parrot_ser.audio import read_info

    header_skipped: list[dict] = []
    good: list[Utterance] = []
    durs: list[float] = []
    for u in todo:
        try:
            durs.append(read_info(manifest.abspath(u)).duration)
            good.append(u)
        except ParrotError as e:
            header_skipped.append({"utt_id": u.utt_id, "path": str(manifest.abspath(u)), "error": str(e)})

    return good, durs, header_skipped


def _encode_and_commit(encoder: Encoder, manifest: Manifest, good: list[Utterance], durs: list[float],
                       header_skipped: list[dict], n_todo: int, partial: Path, run: dict, *, frames: bool,
                       dtype: str, batch_seconds: float, progress: Any, chunk_size: int, max_batch: int,
                       load_workers: int, remote: RunnerChoice) -> None:
    """Encode -> commit: chunks of similar-length utterances (each split into padded-seconds-capped
    batches), here or on ``remote`` workers, each committed atomically as it comes back."""
    name = encoder.spec.name
    run_id = run["run_id"]
    order = sorted(range(len(good)), key=lambda i: (-durs[i], i))
    chunks = [order[k:k + chunk_size] for k in range(0, len(order), chunk_size)]
    if header_skipped and not chunks:
        chunks = [[]]
    stop_after = int(os.environ.get(STOP_ENV, "0") or 0)
    paths = [manifest.abspath(u) for u in good]

    prog = (progress if callable(progress) else silent)("utt")

    def commit(ci: int, out: ChunkResult) -> None:
        ids, pooled, frm, skipped, warns = out.ids, out.pooled, out.frames, out.skipped, out.warnings
        if ci == 0:
            skipped = list(header_skipped) + skipped
        for k, v in out.stats.items():
            run[k] = run.get(k, 0) + v
        t_w = time.perf_counter()
        _commit_chunk(_next_chunk_path(partial), ids, pooled, frm, frames, dtype, skipped,
                      {"run_id": run_id, "n_computed": len(ids), "warnings": warns})
        run["write_s"] += time.perf_counter() - t_w
        run["n_computed"] += len(ids)
        run["n_skipped"] += len(skipped) - (len(header_skipped) if ci == 0 else 0)
        run["chunks"] += 1
        if stop_after and run["chunks"] >= stop_after and run["chunks"] < len(chunks):
            os._exit(STOP_EXIT_CODE)  # simulated kill for resume tests: no cleanup on purpose

    with prog, ThreadPoolExecutor(max_workers=load_workers) as pool:
        task = prog.add_task(f"{name}", total=n_todo, rate="")
        prog.advance(task, len(header_skipped))
        t_loop = time.perf_counter()

        def on_batch(n_utts: int, n_done: int) -> None:
            prog.advance(task, n_utts)
            el = time.perf_counter() - t_loop
            rtf = el / run["audio_s"] if run["audio_s"] else 0.0
            prog.update(task, rate=rate_text(run["n_computed"] + n_done, el, "utt", f"RTF {rtf:.3f}"))

        payloads = [ChunkJob([good[i].utt_id for i in chunk], [str(paths[i]) for i in chunk],
                             [durs[i] for i in chunk]) for chunk in chunks]
        runner = remote(len(payloads), encoder) if callable(remote) and not isinstance(remote, ChunkRunner) \
            else remote
        if runner is not None:
            # Chunks come back in completion order; rows are put in manifest order at consolidation,
            # so the store is the same whatever order they were committed in.
            try:
                runner.check_identity(encoder)
                for ci, out in runner.run(payloads, frames=frames, batch_seconds=batch_seconds,
                                          max_batch=max_batch):
                    commit(ci, out)
                    on_batch(len(payloads[ci].utt_ids), 0)
            finally:
                if runner is not remote:
                    runner.close()  # made here for this call; a runner passed in is the caller's to close
        else:
            for ci, job in enumerate(payloads):
                out = encode_chunk(encoder, job, frames=frames, batch_seconds=batch_seconds, max_batch=max_batch,
                                   pool=pool, on_batch=on_batch, stats=run)
                commit(ci, out)



def _encode_isolating(encoder: Encoder, ok: list[tuple[int, np.ndarray]], frames: bool, run: dict):
    """Encode a batch; if the encoder rejects it with a ParrotError (e.g. one clip too short for the
    model), encode each utterance alone so only the bad one is skipped."""
    t = time.perf_counter()
    try:
        res = encoder.encode([x for _, x in ok], frames=frames)
        if len(res) != len(ok):
            raise FeatureStoreError(f"encoder {encoder.spec.name!r} returned {len(res)} results for {len(ok)} inputs")
        return list(zip([i for i, _ in ok], res)), []
    except ParrotError:
        if len(ok) == 1:
            raise
    finally:
        run["encode_s"] += time.perf_counter() - t
    good, bad = [], []
    for i, x in ok:
        t = time.perf_counter()
        try:
            good.append((i, encoder.encode([x], frames=frames)[0]))
        except ParrotError as e:
            bad.append((i, str(e)))
        finally:
            run["encode_s"] += time.perf_counter() - t
    return good, bad


def _commit_chunk(path: Path, ids: list[str], pooled: list[np.ndarray], frm: list[np.ndarray], frames: bool,
                  dtype: str, skipped: list[dict], stats: dict) -> None:
    arrays = {"utt_ids": np.asarray(ids, dtype=str), "skipped": np.asarray(json.dumps(skipped)),
              "stats": np.asarray(json.dumps(stats))}
    if pooled:
        arrays["pooled"] = np.stack(pooled).astype(dtype)
    if frames:
        arrays["lengths"] = np.asarray([f.shape[0] for f in frm], dtype=np.int64)
        if frm:
            arrays["frames"] = np.concatenate(frm).astype(dtype)
    _atomic_npz(path, **arrays)


def _chunk_index(partial: Path) -> tuple[list[Path], dict[str, tuple[int, int]], list[dict], list[str], dict]:
    """Where each encoded utterance is (chunk, row), the skipped files, warnings and rows per run."""
    chunk_files = _chunk_paths(partial)
    where: dict[str, tuple[int, int]] = {}
    skipped: list[dict] = []
    warns: list[str] = []
    per_run: dict[str, int] = {}
    for ci, p in enumerate(chunk_files):
        ids, sk, st = _read_chunk_index(p)
        for r, u in enumerate(ids):
            where[u] = (ci, r)
        skipped.extend(sk)
        warns.extend(st.get("warnings", []))
        per_run[st.get("run_id", "?")] = per_run.get(st.get("run_id", "?"), 0) + int(st.get("n_computed", 0))
    return chunk_files, where, skipped, warns, per_run


def _write_arrays(enc_dir: Path, chunk_files: list[Path], where: dict[str, tuple[int, int]], order: list[str],
                  frames: bool, dtype: str) -> tuple:
    """The rows of every chunk into temporary memory-mapped pooled (and frames) arrays in ``order``
    -> (L, P, F, frame offsets, temporary pooled path, temporary frames path or None)."""
    n = len(order)
    # shapes from the chunks that have rows
    L = P = F = None
    lengths = np.zeros(n, dtype=np.int64)
    by_chunk: dict[int, list[tuple[int, int]]] = {}
    for dst, u in enumerate(order):
        ci, r = where[u]
        by_chunk.setdefault(ci, []).append((dst, r))
    for ci, rows in by_chunk.items():
        with np.load(chunk_files[ci], allow_pickle=False) as z:
            _, L, P = z["pooled"].shape
            if frames:
                lens = z["lengths"]
                F = z["frames"].shape[2] if "frames" in z.files else F
                for dst, r in rows:
                    lengths[dst] = lens[r]
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])

    tmp_pooled = temp_sibling(enc_dir / POOLED)
    pooled_mm = np.lib.format.open_memmap(tmp_pooled, mode="w+", dtype=dtype, shape=(n, L, P))
    _reserve(tmp_pooled)
    frames_mm = None
    if frames:
        tmp_frames = temp_sibling(enc_dir / FRAMES)
        frames_mm = np.lib.format.open_memmap(tmp_frames, mode="w+", dtype=dtype, shape=(int(offsets[-1]), L, F))
        _reserve(tmp_frames)
    for ci, rows in by_chunk.items():
        with np.load(chunk_files[ci], allow_pickle=False) as z:
            zp = z["pooled"]
            for dst, r in rows:
                pooled_mm[dst] = zp[r]
            if frames:
                zf, zl = z["frames"], z["lengths"]
                zoff = np.concatenate([[0], np.cumsum(zl)])
                for dst, r in rows:
                    frames_mm[offsets[dst]:offsets[dst + 1]] = zf[zoff[r]:zoff[r + 1]]
    pooled_mm.flush()
    del pooled_mm
    if frames_mm is not None:
        frames_mm.flush()
        del frames_mm

    return L, P, F, offsets, tmp_pooled, (tmp_frames if frames else None)


def _consolidate(enc_dir: Path, partial: Path, store_manifest: Manifest, requested: list[str], encoder: Encoder,
                 ident: dict, frames: bool, dtype: str, run: dict, t_start: float, t_c: float) -> dict:
    chunk_files, where, skipped, warns, per_run = _chunk_index(partial)
    ok_ids = {u for u in where}
    skipped = [s for s in skipped if s["utt_id"] not in ok_ids]
    # rows in store-manifest order: stable regardless of batching and of how runs were split
    order = [u.utt_id for u in store_manifest.utterances if u.utt_id in where]
    n = len(order)
    if n == 0:
        raise FeatureStoreError(f"{enc_dir}: no utterance could be encoded ({len(skipped)} skipped; first: "
                                f"{skipped[0]['error'] if skipped else 'manifest is empty'})")

    L, P, F, offsets, tmp_pooled, tmp_frames = _write_arrays(enc_dir, chunk_files, where, order, frames, dtype)
    runs_path = partial / "runs.json"
    prev_runs = json.loads(runs_path.read_text(encoding="utf-8")) if runs_path.is_file() else []
    wall = time.perf_counter() - t_start
    run["consolidate_s"] = time.perf_counter() - t_c
    run["wall_s"] = wall
    run["n_computed_by_run"] = per_run
    runs = [r for r in prev_runs if r.get("run_id") != run["run_id"]] + [_run_summary(run)]
    spec = encoder.spec
    report = {
        "encoder": spec.name, "n_requested": len(requested), "n_ok": n, "n_skipped": len(skipped),
        "skipped": skipped, "warnings": warns, "random_init": bool(encoder.identity.random_init),
        "computed_by_run": {k: v for k, v in per_run.items() if k != "base"},
        "last_run": _run_summary(run), "runs": runs,
    }
    meta = {
        "format_version": FORMAT_VERSION, "complete": True, "encoder": spec.name,
        "identity": encoder.identity.to_dict(), "store_identity": ident, "spec": asdict(spec),
        "layers": list(encoder.identity.layers), "dtype": dtype, "random_init": bool(encoder.identity.random_init),
        "has_frames": bool(frames), "n": n, "pooled_shape": [n, L, P],
        "frame_dim": F, "frames_total": int(offsets[-1]) if frames else None,
        "package": "parrot-ser", "package_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    if meta["random_init"]:
        meta["WARNING"] = "UNTRAINED random-init weights: these features carry no pretrained knowledge"
    os.replace(tmp_pooled, enc_dir / POOLED)
    if frames:
        tmp_off = temp_sibling(enc_dir / OFFSETS)
        with open(tmp_off, "wb") as f:
            np.save(f, offsets)
        os.replace(tmp_frames, enc_dir / FRAMES)
        os.replace(tmp_off, enc_dir / OFFSETS)
    else:
        for stale in (FRAMES, OFFSETS):  # from an earlier entry written with --frames
            with contextlib.suppress(FileNotFoundError):
                (enc_dir / stale).unlink()
    write_text_atomic(enc_dir / UTT_IDS, "\n".join(order) + "\n")
    _atomic_json(enc_dir / REPORT, report)
    _atomic_json(enc_dir / META, meta)  # the commit point
    shutil.rmtree(partial, ignore_errors=True)
    return report


def _run_summary(run: dict) -> dict:
    r = dict(run)
    wall = r.get("wall_s") or 0.0
    audio = r.get("audio_s") or 0.0
    r["utt_per_s"] = r["n_computed"] / wall if wall else None
    r["real_time_factor"] = wall / audio if audio else None  # seconds of compute per second of audio
    real, padded = r.get("batch_real_samples", 0), r.get("batch_padded_samples", 0)
    r["padding_waste"] = 1 - real / padded if padded else None  # share of batched samples that were padding
    mreal, mpad = r.get("model_real_samples"), r.get("model_padded_samples")
    r["model_padding_waste"] = 1 - mreal / mpad if mpad else None  # as the model actually ran
    fwd = r.get("model_forward_s") or r.get("encode_s") or 0.0
    r["outside_forward_share"] = 1 - fwd / wall if wall else None
    return r
