"""PARROT-SER: speech emotion recognition by fusing Mamba and attention speech models."""

__version__ = "0.1.0"

__all__ = ["__version__", "load_model"]


def load_model(model_dir, **kwargs):
    """Load an exported model bundle (see ``parrot-ser export``) from a folder or a hub repo id
    (``owner/name``, resolved from the local HF cache first); returns a predictor with ``.labels``,
    ``.dims`` (models trained on dimensions), ``.predict(x)``, ``.pipeline(x)`` (HF
    audio-classification shape), ``.analyze(x)`` (emotion over time), ``.save_pretrained(dir)`` and
    ``.push_to_hub(repo_id)``."""
    from parrot_ser.inference.predictor import load_model as _load

    return _load(model_dir, **kwargs)
