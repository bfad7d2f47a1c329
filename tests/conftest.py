"""Shared fixtures: the real Emo-DB copy, and a writer for tiny real WAV files."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

# One intra-op thread for the whole suite: the tests use tiny tensors, and on a busy 2-core machine
# every OpenMP barrier in a small op costs a scheduler slice (measured 10-70x slower with 2 threads).
torch_threads = int(os.environ.get("PARROT_TEST_THREADS", "1"))
try:
    import torch

    torch.set_num_threads(torch_threads)
except Exception:  # pragma: no cover
    pass

EMODB_ROOT = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "emodb"


@pytest.fixture(scope="session")
def emodb_root() -> Path:
    if not (EMODB_ROOT / "wav").is_dir():
        pytest.skip(f"real Emo-DB copy not found at {EMODB_ROOT} (expected ../shared/data/emodb)")
    return EMODB_ROOT


def write_tone(path: Path, seconds: float = 0.5, sr: int = 16000, channels: int = 1,
               subtype: str = "PCM_16", freq: float = 220.0, amp: float = 0.3) -> Path:
    """Write a short sine tone: a real, decodable audio file for fixture trees."""
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * sr)) / sr
    x = (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    if channels > 1:
        x = np.stack([x] * channels, axis=1)
    sf.write(str(path), x, sr, subtype=subtype)
    return path


@pytest.fixture
def tone_writer():
    return write_tone
