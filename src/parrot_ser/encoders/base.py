"""What every encoder is: a spec in the registry and an object that turns waveforms into features.

Contract used by the feature store (features/) and the inference bundle (inference/)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class EncoderSpec:
    name: str  # registry name, e.g. "ssam-base", "hubert-base", "logmel"
    family: str  # "ssam" | "ssamba" | "hf" | "logmel"
    sample_rate: int
    hidden_size: int  # width of one frame of one layer
    num_layers: int  # hidden-state layers available (index 0 = embeddings / first output)
    frame_rate: float  # frames per second of the frame features
    pooled_dim: int  # width of the pooled vector (SSAM: 5 * D)
    default_checkpoint: str | None  # HF id, or None where weights are not on a hub
    # "mamba" | "recurrent" | "convolutional" | "attention" | "handcrafted" (forms heterogeneous pairs:
    # a non-attention PTM takes the paper's Mamba branch, training/grid.py)
    kind: str = "attention"
    description: str = ""


@dataclass
class EncodedUtterance:
    """Features of one utterance. ``frames``: (n_layers, T, frame_dim) or None when not requested;
    ``pooled``: (n_layers, pooled_dim), the mean over valid frames (SSAM: over 5*D frame vectors)."""

    pooled: np.ndarray
    frames: np.ndarray | None = None


@dataclass
class EncoderIdentity:
    """Everything that decides the numbers an encoder produces; stored with features and bundles so
    that mixing features from different checkpoints/configs is refused."""

    name: str
    checkpoint: str | None
    checkpoint_sha256: str | None
    random_init: bool
    seed: int | None
    layers: list[int]
    preprocessing: dict = field(default_factory=dict)
    # build_encoder(**options) that change the numbers (e.g. a random-init depth); an exported bundle
    # passes them back to build_encoder (inference/predictor.py reads "options"). Omitted when empty.
    options: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = {"name": self.name, "checkpoint": self.checkpoint, "checkpoint_sha256": self.checkpoint_sha256,
             "random_init": self.random_init, "seed": self.seed, "layers": list(self.layers),
             "preprocessing": dict(self.preprocessing)}
        if self.options:
            d["options"] = dict(self.options)
        return d


class Encoder(ABC):
    spec: EncoderSpec
    identity: EncoderIdentity

    @property
    def sample_rate(self) -> int:
        return self.spec.sample_rate

    @abstractmethod
    def encode(self, waves: list[np.ndarray], *, frames: bool = False) -> list[EncodedUtterance]:
        """Encode a batch of mono float32 waveforms at ``sample_rate``. Must be padding-invariant:
        an utterance's features do not depend on the others in the batch (within tolerance)."""

    def to(self, device: str) -> Encoder:
        """Move the wrapped torch model (``self.model``, when there is one) to ``device``."""
        model = getattr(self, "model", None)
        if model is not None:
            model.to(device)
        self.device = device
        return self
