"""`parrot-ser train` (cross-validate one model) and `parrot-ser grid` (every encoder / pair x model)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape
from rich.table import Table

from parrot_ser.cli.common import (
    check_out_dir,
    err,
    guard,
    make_progress,
    os_error_message,
    print_json,
    warn_untrained,
)
from parrot_ser.errors import ConfigError, OutputError
from parrot_ser.training.config import TrainConfig

PROTOCOL_HELP = "speaker-kfold | loso | iemocap-sessions | predefined"


def _seeds(text: str) -> list[int]:
    try:
        seeds = [int(s) for s in text.replace(" ", "").split(",") if s]
    except ValueError:
        raise ConfigError(f"--seeds must be comma-separated integers (got {text!r})") from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise ConfigError(f"--seeds must list distinct integers (got {text!r})")
    return seeds


@dataclass(frozen=True)
class RunOptions:
    """What train and grid were asked to compute: the options both commands share, gathered once at the
    CLI edge (each field is the command parameter of that name; None keeps the --config file's value or
    TrainConfig's default). ``to_config`` is the one place they become the TrainConfig the run spec is
    resolved from."""

    config: Path | None = None
    layer: str | None = None
    frames: bool = False
    epochs: int | None = None
    lr: float | None = None
    batch_size: int | None = None
    patience: int | None = None
    eval_batch_size: int | None = None
    early_stop: str | None = None
    dropout: float | None = None
    weight_decay: float | None = None
    device: str | None = None
    threads: int | None = None
    standardise: bool | None = None
    precision: str | None = None
    allow_speaker_overlap: bool = False
    task: str | None = None
    classes: str | None = None
    label_map: Path | None = None
    regression_loss: str | None = None
    multitask_weight: float | None = None
    model_option: tuple[str, ...] = ()

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> RunOptions:
        """From a command's parameters (``locals()`` of train / grid, whose names are the fields)."""
        given = {f.name: params[f.name] for f in fields(cls)}
        return cls(**{**given, "model_option": tuple(given["model_option"] or ())})

    def to_config(self) -> TrainConfig:
        from parrot_ser.device import check_device
        from parrot_ser.layer_choice import parse_layer
        from parrot_ser.training.config import load_config

        if self.device is not None:
            check_device(self.device)  # worded for the option; the config check covers a YAML device
        overrides = {"layer": None if self.layer is None else parse_layer(self.layer),
                     "use_frames": True if self.frames else None, "epochs": self.epochs, "lr": self.lr,
                     "batch_size": self.batch_size, "patience": self.patience,
                     "eval_batch_size": self.eval_batch_size, "early_stop_metric": self.early_stop,
                     "dropout": self.dropout, "weight_decay": self.weight_decay, "device": self.device,
                     "num_threads": self.threads, "standardise": self.standardise, "precision": self.precision,
                     "allow_speaker_overlap": True if self.allow_speaker_overlap else None, "task": self.task,
                     "classes": self.classes, "regression_loss": self.regression_loss,
                     "multitask_weight": self.multitask_weight}
        if self.label_map is not None:
            from parrot_ser.corpora.labels import load_label_map

            overrides["label_map"] = load_label_map(self.label_map)  # recorded in the run spec (labels)
        overrides["model"] = model_options_of(self.model_option) or None
        return load_config(self.config, overrides)


def model_options_of(pairs: tuple[str, ...]) -> dict[str, Any]:
    """``--model-option KEY=VALUE`` (every model that takes KEY) and ``MODEL.KEY=VALUE`` (that model
    only: a block, as in the YAML ``model:`` mapping) -> the TrainConfig ``model`` mapping. Values are
    YAML scalars (``0.1``, ``true``, ``[16, 32]``); ``16,32`` is a list too. The model registry checks
    the keys (fusion.registry.model_options) when the run spec is resolved."""
    from parrot_ser.registry import parse_key_values, typed_value

    out: dict[str, Any] = {}
    raw = parse_key_values(pairs, "--model-option", form="KEY=VALUE or MODEL.KEY=VALUE", option_keys=False)
    for key, text in raw.items():
        model, dot, name = key.rpartition(".")
        name = name.replace("-", "_")
        if "," in text and not text.lstrip().startswith(("[", "{")):
            value: Any = [typed_value(t.strip(), None, "--model-option") for t in text.split(",")]
        else:
            value = typed_value(text, None, "--model-option")
        (out.setdefault(model, {}) if dot else out)[name] = value
    return out


def note_ignored_model_options(model: str, options: Mapping[str, Any]) -> None:
    """One line when a single model's run is given model options it does not take (a flat key applies to
    every model that takes it, so in a grid it is normal; with one model it is most likely a mistake)."""
    from parrot_ser.fusion.registry import ignored_options

    ignored = ignored_options(model, options)
    if ignored:
        err.print(f"note: model {model} does not take {', '.join(ignored)}: ignored (its settings: parrot-ser "
                  f"models show {model})", markup=False)


def _check_folds_file(folds_file: Path | None) -> None:
    if folds_file is not None and folds_file.is_dir():
        raise ConfigError(f"{folds_file}: --folds-file is a folder; give a file name, e.g. {folds_file / 'folds.json'}")


def _warn_store(features: Path, encoders: list[str]) -> None:
    """Warn before a long run (the results record it too; warn_untrained prints each name once)."""
    from parrot_ser.features import open_store
    from parrot_ser.training.run import is_random_init, tiny_stand_in_note

    store = open_store(features)
    untrained = [e for e in encoders if e in store.encoders and is_random_init(store.get(e).meta)]
    warn_untrained(untrained)
    for e in untrained:
        note = tiny_stand_in_note(e, store.get(e).meta)
        if note:
            err.print(f"[bold yellow]{escape(note)}[/]", markup=True)


def say_selection(res: dict) -> None:
    """The run's label set when --classes / --label-map changed the store's (what was kept, what dropped)."""
    sel = res.get("label_selection") or {}
    if sel.get("dropped") or sel.get("label_map") or sel.get("unlabelled_dropped"):
        dropped = ", ".join(f"{k} ({n} rows)" for k, n in sel.get("dropped", {}).items()) or "none"
        extra = f"; {sel['unlabelled_dropped']} row(s) without a label left out" if sel.get("unlabelled_dropped") else ""
        err.print(f"labels: {', '.join(sel.get('classes', []))}; dropped: {dropped}{extra}", markup=False)


def warn_overlap(warnings: list[str]) -> None:
    for w in warnings:
        if w.startswith(("NOT speaker-independent", "DATA NOTE")):
            err.print(f"[bold yellow]{escape(w)}[/]")


def _summary_table(results: dict, title: str) -> Table:
    s = results["summary"]
    t = Table(title=title, title_justify="left")
    t.add_column("metric")
    t.add_column(f"mean ± std over {s['n_folds']} folds", justify="right")
    if s["n_seeds"] > 1:
        t.add_column(f"± std over {s['n_seeds']} seeds", justify="right")
    names = {"accuracy": "accuracy (WA) %", "ua": "UA (balanced acc.) %", "macro_f1": "macro-F1 %",
             "weighted_f1": "weighted-F1 %", "ccc": "CCC (mean over dims)", "pearson": "Pearson r (mean)",
             "mae": "MAE (mean, data scale)"}
    for d in (results.get("task") or {}).get("dims") or []:
        names.update({f"ccc_{d}": f"CCC {d}", f"pearson_{d}": f"Pearson r {d}", f"mae_{d}": f"MAE {d}"})
    for m, label in names.items():
        if m not in s["over_folds"]:
            continue
        f = s["over_folds"][m]
        digits = 2 if m in ("accuracy", "ua", "macro_f1", "weighted_f1") else 3
        row = [label, f"{f['mean']:.{digits}f} ± {f['std']:.{digits}f}"]
        if s["n_seeds"] > 1:
            row.append(f"{s['over_seeds'][m]['std']:.{digits}f}")
        t.add_row(*row)
    return t


# What the run computes (TrainConfig keys: None keeps the --config file's value or the default, which
# the help quotes from TrainConfig itself so the two cannot drift).
_D = TrainConfig()
_opt_epochs = typer.Option(None, "--epochs", help=f"Max epochs (default {_D.epochs}).")
_opt_lr = typer.Option(None, "--lr", help=f"Adam learning rate (default {_D.lr:g}).")
_opt_bs = typer.Option(None, "--batch-size", help=f"Training batch size (default {_D.batch_size}).")
_opt_pat = typer.Option(None, "--patience", help=f"Early-stopping patience in epochs (default {_D.patience}; 0 = off).")
_opt_es = typer.Option(None, "--early-stop", help="Early-stopping monitor: auto (default: macro_f1 for "
                       "classification, ccc for regression, f1_ccc = mean of macro-F1 and CCC for multitask), "
                       "macro_f1, ccc, f1_ccc or loss.")
_opt_do = typer.Option(None, "--dropout", help=f"Dropout (default {_D.dropout}).")
_opt_wd = typer.Option(None, "--weight-decay", help=f"Adam weight decay (default {_D.weight_decay:g}).")
_opt_ebs = typer.Option(None, "--eval-batch-size", help=f"Evaluation batch size (default {_D.eval_batch_size}; matters for "
                                                        "batch-dependent models).")
_opt_layer = typer.Option(None, "--layer", help="What feeds the model: 'last' (default: the deepest stored layer), "
                          "a hidden-state index (0 = embeddings; as extract --layers), 'mean' (of the stored "
                          "layers) or 'weighted' (learned layer weighting; 'all' is the old word).")
_opt_std = typer.Option(None, "--standardise/--no-standardise",
                        help="z-score each input with training-side mean/std (default on).")
_opt_prec = typer.Option(None, "--precision", help="fp32 (default) | bf16: train under bfloat16 autocast "
                         "(faster on CPUs with AVX512-BF16 / AMX and on GPUs; other numbers, part of the run identity).")
_opt_frames = typer.Option(False, "--frames", help="Also feed frame features (models that use them).")
_opt_config = typer.Option(None, "--config", help="YAML file of training settings (the keys: docs/protocol.md; "
                           "lr, epochs, model: {...}, ...); CLI options override it.")
_opt_folds_file = typer.Option(None, "--folds-file", help="JSON folds (utterance ids per side): read when "
                               "the file exists, else the folds made are written there before training.")
# How it is executed: not part of the run identity (changing them resumes the same run).
_opt_overlap = typer.Option(False, "--allow-speaker-overlap", help="Run imported folds (--protocol predefined, "
                            "--folds-file) that share speakers between training and test; every output then "
                            "says the protocol is NOT speaker-independent, with the shared speakers per fold.")
_opt_task = typer.Option(None, "--task", help="classification (default) | regression (the store's numeric "
                         "targets: one output per dimension, loss 1 - CCC) | multitask (both heads).")
_opt_classes = typer.Option(None, "--classes", help="Comma-separated labels to keep (after --label-map); the rows "
                            "of the others are left out and listed in run.json / results.json.")
_opt_label_map = typer.Option(None, "--label-map", help="YAML/JSON label: new_label (merge, rename; null drops), "
                              "e.g. exc: happy; recorded in the run's config.")
_opt_rloss = typer.Option(None, "--regression-loss", help="ccc (default: 1 - CCC per dimension) | mse.")
_opt_mtw = typer.Option(None, "--multitask-weight", help="multitask: weight of the regression loss, "
                        "(1 - w) * CE + w * regression (default 0.5).")
_opt_model_option = typer.Option([], "--model-option", help="KEY=VALUE setting of the model (its config "
                                 "keys: parrot-ser models show MODEL; e.g. conv_channels=16,32, ot_eps=0.1, embed_dim=120); "
                                 "MODEL.KEY=VALUE for one model only (in a grid: parrot.ot_eps=0.05). Repeat it; "
                                 "it overrides the --config file's model: mapping and is part of the run identity.")
_opt_dev = typer.Option(None, "--device", help=f"torch device (default {_D.device}).")
_opt_thr = typer.Option(None, "--threads", help="torch CPU threads per worker (default: cores / workers).")
_opt_engine = typer.Option("local", "--engine", help="local | ray (pip install 'parrot-ser[ray]').")
_opt_batched = typer.Option(None, "--batched/--no-batched", help="Train the folds of each seed of a cell together "
                            "(stacked models, torch.func.vmap; any task). Default: automatic (on CUDA, and on CPU only for "
                            "tiny heads: on CPU it measured slower for conv heads).")
_opt_workers = typer.Option(0, "--workers", min=0, help="Local worker processes (0 = automatic: every core "
                            "unless the work is tiny; 1 = this process only).")
_opt_address = typer.Option(None, "--address", help="Ray cluster address (ray start --head prints it; 'auto' "
                            "= the local cluster). Default: a local Ray instance.")

@guard
def train(
    features: Path = typer.Option(..., "--features", help="Feature store folder (parrot-ser extract)."),
    encoder: list[str] = typer.Option(..., "--encoder", help="Encoder name; give twice for fusion models "
                                                             "(Mamba PTM first)."),
    model: str = typer.Option(..., "--model", help="Model name (cnn, fcn, concat, parrot, ...)."),
    out: Path = typer.Option(..., "--out", help="Run folder (resumable: finished folds are kept)."),
    config: Path = _opt_config,
    seeds: str = typer.Option("0", "--seeds", help="Comma-separated seeds, e.g. 0,1,2."),
    protocol: str = typer.Option("speaker-kfold", "--protocol", help=PROTOCOL_HELP),
    folds: int = typer.Option(5, "--folds", help="Folds for speaker-kfold."),
    layer: str = _opt_layer, frames: bool = _opt_frames, epochs: int = _opt_epochs, lr: float = _opt_lr,
    batch_size: int = _opt_bs, patience: int = _opt_pat, eval_batch_size: int = _opt_ebs,
    early_stop: str = _opt_es, dropout: float = _opt_do, weight_decay: float = _opt_wd, device: str = _opt_dev,
    threads: int = _opt_thr, standardise: bool | None = _opt_std, precision: str | None = _opt_prec,
    allow_speaker_overlap: bool = _opt_overlap, task: str | None = _opt_task, classes: str | None = _opt_classes,
    label_map: Path | None = _opt_label_map, regression_loss: str | None = _opt_rloss,
    multitask_weight: float | None = _opt_mtw, model_option: list[str] = _opt_model_option,
    batched: bool | None = _opt_batched, workers: int = _opt_workers, engine: str = _opt_engine,
    address: str | None = _opt_address,
    folds_file: Path | None = _opt_folds_file,
    folds_only: bool = typer.Option(False, "--folds-only", help="Write --folds-file and stop (no training)."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar (the summary is still printed)."),
    json_out: bool = typer.Option(False, "--json", help="Print results.json's summary on stdout."),
) -> None:
    from parrot_ser.training.run import run_cv

    check_out_dir(out)
    if folds_only and folds_file is None:
        raise ConfigError("--folds-only needs --folds-file FILE (where to write the folds)")
    _check_folds_file(folds_file)
    cfg = RunOptions.from_params(locals()).to_config()
    note_ignored_model_options(model, cfg.model)
    _warn_store(features, list(encoder))
    try:
        with make_progress("epoch", disable=quiet or folds_only) as progress:
            res = run_cv(features, list(encoder), model, cfg, _seeds(seeds), protocol, out, n_folds=folds,
                         progress=progress, folds_file=folds_file, folds_only=folds_only, batched=batched,
                         workers=workers or None, engine=engine, address=address)
    except OSError as e:  # disk full / read-only while writing the run: finished folds are kept
        raise OutputError(f"run folder {out}: {os_error_message(e, out)}") from None
    if folds_only:
        n = sum(len(v) for v in res["folds"].values())
        err.print(f"folds: {folds_file} ({n} seed x fold(s)); train with the same --folds-file to use them")
        if json_out:
            print_json(res)
        return
    warn_untrained(res.get("random_init_encoders", []))
    warn_overlap(res.get("warnings", []))
    say_selection(res)
    # the summary and where the results are: also with --quiet (which only hides the progress bar)
    err.print(_summary_table(res, escape(f"{model} ({' + '.join(encoder)}), {res['protocol']}, "
                                         f"{res['n_utterances']} utterances, {res['n_speakers']} speakers")))
    err.print(f"results: {out / 'results.json'}")
    if json_out:
        print_json({k: res[k] for k in ("model", "encoders", "protocol", "seeds", "headline", "summary",
                                        "random_init_encoders")} | {"run_dir": str(out)})


@guard
def grid(
    features: Path = typer.Option(..., "--features", help="Feature store folder."),
    encoders: str = typer.Option(..., "--encoders", help="Comma-separated encoder names."),
    models: str = typer.Option("cnn,fcn,concat,hadamard,ot,parrot", "--models", help="Comma-separated models."),
    out: Path = typer.Option(..., "--out", help="Grid folder (resumable: finished cells are skipped)."),
    seeds: str = typer.Option("0", "--seeds", help="Comma-separated seeds."),
    pairs: str = typer.Option("all", "--pairs", help="all | hetero (Mamba, recurrent or convolutional PTM + attention PTM) | homo (same kind)."),
    protocol: str = typer.Option("speaker-kfold", "--protocol", help=PROTOCOL_HELP),
    folds: int = typer.Option(5, "--folds", help="Folds for speaker-kfold."),
    config: Path = _opt_config,
    layer: str = _opt_layer, frames: bool = _opt_frames, epochs: int = _opt_epochs, lr: float = _opt_lr,
    batch_size: int = _opt_bs, patience: int = _opt_pat, eval_batch_size: int = _opt_ebs,
    early_stop: str = _opt_es, dropout: float = _opt_do, weight_decay: float = _opt_wd, device: str = _opt_dev,
    threads: int = _opt_thr, standardise: bool | None = _opt_std, folds_file: Path | None = _opt_folds_file,
    precision: str | None = _opt_prec, allow_speaker_overlap: bool = _opt_overlap, batched: bool | None = _opt_batched,
    task: str | None = _opt_task, classes: str | None = _opt_classes, label_map: Path | None = _opt_label_map,
    regression_loss: str | None = _opt_rloss, multitask_weight: float | None = _opt_mtw,
    model_option: list[str] = _opt_model_option, workers: int = _opt_workers, engine: str = _opt_engine,
    address: str | None = _opt_address,
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar (the tables are still printed)."),
    json_out: bool = typer.Option(False, "--json", help="Print grid.json on stdout."),
) -> None:
    from parrot_ser.training.grid import run_grid

    check_out_dir(out)
    _check_folds_file(folds_file)
    cfg = RunOptions.from_params(locals()).to_config()
    encs = [e for e in encoders.replace(" ", "").split(",") if e]
    mods = [m for m in models.replace(" ", "").split(",") if m]
    _warn_store(features, encs)
    try:
        with make_progress("epoch", disable=quiet) as progress:
            res = run_grid(features, encs, mods, cfg, _seeds(seeds), protocol, out, n_folds=folds, pairs=pairs,
                           progress=progress, batched=batched, workers=workers or None, engine=engine,
                           address=address, folds_file=folds_file)
    except OSError as e:  # finished cells are kept and skipped on the rerun
        raise OutputError(f"grid folder {out}: {os_error_message(e, out)}") from None
    warn_untrained(res.get("random_init_encoders", []))
    warn_overlap(res.get("warnings", []))
    err.print(escape((out / "table.md").read_text(encoding="utf-8")))
    err.print(f"tables: {out / 'table.md'}, {out / 'table.csv'}; tests: {out / 'significance.md'}")
    if json_out:
        print_json(res)
