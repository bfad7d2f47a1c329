"""Texts shown in several places, kept in one spot so they are worded once."""

from __future__ import annotations


def untrained_text(name: str) -> str:
    """The one wording of the warning for features from an untrained (random-init) encoder."""
    return (f"WARNING: features from UNTRAINED random-init encoder {name}: they carry no pretrained knowledge "
            f"and the numbers only test the pipeline")


def untrained_models_text(names: list[str] | tuple[str, ...]) -> str:
    """The one wording for a model (bundle, predictor, service) built on untrained encoders."""
    return (f"UNTRAINED ENCODER(S): {', '.join(names)} use random-initialised weights (rebuilt from their "
            f"recorded seed); predictions are for testing the pipeline, not for real use")


def untrained_warnings(names: list[str] | tuple[str, ...]) -> list[str]:
    """The ``warnings`` entries of every machine-readable answer (CLI --json, HTTP): the same text
    the CLI prints on stderr, so every channel says the same thing."""
    return [untrained_models_text(names)] if names else []
