"""Safe loading of official Mamba-PTM checkpoints and conversion to safetensors.

Official SSAM files are ``torch.save`` pickles of {'model', 'optimizer', 'epoch', 'scaler', 'args'} where
'args' is an ml_collections ConfigDict; SSAMBA files are DataParallel state dicts (``module.`` prefix).
Loading order: ``torch.load(weights_only=True)`` (torch's own allow-list); if that refuses a global, a
restricted unpickler (``pickle_module`` passed to torch.load) allows only tensor/storage rebuilding and a
few plain containers, replaces configuration objects (ml_collections, argparse) by inert placeholders
whose code is never imported or run, and refuses every other global (os.system, eval, ...) with a
CheckpointError. Safetensors files load without pickle at all.
"""

from __future__ import annotations

import _compat_pickle
import collections
import hashlib
import pickle
from pathlib import Path
from typing import Any

import torch

from parrot_ser.errors import CheckpointError

# Globals the restricted unpickler resolves to the real object: rebuilding tensors and plain containers.
_ALLOWED: dict[str, set[str]] = {
    "torch._utils": {"_rebuild_tensor", "_rebuild_tensor_v2", "_rebuild_tensor_v3", "_rebuild_parameter",
                     "_rebuild_parameter_with_state", "_rebuild_device_tensor_from_numpy"},
    "torch": {"Size", "device", "float32", "float16", "bfloat16", "float64", "int64", "int32", "int8", "uint8",
              "bool", "strided"},
    "collections": {"OrderedDict"},
    # Type objects as stored in config fields (e.g. ml_collections FieldReference types); inert by themselves.
    "builtins": {"set", "frozenset", "slice", "complex", "bytearray", "int", "float", "str", "bool", "tuple",
                 "list", "dict", "bytes", "NoneType"},
    "numpy": {"dtype", "ndarray"},
    "numpy.core.multiarray": {"scalar", "_reconstruct"},
    "numpy._core.multiarray": {"scalar", "_reconstruct"},
    "numpy.dtypes": {"Float64DType", "Float32DType", "Int64DType", "Int32DType", "BoolDType"},
}
# Modules whose objects are configuration only: replaced by inert placeholders, never imported.
_INERT_MODULE_PREFIXES = ("ml_collections", "argparse", "absl.flags", "omegaconf")


class InertPlaceholder:
    """Stands in for a configuration object from a checkpoint; keeps nothing and runs nothing."""

    source = "?"

    def __new__(cls, *args: Any, **kwargs: Any):  # accepts NEWOBJ / REDUCE arguments and ignores them
        return object.__new__(cls)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:  # BUILD: drop the state
        pass

    def __setitem__(self, key: Any, value: Any) -> None:  # SETITEMS on dict subclasses
        pass

    def append(self, value: Any) -> None:
        pass

    def extend(self, values: Any) -> None:
        pass

    def __repr__(self) -> str:
        return f"<inert placeholder for {self.source}>"


_placeholders: dict[str, type] = {}


def _placeholder(qualname: str) -> type:
    if qualname not in _placeholders:
        _placeholders[qualname] = type("Inert_" + qualname.replace(".", "_"), (InertPlaceholder,),
                                       {"source": qualname})
    return _placeholders[qualname]


class RefusedGlobal(pickle.UnpicklingError):
    pass


class RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        # Protocol-2 pickles (torch.save's default) use Python 2 names (__builtin__.long): map them as
        # pickle's fix_imports does; Python 3 names never collide with these.
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        if name in _ALLOWED.get(module, ()):
            return super().find_class(module, name)
        if module.startswith(_INERT_MODULE_PREFIXES):
            return _placeholder(f"{module}.{name}")
        raise RefusedGlobal(f"refused global {module}.{name}")


class _RestrictedPickleModule:
    """What torch.load needs from a ``pickle_module``."""

    Unpickler = RestrictedUnpickler
    UnpicklingError = pickle.UnpicklingError
    __name__ = "parrot_ser_restricted_pickle"

    @staticmethod
    def load(f: Any, **kwargs: Any) -> Any:
        return RestrictedUnpickler(f, **kwargs).load()


def sha256_file(path: str | Path, bufsize: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(bufsize):
            h.update(chunk)
    return h.hexdigest()


# Caps on what unpickling may build, checked from the zip directory before anything is unpickled: a
# real SSAM base checkpoint (model + Adam state) holds about 450 tensors and a data.pkl of well under
# 1 MB, while a crafted 100k-key file took 24 s and 0.6 GB inside torch.load.
MAX_CHECKPOINT_TENSORS = 20_000
MAX_PICKLE_BYTES = 64 * 1024 * 1024


def _check_pickle_budget(path: Path) -> None:
    """Refuse a torch zip checkpoint whose pickle or tensor count is beyond any real checkpoint's."""
    import zipfile

    if not zipfile.is_zipfile(path):
        return _check_legacy_budget(path)
    try:
        with zipfile.ZipFile(path) as z:
            infos = z.infolist()
    except (zipfile.BadZipFile, OSError) as e:
        raise CheckpointError(f"{path}: not a readable torch checkpoint ({e})") from None
    pickles = [i for i in infos if i.filename.endswith("/data.pkl") or i.filename == "data.pkl"]
    n_tensors = sum(1 for i in infos if "/data/" in i.filename or i.filename.startswith("data/"))
    if any(i.file_size > MAX_PICKLE_BYTES for i in pickles):
        size = max(i.file_size for i in pickles)
        raise CheckpointError(f"{path}: refused, its pickle is {size / 2**20:.0f} MB (limit "
                              f"{MAX_PICKLE_BYTES // 2**20} MB); no Mamba PTM checkpoint is that large")
    if n_tensors > MAX_CHECKPOINT_TENSORS:
        raise CheckpointError(f"{path}: refused, it holds {n_tensors} tensors (limit {MAX_CHECKPOINT_TENSORS}); "
                              "no Mamba PTM checkpoint has that many")


def _check_legacy_budget(path: Path) -> None:
    """Legacy (pre-1.6, non-zip) torch files are a few pickles in a row (magic, protocol, sys info, the
    object) before the raw storages: count the tensor references by reading opcodes only, nothing is
    built, and stop at the cap."""
    import pickletools

    try:
        with open(path, "rb") as f:
            for _ in range(4):
                n_ids = 0
                for op, _arg, _pos in pickletools.genops(f):
                    if op.name in ("BINPERSID", "PERSID"):
                        n_ids += 1
                        if n_ids > MAX_CHECKPOINT_TENSORS:
                            raise CheckpointError(f"{path}: refused, it holds more than {MAX_CHECKPOINT_TENSORS} "
                                                  "tensors; no Mamba PTM checkpoint has that many")
    except CheckpointError:
        raise
    except Exception:  # noqa: BLE001 - not (or not only) pickles: torch.load gives the precise error
        return


def _torch_load(path: Path) -> Any:
    _check_pickle_budget(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        pass  # a global outside torch's allow-list (e.g. the ml_collections 'args'): try ours
    except Exception as e:  # noqa: BLE001 - zip/IO errors: name the file
        raise CheckpointError(f"{path}: not a readable torch checkpoint ({type(e).__name__}: {e})") from None
    try:
        return torch.load(path, map_location="cpu", weights_only=False, pickle_module=_RestrictedPickleModule)
    except RefusedGlobal as e:
        raise CheckpointError(f"{path}: unsafe checkpoint, {e}; it would run code when unpickled") from None
    except Exception as e:  # noqa: BLE001
        raise CheckpointError(f"{path}: not a readable torch checkpoint ({type(e).__name__}: {e})") from None


def _strip_module(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    # DataParallel wrapping (SSAMBA releases): 'module.v.x' -> 'v.x'.
    if sd and all(k.startswith("module.") for k in sd):
        return {k[len("module."):]: v for k, v in sd.items()}
    return sd


def read_safetensors_metadata(path: str | Path) -> dict[str, str]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {})
    except Exception as e:  # noqa: BLE001
        raise CheckpointError(f"{path}: not a readable safetensors file ({e})") from None


def load_checkpoint_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of an SSAM checkpoint dict ('model'), an SSAMBA state dict (``module.`` prefix removed) or
    a safetensors copy. Never executes code from the file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as e:  # noqa: BLE001
            raise CheckpointError(f"{path}: not a readable safetensors file ({e})") from None
    obj = _torch_load(path)
    if isinstance(obj, dict) and isinstance(obj.get("model"), dict):
        obj = obj["model"]
    elif isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not obj:
        raise CheckpointError(f"{path}: no state dict found (expected a dict of tensors or a dict with 'model')")
    sd = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if len(sd) != len(obj):
        bad = sorted(k for k, v in obj.items() if not isinstance(v, torch.Tensor))[:5]
        raise CheckpointError(f"{path}: state dict holds non-tensor entries: {bad}")
    return _strip_module(sd)


def detect_family(sd: dict[str, torch.Tensor]) -> str | None:
    if any(k.startswith("blocks.") and ".mixer." in k for k in sd):
        return "ssam"
    if any(k.startswith(("v.layers.", "layers.")) and ".mixer." in k for k in sd):
        return "ssamba"
    return None


def _epoch(p: Path) -> int | None:
    stem = p.stem.rsplit("-", 1)[-1]
    return int(stem) if p.stem.startswith("checkpoint-") and stem.isdigit() else None


def resolve_checkpoint(path: Path) -> Path:
    """A checkpoint file, or the official download folder: ``<dir>/checkpoints/checkpoint-<epoch>.pth``
    (or the ``checkpoints`` folder itself) -> the latest epoch, as the official HEAR runtime
    (hear_api/runtime.py) picks it."""
    if not path.is_dir():
        return path
    for d in (path / "checkpoints", path):
        found = [(e, p) for p in d.glob("checkpoint-*.pth") if (e := _epoch(p)) is not None] if d.is_dir() else []
        if found:
            return max(found)[1]
    raise CheckpointError(f"{path}: folder holds no checkpoint-<epoch>.pth (looked in {path / 'checkpoints'} and "
                          f"{path}); pass the .pth file or the official download folder")


def convert_checkpoint(src: str | Path, dst: str | Path, family: str | None = None) -> Path:
    """Write a pickle-free safetensors copy of an official checkpoint; metadata records the source's
    sha256 (used as the encoder identity, so features from the copy and the original match) and family."""
    from safetensors.torch import save_file

    src, dst = Path(src), Path(dst)
    if src.is_dir():  # the official SSAM download folder: its latest checkpoint-<epoch>.pth
        src = resolve_checkpoint(src)
    sd = load_checkpoint_state_dict(src)
    fam = family or detect_family(sd)
    if fam is None:
        raise CheckpointError(f"{src}: neither an SSAM nor an SSAMBA checkpoint (no mixer keys)")
    meta = read_safetensors_metadata(src) if src.suffix == ".safetensors" else {}
    source_sha = meta.get("source_sha256") or sha256_file(src)
    dst.parent.mkdir(parents=True, exist_ok=True)
    # safetensors refuses shared storage: give every tensor its own contiguous copy.
    save_file({k: v.detach().contiguous().clone() for k, v in sd.items()}, str(dst),
              metadata={"format": "parrot-ser", "family": fam, "source_sha256": source_sha, "source_name": src.name})
    return dst


def checkpoint_identity_sha(path: str | Path) -> str:
    """Identity hash of the weights: the original file's sha256 (kept in our safetensors copies)."""
    path = Path(path)
    if path.suffix == ".safetensors":
        src = read_safetensors_metadata(path).get("source_sha256")
        if src:
            return src
    return sha256_file(path)


def load_strict(model: torch.nn.Module, sd: dict[str, torch.Tensor], *, ignored_prefixes: tuple[str, ...],
                path: str | Path, key_prefix: str = "") -> list[str]:
    """Load ``sd`` into ``model`` requiring every model key, refusing unknown keys (except the listed
    pretraining-only ones) and shape mismatches. Returns the ignored keys."""
    sd = {k[len(key_prefix):] if key_prefix and k.startswith(key_prefix) else k: v for k, v in sd.items()}
    expected = model.state_dict()
    ignored = sorted(k for k in sd if k not in expected and k.startswith(ignored_prefixes))
    unexpected = sorted(k for k in sd if k not in expected and k not in ignored)
    missing = sorted(k for k in expected if k not in sd)
    if missing or unexpected:
        def few(keys: list[str]) -> str:
            return ", ".join(keys[:8]) + (f" ... ({len(keys)} in all)" if len(keys) > 8 else "")

        raise CheckpointError(f"{path}: checkpoint does not match the model; missing keys: [{few(missing)}]; "
                              f"unexpected keys: [{few(unexpected)}]")
    bad = [f"{k} {tuple(sd[k].shape)} vs {tuple(v.shape)}" for k, v in expected.items() if sd[k].shape != v.shape]
    if bad:
        raise CheckpointError(f"{path}: shape mismatch (checkpoint vs model): {'; '.join(bad[:5])}")
    model.load_state_dict(collections.OrderedDict((k, sd[k]) for k in expected), strict=True)
    return ignored
