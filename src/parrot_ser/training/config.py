"""Training configuration: paper defaults, YAML loading, CLI overrides.

``TrainConfig`` is what a user writes (YAML keys, CLI options, Python arguments): the edge's input.
``RunSpec.build`` (training/spec.py) resolves it once; nothing below ``run_cv`` / ``run_grid``
takes a TrainConfig (tests/test_architecture.py keeps it so)."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from parrot_ser.errors import ConfigError

# auto = the task's own: macro_f1 (classification), ccc (regression), f1_ccc (multitask: the mean of
# macro-F1 as a fraction and mean CCC); see training/tasks.py
EARLY_STOP_METRICS = ("auto", "macro_f1", "loss", "ccc", "f1_ccc")
PRECISIONS = ("fp32", "bf16")


@dataclass
class TrainConfig:
    """Defaults follow the paper (Adam, lr 1e-3, batch 32, 50 epochs) and the re-implementation
    (dropout 0.3, patience 10 on held-out training speakers).

    Early stopping monitors the task's own score by default (``"auto"``; classification: validation
    macro-F1, the paper's headline metric and robust to the class imbalance of e.g. IEMOCAP, ties
    broken by the lower validation loss). ``"loss"`` monitors the validation loss instead. Training stops after ``patience`` epochs without
    improvement (0 = never stop early); the weights of the best epoch are restored.

    ``standardise``: per-dimension z-scoring of each encoder's inputs with mean/std fitted on the
    training side of the fold only (never validation or test rows); the statistics travel with the
    model weights (buffers ``std_*`` in the safetensors file).
    """

    lr: float = 1e-3
    batch_size: int = 32
    epochs: int = 50
    patience: int = 10
    early_stop_metric: str = "auto"
    dropout: float = 0.3
    weight_decay: float = 0.0
    eval_batch_size: int = 32
    standardise: bool = True
    # What feeds the model (parrot_ser.layer_choice): "last" = the deepest stored layer; an int = that
    # hidden state (0 = embeddings; the store must hold it); "mean" = mean over the stored layers;
    # "weighted" = every stored layer, mixed by learnable softmax weights (SUPERB-style layer
    # weighting in the model; "all" is the old word for it).
    layer: int | str = "last"
    use_frames: bool = False
    val_fraction: float = 0.1
    # The models' config keys (fusion/registry.py): flat keys for every model that takes them, a block
    # named after a model for that model only; RunSpec.build resolves the run's model's typed config.
    model: dict[str, Any] = field(default_factory=dict)
    device: str = "cpu"
    # "bf16": the training forward pass under torch.autocast(bfloat16) (convolutions and matmuls in
    # bfloat16; float32 master weights, loss, Adam and optimal-transport step); evaluation stays
    # float32. Changes the numbers (it is part of the run identity); measured 1.5-1.6x faster per
    # step than fp32 for the paper-size heads on a CPU with AVX512-BF16 (bench/run.py train), 1.0-1.4x
    # per README grid cell, 1.27x over all 7 (bench/run.py cells). "fp32": all float32.
    precision: str = "fp32"
    num_threads: int | None = None  # torch.set_num_threads; None leaves torch's setting
    # Imported folds (--protocol predefined, --folds-file) that share speakers between training and test
    # run only with this set; the run then records and prints, per fold, how many speakers are shared.
    allow_speaker_overlap: bool = False
    # What the run predicts (training/tasks.py): classification | regression (the store's numeric targets)
    # | multitask (both, loss (1 - w) * CE + w * regression loss, w = multitask_weight).
    task: str = "classification"
    regression_loss: str = "ccc"  # ccc (1 - CCC per dimension) | mse, on training-side z-scored targets
    multitask_weight: float = 0.5
    # The run's label set: label_map (label -> new label, null drops) applied to the store's labels,
    # then only ``classes`` kept (None = all); what was dropped is recorded in run.json.
    classes: list[str] | None = None
    label_map: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> TrainConfig:
        for k in ("lr", "dropout", "weight_decay", "val_fraction"):
            v = getattr(self, k)
            if isinstance(v, float) and not math.isfinite(v):  # NaN passes every < / > test below
                raise ConfigError(f"config {k} must be a finite number (got {v!r})")
        for k in ("lr", "batch_size", "epochs", "eval_batch_size"):
            if getattr(self, k) is None or getattr(self, k) <= 0:
                raise ConfigError(f"config {k} must be positive (got {getattr(self, k)!r})")
        if self.patience < 0:
            raise ConfigError(f"config patience must be >= 0 (got {self.patience})")
        from parrot_ser.training.tasks import REGRESSION_LOSSES, get_task

        task = get_task(self.task)  # "unknown task ...; known: ..." for a name no task has
        if self.regression_loss not in REGRESSION_LOSSES:
            raise ConfigError(f"config regression_loss must be one of {', '.join(REGRESSION_LOSSES)} "
                              f"(got {self.regression_loss!r})")
        if not 0.0 <= self.multitask_weight <= 1.0:
            raise ConfigError(f"config multitask_weight must be in [0, 1] (got {self.multitask_weight})")
        if not isinstance(self.label_map, dict):
            raise ConfigError(f"config label_map must be a mapping label: new_label (got {self.label_map!r})")
        if self.classes is not None and (not isinstance(self.classes, list) or len(self.classes) < 2):
            raise ConfigError(f"config classes must list at least 2 labels (got {self.classes!r})")
        task.monitor(self.early_stop_metric)  # one the task has ("auto": its own)
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"config dropout must be in [0, 1) (got {self.dropout})")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ConfigError(f"config val_fraction must be in [0, 1) (got {self.val_fraction})")
        from parrot_ser.layer_choice import parse_layer

        self.layer = parse_layer(self.layer, "config layer")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"config precision must be one of {', '.join(PRECISIONS)} (got {self.precision!r})")
        if not isinstance(self.model, dict):
            raise ConfigError(f"config model must be a mapping of build_model options (got {self.model!r})")
        if self.weight_decay < 0:
            raise ConfigError(f"config weight_decay must be >= 0 (got {self.weight_decay})")
        from parrot_ser.device import check_device

        check_device(self.device, "config key device:")
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any], *, source: str = "config") -> TrainConfig:
        names = {f.name: f for f in dataclasses.fields(cls)}
        unknown = [k for k in d if k not in names]
        if unknown:
            raise ConfigError(f"{source}: unknown key {unknown[0]!r}; known keys: {', '.join(names)}")
        kw = {}
        for k, v in d.items():
            kw[k] = _coerce(k, v, names[k].type, source)
        return cls(**kw).validate()


def _coerce(key: str, value: Any, typ: Any, source: str) -> Any:
    """YAML gives ints for floats (1 vs 1.0) and strings for scientific notation without a dot
    ("1e-3"); coerce those, refuse anything else with the key named."""
    t = str(typ)
    if key == "layer":
        from parrot_ser.layer_choice import parse_layer

        return parse_layer(value, f"{source}: key 'layer'")
    if key == "classes" and isinstance(value, str):  # "a,b,c" from the command line
        value = [c.strip() for c in value.split(",") if c.strip()]
    if key == "classes" and isinstance(value, list):
        return [str(c) for c in value]
    if value is None:
        if "None" in t:
            return None
        raise ConfigError(f"{source}: key {key!r} must not be empty")
    try:
        if t.startswith("float"):
            return float(value)
        if t.startswith("int"):
            if isinstance(value, bool) or float(value) != int(float(value)):
                raise ValueError
            return int(float(value))
        if t.startswith("bool"):
            if not isinstance(value, bool):
                raise ValueError
            return value
        if t.startswith("str"):
            return str(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{source}: key {key!r} has an invalid value {value!r} (expected {t})") from None
    return value


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """Read a YAML config (keys = TrainConfig fields) and apply CLI overrides (None values ignored)."""
    data: dict[str, Any] = {}
    source = "config"
    if path is not None:
        p = Path(path)
        source = str(p)
        if not p.is_file():
            raise ConfigError(f"{p}: config file not found")
        try:
            loaded = yaml.safe_load(p.read_text(encoding="utf-8"))
        except yaml.YAMLError as e:
            raise ConfigError(f"{p}: invalid YAML ({str(e).splitlines()[0]})") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{p}: the config must be a mapping of keys to values")
        data.update(loaded)
    for k, v in (overrides or {}).items():
        if v is not None:
            if k == "model" and isinstance(v, dict):  # merged key by key, per-model blocks too
                base = dict(data.get("model") or {})
                for key, value in v.items():
                    both = isinstance(value, dict) and isinstance(base.get(key), dict)
                    base[key] = {**base[key], **value} if both else value
                data["model"] = base
            else:
                data[k] = v
    return TrainConfig.from_dict(data, source=source)
