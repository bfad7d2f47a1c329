"""The one name -> entry registry used by corpora, encoders and models.

A registry is filled lazily from *provider modules*: every module of its package that is not
infrastructure (``skip``). Importing a provider registers its entries (``REG.add(name, entry)`` or
the ``@REG.entry(name)`` decorator). A provider that fails to import is remembered with its error
and reported for itself only: the other entries are still listed, and asking for a name that is not
there says which provider failed and why. Adding a corpus, an encoder family or a model is one new
module in the package, nothing else (``docs/architecture.md``).

Options of an entry come from a signature (:func:`signature_options`) or the fields of a dataclass
(:func:`dataclass_options`), so the CLI, the validation and the code read the same declaration."""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import pkgutil
import typing
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Generic, TypeVar

from parrot_ser.errors import ConfigError, RegistryError

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, kind: str, package: str | None = None, skip: Iterable[str] = ()):
        self.kind = kind
        self._items: dict[str, T] = {}
        self._package = package
        self._skip = set(skip)
        self._loaded: set[str] = set()
        self._failures: dict[str, str] = {}

    # --- filling ------------------------------------------------------------------------------------
    def providers(self) -> list[str]:
        """Module names of the providers (every non-skipped module of the package, sorted)."""
        if self._package is None:
            return []
        pkg = importlib.import_module(self._package)
        return sorted(f"{self._package}.{m.name}" for m in pkgutil.iter_modules(pkg.__path__)
                      if not m.ispkg and not m.name.startswith("_") and m.name not in self._skip)

    def load(self) -> None:
        """Import every provider not tried yet; a failure is recorded for that provider only."""
        for mod in self.providers():
            if mod in self._loaded:
                continue
            self._loaded.add(mod)
            try:
                importlib.import_module(mod)
            except Exception as e:  # noqa: BLE001 - any import failure is that provider's problem
                self._failures[mod.rsplit(".", 1)[-1]] = f"{type(e).__name__}: {e}"

    def failures(self) -> dict[str, str]:
        """Provider module -> import error, for providers that could not be imported."""
        self.load()
        return dict(self._failures)

    def add(self, name: str, obj: T) -> T:
        if name in self._items:
            raise RegistryError(f"{self.kind} {name!r} is registered twice")
        self._items[name] = obj
        return obj

    def entry(self, name: str, make: Callable[[Any], T] | None = None) -> Callable[[Any], Any]:
        """Decorator: ``@REG.entry("name")`` registers the decorated object (or ``make(obj)``)."""
        def deco(obj: Any) -> Any:
            self.add(name, make(obj) if make is not None else obj)
            return obj

        return deco

    def remove(self, name: str) -> None:
        """Forget an entry (tests that register a throwaway one clean up with this)."""
        self._items.pop(name, None)

    # --- reading ------------------------------------------------------------------------------------
    def get(self, name: str) -> T:
        if name not in self._items:
            self.load()
        try:
            return self._items[name]
        except KeyError:
            known = ", ".join(sorted(self._items))
            failed = "".join(f"; {mod} could not be imported ({err})" for mod, err in sorted(self._failures.items()))
            raise RegistryError(f"unknown {self.kind} {name!r}; known: {known}{failed}") from None

    def __contains__(self, name: object) -> bool:
        if name not in self._items:
            self.load()
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def items(self) -> list[tuple[str, T]]:
        self.load()
        return sorted(self._items.items())

    def names(self) -> list[str]:
        self.load()
        return sorted(self._items)


# --- options declared once ---------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Option:
    name: str
    default: Any
    help: str
    type: Any = None


def _help(annotation: Any) -> str:
    """The help text of ``Annotated[T, "help"]`` (empty otherwise)."""
    if typing.get_origin(annotation) is typing.Annotated:
        return " ".join(str(m) for m in annotation.__metadata__ if isinstance(m, str))
    return ""


def _base(annotation: Any) -> Any:
    return typing.get_args(annotation)[0] if typing.get_origin(annotation) is typing.Annotated else annotation


def signature_options(fn: Callable, skip: int = 1) -> dict[str, Option]:
    """The keyword options of ``fn`` after its first ``skip`` positional parameters, with defaults
    and help from ``Annotated[type, "help"]`` annotations."""
    hints = typing.get_type_hints(fn, include_extras=True)
    params = list(inspect.signature(fn).parameters.values())[skip:]
    out = {}
    for p in params:
        if p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
            continue
        ann = hints.get(p.name)
        default = None if p.default is p.empty else p.default
        out[p.name] = Option(p.name, default, _help(ann), _base(ann))
    return out


def dataclass_options(cls: type) -> dict[str, Option]:
    """The fields of a dataclass as options (help from ``Annotated`` or the field's metadata)."""
    hints = typing.get_type_hints(cls, include_extras=True)
    out = {}
    for f in dataclasses.fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
        ann = hints.get(f.name)
        out[f.name] = Option(f.name, default, _help(ann) or f.metadata.get("help", ""), _base(ann))
    return out


def check_options(given: Iterable[str], known: Iterable[str], what: str) -> None:
    """One-line ConfigError for option names ``what`` does not take."""
    known = sorted(known)
    unknown = sorted(set(given) - set(known))
    if unknown:
        raise ConfigError(f"{what} does not take option(s) {', '.join(unknown)} (takes: {', '.join(known) or 'none'})")


def parse_key_values(pairs: Iterable[str], flag: str, *, form: str = "KEY=VALUE", option_keys: bool = True,
                     names: Iterable[str] | None = None) -> dict[str, str]:
    """The one KEY=VALUE parser of the CLI: ``["k=v", ...]`` from a repeated flag -> {k: "v"} (text;
    :func:`typed_value` types it). ``option_keys``: keys are option names (``-`` read as ``_``);
    False for names such as encoders (``--checkpoint hubert-base=DIR``, ``form="NAME=PATH"``, value
    required). ``names``: the keys allowed (e.g. the command's --encoder names)."""
    out: dict[str, str] = {}
    allowed = None if names is None else list(names)
    for text in pairs:
        key, sep, value = text.partition("=")
        key = key.strip().replace("-", "_") if option_keys else key.strip()
        if not sep or not key or (not option_keys and not value):
            raise ConfigError(f"{flag} expects {form}, got {text!r}")
        if allowed is not None and key not in allowed:
            raise ConfigError(f"{flag} {key}=...: {key!r} is not one of the --encoder names ({', '.join(allowed)})")
        out[key] = value
    return out


def typed_value(value: Any, opt: Option | None, what: str) -> Any:
    """The one typing of option text: by the option's declared type (:func:`coerce`) when declared,
    else as a YAML scalar (true, 3, 0.5, null, text); non-text values are kept."""
    if opt is not None or not isinstance(value, str):
        return coerce(opt, value, what) if opt is not None else value
    import yaml

    try:
        return yaml.safe_load(value)
    except yaml.YAMLError:
        return value


_TRUE, _FALSE = ("true", "yes", "1", "on"), ("false", "no", "0", "off")


def coerce(opt: Option, value: Any, what: str) -> Any:
    """CLI text -> the option's declared type (bool, int, float; anything else is kept)."""
    if not isinstance(value, str):
        return value
    typ = opt.type
    if typing.get_origin(typ) in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        args = [a for a in typing.get_args(typ) if a is not type(None)]
        if value.strip().lower() in ("none", "null", ""):
            return None
        typ = args[0] if len(args) == 1 else str
    try:
        if typ is bool:
            v = value.strip().lower()
            if v not in _TRUE + _FALSE:
                raise ValueError
            return v in _TRUE
        if typ in (int, float):
            return typ(value)
    except ValueError:
        raise ConfigError(f"{what}: option {opt.name} expects {typ.__name__}, got {value!r}") from None
    return value
