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


def _kind(name: str, base: type[ParrotError], doc: str, problem: str | None = None) -> type:
    """A ParrotError subclass that differs from its base only in its words: ``doc`` (what it is for)
    and, for AudioErrors, the short ``problem`` kind shown in the message."""
    attrs = {"__doc__": doc, "__module__": __name__, **({"problem": problem} if problem else {})}
    return type(name, (base,), attrs)


# One audio file that cannot be used; ``problem`` is the short kind shown in the message.
AudioMissingError = _kind("AudioMissingError", AudioError, "The audio file does not exist.", "file not found")
AudioCorruptError = _kind("AudioCorruptError", AudioError, "A decoder failed on the file.", "unreadable or corrupt audio")
NotAudioError = _kind("NotAudioError", AudioError, "Not audio (or not mono 1-D data).", "not an audio file")
UnsupportedAudioError = _kind("UnsupportedAudioError", AudioError, "Audio in a container or codec we do not decode.",
                              "audio in a format not read here")
EmptyAudioError = _kind("EmptyAudioError", AudioError, "Decoded to nothing.", "zero samples")
NonFiniteAudioError = _kind("NonFiniteAudioError", AudioError, "NaN or inf in the samples.", "NaN or infinite samples")
AudioUnreadableError = _kind("AudioUnreadableError", AudioError, "Permission, folder, I/O error.", "cannot be read")
AudioRateError = _kind("AudioRateError", AudioError, "Sample rate outside what speech can have.", "implausible sample rate")
AudioTooLongError = _kind("AudioTooLongError", AudioError, "Longer than the decoding limit.", "too long")

# The other stages' errors: the class says which stage, the message says what to do.
CorpusError = _kind("CorpusError", ParrotError, "Wrong corpus root, unknown corpus name, malformed manifest.")
RegistryError = _kind("RegistryError", ParrotError, "Unknown name in a registry (corpus, encoder, fusion model).")
CheckpointError = _kind("CheckpointError", ParrotError, "A checkpoint that cannot be loaded safely or does not match the model.")
FeatureStoreError = _kind("FeatureStoreError", ParrotError, "A feature store that is missing, incomplete or inconsistent with the request.")
ConfigError = _kind("ConfigError", ParrotError, "Invalid configuration (YAML, CLI options).")
LeakageError = _kind("LeakageError", ParrotError, "A speaker appears in both the training and the test side of a fold.")
BundleError = _kind("BundleError", ParrotError, "An exported model bundle that is missing files, tampered with, or inconsistent.")
OutputError = _kind("OutputError", ParrotError, "An output (run folder, grid folder, CSV) cannot be written: disk full, read-only, permission.")
