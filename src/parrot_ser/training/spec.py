"""RunSpec: one typed, fully resolved description of a cross-validation run, built once at the edge
(``run_cv`` / ``run_grid``, which the CLI, YAML configs and the Python API all go through).

``TrainConfig`` (training/config.py) is only that edge's input (YAML keys, CLI options, Python
arguments); ``RunSpec.build`` turns it into a spec once, and everything below takes the spec or the
part it needs: the training loop (``spec.optimisation``), its variants (``trainer`` / ``batched``:
model, model config, inputs, optimisation, execution), the task (``spec.task`` +
``spec.task_options``), ``data.load_features`` (``spec.inputs`` + ``spec.labels`` + ``spec.task``),
the execution units and their worker / Ray payloads (``to_dict`` / ``from_dict``). Export reads a
run's spec back with ``RunSpec.of_run``. To train one model from Python:
``fit_model(train, val, RunSpec.build("concat", TrainConfig(epochs=10)), seed=0)``.

Identity vs execution: every field says what the run computes (identity) except ``execution``
(device, threads, workers, engine, batching), which says how it is run; changing only execution
settings resumes the same run. The model's config is resolved for THAT model (its own typed
``Config`` with defaults filled in and no key another model uses), so in a grid a parrot setting no
longer changes the cnn cell's identity.

The fingerprint is the hash of ``identity()`` plus the data the run reads (class list, utterance
ids, encoder identities, a folds file) and ``SPEC_FORMAT``; no special cases. Run folders written
before RunSpec are recognised by their old fingerprint (``run.run_fingerprints``, kept for that),
folders written with an older spec format by ``former_fingerprints``; they resume, and ``run.json``
then holds the current spec and fingerprint.

Formats: ``/1`` named the model config's store position ``layer``; ``/2`` calls it ``position``
(``fusion.registry.ModelConfig``), since a layer is a hidden-state index everywhere else.
``from_dict`` reads both.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

from parrot_ser.errors import ConfigError
from parrot_ser.files import json_default
from parrot_ser.training.config import TrainConfig

SPEC_FORMAT = "parrot-ser-runspec/2"
# Older formats -> how their model_config keys map to the current ones (read by from_dict, and
# recognised once by former_fingerprints so that their run folders resume).
FORMER_FORMATS = {"parrot-ser-runspec/1": {"layer": "position"}}
OPTIONAL = ("task_options", "labels", "folds")  # left out of the spec (and its identity) when empty


@dataclass(frozen=True)
class Optimisation:
    lr: float
    weight_decay: float
    batch_size: int
    epochs: int
    patience: int
    early_stop_metric: str
    val_fraction: float
    eval_batch_size: int
    precision: str


@dataclass(frozen=True)
class Inputs:
    encoders: tuple[str, ...]  # model input order (Mamba first for pairs)
    layer: int | str  # layer_choice: a hidden-state index, "last", "mean", "weighted"
    use_frames: bool
    standardise: bool


@dataclass(frozen=True)
class Protocol:
    name: str  # speaker-kfold | loso | iemocap-sessions | predefined | folds-file
    n_folds: int


@dataclass(frozen=True)
class Execution:
    """How the run is executed: not part of its identity."""

    device: str = "cpu"
    num_threads: int | None = None
    workers: int | None = None
    engine: str = "local"
    batched: bool | None = None

    @classmethod
    def of(cls, config: TrainConfig, workers: int | None = None, engine: str = "local",
           batched: bool | None = None) -> Execution:
        """The execution a run was asked for: the config's device and threads, and ``run_cv`` /
        ``run_grid``'s workers, engine and batching (None = automatic)."""
        return cls(config.device, config.num_threads, workers, engine, batched)


@dataclass(frozen=True)
class RunSpec:
    model: str
    model_config: dict  # the model's own typed Config, resolved (fusion.registry.make_config)
    task: str
    inputs: Inputs
    optimisation: Optimisation
    protocol: Protocol
    execution: Execution
    # Issue-17 settings, in the identity only when used (empty: the run's identity is what it was
    # before they existed): the task's own options (regression_loss, multitask_weight), the run's
    # label selection (classes kept, label_map), imported folds allowed to share speakers.
    task_options: dict = field(default_factory=dict)
    labels: dict = field(default_factory=dict)
    folds: dict = field(default_factory=dict)

    @classmethod
    def build(cls, model: str, config: TrainConfig | None = None, *, encoders: Sequence[str] = (),
              protocol: str = "speaker-kfold", n_folds: int = 5, execution: Execution | None = None) -> RunSpec:
        """THE way from a ``TrainConfig`` (YAML keys, CLI options, Python API; None = the defaults)
        to the resolved spec everything below ``run_cv`` / ``run_grid`` takes: ``config``
        validated, the model's options resolved for ``model``. ``encoders`` (model input order),
        ``protocol`` and ``n_folds`` are part of a run's identity; a spec made only to train one
        model (``trainer.fit_model``) can leave them out. ``execution``: default from the config's
        device and threads."""
        from parrot_ser.fusion.registry import make_config, model_options
        from parrot_ser.layer_choice import WEIGHTED
        from parrot_ser.training.tasks import get_task

        config = (config or TrainConfig()).validate()
        if config.layer == WEIGHTED and model_options(model, config.model).get("layer_weighting") is False:
            raise ConfigError("layer weighted is the learned layer weighting; the model option "
                              "layer_weighting=false contradicts it (use --layer last, an index or mean)")
        model_config = dataclasses.asdict(make_config(model, {"dropout": config.dropout, **config.model}))
        # early_stop_metric "auto" is the task's own metric (classification: macro_f1, the old default)
        monitor = get_task(config.task).monitor(config.early_stop_metric)
        task_options = ({} if config.task == "classification" else
                        {"regression_loss": config.regression_loss, "multitask_weight": config.multitask_weight})
        labels = {k: v for k, v in (("classes", config.classes), ("label_map", config.label_map)) if v}
        return cls(
            model=model, model_config=json.loads(json.dumps(model_config, default=json_default)), task=config.task,
            inputs=Inputs(tuple(encoders), config.layer, bool(config.use_frames), bool(config.standardise)),
            optimisation=Optimisation(config.lr, config.weight_decay, config.batch_size, config.epochs,
                                      config.patience, monitor, config.val_fraction,
                                      config.eval_batch_size, config.precision),
            protocol=Protocol(protocol, int(n_folds)),
            execution=execution or Execution.of(config),
            task_options=task_options, labels=labels,
            folds={"allow_speaker_overlap": True} if config.allow_speaker_overlap else {})

    @classmethod
    def of_run(cls, run: dict[str, Any], where: str = "run.json") -> RunSpec:
        """The spec of a run (a ``run.json`` dict): the one it stores, or for runs written before
        RunSpec, rebuilt from their ``config`` (the layer choice of runs older still, which stored
        a position, mapped to the hidden-state index it meant)."""
        if run.get("spec"):
            return cls.from_dict(run["spec"])
        from parrot_ser.layer_choice import LAYER_MEANING, choice_from_legacy

        cfg = dict(run["config"])
        if run.get("layer_meaning") != LAYER_MEANING:  # written before hidden-state indices: a position
            cfg["layer"] = choice_from_legacy(cfg.get("layer"), [run["features_meta"][e].get("layers") or [0]
                                                                 for e in run["encoders"]], where)
        return cls.build(run["model"], TrainConfig.from_dict(cfg, source=where), encoders=run["encoders"],
                         protocol=run.get("protocol", "speaker-kfold"), n_folds=int(run.get("n_folds", 5)))

    def with_threads(self, n: int | None) -> RunSpec:
        """The same run executed with ``n`` torch threads (a worker's own share of the cores)."""
        return dataclasses.replace(self, execution=dataclasses.replace(self.execution, num_threads=n))

    def forward_context(self) -> AbstractContextManager:
        """The context the training forward pass runs in (both variants of the loop): torch.autocast
        to bfloat16 for precision "bf16" (identity) on the run's device (execution), else a no-op."""
        import torch

        if self.optimisation.precision == "bf16":
            return torch.autocast(device_type=torch.device(self.execution.device).type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def to_dict(self) -> dict[str, Any]:
        d = json.loads(json.dumps(dataclasses.asdict(self), default=json_default))
        return {"format": SPEC_FORMAT, **{k: v for k, v in d.items() if v != {} or k not in OPTIONAL}}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunSpec:
        """The spec ``to_dict`` wrote (run.json ``spec``, a bundle's ``run_spec``, a worker's payload),
        in the current format or a former one (``FORMER_FORMATS``)."""
        fmt = d.get("format", SPEC_FORMAT)
        if fmt != SPEC_FORMAT and fmt not in FORMER_FORMATS:
            raise ConfigError(f"run spec format {fmt!r} is not one this version reads ({SPEC_FORMAT}, "
                              f"{', '.join(FORMER_FORMATS)}); upgrade parrot-ser")
        renames = FORMER_FORMATS.get(fmt, {})
        model_config = {renames.get(k, k): v for k, v in d["model_config"].items()}
        inputs = dict(d["inputs"], encoders=tuple(d["inputs"]["encoders"]))
        return cls(model=d["model"], model_config=model_config, task=d["task"], inputs=Inputs(**inputs),
                   optimisation=Optimisation(**d["optimisation"]), protocol=Protocol(**d["protocol"]),
                   execution=Execution(**d.get("execution", {})),
                   **{k: dict(d[k]) for k in OPTIONAL if k in d})

    def identity(self) -> dict[str, Any]:
        """Everything but ``execution``."""
        return {k: v for k, v in self.to_dict().items() if k != "execution"}

    def fingerprint(self, data: dict[str, Any]) -> str:
        """Hash of the identity, the data identity (``data``) and the format version."""
        return _hash(self.identity(), data)

    def former_fingerprints(self, data: dict[str, Any]) -> set[str]:
        """The fingerprints this run had in the former spec formats (its identity as they wrote it),
        so that a run folder written by an older version is recognised as the same run."""
        out = set()
        for fmt, renames in FORMER_FORMATS.items():
            back = {new: old for old, new in renames.items()}
            ident = self.identity()
            ident = {**ident, "format": fmt,
                     "model_config": {back.get(k, k): v for k, v in ident["model_config"].items()}}
            out.add(_hash(ident, data))
        return out


def _hash(identity: dict[str, Any], data: dict[str, Any]) -> str:
    blob = json.dumps({"spec": identity, "data": data}, sort_keys=True, default=json_default)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]
