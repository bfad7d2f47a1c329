"""Cross-validation of one model on stored features: ``run_cv`` = ``prepare_run`` (identity,
folds, run.json) -> the execution units (execute.py: fit fold -> evaluate, fold_runs.py) -> write
(``write_fold_result``, then ``finish_run``: results.json, predictions.csv, plots). The RUN_DIR
layout is rundir.py's."""

from __future__ import annotations

import csv
import hashlib
import json
import platform
import time
from collections.abc import Sequence
from dataclasses import replace
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from parrot_ser.errors import ConfigError, FeatureStoreError
from parrot_ser.files import json_default, write_json_atomic
from parrot_ser.layer_choice import LAYER_MEANING
from parrot_ser.models import StandardisedModel, head_from_run, load_weights
from parrot_ser.training.config import TrainConfig
from parrot_ser.training.data import SERData, load_features
from parrot_ser.training.fold_runs import PreparedRun
from parrot_ser.training.metrics import mean_std, summarise
from parrot_ser.training.rundir import (
    PREDICTIONS_CSV,
    RESULTS_FORMAT,
    RESULTS_JSON,
    RUN_FORMAT,
    RUN_JSON,
    entry_name,
    entry_path,
    transport_plan_path,
    weights_path,
    weights_rel,
)
from parrot_ser.training.spec import Execution, Protocol, RunSpec
from parrot_ser.training.splits import (
    Fold,
    assert_speaker_independent,
    folds_to_json,
    make_folds,
    overlap_note,
    read_folds_file,
    speaker_overlap,
    write_folds_file,
)
from parrot_ser.training.tasks import Task, get_task, task_from_run
from parrot_ser.training.trainer import (
    eval_batching,
)


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
    depth, full = (ident.get("options") or {}).get("depth"), _full_depth(name)
    if isinstance(depth, int) and full and depth < full:  # e.g. the demo's ssam-tiny with 2 of its 12 blocks
        return f"{name} [untrained {depth}-of-{full}-block stand-in]"
    return f"{name} [untrained]"


def _full_depth(name: str) -> int | None:
    """The registered encoder's number of blocks (None for names not in the registry)."""
    from parrot_ser.encoders import get_spec
    from parrot_ser.errors import ParrotError

    try:
        return int(get_spec(name).num_layers)
    except (ParrotError, KeyError, ValueError):
        return None


# ----------------------------------------------------------------------------------------------
# rebuilding a trained model (used by export)
def load_fold_model(run_dir: str | Path, seed: int, fold: int) -> tuple[StandardisedModel, dict]:
    """Load the trained model of one seed/fold of a run and its run.json dict."""
    run_dir = Path(run_dir)
    rp = run_dir / RUN_JSON
    if not rp.is_file():
        raise FeatureStoreError(f"{rp}: run.json not found (not a parrot-ser train output)")
    run = json.loads(rp.read_text(encoding="utf-8"))
    wp = weights_path(run_dir, entry_name(seed, fold))
    if not wp.is_file():
        raise FeatureStoreError(f"{wp}: weights not found")
    return load_weights(head_from_run(run), wp), run


# Settings that say how a run is executed, not what it computes: they are left out of the run
# identity, so rerunning with only --threads / --device (or --workers, --engine, --batched, which
# are not TrainConfig keys at all) changed resumes instead of refusing the RUN_DIR.
EXECUTION_KEYS = ("device", "num_threads")


def run_identity(spec: RunSpec, config: TrainConfig, sdata: SERData, feat_meta: dict[str, dict],
                 extra: dict | None = None) -> tuple[str, set[str]]:
    """(the run's fingerprint, every fingerprint a RUN_DIR of this run may hold): the spec's
    fingerprint (training/spec.py: identity + data + format version) and, so that run folders
    written by older versions resume, the ones they wrote: with a former spec format
    (``RunSpec.former_fingerprints``) or before RunSpec (``run_fingerprints``, from the TrainConfig
    the spec was built from)."""
    data = {"classes": sdata.classes, "utt_ids": _fingerprint(sdata.utt_ids),
            "features": {e: _fingerprint(m.get("identity", m)) for e, m in feat_meta.items()}, **(extra or {})}
    fp = spec.fingerprint(data)
    model, encoders, protocol, n_folds = spec.model, spec.inputs.encoders, spec.protocol.name, spec.protocol.n_folds
    return fp, {fp, *spec.former_fingerprints(data),
                *run_fingerprints(model, encoders, config, protocol, n_folds, sdata, feat_meta, extra)}


def run_fingerprints(model: str, encoders: Sequence[str], config: TrainConfig, protocol: str, n_folds: int,
                     sdata: SERData, feat_meta: dict[str, dict], extra: dict | None = None) -> tuple[str, str]:
    """The fingerprints run folders written before RunSpec hold, recognised so that they resume:
    (the hash of the TrainConfig dict with execution settings at their defaults and precision / task
    left out at their defaults, the same with the execution settings as given, as still older
    versions computed it)."""
    def fp(cfg: dict) -> str:
        return _fingerprint({"model": model, "encoders": list(encoders), "config": cfg, "protocol": protocol,
                             "n_folds": n_folds, "classes": sdata.classes, "utt_ids": _fingerprint(sdata.utt_ids),
                             "features": {e: _fingerprint(m.get("identity", m)) for e, m in feat_meta.items()},
                             **(extra or {})})

    cfg = canonical_config(config)
    cfg["layer"] = _identity_layer(config.layer, feat_meta)
    defaults = TrainConfig().to_dict()
    canon = {**cfg, **{k: defaults[k] for k in EXECUTION_KEYS}}
    return fp(canon), fp(cfg)


# Keys newer than many runs, at the value that computes what those runs computed: left out of the
# identity, so runs made before the key existed still resume.
NEW_KEY_DEFAULTS = {"precision": "fp32", "allow_speaker_overlap": False, "task": "classification",
                    "regression_loss": "ccc", "multitask_weight": 0.5, "classes": None, "label_map": {}}


def canonical_config(config: TrainConfig) -> dict:
    """The config as the run identity sees it: ``early_stop_metric: auto`` as the metric it means for
    the task (macro_f1 for classification, the old default), new keys at their defaults left out."""
    from parrot_ser.training.tasks import default_monitor

    cfg = config.to_dict()
    if cfg.get("early_stop_metric") == "auto":
        cfg["early_stop_metric"] = default_monitor(config.task)
    for k, v in NEW_KEY_DEFAULTS.items():
        if k in cfg and cfg[k] == v:
            del cfg[k]
    return cfg


def _identity_layer(choice: Any, feat_meta: dict[str, dict]) -> Any:
    """The layer choice as run identities wrote it before hidden-state indices (None = last,
    position, 'all'), so that run folders made then still resume; the choice itself when the
    encoders' stored layers give it different positions (no older run can have meant that)."""
    from parrot_ser.layer_choice import as_legacy

    try:
        old = {json.dumps(as_legacy(choice, m.get("layers") or [0])) for m in feat_meta.values()}
    except ConfigError:
        return choice
    return json.loads(old.pop()) if len(old) == 1 else choice


def _make_or_read_folds(sdata: SERData, meta_rows: list[dict], seeds: list[int], spec: RunSpec,
                        folds_file: str | Path | None) -> tuple[dict, str, int, dict]:
    """Speaker-independent folds per seed, read from ``folds_file`` when it exists (else made, checked
    for leakage, and written there when a path is given) -> (folds by seed, the protocol and fold
    count the run really uses, identity extras)."""
    from_file = folds_file is not None and Path(folds_file).is_file()
    extra: dict = {}
    allow = bool(spec.folds.get("allow_speaker_overlap"))
    protocol, n_folds = spec.protocol.name, spec.protocol.n_folds
    if from_file:
        folds_by_seed = read_folds_file(folds_file, seeds, sdata.utt_ids, sdata.speakers, allow_overlap=allow)
        protocol, n_folds = "folds-file", len(next(iter(folds_by_seed.values())))  # what the run really used
        # other folds = another experiment (only when a file is used, so older runs keep their identity)
        extra["folds"] = _fingerprint({str(s): folds_to_json(f, sdata.speakers) for s, f in folds_by_seed.items()})
    else:
        folds_by_seed = {}
        for s in seeds:
            folds = make_folds(sdata.strata(), sdata.speakers, protocol=protocol,
                               n_folds=n_folds, seed=s, meta=meta_rows, val_fraction=spec.optimisation.val_fraction,
                               allow_overlap=allow)
            # mechanical check before any training (imported splits may share speakers only when allowed)
            assert_speaker_independent(folds, sdata.speakers, allow_overlap=allow and protocol == "predefined")
            folds_by_seed[s] = folds
        if folds_file is not None:
            write_folds_file(folds_file, folds_by_seed, sdata.utt_ids, sdata.speakers, protocol)
    return folds_by_seed, protocol, n_folds, extra


def _finished_folds(out: Path, seeds: list[int], folds_by_seed: dict, accepted: set[str],
                    sdata: SERData) -> tuple[dict[str, dict], list[tuple[int, Fold]]]:
    """(entries of the seed/folds already finished by this run, the (seed, fold)s still to train)."""
    done: dict[str, dict] = {}
    todo: list[tuple[int, Fold]] = []
    for s in seeds:
        for fold in folds_by_seed[s]:
            name = entry_name(s, fold.index)
            ep = entry_path(out, name)
            wp = weights_path(out, name)
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
    return done, todo


def prepare_run(features_dir: str | Path | None, encoders: Sequence[str], model: str, config: TrainConfig,
                seeds: Sequence[int], protocol: str, out_dir: str | Path, *, n_folds: int = 5,
                data: tuple[SERData, list[dict], dict[str, dict]] | None = None,
                folds_file: str | Path | None = None, folds_only: bool = False,
                execution: Execution | None = None) -> PreparedRun | dict:
    """Everything of ``run_cv`` before training: the run spec (``RunSpec.build``: where the
    TrainConfig ends; ``execution``: how it is run, recorded in run.json's spec), checks, run
    identity (a RUN_DIR holding another experiment is refused), speaker-independent folds, run.json,
    and which seed/folds are done. With ``folds_only`` it returns ``{"folds_file", "folds"}`` after
    making / reading the folds."""
    from parrot_ser.fusion import get_model_spec

    t_start = time.perf_counter()
    out = Path(out_dir)
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ConfigError("give at least one seed")
    mspec = get_model_spec(model)
    if mspec.n_inputs != len(encoders):
        raise ConfigError(f"model {model!r} takes {mspec.n_inputs} encoder(s); got {len(encoders)} "
                          f"({', '.join(encoders)})")
    spec = RunSpec.build(model, config, encoders=encoders, protocol=protocol, n_folds=n_folds, execution=execution)
    sdata, meta_rows, feat_meta = data if data is not None else load_features(features_dir, spec)
    task = get_task(spec.task, spec.task_options, sdata)

    # The run identity: a rerun into the same RUN_DIR must be the same experiment (resume), not a
    # different one silently mixed with old folds. Seeds may be added.
    from_file = folds_file is not None and Path(folds_file).is_file()
    folds_by_seed, protocol, n_folds, extra = _make_or_read_folds(sdata, meta_rows, seeds, spec, folds_file)
    spec = replace(spec, protocol=Protocol(protocol, int(n_folds)))  # what the run really uses
    fold_records = {str(s): folds_to_json(f, sdata.speakers) for s, f in folds_by_seed.items()}
    overlap = {str(s): o for s, f in folds_by_seed.items() if (o := speaker_overlap(f, sdata.speakers))}
    if folds_only:
        return {"folds_file": str(folds_file) if folds_file is not None else None, "folds": fold_records}
    if sdata.dims:
        extra["dims"] = list(sdata.dims)
    fp, accepted = run_identity(spec, config, sdata, feat_meta, extra)
    out.mkdir(parents=True, exist_ok=True)
    run_path = out / RUN_JSON
    if run_path.is_file():
        old = json.loads(run_path.read_text(encoding="utf-8"))
        if old.get("fingerprint") not in accepted:
            raise ConfigError(f"{out}: holds a different run (model/encoders/config/protocol/features "
                              f"differ); choose a new --out or delete it")
    run_info = _run_info(spec, config, fp, seeds, folds_by_seed, sdata, feat_meta, task, features_dir,
                         folds_file if from_file else None)
    if overlap:  # only imported folds with --allow-speaker-overlap get here; every output repeats it
        run_info["speaker_overlap"] = overlap
        run_info["speaker_independent"] = False
    write_json_atomic(run_path, run_info)

    done, todo = _finished_folds(out, seeds, folds_by_seed, accepted, sdata)
    return PreparedRun(out, model, list(encoders), spec, seeds, fp, accepted, run_info, fold_records, sdata, done,
                       todo, str(features_dir) if features_dir is not None else None, t_start)


def _run_info(spec: RunSpec, config: TrainConfig, fp: str, seeds: list[int], folds_by_seed: dict, sdata: SERData,
              feat_meta: dict, task: Task, features_dir: str | Path | None, folds_file: str | Path | None) -> dict:
    """run.json: the spec (what everything after preparation reads, head_from_run included), the
    TrainConfig it was built from (``config``: the user's input, kept for older readers), the data."""
    from parrot_ser.fusion import get_model_spec

    mspec = get_model_spec(spec.model)
    info = {
        "format": RUN_FORMAT, "fingerprint": fp, "model": spec.model,
        "model_spec": {"n_inputs": mspec.n_inputs, "batch_dependent": mspec.batch_dependent,
                       "uses_frames": mspec.uses_frames},
        "encoders": list(spec.inputs.encoders), "input_dims": sdata.input_dims, "input_shapes": sdata.input_shapes,
        "frame_dims": sdata.frame_dims if spec.inputs.use_frames else None,
        "spec": spec.to_dict(),
        "n_classes": len(sdata.classes), "labels": sdata.classes, "layer": spec.inputs.layer,
        "layer_meaning": LAYER_MEANING, "use_frames": spec.inputs.use_frames,
        "config": config.to_dict(), "protocol": spec.protocol.name, "n_folds": spec.protocol.n_folds, "seeds": seeds,
        "features_dir": str(Path(features_dir).resolve()) if features_dir else None,
        "features_meta": feat_meta,
        "eval_batching": eval_batching(spec.optimisation.eval_batch_size),
        "folds_file": str(Path(folds_file).resolve()) if folds_file is not None else None,
        "models": {entry_name(s, f.index): weights_rel(entry_name(s, f.index))
                   for s in seeds for f in folds_by_seed[s]},
        "state_dict": "net.* = fusion model (parrot_ser.models.head_from_run(run.json) builds it from "
                      "spec.model, spec.model_config and input_shapes); std_pooled_mean_i / std_pooled_std_i "
                      "(and std_frames_*) = training-side standardiser: x_std = (x - mean) / std",
        "versions": package_versions(),
        "task": task.describe(),  # what the head outputs; head_from_run reads it (absent = classification)
        "label_selection": sdata.selection,
    }
    if sdata.selection.get("data_note"):
        info["data_note"] = sdata.selection["data_note"]
    return info


def finish_run(prepared: PreparedRun) -> dict:
    """results.json, predictions.csv and the plots from every finished seed/fold of the prepared run."""
    missing = [entry_name(s, f.index) for s, f in prepared.todo if entry_name(s, f.index) not in prepared.done]
    if missing:
        raise ConfigError(f"{prepared.out}: {len(missing)} seed/fold run(s) did not finish (first: {missing[0]}); "
                          f"rerun the same command to resume")
    order = [entry_name(s, int(f["fold"])) for s in prepared.seeds for f in prepared.fold_records[str(s)]]
    entries = [prepared.done[n] for n in order]
    first = transport_plan_path(prepared.out, entry_name(prepared.seeds[0], 0))
    plan_to_draw = np.load(first) if first.is_file() else None
    return _write_results(prepared.out, prepared.run_info, entries, prepared.fold_records, prepared.sdata,
                          time.perf_counter() - prepared.t_start, plan_to_draw)


def run_cv(features_dir: str | Path, encoders: Sequence[str], model: str, config: TrainConfig,
           seeds: Sequence[int], protocol: str, out_dir: str | Path, *, n_folds: int = 5,
           progress: Any = None, data: tuple[SERData, list[dict], dict[str, dict]] | None = None,
           folds_file: str | Path | None = None, folds_only: bool = False,
           batched: bool | None = None, workers: int | None = 1, engine: str = "local",
           address: str | None = None) -> dict:
    """Cross-validate ``model`` on the features of ``encoders``: for each seed x fold, split by
    speaker, check leakage, fit, predict the test fold. Writes RUN_DIR (module doc) and returns the
    results dict (also in results.json). Finished seed/folds of the same run are not recomputed.

    Execution (none of it changes the run identity): ``batched`` trains each seed's folds together as
    stacked models (None = automatic, see ``execute.resolve_batched``); ``workers`` > 1 (0/None = every core)
    trains groups of them in parallel processes; ``engine="ray"`` sends them to a Ray cluster
    (``address``). ``progress``: an optional rich Progress.
    ``folds_file``: when the file exists its folds are used (``splits.read_folds_file``); otherwise the
    folds made here are written to it before any training. ``folds_only``: stop after that (the
    return value is then ``{"folds_file": path, "folds": ...}``)."""
    from parrot_ser.training.execute import run_prepared

    prepared = prepare_run(features_dir, encoders, model, config, seeds, protocol, out_dir, n_folds=n_folds,
                           data=data, folds_file=folds_file, folds_only=folds_only,
                           execution=Execution.of(config, workers, engine, batched))
    if folds_only:
        return prepared
    run_prepared([prepared], batched=batched, workers=workers, engine=engine, address=address, progress=progress,
              data={tuple(encoders): (prepared.sdata, None, None)})  # loaded once, reused where it runs here
    return finish_run(prepared)


def _transport_summary(run: dict, entries: list[dict], plan: np.ndarray | None, out: Path, title: str,
                       plots: dict) -> dict | None:
    """Transport statistics over the runs (mean +- std) and the drawn transport plan of the first fold (OT models)."""
    from parrot_ser.training.plots import plot_transport

    tstats = [e["transport"] for e in entries if e.get("transport")]
    transport = None
    if tstats:
        keys = sorted({k for t in tstats for k, v in t.items() if isinstance(v, float)})
        transport = {k: mean_std([t[k] for t in tstats if k in t]) for k in keys}
        transport["note"] = ("fusion.sinkhorn.plan_stats of every evaluation batch of each test fold (mean "
                             "weighted by batch size), then mean +- std over runs; eff_partners = exp(entropy) of "
                             "each row-normalised plan row with mass (1 = one-to-one, m = uniform)")
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
    return transport


def overlap_warnings(run: dict) -> list[str]:
    """The not-speaker-independent sentence (per seed when several seeds), or nothing."""
    by_seed = run.get("speaker_overlap") or {}
    return [overlap_note(o) + (f" (seed {s})" if len(by_seed) > 1 else "") for s, o in by_seed.items()]


def _write_predictions(out: Path, task: Task, entries: list[dict], sdata: SERData) -> None:
    """predictions.csv: one row per test utterance and seed; the label columns for class tasks, the
    true / predicted value of each dimension (the data's scale) for dimensional ones."""
    classes, dims = task.classes if task.has_classes else [], task.dims if task.has_dims else []
    spk = dict(zip(sdata.utt_ids, sdata.speakers))
    rows = []
    for e in sorted(entries, key=lambda e: (e["seed"], e["fold"])):
        n = len(e["test_utt_ids"])
        proba = e.get("test_proba") or [[]] * n
        pred, true = e.get("test_dims") or [[]] * n, e.get("test_targets") or [[]] * n
        for u, y, p, d, t in zip(e["test_utt_ids"], e["test_labels"], proba, pred, true):
            row = [u, spk.get(u, ""), e["fold"], e["seed"]]
            if classes:
                row += [classes[y] if y >= 0 else "", classes[int(np.argmax(p))], *[f"{v:.6f}" for v in p]]
            rows.append(row + [f"{v:.6f}" for pair in zip(t, d) for v in pair])
    with open(out / PREDICTIONS_CSV, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["utt_id", "speaker", "fold", "seed",
                    *(["label", "predicted", *[f"prob_{c}" for c in classes]] if classes else []),
                    *[f"{side}_{d}" for d in dims for side in ("true", "pred")]])
        w.writerows(rows)


def _class_results(out: Path, run: dict, entries: list[dict], title: str, plots: dict) -> dict:
    """Confusion sum, per-class F1 (mean +- std over folds) and their plots."""
    from parrot_ser.training.plots import plot_confusion, plot_per_class_f1

    classes = run["labels"]
    n_cls = len(classes)
    conf = np.zeros((n_cls, n_cls), dtype=np.int64)
    for e in entries:
        conf += np.asarray(e["metrics"]["confusion"], dtype=np.int64)
    folds = sorted({e["fold"] for e in entries})
    per_fold_f1 = np.asarray([np.mean([e["metrics"]["per_class_f1"] for e in entries if e["fold"] == k], axis=0)
                              for k in folds])
    pcf = {"mean": per_fold_f1.mean(axis=0).tolist(),
           "std": (per_fold_f1.std(axis=0, ddof=1) if len(folds) > 1 else np.zeros(n_cls)).tolist()}
    plot_confusion(conf, classes, out / "confusion.png", f"{title}, all {len(folds)} test folds",
                   n_seeds=len({e["seed"] for e in entries}))
    plot_per_class_f1(pcf["mean"], pcf["std"], classes, out / "per_class_f1.png",
                      f"{title}: per-class F1, mean ± std over folds")
    plots.update(confusion="confusion.png", per_class_f1="per_class_f1.png")
    return {"confusion_sum": conf.tolist(), "per_class_f1": pcf}


def _dim_results(out: Path, task: Task, entries: list[dict], title: str, plots: dict, note: str) -> dict:
    """Predicted-vs-true scatter per dimension over every test fold (first seed)."""
    from parrot_ser.training.metrics import ccc
    from parrot_ser.training.plots import plot_scatter

    first = [e for e in entries if e["seed"] == min(x["seed"] for x in entries)]
    true = np.asarray([t for e in first for t in e["test_targets"]], dtype=np.float64)
    pred = np.asarray([d for e in first for d in e["test_dims"]], dtype=np.float64)
    cccs = [ccc(true[:, i], pred[:, i]) for i in range(len(task.dims))]
    plot_scatter(true, pred, task.dims, cccs, out / "scatter.png",
                 f"{title}: predicted vs true, every test fold{note}")
    plots["scatter"] = "scatter.png"
    return {"dims": list(task.dims), "pooled_test_ccc": dict(zip(task.dims, cccs))}


def _write_results(out: Path, run: dict, entries: list[dict], fold_records: dict, sdata: SERData,
                   total_s: float, plan: np.ndarray | None) -> dict:
    from parrot_ser.notices import untrained_text
    from parrot_ser.training.plots import plot_learning_curves

    task = task_from_run(run)
    entries = sorted(entries, key=lambda e: (e["seed"], e["fold"]))
    _write_predictions(out, task, entries, sdata)
    summary = summarise(entries, task.metric_names())
    plots: dict = {}
    # untrained encoders are named so in every plot title (issue 20, item 9), as in the tables
    title = f"{run['model']} [{' + '.join(random_init_label(e, run['features_meta'].get(e, {})) for e in run['encoders'])}]"
    parts = _class_results(out, run, entries, title, plots) if task.has_classes else {}
    if task.has_dims:
        note = f" ({run['data_note']})" if run.get("data_note") else ""
        parts["regression"] = _dim_results(out, task, entries, title, plots, note)
    plot_learning_curves([(e["seed"], e["fold"], e.get("history") or [], e.get("best_epoch")) for e in entries],
                         out / "learning_curves.png", f"{title}: per-epoch curves, every seed x fold")
    plots["learning_curves"] = "learning_curves.png"
    transport = _transport_summary(run, entries, plan, out, title, plots)
    random_init = sorted(e for e, m in run["features_meta"].items() if is_random_init(m))
    headline_keys = [m for m in task.metric_names() if m in ("accuracy", "ua", "macro_f1", "weighted_f1", "ccc",
                                                             "pearson", "mae") or m.startswith("ccc_")]
    results = {
        "format": RESULTS_FORMAT, "model": run["model"], "encoders": run["encoders"],
        "protocol": run["protocol"], "n_folds": run["n_folds"], "seeds": run["seeds"], "classes": run["labels"],
        "task": run.get("task") or task.describe(), "label_selection": run.get("label_selection") or {},
        "n_utterances": len(sdata), "n_speakers": len(set(sdata.speakers)),
        "headline": {m: summary["over_folds"][m] for m in headline_keys},
        "std_note": ("headline / over_folds: per-fold metric averaged over seeds, then mean +- sample std "
                     "(ddof=1) over folds; over_seeds: std of per-seed fold means; over_runs: std over "
                     "all seed x fold runs"),
        "summary": summary, **parts,
        "runs": [{k: e[k] for k in ("seed", "fold", "fold_name", "metrics", "best_epoch", "stopped_epoch",
                                    "monitor", "timings", "transport")} for e in entries],
        "folds": fold_records, "transport": transport,
        "random_init_encoders": random_init,
        "warnings": [untrained_text(e) for e in random_init] + overlap_warnings(run)
                    + ([f"DATA NOTE: {run['data_note']}"] if run.get("data_note") else []),
        "speaker_independent": run.get("speaker_independent", True),
        **({"speaker_overlap": run["speaker_overlap"]} if run.get("speaker_overlap") else {}),
        "batch_dependent": run["model_spec"]["batch_dependent"], "eval_batching": run["eval_batching"],
        "config": run["config"], "features_meta": run["features_meta"], "versions": run["versions"],
        "timings": {"total_s": total_s, "fit_s_sum": float(sum(e["timings"]["fit_s"] for e in entries))},
        "plots": plots,
    }
    write_json_atomic(out / RESULTS_JSON, results)
    return results
