"""Speaker-independent cross-validation, the trainer, run outputs, grid tables and significance."""

from parrot_ser.models import StandardisedModel, Standardiser
from parrot_ser.training.config import TrainConfig, load_config
from parrot_ser.training.data import SERData
from parrot_ser.training.splits import PROTOCOLS, Fold, assert_speaker_independent, make_folds
from parrot_ser.training.trainer import fit_model, predict_proba, seed_everything


def export_run(run_dir, out_dir, refit: bool = False, **kwargs):
    """Export a training run as a model bundle; see parrot_ser.training.export.export_run."""
    from parrot_ser.training.export import export_run as _export

    return _export(run_dir, out_dir, refit=refit, **kwargs)

__all__ = [
    "PROTOCOLS",
    "Fold",
    "SERData",
    "StandardisedModel",
    "Standardiser",
    "TrainConfig",
    "assert_speaker_independent",
    "export_run",
    "fit_model",
    "load_config",
    "make_folds",
    "predict_proba",
    "seed_everything",
]
