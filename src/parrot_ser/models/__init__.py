"""The model layer, shared by training and serving: building a head from its description
(:func:`build_head`, :func:`head_from_run`), the feature standardiser that travels with it, batch
collation of pooled and frame features (:func:`collate`, the store's layer rule
:func:`select_layer`), and weights on disk. Imports neither training code nor scikit-learn."""

from parrot_ser.models.batch import collate, pad_frames, select_layer
from parrot_ser.models.head import build_head, head_from_run, load_weights, save_weights, spec_options
from parrot_ser.models.standardise import StandardisedModel, Standardiser

__all__ = ["StandardisedModel", "Standardiser", "build_head", "collate", "head_from_run", "load_weights",
           "pad_frames", "save_weights", "select_layer", "spec_options"]
