"""One check for a torch device name, so ``--device bogus`` or ``--device cuda`` on a machine
without a GPU is a clear ConfigError before any work, not a torch traceback mid-run."""

from __future__ import annotations

from parrot_ser.errors import ConfigError


def check_device(name: str, option: str = "--device") -> str:
    """Return ``name`` if torch can use it here, else raise ConfigError saying what to pass."""
    import torch

    try:
        dev = torch.device(str(name))
    except (RuntimeError, TypeError, ValueError):
        raise ConfigError(f"{option} {name!r} is not a torch device; use cpu, cuda, cuda:N or mps") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"{option} {name}: torch sees no CUDA GPU here (torch {torch.__version__}); "
                              f"use {option} cpu")
        n = torch.cuda.device_count()
        if dev.index is not None and dev.index >= n:
            raise ConfigError(f"{option} {name}: only {n} CUDA device(s) visible (cuda:0..cuda:{n - 1})")
    elif dev.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise ConfigError(f"{option} {name}: MPS is not available on this machine; use {option} cpu")
    elif dev.type != "cpu":
        raise ConfigError(f"{option} {name!r}: device type {dev.type!r} is not supported; use cpu, cuda or mps")
    return str(name)
