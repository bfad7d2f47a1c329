"""Encoder registry: every PTM (and the handcrafted logmel baseline) by name.

    from parrot_ser.encoders import ENCODERS, get_spec, list_specs, build_encoder
    enc = build_encoder("hubert-base", checkpoint="/models/hubert", layers="all")

Each family module (hf.py, logmel.py, ssam.py, ssamba.py, resemblyzer.py, crepe.py) registers its specs with
:func:`register_family` when imported; the registry imports them lazily, each on its own, so a family
that fails to import is reported for its own names only and the others are still listed."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from parrot_ser.encoders.base import EncodedUtterance, Encoder, EncoderIdentity, EncoderSpec
from parrot_ser.errors import ConfigError
from parrot_ser.layer_choice import parse_layers
from parrot_ser.registry import Option, Registry, check_options, dataclass_options, typed_value

__all__ = ["ENCODERS", "Encoder", "EncoderSpec", "EncoderIdentity", "EncodedUtterance", "get_spec",
           "list_specs", "build_encoder", "encoder_options", "register_family", "resolve_layers", "parse_layers"]


# Every module of this package but these is an encoder family that registers its specs on import.
ENCODERS: Registry[EncoderSpec] = Registry("encoder", package="parrot_ser.encoders",
                                           skip=("base", "catalog", "checkpoint", "wheel_weights"))
_BUILDERS: dict[str, Callable[..., Encoder]] = {}
_OPTIONS: dict[str, type] = {}


def register_family(specs: Iterable[EncoderSpec], build: Callable[..., Encoder], options: type | None = None) -> None:
    """Register a family's specs with the function that builds them: ``build(spec, *, checkpoint,
    layers, random_init, seed, device, dtype, **options) -> Encoder``. A family module calls this at
    import; the registry imports the family modules on first use, each on its own (one failing is
    reported for its names only: ``ENCODERS.failures()``). ``options``: a dataclass declaring the
    family's ``--option`` keys (types, defaults, help); unknown keys are then refused by
    ``build_encoder`` before anything is built (None: the family checks its options itself)."""
    for s in specs:
        ENCODERS.add(s.name, s)
        _BUILDERS[s.name] = build
        if options is not None:
            _OPTIONS[s.name] = options


def encoder_options(name: str) -> dict[str, Option]:
    """The ``--option`` keys of encoder ``name`` with defaults and help (empty when undeclared)."""
    get_spec(name)
    cls = _OPTIONS.get(name)
    return dataclass_options(cls) if cls is not None else {}


def get_spec(name: str) -> EncoderSpec:
    return ENCODERS.get(name)


def list_specs() -> list[EncoderSpec]:
    return [s for _, s in ENCODERS.items()]


def resolve_layers(layers: str | int | Sequence[int], num_layers: int, name: str = "encoder") -> list[int]:
    """The one layer resolver of every encoder: layer choice ('last', 'all', an index, negative from
    the end, or a list) -> sorted list of distinct non-negative indices into the hidden states
    (index 0 = the CNN / embedding output, num_layers - 1 = the last layer). The order given does not
    matter (stores keep layers in depth order); an index given twice is an error. Text goes through
    the one layer parser (``layer_choice.parse_layers``)."""
    if isinstance(layers, str):
        layers = parse_layers(layers)
    if layers == "last":
        return [num_layers - 1]
    if layers == "all":
        return list(range(num_layers))
    seq = [layers] if isinstance(layers, int) else list(layers)
    out = []
    for i in seq:
        j = int(i) + num_layers if int(i) < 0 else int(i)
        if not 0 <= j < num_layers:
            raise ConfigError(f"{name}: layer {i} out of range; it has {num_layers} hidden states (0..{num_layers - 1})")
        if j in out:
            raise ConfigError(f"{name}: layer {i} requested twice")
        out.append(j)
    if not out:
        raise ConfigError(f"{name}: empty layer list")
    return sorted(out)


def build_encoder(name: str, *, checkpoint: str | None = None, layers: Any = "last", random_init: bool = False,
                  seed: int = 0, device: str = "cpu", dtype: Any = None, **options: Any) -> Encoder:
    """Build a ready-to-use encoder. ``checkpoint`` overrides the spec's default (HF id, local
    directory, or an official checkpoint file for the Mamba families); ``random_init`` builds
    untrained weights seeded by ``seed`` (the identity records it)."""
    spec = get_spec(name)
    declared = encoder_options(name)
    if name in _OPTIONS:
        check_options(options, declared, f"encoder {name!r}")
    options = {k: typed_value(v, declared.get(k), f"encoder {name!r}") for k, v in options.items()}
    from parrot_ser.device import check_device

    check_device(device)
    # torch is imported by the family module, not here: importing this package stays torch-free.
    kw = {} if dtype is None else {"dtype": dtype}  # None: the family's default (float32)
    enc = _BUILDERS[name](spec, checkpoint=checkpoint, layers=layers, random_init=random_init, seed=seed,
                    device=device, **options, **kw)
    if options and not getattr(enc.identity, "options", None):
        enc.identity.options = dict(options)  # a bundle replays them (inference/predictor.py checks them)
    return enc
