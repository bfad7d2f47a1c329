"""Speaker-independent cross-validation, the trainer, run outputs, grid tables and significance."""

from parrot_ser.training.config import TrainConfig, load_config
from parrot_ser.training.data import SERData, StandardisedModel, Standardiser
from parrot_ser.training.splits import PROTOCOLS, Fold, assert_speaker_independent, make_folds
from parrot_ser.training.trainer import fit_model, predict_proba, seed_everything

__all__ = [
    "PROTOCOLS",
    "Fold",
    "SERData",
    "StandardisedModel",
    "Standardiser",
    "TrainConfig",
    "assert_speaker_independent",
    "fit_model",
    "load_config",
    "make_folds",
    "predict_proba",
    "seed_everything",
]
