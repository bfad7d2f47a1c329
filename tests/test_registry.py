"""The one registry mechanism: lazy providers, a failed import reported for that provider only,
options declared once (signature / dataclass), generic --corpus-option."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Annotated

import pytest
from typer.testing import CliRunner

from parrot_ser.errors import ConfigError, RegistryError
from parrot_ser.registry import Registry, dataclass_options, signature_options


def test_failed_provider_is_reported_for_itself_only(tmp_path, monkeypatch):
    pkg = tmp_path / "toyreg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("from parrot_ser.registry import Registry\nREG = Registry('toy', 'toyreg', skip=('infra',))\n")
    (pkg / "good.py").write_text("from toyreg import REG\nREG.add('fine', 1)\n")
    (pkg / "broken.py").write_text("import not_a_module_anywhere  # noqa\n")
    (pkg / "infra.py").write_text("raise RuntimeError('infrastructure is never imported by the registry')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import toyreg

    try:
        assert toyreg.REG.names() == ["fine"] and toyreg.REG.get("fine") == 1
        assert set(toyreg.REG.failures()) == {"broken"}
        with pytest.raises(RegistryError, match=r"unknown toy 'gone'; known: fine; broken could not be imported"):
            toyreg.REG.get("gone")
    finally:
        for m in [m for m in sys.modules if m == "toyreg" or m.startswith("toyreg.")]:
            del sys.modules[m]


def test_registry_add_twice_and_decorator():
    reg: Registry[object] = Registry("thing")

    @reg.entry("a")
    class A:
        pass

    assert reg.get("a") is A and "a" in reg and list(reg) == ["a"]
    with pytest.raises(RegistryError, match="registered twice"):
        reg.add("a", 2)
    reg.remove("a")
    assert "a" not in reg


def test_options_come_from_the_declaration():
    def scan(root, depth: Annotated[int, "how deep"] = 2, loud: bool = False):
        return root

    opts = signature_options(scan)
    assert list(opts) == ["depth", "loud"] and opts["depth"].help == "how deep" and opts["depth"].default == 2
    assert opts["depth"].type is int and opts["loud"].type is bool

    @dataclass
    class Cfg:
        width: Annotated[int, "channels"] = 8

    assert dataclass_options(Cfg)["width"].help == "channels"


def test_corpus_options_reach_the_scanner_typed(tmp_path):
    from parrot_ser.cli.main import app
    from parrot_ser.corpora import CORPORA, scan_corpus

    assert set(CORPORA.get("folders").options) == {"speaker_regex"}
    assert set(CORPORA.get("iemocap").options) == {"full_labels", "dimensions"}
    import numpy as np
    import soundfile as sf

    for lab in ("angry", "sad"):
        (tmp_path / lab).mkdir()
        for spk in ("aa", "bb"):
            sf.write(tmp_path / lab / f"x{spk}-1.wav", np.zeros(1600, np.float32), 16000)
    man = scan_corpus("folders", tmp_path, speaker_regex=r"^x(?P<speaker>[a-z]+)")
    assert man.speakers() == ["aa", "bb"]
    r = CliRunner().invoke(app, ["corpus", "inspect", str(tmp_path), "--corpus", "folders", "--json",
                                 "--corpus-option", r"speaker_regex=^x(?P<speaker>[a-z]+)"])
    assert r.exit_code == 0, r.output
    assert '"aa"' in r.stdout and '"bb"' in r.stdout
    r = CliRunner().invoke(app, ["corpus", "inspect", str(tmp_path), "--corpus", "folders",
                                 "--corpus-option", "include_song=true"])
    assert r.exit_code == 2 and "applies to corpus ravdess, not folders" in r.output
    with pytest.raises(ConfigError, match="expects bool"):
        scan_corpus("ravdess", tmp_path, include_song="maybe")
