"""Typed errors. Each carries a one-line message that names the file and the problem, so the CLI
can print it without a traceback (see cli/main.py)."""

from __future__ import annotations

from pathlib import Path


class ParrotError(Exception):
    """Base class: an error the user can act on. The CLI prints ``str(err)`` and exits 2."""


class AudioError(ParrotError):
    """A problem with one audio file. ``problem`` is a short machine-friendly kind."""

    problem = "audio error"

    def __init__(self, path: str | Path | None, detail: str = ""):
        self.path = str(path) if path is not None else "<memory>"
        self.detail = detail
        msg = f"{self.path}: {self.problem}"
        if detail:
            msg += f" ({detail})"
        super().__init__(msg)


class AudioMissingError(AudioError):
    problem = "file not found"


class AudioCorruptError(AudioError):
    problem = "unreadable or corrupt audio"


class NotAudioError(AudioError):
    problem = "not an audio file"


class EmptyAudioError(AudioError):
    problem = "zero samples"


class NonFiniteAudioError(AudioError):
    problem = "NaN or infinite samples"


class AudioUnreadableError(AudioError):
    problem = "cannot be read"


class AudioRateError(AudioError):
    problem = "implausible sample rate"


class AudioTooLongError(AudioError):
    problem = "too long"


class CorpusError(ParrotError):
    """Wrong corpus root, unknown corpus name, malformed manifest."""


class RegistryError(ParrotError):
    """Unknown name in a registry (corpus, encoder, fusion model)."""


class CheckpointError(ParrotError):
    """A checkpoint that cannot be loaded safely or does not match the model."""


class FeatureStoreError(ParrotError):
    """A feature store that is missing, incomplete or inconsistent with the request."""


class ConfigError(ParrotError):
    """Invalid configuration (YAML, CLI options)."""


class LeakageError(ParrotError):
    """A speaker appears in both the training and the test side of a fold."""


class BundleError(ParrotError):
    """An exported model bundle that is missing files, tampered with, or inconsistent."""


class OutputError(ParrotError):
    """An output (run folder, grid folder, CSV) cannot be written: disk full, read-only, permission."""
