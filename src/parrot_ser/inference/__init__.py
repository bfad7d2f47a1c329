"""Exported model bundles and prediction: ``load_model`` / ``Predictor`` / ``Prediction``
(predictor.py), the bundle format (bundle.py), input collection for the CLI (inputs.py). Making a
bundle from a training run is ``parrot_ser.export.export_run``'s job (above training and inference)."""

from parrot_ser.inference.bundle import BundleError, verify_bundle
from parrot_ser.inference.predictor import Prediction, Predictor, load_model, window_spans

__all__ = ["BundleError", "Prediction", "Predictor", "load_model", "window_spans", "verify_bundle"]
