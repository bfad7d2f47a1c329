"""Hugging Face conventions for model bundles: ``config.json``, the model card ``README.md``, hub
repo ids (resolved through huggingface_hub, local cache first) and ``push_to_hub``.

A bundle folder is also a hub model repository:

    bundle.json            our description + sha256 manifest (the source of truth, verified on load)
    config.json            HF-style summary: model_type, id2label / label2id, encoders with their
                           identities, head config (derived from bundle.json; hashed in its manifest)
    README.md              the model card: YAML front matter (library_name, pipeline_tag, tags,
                           metrics, model-index with the cross-validated numbers) + the prose card.
                           Not hashed: a model card is documentation that owners edit on the hub.
    members/*.safetensors, anchors.safetensors

``resolve_model_dir(name_or_path)``: an existing folder is used as is; otherwise a hub repo id
(``owner/name``) is looked up in the local HF cache (``snapshot_download(local_files_only=True)``);
only when that misses and downloads are allowed (``HF_HUB_OFFLINE=0`` or ``PARROT_ALLOW_DOWNLOAD=1``,
the project's policy in encoders/hf.py) is the hub asked. Anything else is one BundleError naming
the id and what was tried."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from parrot_ser.errors import BundleError

CONFIG_JSON = "config.json"
MODEL_CARD = "README.md"
MODEL_TYPE = "parrot-ser"
CV_NOTE = ("Each member is one fold x seed model of the run above, tested on its own held-out speakers; the "
           "ensemble's error is close to (usually a little below) those numbers.")
REFIT_NOTE = ("One model trained on all the run's data: the cross-validated numbers are its expected quality, "
              "not a held-out measurement of it.")
REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


# --- config.json ----------------------------------------------------------------------------------
def hf_config(doc: dict) -> dict:
    """config.json for a bundle description (bundle.json's content, without the file manifest)."""
    labels = list(doc["labels"])
    md = doc["model"]
    rates = sorted({int(e.get("preprocessing", {}).get("sample_rate") or 16000) for e in doc["encoders"]})
    return {
        "model_type": MODEL_TYPE,
        "architectures": [f"parrot_ser:{md['name']}"],
        "task": "audio-classification" if labels else "audio-regression",
        "parrot_ser_task": doc.get("task", "classification"),
        # dimensions (arousal, ...) output after the label probabilities, in the training data's scale
        "dims": list(doc.get("dims") or []),
        "parrot_ser_version": doc.get("package_version"),
        "num_labels": len(labels),
        "id2label": {str(i): lab for i, lab in enumerate(labels)},
        "label2id": {lab: i for i, lab in enumerate(labels)},
        "sampling_rate": rates[0],
        "encoders": [{k: e.get(k) for k in ("name", "checkpoint", "checkpoint_sha256", "random_init", "seed",
                                             "layers", "preprocessing", "options", "store_dtype") if k in e}
                     for e in doc["encoders"]],
        "head": {"model": md["name"], "input_dims": md.get("input_dims"), "input_shapes": md.get("input_shapes"),
                 "frame_dims": md.get("frame_dims"), "batch_dependent": md.get("batch_dependent"),
                 "uses_frames": md.get("uses_frames"), "layer": doc.get("inputs", {}).get("layer"),
                 "use_frames": doc.get("inputs", {}).get("use_frames"), "config": md.get("config")},
        "ensemble": doc.get("ensemble"),
        "inference": doc.get("inference"),
        "bundle": "bundle.json (verified on load: sha256 of every weight file and of config.json)",
    }


def config_text(doc: dict) -> str:
    return json.dumps(hf_config(doc), indent=2) + "\n"


# --- model card -----------------------------------------------------------------------------------
def _pct(summary: dict | None) -> str:
    if not summary:
        return "n/a"
    return f"{summary.get('mean', float('nan')):.2f} ± {summary.get('std', float('nan')):.2f}"


def _num3(summary: dict | None) -> str:
    if not summary:
        return "n/a"
    return f"{summary.get('mean', float('nan')):.3f} ± {summary.get('std', float('nan')):.3f}"


def _card_warnings(untrained: list[str], tr: dict) -> str:
    """The untrained-encoder banner, then the run's other warnings (NOT speaker-independent, data notes)."""
    warn = (f"\n> **WARNING: UNTRAINED ENCODER(S): {', '.join(untrained)}.** They use random-initialised "
            "weights; this model only tests the pipeline. Its numbers say nothing about the pretrained "
            "encoders or about the method.\n" if untrained else "")
    return warn + "".join(f"\n> **{w}.**\n" for w in tr.get("warnings", []) if "UNTRAINED" not in w.upper())


def _folds_words(tr: dict) -> str:
    if tr.get("speaker_independent", True):
        return "speaker-independent folds checked for leakage"
    return "folds imported as given, NOT speaker-independent"


def _card_outputs(doc: dict, head: dict) -> tuple[str, str]:
    """(what the model outputs, its cross-validated scores) in words, for the model card."""
    dims = list(doc.get("dims") or [])
    outputs = (f"Labels: {', '.join(f'`{lab}`' for lab in doc['labels'])}" if doc["labels"] else "No labels")
    outputs += f"; dimensions (training data's scale): {', '.join(f'`{d}`' for d in dims)}" if dims else ""
    scores = (f"accuracy {_pct(head.get('accuracy'))} %, macro-F1 {_pct(head.get('macro_f1'))} %, "
              f"UA {_pct(head.get('ua'))} %" if doc["labels"] else "")
    if dims:
        scores += ("; " if scores else "") + f"mean CCC {_num3(head.get('ccc'))}, " + ", ".join(
            f"CCC {d} {_num3(head.get('ccc_' + d))}" for d in dims)
    return outputs, scores


def _num(v: Any) -> str:
    return f"{v:.2f}" if isinstance(v, (int, float)) else "n/a"


def _weights(e: dict) -> str:
    if e.get("random_init"):
        return f"**UNTRAINED (random init, seed {e.get('seed')})**"
    return "pretrained" if e.get("checkpoint_sha256") else "no weights (handcrafted features)"


def _card_data(doc: dict, corpus: str | None, task_desc: str, untrained: list[str]) -> Any:
    """The card's YAML front matter: tags and cross-validated eval results (huggingface_hub)."""
    from huggingface_hub import EvalResult, ModelCardData

    head = doc.get("training", {}).get("headline", {})
    md, encs = doc["model"], doc["encoders"]
    corpus_name = corpus or "unknown corpus"
    evals = []
    for key, mtype, mname in (("accuracy", "accuracy", "Accuracy"), ("macro_f1", "f1", "Macro-F1")):
        if key in head:
            evals.append(EvalResult(task_type="audio-classification", task_name="Speech emotion recognition",
                                    dataset_type=corpus_name, dataset_name=corpus_name, metric_type=mtype,
                                    metric_name=f"{mname} (%, {task_desc})", metric_value=round(head[key]["mean"], 2),
                                    metric_args={"average": "macro"} if key == "macro_f1" else None,
                                    verified=False))
    tags = ["speech-emotion-recognition", "audio-classification", "parrot-ser", md["name"],
            *[e["name"] for e in encs]]
    if untrained:
        tags.append("untrained-encoders")
    return ModelCardData(library_name="parrot-ser", pipeline_tag="audio-classification", tags=tags,
                         metrics=["accuracy", "f1"], model_name=f"parrot-ser {md['name']}",
                         eval_results=evals or None, datasets=[corpus] if corpus else None)


def _bundle_kind(ens: dict) -> str:
    if ens.get("kind") == "refit":
        return ("one model refit on all the run's data (the default of `parrot-ser export`; `--ensemble` "
                "bundles the run's fold x seed models instead).")
    return (f"an ensemble of the run's {ens.get('n_members')} fold x seed models ({ens.get('aggregation')}; "
            "`parrot-ser export --ensemble`).")


def _install_and_use(doc: dict) -> str:
    return f"""## Install

PARROT-SER is not published on PyPI: install it from a clone of its source repository,
`pip install -e .` in the clone (`pip install -e '.[serve]'` adds `parrot-ser serve`), with
parrot-ser {doc.get('package_version')} or later.

## Use

```python
import parrot_ser
model = parrot_ser.load_model("path/to/this/folder")     # or a hub repo id in your HF cache
print(model.pipeline("speech.wav"))                       # [{{"label": ..., "score": ...}}, ...]
```

or `parrot-ser predict <folder or repo id> speech.wav --json`.
"""


def model_card(doc: dict, corpus: str | None = None) -> str:
    """README.md in the hub's format (YAML front matter written by huggingface_hub's ModelCardData)."""
    from huggingface_hub import ModelCard

    tr = doc.get("training", {})
    md = doc["model"]
    head = tr.get("headline", {})
    encs = doc["encoders"]
    untrained = [e["name"] for e in encs if e.get("random_init")]
    corpus_name = corpus or "unknown corpus"
    n_folds, protocol = tr.get("n_folds"), tr.get("protocol", "speaker-kfold")
    task_desc = f"{n_folds}-fold {protocol} cross-validation, mean over folds"
    data = _card_data(doc, corpus, task_desc, untrained)
    enc_rows = "\n".join(
        f"| {e['name']} | {_weights(e)} "
        f"| `{e.get('checkpoint') or '-'}` | {(e.get('checkpoint_sha256') or '-')[:16]} | {e.get('layers')} |"
        for e in encs)
    warn = _card_warnings(untrained, tr)
    outputs, scores = _card_outputs(doc, head)
    ens = doc.get("ensemble", {})
    inf = doc.get("inference", {})
    folds = [m for m in doc.get("members", []) if m.get("fold") is not None]
    fold_rows = "\n".join(
        f"| {m.get('seed')} | {m.get('fold')} | {m.get('best_epoch')} | {_num(m.get('test_accuracy'))} | "
        f"{_num(m.get('test_macro_f1'))} |" for m in folds)
    fold_table = ("\nPer fold (each member tested on its own held-out speakers):\n\n| seed | fold | best epoch | "
                  "accuracy % | macro-F1 % |\n|---|---|---|---|---|\n" + fold_rows + "\n") if folds else ""
    body = f"""
# parrot-ser: {md['name']} on {' + '.join(e['name'] for e in encs)}
{warn}
Speech emotion recognition head(s) trained with PARROT-SER on frozen speech encoder features.
{outputs}.

{_install_and_use(doc)}
## Training data and protocol

- Corpus: {corpus_name}; {tr.get('n_utterances', '?')} utterances, {tr.get('n_speakers', '?')} speakers,
  classes {', '.join(tr.get('classes', doc['labels']))}.
- Protocol: {task_desc}, {_folds_words(tr)}; seeds {tr.get('seeds')}.
- Cross-validated {scores} (mean ± sample std over folds, each fold averaged over the seeds).
- This bundle: {_bundle_kind(ens)}
  {REFIT_NOTE if ens.get('kind') == 'refit' else CV_NOTE}
- Batching at inference: {inf.get('batch_mode')} ({inf.get('note')}).
{fold_table}
## Encoders

| encoder | weights | checkpoint | sha256 | layers |
|---|---|---|---|---|
{enc_rows}

The encoders' own weights are not in this repository: `load_model` rebuilds them from the recorded
checkpoint (a local path or an HF id in your cache) and refuses a checkpoint whose sha256 differs.

## Intended use

Research on speech emotion recognition with acted-emotion corpora: comparing encoders and fusion
methods, and demonstrating the pipeline.

## Limitations

- Trained on one acted corpus ({corpus_name}); acted emotions in one language differ from
  spontaneous speech, other languages, recording conditions and speakers. Expect lower accuracy there.
- Emotion labels are a coarse, culturally loaded categorisation; do not use the predictions to make
  decisions about people (hiring, health, policing, surveillance).
- The numbers are cross-validated means over few speakers (see the std); they are not a guarantee.

Created with parrot-ser {doc.get('package_version')} on {doc.get('created_utc')}.
"""
    return str(ModelCard(f"---\n{data.to_yaml()}\n---\n{body}"))


def write_model_card(root: Path, doc: dict, corpus: str | None = None) -> Path:
    path = Path(root) / MODEL_CARD
    path.write_text(model_card(doc, corpus), encoding="utf-8")
    return path


# --- files a hub repository holds -----------------------------------------------------------------
def hub_files(model_dir: str | Path) -> list[str]:
    """Relative paths of a verified bundle that make up its hub repository: bundle.json, every file
    of its manifest (weights, config.json) and the model card when present."""
    from parrot_ser.inference.bundle import BUNDLE_JSON, verify_bundle

    root = Path(model_dir)
    doc = verify_bundle(root)
    files = [BUNDLE_JSON, *doc["files"]]
    if (root / MODEL_CARD).is_file():
        files.append(MODEL_CARD)
    return sorted(dict.fromkeys(files))


def push_to_hub(model_dir: str | Path, repo_id: str, *, private: bool | None = None, token: str | None = None,
                revision: str | None = None, commit_message: str = "Upload parrot-ser model",
                create_pr: bool = False) -> Any:
    """Verify the bundle, create ``repo_id`` (if missing) and upload exactly ``hub_files`` with
    huggingface_hub. Needs network and a token with write access."""
    from huggingface_hub import HfApi

    root = Path(model_dir)
    files = hub_files(root)
    api = HfApi(token=token)
    try:
        api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        return api.upload_folder(folder_path=str(root), repo_id=repo_id, repo_type="model", revision=revision,
                                 allow_patterns=files, commit_message=commit_message, create_pr=create_pr)
    except Exception as e:  # network, auth, permissions: one line for the user
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise BundleError(f"push to hub repo {repo_id!r} failed: {first[:300]}") from None


# --- resolving a folder or a repo id --------------------------------------------------------------
def _offline() -> bool:
    # The project's one download policy (encoders/hf.py): offline unless HF_HUB_OFFLINE=0 or
    # PARROT_ALLOW_DOWNLOAD=1 ask for downloads.
    from parrot_ser.encoders.hf import _offline as offline

    return offline()


def resolve_model_dir(name_or_path: str | Path, *, revision: str | None = None,
                      cache_dir: str | Path | None = None) -> Path:
    """A local bundle folder, or the snapshot folder of a hub repo id (module doc)."""
    p = Path(name_or_path)
    if p.is_dir():
        return p
    text = str(name_or_path)
    if p.exists():
        raise BundleError(f"{p}: is a file; a model is a folder (made by `parrot-ser export`) or a hub repo id")
    if not REPO_ID.match(text):
        raise BundleError(f"{p}: model bundle folder not found (and {text!r} is not a hub repo id 'owner/name')")
    from huggingface_hub import snapshot_download

    cache = str(cache_dir) if cache_dir is not None else None
    try:
        return Path(snapshot_download(text, revision=revision, cache_dir=cache, local_files_only=True))
    except Exception as cached_err:  # not in the cache (LocalEntryNotFoundError and friends)
        why = str(cached_err).strip().splitlines()[0][:160] if str(cached_err).strip() else type(cached_err).__name__
    if _offline():
        from huggingface_hub import constants

        raise BundleError(f"{text}: no such folder, and hub repo {text!r} is not in the local HF cache "
                          f"({cache or constants.HF_HUB_CACHE}; {why}); nothing is downloaded unless asked "
                          f"(HF_HUB_OFFLINE=0 or PARROT_ALLOW_DOWNLOAD=1): pass a bundle folder, or "
                          f"`hf download {text}` first") from None
    try:
        return Path(snapshot_download(text, revision=revision, cache_dir=cache))
    except Exception as e:
        first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise BundleError(f"{text}: no such folder, not in the local HF cache, and the hub could not be "
                          f"reached or has no such repo ({first}); pass a bundle folder") from None
