"""Encoder registry, layer choices, the logmel encoder and `parrot-ser encoders list`."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from parrot_ser.cli.main import app
from parrot_ser.encoders import ENCODERS, build_encoder, get_spec, list_specs, parse_layers, resolve_layers
from parrot_ser.encoders.logmel import deltas
from parrot_ser.errors import ConfigError, RegistryError

REQUIRED = ["ssam-tiny", "ssam-small", "ssam-base", "ssamba-tiny", "ssamba-small", "ssamba-base", "hubert-base",
            "wav2vec2-base", "wavlm-base-plus", "wavlm-large", "unispeech-sat-base-plus", "mms-300m", "mms-1b",
            "xls-r-300m", "whisper-base", "logmel"]


def test_registry_lists_every_required_encoder():
    names = [s.name for s in list_specs()]
    assert set(REQUIRED) <= set(names) and names == sorted(names)
    assert get_spec("hubert-base").default_checkpoint == "facebook/hubert-base-ls960"
    assert get_spec("xls-r-300m").default_checkpoint == "facebook/wav2vec2-xls-r-300m"
    assert get_spec("mms-1b").pooled_dim == 1280 and get_spec("mms-1b").num_layers == 49
    assert get_spec("whisper-base").num_layers == 7
    assert get_spec("ssam-base").kind == "mamba" and get_spec("ssam-base").pooled_dim == 3840
    assert get_spec("logmel").kind == "handcrafted" and get_spec("logmel").default_checkpoint is None
    assert "wavlm-large" in ENCODERS
    with pytest.raises(RegistryError, match="known: .*hubert-base"):
        get_spec("hubret-base")


def test_layer_choices():
    assert resolve_layers("last", 13) == [12]
    assert resolve_layers("all", 3) == [0, 1, 2]
    assert resolve_layers(-2, 13) == [11]
    assert resolve_layers("3,6,9", 13) == [3, 6, 9]
    assert resolve_layers([0, -1], 13) == [0, 12]
    assert resolve_layers([9, 3], 13) == resolve_layers("3,9", 13) == [3, 9]  # one rule for every family
    assert parse_layers("3") == 3 and parse_layers("3,6") == [3, 6] and parse_layers("ALL") == "all"
    for bad in ("13", "x", "1,1", [-14]):
        with pytest.raises(ConfigError):
            resolve_layers(bad, 13)


def test_logmel_features_and_pooling():
    enc = build_encoder("logmel")
    sr = 16000
    t = np.arange(sr) / sr
    tone = (0.5 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)
    r = enc.encode([tone, tone[:8000]], frames=True)
    f = r[0].frames[0]
    assert f.shape == (101, 160) and r[1].frames.shape == (1, 51, 160)
    np.testing.assert_allclose(r[0].pooled[0], np.concatenate([f.mean(0), f.std(0)]), rtol=1e-5, atol=1e-5)
    # a 1 kHz tone peaks in the mel band around 1 kHz (HTK mel of 1000 Hz ~ band 23 of 80 up to 8 kHz)
    assert 18 <= int(np.argmax(f[50, :80])) <= 28
    # deltas of a steady tone are ~0 in the middle
    assert np.abs(f[10:-10, 80:]).max() < 0.05
    with pytest.raises(ConfigError):
        build_encoder("logmel", checkpoint="x.pt")
    with pytest.raises(ConfigError):
        build_encoder("logmel", layers=3)


def test_deltas_of_a_ramp_are_its_slope():
    x = torch.arange(20, dtype=torch.float32)[:, None].repeat(1, 3) * 0.5
    d = deltas(x)
    np.testing.assert_allclose(d[2:-2].numpy(), 0.5, rtol=1e-6)


def test_cli_encoders_list_json():
    res = CliRunner().invoke(app, ["encoders", "list", "--json"])
    assert res.exit_code == 0, res.output
    items = json.loads(res.stdout)
    by = {i["name"]: i for i in items}
    assert set(REQUIRED) <= set(by)
    for key in ("name", "family", "kind", "sample_rate", "hidden_size", "pooled_dim", "default_checkpoint"):
        assert key in by["hubert-base"]
    assert by["wav2vec2-base"]["hidden_size"] == 768 and by["logmel"]["pooled_dim"] == 320
    res = CliRunner().invoke(app, ["encoders", "list"])
    assert res.exit_code == 0 and "unispeech-sat-base-plus" in res.stdout


def test_cli_convert_missing_file_is_one_line(tmp_path):
    res = CliRunner().invoke(app, ["encoders", "convert", str(tmp_path / "none.pth"), str(tmp_path / "out")])
    assert res.exit_code == 2 and "none.pth" in res.stderr and "Traceback" not in res.output


def test_encoder_catalog_is_current_and_listing_needs_no_torch(tmp_path, monkeypatch):
    import dataclasses
    import subprocess
    import sys

    from parrot_ser.encoders import catalog, list_specs

    fresh = catalog.cached_specs()
    assert fresh is not None, "encoders/catalog.json is stale: run `python -m parrot_ser.encoders.catalog`"
    assert [dataclasses.asdict(s) for s in fresh] == [dataclasses.asdict(s) for s in list_specs()]
    # `encoders list` answers from the snapshot without importing torch (measured 6.7 s with it)
    code = ("import sys; from typer.testing import CliRunner; from parrot_ser.cli.main import app; "
            "r = CliRunner().invoke(app, ['encoders', 'list']); "
            "print(r.exit_code, 'ssam-base' in r.output, 'torch' in sys.modules)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.stdout.split() == ["0", "True", "False"], res.stderr[-2000:]
    # a snapshot older than the sources is ignored (the live registry answers instead)
    stale = tmp_path / "catalog.json"
    stale.write_text('{"sources_sha256": "old", "specs": []}')
    monkeypatch.setattr(catalog, "CATALOG", stale)
    assert catalog.cached_specs() is None
