"""RunSpec: one typed, fully resolved description of a cross-validation run, built once at the edge
(``run_cv`` / ``run_grid``, which the CLI, YAML configs and the Python API all go through).

Identity vs execution: every field says what the run computes (identity) except ``execution``
(device, threads, workers, engine, batching), which says how it is run; changing only execution
settings resumes the same run. The model's config is resolved for THAT model (its own typed
``Config`` with defaults filled in and no key another model uses), so in a grid a parrot setting no
longer changes the cnn cell's identity.

The fingerprint is the hash of ``identity()`` plus the data the run reads (class list, utterance
ids, encoder identities, a folds file) and ``SPEC_FORMAT``; no special cases. Run folders written
before RunSpec are recognised by their old fingerprint (``run.run_fingerprints``, kept for that)
and resume; ``run.json`` then holds the spec and the new fingerprint.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from parrot_ser.files import json_default
from parrot_ser.training.config import TrainConfig

SPEC_FORMAT = "parrot-ser-runspec/1"
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
    def build(cls, model: str, encoders: list[str] | tuple[str, ...], config: TrainConfig, protocol: str,
              n_folds: int, execution: Execution | None = None) -> RunSpec:
        """The resolved spec of a run (``config`` validated; the model's options resolved for it)."""
        from parrot_ser.fusion.registry import make_config
        from parrot_ser.training.tasks import get_task

        config.validate()
        model_config = dataclasses.asdict(make_config(model, {"dropout": config.dropout, **config.model}))
        # early_stop_metric "auto" is the task's own metric (classification: macro_f1, the old default)
        monitor = get_task(config.task, config).monitor(config.early_stop_metric)
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
            execution=execution or Execution(config.device, config.num_threads),
            task_options=task_options, labels=labels,
            folds={"allow_speaker_overlap": True} if config.allow_speaker_overlap else {})

    def to_dict(self) -> dict[str, Any]:
        d = json.loads(json.dumps(dataclasses.asdict(self), default=json_default))
        return {"format": SPEC_FORMAT, **{k: v for k, v in d.items() if v != {} or k not in OPTIONAL}}

    def identity(self) -> dict[str, Any]:
        """Everything but ``execution``."""
        return {k: v for k, v in self.to_dict().items() if k != "execution"}

    def fingerprint(self, data: dict[str, Any]) -> str:
        """Hash of the identity, the data identity (``data``) and the format version."""
        blob = json.dumps({"spec": self.identity(), "data": data}, sort_keys=True, default=json_default)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]
