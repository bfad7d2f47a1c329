"""The real Emo-DB copy (../shared/data/emodb): counts, readability, and the CLI's JSON report."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from parrot_ser.audio import load_audio, read_info
from parrot_ser.corpora import scan_corpus

EXPECTED_LABELS = {"angry": 127, "boredom": 81, "neutral": 79, "happy": 71, "fear": 69, "sad": 62, "disgust": 46}
SPEAKERS = ["03", "08", "09", "10", "11", "12", "13", "14", "15", "16"]


@pytest.fixture(scope="module")
def emodb(emodb_root):
    return scan_corpus("emodb", emodb_root)


def test_counts(emodb):
    assert len(emodb) == 535
    assert emodb.speakers() == SPEAKERS
    assert Counter(u.label for u in emodb.utterances) == EXPECTED_LABELS
    assert Counter(u.original_label for u in emodb.utterances) == {
        "W": 127, "L": 81, "N": 79, "F": 71, "A": 69, "T": 62, "E": 46}
    assert emodb.problems == [] and emodb.excluded == {}
    assert {u.meta["gender"] for u in emodb.utterances if u.speaker in ("03", "10", "11", "12", "15")} == {"male"}


def test_every_file_reads_to_16k(emodb):
    for u in emodb.utterances:
        path = emodb.abspath(u)
        info = read_info(path)
        assert (info.sample_rate, info.channels, info.frames) == (22050, 1, 44100), u.path
        x = load_audio(path, 16000, warn=False)
        assert x.shape == (32000,) and x.dtype == np.float32, u.path
        assert np.isfinite(x).all() and np.abs(x).max() > 0.01, u.path


def test_cli_inspect_json_check_audio(emodb_root):
    exe = Path(sys.executable).with_name("parrot-ser")
    cmd = [str(exe)] if exe.is_file() else [sys.executable, "-m", "parrot_ser.cli.main"]
    res = subprocess.run([*cmd, "corpus", "inspect", str(emodb_root), "--corpus", "emodb", "--json",
                          "--check-audio"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc.pop("label_policy")["mode"] == "canonical" and "labels: canonical" in res.stderr
    assert doc == {
        "corpus": "emodb", "n_utterances": 535, "n_speakers": 10, "labels": EXPECTED_LABELS,
        "n_unknown_speaker": 0, "targets": {}, "excluded": {},
        "speakers": {"03": 49, "08": 58, "09": 43, "10": 38, "11": 55, "12": 35, "13": 61, "14": 69, "15": 56,
                     "16": 71},
        "total_seconds": 1070.0, "problems": [],
    }
    assert list(doc["labels"]) == list(EXPECTED_LABELS)  # most frequent first
    assert "Traceback" not in res.stderr
