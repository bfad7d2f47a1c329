"""``export_run``: a finished training run (RUN_DIR of ``parrot-ser train``) -> a model bundle.

With ``refit`` (the default of ``parrot-ser export`` and of the demo; this function does no
training unless asked) one model is trained on all of the run's utterances with the run's
settings (its RunSpec: model, model config, optimisation; first seed); early stopping holds out ``val_fraction`` of the speakers, as
inside each fold. Its expected quality is the run's cross-validated numbers (nothing is held out to
re-measure it). One model is what a user who exports wants by default: a 15-model ensemble (5 folds x
3 seeds) was 15x the size and 15x the prediction time of one model (issue 20: 238 MB, 15 s a clip).

With ``refit=False`` (``--ensemble``) the bundle holds every seed x fold model of the run (already
trained, nothing is retrained): at prediction time their softmax probabilities are averaged. The
members were trained on overlapping 4/5 subsets, so the ensemble's error is close to (usually a
little below) the run's cross-validated numbers, which the bundle records as its training summary.

Batch-dependent models (paper PARROT) get *anchors*: ``eval_batch_size - 1`` training utterances
(raw pooled features, picked with the run's first seed) with which every utterance is scored, so a
prediction sees a batch like the ones the model was trained and evaluated on, and never depends on
the other inputs of a call (see predictor.py).

This module sits above training and inference (it reads a run with training's code and writes what
inference loads): tests/test_architecture.py places it with service and demo."""

from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file

from parrot_ser import __version__
from parrot_ser.encoders.checkpoint import sha256_file
from parrot_ser.errors import BundleError, ParrotError
from parrot_ser.features.clips import clip_seconds
from parrot_ser.inference.bundle import Member, write_bundle
from parrot_ser.layer_choice import LAYER_MEANING
from parrot_ser.notices import untrained_models_text
from parrot_ser.training.rundir import RESULTS_JSON, RUN_JSON, entry_path

RUN_MODEL_KEYS = ("model", "config", "input_dims", "input_shapes", "frame_dims", "labels", "n_classes")


def _read_json(path: Path, what: str) -> dict:
    if not path.is_file():
        raise BundleError(f"{path}: not found; {path.parent} is not a finished `parrot-ser train` run ({what})")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise BundleError(f"{path}: not valid JSON ({e})") from None


def _training_summary(results: dict) -> dict:
    keep = ("model", "encoders", "protocol", "n_folds", "seeds", "classes", "task", "label_selection",
            "n_utterances", "n_speakers", "headline", "std_note", "random_init_encoders", "warnings",
            "speaker_independent", "speaker_overlap", "eval_batching")
    return {k: results[k] for k in keep if k in results}


def _load_run_features(run: dict, run_dir: Path) -> Any:
    """(the run's features as it read them, its RunSpec: the one run.json stores, or rebuilt from its
    ``config`` for runs written before RunSpec)."""
    from parrot_ser.training.data import load_features
    from parrot_ser.training.spec import RunSpec

    fdir = run.get("features_dir")
    if not fdir or not Path(fdir).is_dir():
        raise BundleError(f"{run_dir}/run.json: the run's feature store {fdir!r} is not available "
                          "(needed to refit one model on all the data, the default, and for the anchors of "
                          "batch-dependent models; `--ensemble` bundles the run's fold models without it)")
    spec = RunSpec.of_run(run, str(run_dir / RUN_JSON))
    data, _, metas = load_features(fdir, spec)
    if data.classes != run["labels"] or data.dims != list((run.get("task") or {}).get("dims") or []):
        raise BundleError(f"{fdir}: labels {data.classes} differ from the run's {run['labels']}")
    for e, m in metas.items():
        if json.dumps(m.get("identity"), sort_keys=True) != json.dumps(
                run["features_meta"][e].get("identity"), sort_keys=True):
            raise BundleError(f"{fdir}/{e}: features changed since the run (different encoder identity)")
    return data, spec


def _fold_members(run: dict, run_dir: Path) -> list[Member]:
    from parrot_ser.models import head_from_run

    models = run.get("models") or {}
    if not models:
        raise BundleError(f"{run_dir}/run.json: lists no models")
    members = []
    for tag, rel in sorted(models.items()):
        wp, ep = run_dir / rel, entry_path(run_dir, tag)
        if not wp.is_file() or not ep.is_file():
            raise BundleError(f"{wp}: missing or unfinished (rerun `parrot-ser train` to finish the run)")
        try:
            sd = load_file(str(wp))
        except Exception as e:  # safetensors raises its own error types; the message is what matters
            raise BundleError(f"{wp}: unreadable safetensors file ({e})") from None
        try:  # the weights must fit the run's architecture before they go into a bundle
            head_from_run(run).load_state_dict(sd, strict=True)
        except RuntimeError as e:
            raise BundleError(f"{wp}: weights do not fit the run's model ({str(e).splitlines()[0]})") from None
        entry = json.loads(ep.read_text(encoding="utf-8"))
        met = entry.get("metrics", {})
        info = {"seed": entry.get("seed"), "fold": entry.get("fold"), "best_epoch": entry.get("best_epoch"),
                **{f"test_{k}": met[k] for k in ("accuracy", "macro_f1", "ccc") if k in met}}
        if "accuracy" not in met:  # the keys a classification bundle always had
            info.update(test_accuracy=None, test_macro_f1=None)
        members.append(Member(tag, sd, info))
    return members


def _refit_member(run: dict, data: Any, spec: Any, progress: Any = None) -> Member:
    from parrot_ser.training.splits import split_validation
    from parrot_ser.training.trainer import fit_model

    seed = int(run["seeds"][0])
    epochs = spec.optimisation.epochs
    tr, va = split_validation(np.arange(len(data)), data.strata(), data.speakers,
                              fraction=spec.optimisation.val_fraction, seed=seed)
    task = progress.add_task("refit", total=epochs, rate="") if progress is not None else None

    def on_epoch(epoch: int, rec: dict) -> None:
        if task is not None:
            progress.update(task, advance=1, rate=f"ep {epoch}")

    model, hist = fit_model(data.subset(tr), data.subset(va), spec, seed, on_epoch=on_epoch)
    if task is not None:
        progress.update(task, completed=epochs)
    sd = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    val_spk = sorted({data.speakers[i] for i in va})
    return Member(f"refit_seed{seed}", sd, {"seed": seed, "fold": None, "best_epoch": hist["best_epoch"],
                                            "stopped_epoch": hist["stopped_epoch"], "n_train": int(len(tr)),
                                            "n_val": int(len(va)), "val_speakers": val_spk})


def _anchors(data: Any, spec: Any, seed: int) -> list[torch.Tensor]:
    k = max(1, int(spec.optimisation.eval_batch_size) - 1)
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(len(data), size=min(k, len(data)), replace=False))
    return [torch.from_numpy(np.ascontiguousarray(p[idx], dtype=np.float32)) for p in data.pooled]


def export_run(run_dir: str | Path, out_dir: str | Path, refit: bool = False, *, progress: Any = None) -> Path:
    """Write the bundle for RUN_DIR into ``out_dir`` and return its path (see the module doc)."""
    run_dir = Path(run_dir)
    run = _read_json(run_dir / RUN_JSON, RUN_JSON)
    results = _read_json(run_dir / RESULTS_JSON, f"{RESULTS_JSON} is written when all folds finished")
    missing = [k for k in (*RUN_MODEL_KEYS, "encoders", "features_meta", "model_spec", "seeds") if k not in run]
    if missing:
        raise BundleError(f"{run_dir / 'run.json'}: lacks {', '.join(missing)} (older or foreign run format)")
    mspec = run["model_spec"]
    batch_dep = bool(mspec.get("batch_dependent"))
    data = spec = None
    if refit or (batch_dep and not run.get("use_frames")):
        try:
            data, spec = _load_run_features(run, run_dir)
        except BundleError:
            if refit:
                raise
    try:
        members = [_refit_member(run, data, spec, progress)] if refit else _fold_members(run, run_dir)
    except ParrotError as e:
        raise e if isinstance(e, BundleError) else BundleError(f"{run_dir}: {e}") from None
    anchors = None
    batch_mode = "independent"
    if batch_dep:
        if data is not None:
            anchors, batch_mode = _anchors(data, spec, int(run["seeds"][0])), "anchors"
        else:
            batch_mode = "alone"
    encoders = []
    for e in run["encoders"]:
        ident = dict(run["features_meta"][e].get("identity") or {})
        if not ident:
            raise BundleError(f"{run_dir / 'run.json'}: no encoder identity recorded for {e!r}")
        ident.setdefault("name", e)
        ident["store_dtype"] = run["features_meta"][e].get("dtype")
        encoders.append(ident)
    untrained = [e["name"] for e in encoders if e.get("random_init")]
    model_doc = {k: run[k] for k in RUN_MODEL_KEYS}
    model_doc["task"] = run.get("task") or {"kind": "classification", "labels": list(run["labels"]), "dims": []}
    dims = list(model_doc["task"].get("dims") or [])
    model_doc.update(name=run["model"], batch_dependent=batch_dep, uses_frames=bool(mspec.get("uses_frames")),
                     rebuild="parrot_ser.models.head_from_run({**model, 'spec': run_spec}) then "
                             "load_state_dict(member)")
    doc: dict[str, Any] = {
        "package_version": __version__,
        "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "warning": untrained_models_text(untrained) if untrained else None,
        "labels": list(run["labels"]),
        # regression-only: no labels; every prediction then has dimensions and no label
        "task": model_doc["task"]["kind"], "dims": dims,
        "encoders": encoders,
        "inputs": {"layer": run.get("layer"), "use_frames": bool(run.get("use_frames")),
                   **({"layer_meaning": LAYER_MEANING} if run.get("layer_meaning") == LAYER_MEANING else {}),
                   "rule": "encoder built with the recorded layers; then the layer choice (parrot_ser.layer_choice): "
                           "'last', a hidden-state index, 'mean' or 'weighted' (older bundles without "
                           "layer_meaning: None = last, int = position among the encoder's layers, 'all')"},
        "model": model_doc,
        "ensemble": {"kind": "refit" if refit else "cv-ensemble", "n_members": len(members),
                     "aggregation": "mean of the members' softmax probabilities"
                                    + (" and of their dimensions (the training data's scale)" if dims else "")},
        "inference": {"batch_mode": batch_mode,
                      "n_anchors": None if anchors is None else int(anchors[0].shape[0]),
                      "note": {"independent": "any batching gives the same answer",
                               "anchors": "each utterance is scored in a batch of itself + the fixed anchors",
                               "alone": "each utterance is scored alone (batch of 1: OT is the identity)"}
                      [batch_mode]},
        "training": {**_training_summary(results),
                     "clip_seconds": clip_seconds(run.get("features_dir"), list(run["labels"]))},
        "source": {"run_dir": str(run_dir.resolve()), "run_json_sha256": sha256_file(run_dir / RUN_JSON),
                   "fingerprint": run.get("fingerprint"), "versions": run.get("versions")},
        "run_spec": run.get("spec"),  # the resolved RunSpec (training/spec.py); None for runs before it
    }
    from parrot_ser.inference.hub import CONFIG_JSON, config_text, write_model_card

    path = write_bundle(out_dir, doc, members, anchors, texts={CONFIG_JSON: config_text(doc)})
    # the card is written from the final description, which lists the members' per-fold results
    write_model_card(path, json.loads((path / "bundle.json").read_text(encoding="utf-8")),
                     corpus=_corpus_name(run.get("features_dir")))
    return path


def _corpus_name(features_dir: str | None) -> str | None:
    """The corpus of the run's feature store (its manifest sidecar), for the model card."""
    if not features_dir:
        return None
    try:
        return json.loads((Path(features_dir) / "manifest.csv.json").read_text(encoding="utf-8")).get("corpus")
    except (OSError, ValueError, AttributeError):
        return None
