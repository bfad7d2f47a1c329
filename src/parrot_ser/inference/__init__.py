"""Exported model bundles and prediction: ``load_model`` / ``Predictor`` / ``Prediction``
(predictor.py), the bundle format (bundle.py), input collection for the CLI (inputs.py). Making a
bundle from a training run is training's job: ``parrot_ser.training.export_run``."""

from parrot_ser.inference.bundle import BundleError, verify_bundle
from parrot_ser.inference.predictor import Prediction, Predictor, load_model, plan_windows

__all__ = ["BundleError", "Prediction", "Predictor", "load_model", "plan_windows", "verify_bundle"]
