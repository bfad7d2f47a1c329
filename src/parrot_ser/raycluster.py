"""Ray, imported and connected only when asked (``--engine ray``, the parrot-ser[ray] extra): used by
training (training/execute.py) and by distributed extraction (features/distributed.py)."""

from __future__ import annotations

from typing import Any

from parrot_ser.errors import ConfigError

ENGINES = ("local", "ray")  # --engine of train, grid and extract


def check_engine(engine: str) -> str:
    """The one check of ``--engine`` (training and extraction)."""
    if engine not in ENGINES:
        raise ConfigError(f"--engine must be one of {', '.join(ENGINES)} (got {engine!r})")
    return engine


def ray_init(address: str | None = None) -> Any:
    """Import and connect Ray only when asked (parrot-ser[ray] extra): an already initialised Ray
    (e.g. a test's ``ray.init(num_cpus=2)``) is reused; ``address`` joins a running cluster
    (``ray start --head`` prints it; "auto" finds the local one); none starts a local instance."""
    try:
        import ray
    except ImportError:
        raise ConfigError("--engine ray needs Ray: pip install 'parrot-ser[ray]'") from None
    if not ray.is_initialized():
        kw: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
        if address:
            kw["address"] = address
        try:
            ray.init(**kw)
        except ConnectionError as e:
            raise ConfigError(f"cannot reach the Ray cluster at {address!r}: {str(e).splitlines()[0]}") from None
    return ray
