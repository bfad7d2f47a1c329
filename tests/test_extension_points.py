"""Adding a corpus, an encoder and a model through the public API only (docs/architecture.md,
"Adding a new ..."): each is one registration, and the whole path (scan -> extract -> train ->
export -> predict) picks them up by name."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import numpy as np
import pytest
import soundfile as sf
import torch
from torch import nn

from parrot_ser.corpora import CORPORA, CorpusSpec, Manifest, Utterance, list_corpora, register, scan_corpus
from parrot_ser.corpora.scanning import rel, start_scan
from parrot_ser.encoders import (
    ENCODERS,
    EncodedUtterance,
    Encoder,
    EncoderIdentity,
    EncoderSpec,
    build_encoder,
    register_family,
)
from parrot_ser.fusion import MODELS, ModelConfig, build_model, register_model
from parrot_ser.fusion.base import FusionInput

NAME = re.compile(r"^(?P<spk>[a-z]+)_(?P<emo>angry|sad)_(?P<n>\d+)\.wav$")


def scan_toy(root: Path, min_index: Annotated[int, "skip files numbered below this"] = 0) -> Manifest:
    b, files = start_scan("toy-corpus", root)
    for f, m in b.named(files, NAME, "{speaker}_{angry|sad}_{n}.wav"):
        if int(m["n"]) >= min_index:
            b.add(Utterance(f.stem, rel(f, root), m["emo"], m["spk"], m["emo"]))
    return b.build()


TOY_SPEC = EncoderSpec(name="toy-energy", family="toy", sample_rate=16000, hidden_size=4, num_layers=1,
                       frame_rate=100.0, pooled_dim=4, default_checkpoint=None, kind="handcrafted")


class EnergyEncoder(Encoder):
    """Four frame statistics of 10 ms frames: padding-invariant by construction."""

    def __init__(self, spec: EncoderSpec):
        self.spec = spec
        self.identity = EncoderIdentity(spec.name, None, None, False, None, [0], {"frame": 160})

    def encode(self, waves, *, frames=False):
        out = []
        for w in waves:
            x = np.asarray(w, np.float32)[: len(w) // 160 * 160].reshape(-1, 160)
            fr = np.stack([x.mean(1), x.std(1), np.abs(x).max(1), (x ** 2).mean(1)], 1)[None]
            out.append(EncodedUtterance(fr.mean(1), fr if frames else None))
        return out


def build_toy(spec, *, checkpoint=None, layers="last", random_init=False, seed=0, device="cpu", dtype=None):
    return EnergyEncoder(spec)


@dataclass
class ToyConfig(ModelConfig):
    scale: float = 1.0


class ToyHead(nn.Module):
    n_inputs = 1
    batch_dependent = False
    uses_frames = False
    Config = ToyConfig

    def __init__(self, input_dims, n_classes, cfg):
        super().__init__()
        self.cfg = cfg
        self.lin = nn.Linear(input_dims[0], n_classes)

    def forward(self, inp: FusionInput) -> torch.Tensor:
        return self.lin(inp.pooled[0]) * self.cfg.scale


@pytest.fixture
def registered():
    register(CorpusSpec("toy-corpus", "throwaway test corpus", scan_toy, layout="ann_angry_1.wav"))
    register_family([TOY_SPEC], build_toy)
    register_model("toy-linear", "throwaway linear head")(ToyHead)
    yield
    CORPORA.remove("toy-corpus")
    ENCODERS.remove("toy-energy")
    MODELS.remove("toy-linear")


def _corpus(root: Path) -> None:
    rng = np.random.default_rng(0)
    for spk in ("ann", "bob", "cat", "dan"):
        for emo, amp in (("angry", 0.5), ("sad", 0.1)):
            for n in range(4):
                sf.write(root / f"{spk}_{emo}_{n}.wav", (amp * rng.standard_normal(4000)).astype(np.float32), 16000)
    (root / "notes_1.wav").write_bytes(b"")  # a name that does not fit: reported, not fatal


def test_throwaway_corpus_encoder_and_model_end_to_end(registered, tmp_path):
    from parrot_ser.export import export_run
    from parrot_ser.features import extract_features
    from parrot_ser.inference import load_model
    from parrot_ser.training.config import TrainConfig
    from parrot_ser.training.run import run_cv

    root = tmp_path / "corpus"
    root.mkdir()
    _corpus(root)
    assert ("toy-corpus", "throwaway test corpus") in list_corpora()
    assert set(CORPORA.get("toy-corpus").options) == {"min_index"}
    man = scan_corpus("toy-corpus", root, min_index="1")  # text, as from --corpus-option, typed by the signature
    assert len(man) == 4 * 2 * 3 and [p.path for p in man.problems] == ["notes_1.wav"]

    enc = build_encoder("toy-energy")
    assert enc.encode([np.ones(1600, np.float32)])[0].pooled.shape == (1, 4)
    extract_features(man, enc, tmp_path / "feat")

    assert build_model("toy-linear", [4], 2, scale=2.0, **{"toy-linear": {"scale": 3.0}}).cfg.scale == 3.0
    cfg = TrainConfig(epochs=2, patience=0, model={"toy-linear": {"scale": 1.5}})
    res = run_cv(tmp_path / "feat", ["toy-energy"], "toy-linear", cfg, [0], "speaker-kfold", tmp_path / "run",
                 n_folds=2)
    assert res["model"] == "toy-linear"
    bundle = export_run(tmp_path / "run", tmp_path / "bundle")
    pred = load_model(bundle).predict(str(root / "ann_angry_2.wav"))[0]
    assert pred.label in ("angry", "sad")
