"""Cross-validation of one model on stored features: ``run_cv`` and the RUN_DIR layout.

RUN_DIR/
  run.json                       everything needed to rebuild a fold's model (see docs/protocol.md)
  results.json                   metrics per run, summaries (mean +- std), confusion, folds, meta
  predictions.csv                utt_id, speaker, fold, seed, label, predicted, prob_<class>...
  confusion.png, per_class_f1.png, learning_curves.png, transport.png (OT models only)
  logs/seed{S}_fold{K}.csv       per-epoch train loss, validation metrics, learning rate (logs.py)
  tensorboard/seed{S}_fold{K}/   the same as TensorBoard events, when tensorboard is installed
  models/seed{S}_fold{K}.safetensors   weights + standardiser buffers of one seed/fold
  folds/seed{S}_fold{K}.json     finished-run entry (written atomically, last): resume marker
"""

from __future__ import annotations

import csv
import hashlib
import json
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from parrot_ser.errors import ConfigError, FeatureStoreError
from parrot_ser.files import atomic_path, json_default, write_json_atomic
from parrot_ser.models import StandardisedModel, head_from_run, load_weights, save_weights
from parrot_ser.training.config import TrainConfig
from parrot_ser.training.data import SERData
from parrot_ser.training.logs import EpochLog
from parrot_ser.training.metrics import compute_metrics, mean_std, summarise
from parrot_ser.training.splits import (
    Fold,
    assert_speaker_independent,
    folds_to_json,
    make_folds,
    read_folds_file,
    write_folds_file,
)
from parrot_ser.training.trainer import (
    eval_batch_transports,
    eval_batching,
    fit_model,
    predict_proba,
)

RUN_FORMAT = "parrot-ser-run/1"
RESULTS_FORMAT = "parrot-ser-results/1"


# ----------------------------------------------------------------------------------------------
# small IO helpers
def package_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in ("torch", "numpy", "scikit-learn", "transformers", "parrot-ser"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def _fingerprint(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=json_default).encode()).hexdigest()[:16]


# ----------------------------------------------------------------------------------------------
# loading
def is_random_init(meta: dict) -> bool:
    ident = meta.get("identity") if isinstance(meta.get("identity"), dict) else {}
    return bool(meta.get("random_init") or ident.get("random_init"))


def tiny_stand_in_note(name: str, meta: dict) -> str | None:
    """A console line for a random-init HF encoder built from the TINY config, else None."""
    ident = meta.get("identity") if isinstance(meta.get("identity"), dict) else {}
    cfg = (ident.get("preprocessing") or {}).get("random_init_config")
    if not (is_random_init(meta) and isinstance(cfg, dict) and cfg.get("tiny")):
        return None
    return (f"WARNING: {name}: no local config, so it is a TINY stand-in of the model class "
            f"({cfg.get('num_hidden_layers')} layers, hidden {cfg.get('hidden_size')}), not {name}'s architecture; "
            f"tables label it \"{random_init_label(name, meta)}\"; --checkpoint {name}=DIR with its config.json "
            "gives the real shape")


def random_init_label(name: str, meta: dict) -> str:
    """``name`` as tables should show it: a random-init HF encoder without a local config is a TINY
    stand-in of the model class (encoders/hf.py), not the named architecture, and must not pass
    for "hubert-base" in a table."""
    if not is_random_init(meta):
        return name
    ident = meta.get("identity") if isinstance(meta.get("identity"), dict) else {}
    cfg = (ident.get("preprocessing") or {}).get("random_init_config")
    if isinstance(cfg, dict) and cfg.get("tiny"):
        return f"{name} [untrained tiny {cfg.get('num_hidden_layers', '?')}-layer stand-in]"
    return f"{name} [untrained]"


def load_features(features_dir: str | Path, encoders: Sequence[str], config: TrainConfig,
                  ) -> tuple[SERData, list[dict], dict[str, dict]]:
    """Read the feature store: one SERData over the utterances every requested encoder has (manifest
    order), the manifest meta rows (for session / split protocols), and each encoder's meta."""
    from parrot_ser.features import open_store

    if not encoders:
        raise ConfigError("give at least one --encoder")
    if len(set(encoders)) != len(encoders):
        raise ConfigError(f"encoder listed twice: {', '.join(encoders)}")
    store = open_store(features_dir)
    available = list(store.encoders)
    for e in encoders:
        if e not in available:
            raise FeatureStoreError(f"{features_dir}: no features for encoder {e!r}; the store has "
                                    f"{', '.join(available) or 'none'} (run parrot-ser extract)")
    from parrot_ser.corpora.base import check_labelled

    check_labelled(store.manifest, Path(features_dir) / "manifest.csv")  # stores written before this check
    fss = [store.get(e) for e in encoders]
    n_skipped = {e: _check_complete(features_dir, store, fs) for e, fs in zip(encoders, fss)}
    have = set.intersection(*[set(fs.utt_ids) for fs in fss])
    utts = [u for u in store.manifest.utterances if u.utt_id in have]
    if not utts:
        raise FeatureStoreError(f"{features_dir}: no utterance has features for all of {', '.join(encoders)}")
    ids = [u.utt_id for u in utts]
    pooled, frames = [], [] if config.use_frames else None
    for e, fs in zip(encoders, fss):
        rows = np.asarray(fs.rows(ids), dtype=np.int64)
        if config.layer == "all":
            p = np.asarray(fs.pooled_all()[rows], dtype=np.float32)  # (N, L, P)
        else:
            p = np.asarray(fs.pooled(layer=config.layer), dtype=np.float32)[rows]
        if not np.isfinite(p).all():
            bad = ids[int(np.where(~np.isfinite(p.reshape(len(p), -1)).all(axis=1))[0][0])]
            raise FeatureStoreError(f"{features_dir}/{e}: non-finite pooled features (first: {bad})")
        pooled.append(p)
        if frames is not None:
            if not fs.has_frames:
                raise FeatureStoreError(f"{features_dir}/{e}: frame features were not extracted "
                                        f"(re-run extract with --frames, or drop --frames)")
            frames.append([np.asarray(fs.frames(int(r), layer=config.layer), dtype=np.float32) for r in rows])
    classes = sorted({u.label for u in utts})
    index = {c: i for i, c in enumerate(classes)}
    data = SERData(pooled, np.asarray([index[u.label] for u in utts]), ids, classes, frames,
                   [u.speaker for u in utts])
    # recorded with the run (not part of its fingerprint, which uses the identity only)
    metas = {e: {**fs.meta, "n_skipped_at_extraction": n_skipped[e]} for e, fs in zip(encoders, fss)}
    return data, [dict(u.meta) for u in utts], metas


def _check_complete(features_dir: str | Path, store: Any, fs: Any) -> int:
    """Every row of the store manifest must have features in ``fs`` or be listed in its report as a
    bad file; otherwise the entry is incomplete (e.g. a second extraction into the same store that
    never finished) and training on it would silently drop rows. Returns the number of bad files."""
    skipped = {s.get("utt_id") for s in fs.report().get("skipped", [])}
    have = set(fs.utt_ids)
    missing = [u.utt_id for u in store.manifest.utterances if u.utt_id not in have and u.utt_id not in skipped]
    if missing:
        n = len(store.manifest.utterances)
        raise FeatureStoreError(
            f"{features_dir}/{fs.name}: {len(missing)} of {n} utterances of the store manifest have no features "
            f"and are not listed as bad files (first: {missing[0]}); the entry is incomplete: run `parrot-ser "
            f"extract --manifest {Path(features_dir) / 'manifest.csv'} -e {fs.name} --out {features_dir}` "
            f"(only the missing ones are computed)")
    return len(skipped & {u.utt_id for u in store.manifest.utterances})


# ----------------------------------------------------------------------------------------------
# rebuilding a trained model (used by export)
def load_fold_model(run_dir: str | Path, seed: int, fold: int) -> tuple[StandardisedModel, dict]:
    """Load the trained model of one seed/fold of a run and its run.json dict."""
    run_dir = Path(run_dir)
    rp = run_dir / "run.json"
    if not rp.is_file():
        raise FeatureStoreError(f"{rp}: run.json not found (not a parrot-ser train output)")
    run = json.loads(rp.read_text(encoding="utf-8"))
    wp = run_dir / "models" / f"seed{seed}_fold{fold}.safetensors"
    if not wp.is_file():
        raise FeatureStoreError(f"{wp}: weights not found")
    return load_weights(head_from_run(run), wp), run


# ----------------------------------------------------------------------------------------------
def transport_summary(tr: Any) -> tuple[np.ndarray | None, dict]:
    """A 2-D plan to draw and scalar stats from whatever ``last_transport`` holds (a dict or an
    object with ``plan`` / ``stats``). Entropy and effective partners are recomputed from the plan
    (rows normalised): effective partners = exp(row entropy), 1 = one-to-one, n = uniform."""
    if tr is None:
        return None, {}
    if isinstance(tr, dict):
        plan = tr.get("plan")
        stats = {k: v for k, v in tr.items() if k not in ("plan", "stats")}
        if isinstance(tr.get("stats"), dict):
            stats.update(tr["stats"])
    else:
        plan = getattr(tr, "plan", None)
        stats = getattr(tr, "stats", None)
        if stats is None and hasattr(tr, "__dict__"):
            stats = {k: v for k, v in vars(tr).items() if k != "plan"}
    clean: dict = {}
    for k, v in (stats or {}).items():
        try:
            arr = np.asarray(v.detach().cpu() if hasattr(v, "detach") else v, dtype=np.float64)
        except (TypeError, ValueError):
            continue
        if arr.size >= 1 and np.isfinite(arr).all():
            clean[k] = float(arr.mean())
    if plan is None:
        return None, clean
    p = np.asarray(plan.detach().float().cpu() if hasattr(plan, "detach") else plan, dtype=np.float64)
    while p.ndim > 2:
        p = p[0]
    rows = p / np.clip(p.sum(axis=1, keepdims=True), 1e-30, None)
    ent = -(rows * np.log(np.clip(rows, 1e-30, None))).sum(axis=1)
    clean["row_entropy"] = float(ent.mean())
    clean["effective_partners"] = float(np.exp(ent).mean())
    clean["plan_shape"] = list(p.shape)
    return p, clean


def eval_transport_stats(net: Any, data: SERData, config: TrainConfig) -> tuple[np.ndarray | None, dict]:
    """Transport statistics over ALL evaluation batches of ``data`` (mean weighted by batch size;
    ``n_batches`` says how many) and the plan of the first batch, to draw."""
    per = [(n, *transport_summary(tr)) for n, tr in eval_batch_transports(net, data, config)]
    if not per:
        return None, {}
    keys = sorted({k for _, _, st in per for k, v in st.items() if isinstance(v, float)})
    stats: dict = {}
    for k in keys:
        vals = [(n, st[k]) for n, _, st in per if isinstance(st.get(k), float)]
        stats[k] = float(sum(n * v for n, v in vals) / sum(n for n, _ in vals))
    first = per[0][2]
    if "plan_shape" in first:
        stats["plan_shape"] = first["plan_shape"]  # of the drawn (first) batch
    stats["n_batches"] = len(per)
    return per[0][1], stats


def _entry_name(seed: int, fold: int) -> str:
    return f"seed{seed}_fold{fold}"


# Settings that say how a run is executed, not what it computes: they are left out of the run
# identity, so rerunning with only --threads / --device (or --workers, --engine, --batched, which
# are not TrainConfig keys at all) changed resumes instead of refusing the RUN_DIR.
EXECUTION_KEYS = ("device", "num_threads")


def run_fingerprints(model: str, encoders: Sequence[str], config: TrainConfig, protocol: str, n_folds: int,
                     sdata: SERData, feat_meta: dict[str, dict], extra: dict | None = None) -> tuple[str, str]:
    """(fingerprint, legacy fingerprint). The fingerprint canonicalises the execution settings to
    their defaults, so it equals the one older versions wrote for runs made with default settings;
    the legacy one (execution settings included, as older versions computed it) is still accepted
    so that runs made with e.g. --threads 1 before this change resume too."""
    def fp(cfg: dict) -> str:
        return _fingerprint({"model": model, "encoders": list(encoders), "config": cfg, "protocol": protocol,
                             "n_folds": n_folds, "classes": sdata.classes, "utt_ids": _fingerprint(sdata.utt_ids),
                             "features": {e: _fingerprint(m.get("identity", m)) for e, m in feat_meta.items()},
                             **(extra or {})})

    cfg = config.to_dict()
    defaults = TrainConfig().to_dict()
    canon = {**cfg, **{k: defaults[k] for k in EXECUTION_KEYS}}
    return fp(canon), fp(cfg)


@dataclass
class RunPlan:
    """A prepared cross-validation run: identity checked, folds made, run.json written; ``todo``
    lists the (seed, fold) runs still to train (finished ones are in ``done``)."""

    out: Path
    model: str
    encoders: list[str]
    config: TrainConfig
    seeds: list[int]
    fingerprint: str
    accepted: set[str]
    run_info: dict
    fold_records: dict
    sdata: SERData
    done: dict[str, dict]
    todo: list[tuple[int, Fold]]
    features_dir: str | None
    t_start: float

    @property
    def key(self) -> str:
        return str(self.out)


def prepare_run(features_dir: str | Path | None, encoders: Sequence[str], model: str, config: TrainConfig,
                seeds: Sequence[int], protocol: str, out_dir: str | Path, *, n_folds: int = 5,
                data: tuple[SERData, list[dict], dict[str, dict]] | None = None,
                folds_file: str | Path | None = None, folds_only: bool = False) -> RunPlan | dict:
    """Everything of ``run_cv`` before training: checks, run identity (a RUN_DIR holding another
    experiment is refused), speaker-independent folds, run.json, and which seed/folds are done.
    With ``folds_only`` it returns ``{"folds_file", "folds"}`` after making / reading the folds."""
    from parrot_ser.fusion import get_model_spec

    t_start = time.perf_counter()
    config.validate()
    out = Path(out_dir)
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ConfigError("give at least one seed")
    spec = get_model_spec(model)
    if spec.n_inputs != len(encoders):
        raise ConfigError(f"model {model!r} takes {spec.n_inputs} encoder(s); got {len(encoders)} "
                          f"({', '.join(encoders)})")
    sdata, meta_rows, feat_meta = data if data is not None else load_features(features_dir, encoders, config)
    classes = sdata.classes
    n_cls = len(classes)

    # The run identity: a rerun into the same RUN_DIR must be the same experiment (resume), not a
    # different one silently mixed with old folds. Seeds may be added.
    from_file = folds_file is not None and Path(folds_file).is_file()
    extra: dict = {}
    if from_file:
        folds_by_seed = read_folds_file(folds_file, seeds, sdata.utt_ids, sdata.speakers)
        protocol, n_folds = "folds-file", len(next(iter(folds_by_seed.values())))  # what the run really used
        # other folds = another experiment (only when a file is used, so older runs keep their identity)
        extra["folds"] = _fingerprint({str(s): folds_to_json(f, sdata.speakers) for s, f in folds_by_seed.items()})
    else:
        folds_by_seed = {}
        for s in seeds:
            folds = make_folds([classes[i] for i in sdata.labels], sdata.speakers, protocol=protocol,
                               n_folds=n_folds, seed=s, meta=meta_rows, val_fraction=config.val_fraction)
            assert_speaker_independent(folds, sdata.speakers)  # mechanical check before any training
            folds_by_seed[s] = folds
        if folds_file is not None:
            write_folds_file(folds_file, folds_by_seed, sdata.utt_ids, sdata.speakers, protocol)
    fold_records = {str(s): folds_to_json(f, sdata.speakers) for s, f in folds_by_seed.items()}
    if folds_only:
        return {"folds_file": str(folds_file) if folds_file is not None else None, "folds": fold_records}
    fp, legacy = run_fingerprints(model, encoders, config, protocol, n_folds, sdata, feat_meta, extra)
    accepted = {fp, legacy}
    out.mkdir(parents=True, exist_ok=True)
    run_path = out / "run.json"
    if run_path.is_file():
        old = json.loads(run_path.read_text(encoding="utf-8"))
        if old.get("fingerprint") not in accepted:
            raise ConfigError(f"{out}: holds a different run (model/encoders/config/protocol/features "
                              f"differ); choose a new --out or delete it")

    run_info = {
        "format": RUN_FORMAT, "fingerprint": fp, "model": model,
        "model_spec": {"n_inputs": spec.n_inputs, "batch_dependent": spec.batch_dependent,
                       "uses_frames": spec.uses_frames},
        "encoders": list(encoders), "input_dims": sdata.input_dims, "input_shapes": sdata.input_shapes,
        "frame_dims": sdata.frame_dims if config.use_frames else None,
        "n_classes": n_cls, "labels": classes, "layer": config.layer, "use_frames": config.use_frames,
        "config": config.to_dict(), "protocol": protocol, "n_folds": n_folds, "seeds": seeds,
        "features_dir": str(Path(features_dir).resolve()) if features_dir else None,
        "features_meta": feat_meta,
        "eval_batching": eval_batching(config.eval_batch_size),
        "folds_file": str(Path(folds_file).resolve()) if from_file else None,
        "models": {_entry_name(s, f.index): f"models/{_entry_name(s, f.index)}.safetensors"
                   for s in seeds for f in folds_by_seed[s]},
        "state_dict": "net.* = fusion model (build_model(model, input_dims, n_classes, dropout=config."
                      "dropout, **config.model)); std_pooled_mean_i / std_pooled_std_i (and std_frames_*) "
                      "= training-side standardiser: x_std = (x - mean) / std",
        "versions": package_versions(),
    }
    write_json_atomic(run_path, run_info)

    done: dict[str, dict] = {}
    todo: list[tuple[int, Fold]] = []
    for s in seeds:
        for fold in folds_by_seed[s]:
            name = _entry_name(s, fold.index)
            ep = out / "folds" / f"{name}.json"
            wp = out / "models" / f"{name}.safetensors"
            if ep.is_file() and wp.is_file():
                try:
                    entry = json.loads(ep.read_text(encoding="utf-8"))
                except json.JSONDecodeError:
                    entry = None
                if entry and entry.get("fingerprint") in accepted and \
                        entry.get("test_utt_ids") == [sdata.utt_ids[i] for i in fold.test]:
                    done[name] = entry
                    continue
            todo.append((s, fold))
    return RunPlan(out, model, list(encoders), config, seeds, fp, accepted, run_info, fold_records, sdata, done,
                   todo, str(features_dir) if features_dir is not None else None, t_start)


def train_folds(sdata: SERData, model: str, config: TrainConfig, jobs: Sequence[tuple[int, Fold]], *,
                batched: bool = False, on_epoch: Callable[[int, int, int, dict], None] | None = None,
                ) -> list[dict]:
    """Train and test the (seed, fold) ``jobs`` of one cell: one at a time (``fit_model``) or all
    together (``batched.fit_models_batched``). Returns one result per job, in job order:
    {"seed", "fold", "fold_name", "state" (state dict, CPU tensors), "plan" (first test batch's OT
    plan or None), "entry" (the finished-run entry without its fingerprint)}. Writes nothing: the
    caller (the driver) is the single writer of RUN_DIR, wherever this ran.

    ``on_epoch(seed, fold, epoch, record)`` is called after each epoch of each model."""
    from parrot_ser.training.batched import fit_models_batched

    n_cls = len(sdata.classes)
    sides = [(sdata.subset(f.train), sdata.subset(f.val), sdata.subset(f.test)) for _, f in jobs]
    t0 = time.perf_counter()
    if batched and len(jobs) > 1:
        cb = None
        if on_epoch is not None:
            def cb(j: int, epoch: int, rec: dict) -> None:
                on_epoch(jobs[j][0], jobs[j][1].index, epoch, rec)
        fitted = fit_models_batched([(tr, va, s) for (s, _), (tr, va, _) in zip(jobs, sides)], model, config,
                                    on_epoch=cb)
        t_fit = [(time.perf_counter() - t0) / len(jobs)] * len(jobs)  # one shared fit: its time split evenly
        how = "batched"
    else:
        fitted, t_fit = [], []
        for (s, fold), (tr, va, _) in zip(jobs, sides):
            t1 = time.perf_counter()
            cb = None
            if on_epoch is not None:
                def cb(epoch: int, rec: dict, _s=s, _k=fold.index) -> None:
                    on_epoch(_s, _k, epoch, rec)
            fitted.append(fit_model(tr, va, model, config, s, on_epoch=cb))
            t_fit.append(time.perf_counter() - t1)
        how = "single"
    results = []
    for (s, fold), (tr, va, te), (net, hist), tf in zip(jobs, sides, fitted, t_fit):
        t1 = time.perf_counter()
        proba = predict_proba(net, te, config)
        t_pred = time.perf_counter() - t1
        metrics = compute_metrics(te.labels, proba.argmax(axis=1), n_cls)
        plan, tstats = eval_transport_stats(net, te, config)
        # Every state-dict key as its own tensor (clone: no shared storage), so a plain
        # load_file + load_state_dict(strict=True) restores it.
        sd = {k: v.detach().cpu().contiguous().clone() for k, v in net.state_dict().items()}
        entry = {
            "seed": s, "fold": fold.index, "fold_name": fold.name,
            "metrics": metrics, "best_epoch": hist["best_epoch"], "stopped_epoch": hist["stopped_epoch"],
            "monitor": hist["monitor"], "history": hist["epochs"],
            "timings": {"fit_s": tf, "predict_s": t_pred, "n_train": len(tr), "n_val": len(va), "n_test": len(te),
                        "training": how},
            "transport": tstats or None,
            "test_utt_ids": te.utt_ids, "test_labels": te.labels.tolist(),
            "test_proba": np.round(proba, 6).tolist(),
        }
        results.append({"seed": s, "fold": fold.index, "state": sd,
                        "plan": None if plan is None else plan.astype(np.float32), "entry": entry})
    return results


def write_fold_result(plan: RunPlan, res: dict, *, logged: bool = False) -> dict:
    """Write one trained seed/fold into RUN_DIR (per-epoch log unless ``logged`` live already,
    weights, OT plan, then the entry, atomically and last: its presence marks the seed/fold as
    finished). Returns the entry."""
    out = plan.out
    name = _entry_name(res["seed"], res["fold"])
    if not logged:  # trained elsewhere (worker process, Ray): the driver writes the epoch log from the history
        with EpochLog(out, name, lr=plan.config.lr) as elog:
            for rec in res["entry"]["history"]:
                elog(int(rec["epoch"]), rec)
    if res["plan"] is not None:
        with atomic_path(out / "folds" / f"{name}_plan.npy") as tmp, open(tmp, "wb") as f:
            np.save(f, res["plan"])
    save_weights(res["state"], out / "models" / f"{name}.safetensors",
                 {"model": plan.model, "seed": str(res["seed"]), "fold": str(res["fold"]),
                  "fingerprint": plan.fingerprint, "format": RUN_FORMAT})
    entry = {"fingerprint": plan.fingerprint, **res["entry"]}
    write_json_atomic(out / "folds" / f"{name}.json", entry)
    plan.done[name] = entry
    return entry


def finish_run(plan: RunPlan) -> dict:
    """results.json, predictions.csv and the plots from every finished seed/fold of the plan."""
    missing = [_entry_name(s, f.index) for s, f in plan.todo if _entry_name(s, f.index) not in plan.done]
    if missing:
        raise ConfigError(f"{plan.out}: {len(missing)} seed/fold run(s) did not finish (first: {missing[0]}); "
                          f"rerun the same command to resume")
    order = [_entry_name(s, int(f["fold"])) for s in plan.seeds for f in plan.fold_records[str(s)]]
    entries = [plan.done[n] for n in order]
    first = plan.out / "folds" / f"{_entry_name(plan.seeds[0], 0)}_plan.npy"
    plan_to_draw = np.load(first) if first.is_file() else None
    return _write_results(plan.out, plan.run_info, entries, plan.fold_records, plan.sdata,
                          time.perf_counter() - plan.t_start, plan_to_draw)


def run_cv(features_dir: str | Path, encoders: Sequence[str], model: str, config: TrainConfig,
           seeds: Sequence[int], protocol: str, out_dir: str | Path, *, n_folds: int = 5,
           progress: Any = None, data: tuple[SERData, list[dict], dict[str, dict]] | None = None,
           folds_file: str | Path | None = None, folds_only: bool = False,
           batched: bool | None = None, workers: int | None = 1, engine: str = "local",
           address: str | None = None) -> dict:
    """Cross-validate ``model`` on the features of ``encoders``: for each seed x fold, split by
    speaker, check leakage, fit, predict the test fold. Writes RUN_DIR (module doc) and returns the
    results dict (also in results.json). Finished seed/folds of the same run are not recomputed.

    Execution (none of it changes the run identity): ``batched`` trains the folds x seeds together
    (None = automatic, see ``execute.resolve_batched``); ``workers`` > 1 (0/None = every core)
    trains groups of them in parallel processes; ``engine="ray"`` sends them to a Ray cluster
    (``address``). ``progress``: an optional rich Progress.
    ``folds_file``: when the file exists its folds are used (``splits.read_folds_file``); otherwise the
    folds made here are written to it before any training. ``folds_only``: stop after that (the
    return value is then ``{"folds_file": path, "folds": ...}``)."""
    from parrot_ser.training.execute import run_plans

    plan = prepare_run(features_dir, encoders, model, config, seeds, protocol, out_dir, n_folds=n_folds,
                       data=data, folds_file=folds_file, folds_only=folds_only)
    if folds_only:
        return plan
    run_plans([plan], batched=batched, workers=workers, engine=engine, address=address, progress=progress,
              data={tuple(encoders): (plan.sdata, None, None)})  # loaded once, reused where it runs here
    return finish_run(plan)


def _write_results(out: Path, run: dict, entries: list[dict], fold_records: dict, sdata: SERData,
                   total_s: float, plan: np.ndarray | None) -> dict:
    from parrot_ser.notices import untrained_text
    from parrot_ser.training.plots import (
        plot_confusion,
        plot_learning_curves,
        plot_per_class_f1,
        plot_transport,
    )

    classes = run["labels"]
    n_cls = len(classes)
    spk = dict(zip(sdata.utt_ids, sdata.speakers))
    conf = np.zeros((n_cls, n_cls), dtype=np.int64)
    rows = []
    for e in sorted(entries, key=lambda e: (e["seed"], e["fold"])):
        conf += np.asarray(e["metrics"]["confusion"], dtype=np.int64)
        for u, y, p in zip(e["test_utt_ids"], e["test_labels"], e["test_proba"]):
            rows.append([u, spk.get(u, ""), e["fold"], e["seed"], classes[y], classes[int(np.argmax(p))],
                         *[f"{v:.6f}" for v in p]])
    with open(out / "predictions.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["utt_id", "speaker", "fold", "seed", "label", "predicted", *[f"prob_{c}" for c in classes]])
        w.writerows(rows)
    summary = summarise(entries)
    folds = sorted({e["fold"] for e in entries})
    per_fold_f1 = np.asarray([np.mean([e["metrics"]["per_class_f1"] for e in entries if e["fold"] == k], axis=0)
                              for k in folds])
    pcf = {"mean": per_fold_f1.mean(axis=0).tolist(),
           "std": (per_fold_f1.std(axis=0, ddof=1) if len(folds) > 1 else np.zeros(n_cls)).tolist()}
    plots = {"confusion": "confusion.png", "per_class_f1": "per_class_f1.png"}
    title = f"{run['model']} [{' + '.join(run['encoders'])}]"
    plot_confusion(conf, classes, out / "confusion.png", f"{title}, all {len(folds)} test folds",
                   n_seeds=len({e["seed"] for e in entries}))
    plot_per_class_f1(pcf["mean"], pcf["std"], classes, out / "per_class_f1.png",
                      f"{title}: per-class F1, mean ± std over folds")
    plot_learning_curves([(f"seed {e['seed']} fold {e['fold']}", e.get("history") or [], e.get("best_epoch"))
                          for e in sorted(entries, key=lambda e: (e["seed"], e["fold"]))],
                         out / "learning_curves.png", f"{title}: per-epoch curves, every seed x fold")
    plots["learning_curves"] = "learning_curves.png"
    tstats = [e["transport"] for e in entries if e.get("transport")]
    transport = None
    if tstats:
        keys = sorted({k for t in tstats for k, v in t.items() if isinstance(v, float)})
        transport = {k: mean_std([t[k] for t in tstats if k in t]) for k in keys}
        transport["note"] = ("every evaluation batch of each test fold (mean weighted by batch size), then "
                             "mean +- std over runs; effective_partners = exp(row entropy) of the row-normalised "
                             "plan (1 = one-to-one, n = uniform)")
        if plan is not None:
            from parrot_ser.fusion import get_model_spec

            # The paper's OT couples the utterances of a batch; parrot-token's couples the tokens of one
            # utterance: the title says which plan this is.
            if get_model_spec(run["model"]).batch_dependent:
                what, src, tgt = ("plan between the utterances of the first evaluation batch", "utterance (Mamba "
                                  "branch)", "utterance (attention branch)")
            else:
                what, src, tgt = ("token plan of the first test utterance", "token (Mamba branch)",
                                  "token (attention branch)")
            plot_transport(plan, out / "transport.png", f"{title}: {what}, seed {run['seeds'][0]} fold 0",
                           source=src, target=tgt)
            plots["transport"] = "transport.png"
    random_init = sorted(e for e, m in run["features_meta"].items() if is_random_init(m))
    results = {
        "format": RESULTS_FORMAT, "model": run["model"], "encoders": run["encoders"],
        "protocol": run["protocol"], "n_folds": run["n_folds"], "seeds": run["seeds"], "classes": classes,
        "n_utterances": len(sdata), "n_speakers": len(set(sdata.speakers)),
        "headline": {m: summary["over_folds"][m] for m in ("accuracy", "ua", "macro_f1", "weighted_f1")},
        "std_note": ("headline / over_folds: per-fold metric averaged over seeds, then mean +- sample std "
                     "(ddof=1) over folds; over_seeds: std of per-seed fold means; over_runs: std over "
                     "all seed x fold runs"),
        "summary": summary,
        "confusion_sum": conf.tolist(), "per_class_f1": pcf,
        "runs": [{k: e[k] for k in ("seed", "fold", "fold_name", "metrics", "best_epoch", "stopped_epoch",
                                    "monitor", "timings", "transport")}
                 for e in sorted(entries, key=lambda e: (e["seed"], e["fold"]))],
        "folds": fold_records, "transport": transport,
        "random_init_encoders": random_init,
        "warnings": [untrained_text(e) for e in random_init],
        "batch_dependent": run["model_spec"]["batch_dependent"], "eval_batching": run["eval_batching"],
        "config": run["config"], "features_meta": run["features_meta"], "versions": run["versions"],
        "timings": {"total_s": total_s, "fit_s_sum": float(sum(e["timings"]["fit_s"] for e in entries))},
        "plots": plots,
    }
    write_json_atomic(out / "results.json", results)
    return results
