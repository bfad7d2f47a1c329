"""Exported model bundles and prediction: ``export_run`` (export.py), ``load_model`` (bundle.py),
``Predictor`` / ``Prediction`` (predictor.py), input collection for the CLI (inputs.py)."""

from parrot_ser.inference.bundle import BundleError, load_model, verify_bundle
from parrot_ser.inference.predictor import Prediction, Predictor, plan_windows

__all__ = ["BundleError", "Prediction", "Predictor", "export_run", "load_model", "plan_windows", "verify_bundle"]


def export_run(run_dir, out_dir, refit: bool = False, **kwargs):
    """Export a training run as a model bundle; see parrot_ser.inference.export.export_run."""
    from parrot_ser.inference.export import export_run as _export

    return _export(run_dir, out_dir, refit=refit, **kwargs)
