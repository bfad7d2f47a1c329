"""PARROT-SER: speech emotion recognition by fusing Mamba and attention speech models."""

__version__ = "0.1.0"

__all__ = ["__version__", "load_model"]


def load_model(model_dir, **kwargs):
    """Load an exported model bundle (see ``parrot-ser export``); returns a predictor with
    ``.labels`` and ``.predict(x)``."""
    from parrot_ser.inference.bundle import load_model as _load

    return _load(model_dir, **kwargs)
