"""Encoder registry: every PTM (and the handcrafted logmel baseline) by name.

    from parrot_ser.encoders import ENCODERS, get_spec, list_specs, build_encoder
    enc = build_encoder("hubert-base", checkpoint="/models/hubert", layers="all")

Specs of the Mamba families come from their own modules (encoders/ssam.py, encoders/ssamba.py) and
are imported lazily: if such a module is missing or fails to import, the registry still lists the
names with the SPEC section 3 sizes and `build_encoder` raises the real import error."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

from parrot_ser.encoders.base import EncodedUtterance, Encoder, EncoderIdentity, EncoderSpec
from parrot_ser.errors import ConfigError, RegistryError
from parrot_ser.registry import Registry

__all__ = ["ENCODERS", "Encoder", "EncoderSpec", "EncoderIdentity", "EncodedUtterance", "get_spec",
           "list_specs", "build_encoder", "resolve_layers", "parse_layers"]


def _mamba_specs(family: str) -> list[EncoderSpec]:
    # Imported on first use (not at package import) so the Mamba modules may import helpers from
    # this package without a cycle.
    import importlib

    return list(importlib.import_module(f"parrot_ser.encoders.{family}").specs())


class _LazyRegistry(Registry[EncoderSpec]):
    """Registry filled on first use, so importing parrot_ser.encoders stays cheap and the Mamba
    modules may import helpers from this package without a cycle."""

    def __init__(self, kind: str, fill: Callable[[_LazyRegistry], None]):
        super().__init__(kind)
        self._fill = fill
        self._filled = False

    def _ensure(self) -> None:
        if not self._filled:
            self._filled = True
            self._fill(self)

    def get(self, name: str) -> EncoderSpec:
        self._ensure()
        return super().get(name)

    def __contains__(self, name: object) -> bool:
        self._ensure()
        return super().__contains__(name)

    def __iter__(self) -> Iterator[str]:
        self._ensure()
        return super().__iter__()

    def items(self) -> list[tuple[str, EncoderSpec]]:
        self._ensure()
        return super().items()

    def names(self) -> list[str]:
        self._ensure()
        return super().names()


def _fill(reg: _LazyRegistry) -> None:
    from parrot_ser.encoders import hf, logmel

    for fam in ("ssam", "ssamba"):
        for s in _mamba_specs(fam):
            reg.add(s.name, s)
    for s in hf.specs():
        reg.add(s.name, s)
    reg.add(logmel.SPEC.name, logmel.SPEC)


ENCODERS: Registry[EncoderSpec] = _LazyRegistry("encoder", _fill)


def get_spec(name: str) -> EncoderSpec:
    return ENCODERS.get(name)


def list_specs() -> list[EncoderSpec]:
    return [s for _, s in ENCODERS.items()]


def parse_layers(text: str | int | Sequence[int]) -> str | int | list[int]:
    """CLI text -> layer choice: 'last', 'all', '3', '-1', '3,6,9'."""
    if not isinstance(text, str):
        return text if isinstance(text, int) else list(text)
    t = text.strip().lower()
    if t in ("last", "all"):
        return t
    try:
        vals = [int(x) for x in t.split(",") if x.strip()]
    except ValueError:
        raise ConfigError(f"--layers: expected last, all, an index or a comma list of indices; got {text!r}") from None
    if not vals:
        raise ConfigError(f"--layers: empty layer list {text!r}")
    return vals[0] if len(vals) == 1 and "," not in t else vals


def resolve_layers(layers: str | int | Sequence[int], num_layers: int, name: str = "encoder") -> list[int]:
    """Layer choice -> sorted-as-given list of non-negative indices into the hidden states
    (index 0 = the CNN / embedding output, num_layers - 1 = the last layer)."""
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
    return out


def build_encoder(name: str, *, checkpoint: str | None = None, layers: Any = "last", random_init: bool = False,
                  seed: int = 0, device: str = "cpu", dtype: Any = None, **options: Any) -> Encoder:
    """Build a ready-to-use encoder. ``checkpoint`` overrides the spec's default (HF id, local
    directory, or an official checkpoint file for the Mamba families); ``random_init`` builds
    untrained weights seeded by ``seed`` (the identity records it)."""
    spec = get_spec(name)
    import importlib

    from parrot_ser.device import check_device

    check_device(device)

    module = {"hf": "hf", "logmel": "logmel", "ssam": "ssam", "ssamba": "ssamba"}.get(spec.family)
    if module is None:
        raise RegistryError(f"encoder {name!r}: unknown family {spec.family!r}")
    mod = importlib.import_module(f"parrot_ser.encoders.{module}")  # real import error if missing
    # torch is imported by the family module, not here: listing encoders stays torch-free and fast.
    kw = {} if dtype is None else {"dtype": dtype}  # None: the family's default (float32)
    enc = mod.build(spec, checkpoint=checkpoint, layers=layers, random_init=random_init, seed=seed,
                    device=device, **options, **kw)
    if options and not getattr(enc.identity, "options", None):
        enc.identity.options = dict(options)  # a bundle replays them (inference/predictor.py checks them)
    return enc
