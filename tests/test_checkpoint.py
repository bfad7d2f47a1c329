"""Safe checkpoint loading: code in a pickle never runs, config objects stay inert, safetensors copies."""

from __future__ import annotations

import hashlib
import os
import pickle
import sys
import types

import pytest
import torch

from parrot_ser.encoders.checkpoint import (
    InertPlaceholder,
    convert_checkpoint,
    load_checkpoint_state_dict,
    read_safetensors_metadata,
    sha256_file,
)
from parrot_ser.errors import CheckpointError


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class ConfigDict(dict):
    """Stands for ml_collections.ConfigDict when the test writes a checkpoint."""

    marker = ""

    def __setstate__(self, state):  # would run at load time if the real class were used
        open(self.marker, "w").close()


ConfigDict.__module__ = "ml_collections"


def _tensors():
    g = torch.Generator().manual_seed(0)
    return {"blocks.0.mixer.A_log": torch.randn(6, 4, generator=g), "patch_embed.proj.weight": torch.randn(3, 1, 4, 16)}


@pytest.mark.parametrize("container", ["torch_zip", "plain_pickle"])
def test_pickle_that_runs_code_is_refused(tmp_path, container):
    marker = tmp_path / "PWNED"
    path = tmp_path / "checkpoint-1.pth"
    if container == "torch_zip":
        torch.save({"model": _tensors(), "args": _Evil(marker)}, path)
    else:  # a legacy-style plain pickle (no tensors: those would need torch's nested loader, refused too)
        with open(path, "wb") as f:
            pickle.dump({"model": {"w": [1.0, 2.0]}, "args": _Evil(marker)}, f)
    with pytest.raises(CheckpointError) as ei:
        load_checkpoint_state_dict(path)
    msg = str(ei.value)
    assert str(path) in msg and "system" in msg
    assert not marker.exists()


def test_ml_collections_args_become_inert_and_are_never_imported(tmp_path, monkeypatch):
    marker = tmp_path / "IMPORTED"
    # An importable fake ml_collections that leaves a marker if anything imports it during loading.
    pkg = tmp_path / "site" / "ml_collections"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text(f"open({str(marker)!r}, 'w').close()\nclass ConfigDict: pass\n")

    ConfigDict.marker = str(marker)
    fake = types.ModuleType("ml_collections")
    fake.ConfigDict = ConfigDict
    monkeypatch.setitem(sys.modules, "ml_collections", fake)
    args = ConfigDict(model={"arch": "mamba_ssast_tiny", "img_size": (200, 80)})
    args.__dict__["lr"] = 1e-4
    args.__dict__["field_types"] = [int, float, {"a", "b"}]  # type objects, as ml_collections stores them
    tensors = _tensors()
    path = tmp_path / "checkpoint-99.pth"
    torch.save({"model": tensors, "optimizer": {"state": {}, "param_groups": []}, "epoch": 99,
                "scaler": {"scale": 1024.0}, "args": args}, path)
    monkeypatch.delitem(sys.modules, "ml_collections")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))

    sd = load_checkpoint_state_dict(path)
    assert set(sd) == set(tensors)
    assert all(torch.equal(sd[k], tensors[k]) for k in tensors)
    assert not marker.exists()
    assert "ml_collections" not in sys.modules


def test_restricted_unpickler_keeps_placeholder_inert(tmp_path):
    from parrot_ser.encoders.checkpoint import _RestrictedPickleModule

    data = pickle.dumps(argparse_ns := __import__("argparse").Namespace(a=1))
    obj = _RestrictedPickleModule.load(__import__("io").BytesIO(data))
    assert isinstance(obj, InertPlaceholder) and "argparse.Namespace" in repr(obj)
    assert not hasattr(obj, "a") and argparse_ns.a == 1


def test_missing_and_garbage_files(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint_state_dict(tmp_path / "nope.pth")
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"this is not a checkpoint")
    with pytest.raises(CheckpointError, match="bad.pth"):
        load_checkpoint_state_dict(bad)
    st = tmp_path / "bad.safetensors"
    st.write_bytes(b"\x00" * 10)
    with pytest.raises(CheckpointError, match="bad.safetensors"):
        load_checkpoint_state_dict(st)
    empty = tmp_path / "empty.pth"
    torch.save({"epoch": 3}, empty)
    with pytest.raises(CheckpointError, match="non-tensor"):
        load_checkpoint_state_dict(empty)


def test_module_prefix_is_stripped(tmp_path):
    path = tmp_path / "amba_tiny.pth"
    torch.save({"module.v.layers.0.mixer.D": torch.ones(4), "module.mask_embed": torch.zeros(1, 1, 2)}, path)
    assert set(load_checkpoint_state_dict(path)) == {"v.layers.0.mixer.D", "mask_embed"}


def test_convert_to_safetensors_roundtrip(tmp_path):
    src = tmp_path / "checkpoint-5.pth"
    tensors = _tensors()
    torch.save({"model": tensors, "epoch": 5}, src)
    dst = convert_checkpoint(src, tmp_path / "out" / "ssam.safetensors")
    meta = read_safetensors_metadata(dst)
    assert meta["family"] == "ssam" and meta["source_sha256"] == sha256_file(src)
    assert sha256_file(src) == hashlib.sha256(src.read_bytes()).hexdigest()
    back = load_checkpoint_state_dict(dst)
    assert set(back) == set(tensors) and all(torch.equal(back[k], tensors[k]) for k in tensors)
    # The file itself holds no pickle at all.
    assert b"\x80\x04" not in dst.read_bytes()[:64]
    with pytest.raises(CheckpointError, match="neither an SSAM nor an SSAMBA"):
        other = tmp_path / "other.pth"
        torch.save({"foo.weight": torch.ones(2)}, other)
        convert_checkpoint(other, tmp_path / "other.safetensors")


_real_save = torch.save


def torch_save_legacy(path):
    _real_save({f"blocks.{i}.mixer.D": torch.zeros(1) for i in range(60)}, path, _use_new_zipfile_serialization=False)


def test_checkpoint_with_too_many_tensors_is_refused_before_unpickling(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from parrot_ser.cli.main import app
    from parrot_ser.encoders import checkpoint as ck

    # The cap is checked from the zip directory; a small cap keeps the test fast (the real one is
    # 20k tensors: a crafted 100k-key file took 24 s and 0.6 GB to unpickle).
    monkeypatch.setattr(ck, "MAX_CHECKPOINT_TENSORS", 50)
    path = tmp_path / "many.pth"
    torch.save({f"blocks.{i}.mixer.D": torch.zeros(1) for i in range(60)}, path)

    def never(*a, **k):
        raise AssertionError("torch.load must not run on a refused file")

    monkeypatch.setattr(torch, "load", never)
    with pytest.raises(CheckpointError, match=r"many.pth: refused, it holds 60 tensors \(limit 50\)"):
        load_checkpoint_state_dict(path)
    legacy = tmp_path / "legacy.pth"  # pre-1.6 format: no zip directory, counted from the opcodes
    torch_save_legacy(legacy)
    with pytest.raises(CheckpointError, match=r"legacy.pth: refused, it holds more than 50 tensors"):
        load_checkpoint_state_dict(legacy)
    res = CliRunner().invoke(app, ["encoders", "convert", str(path), str(tmp_path / "out.safetensors")])
    assert res.exit_code == 2 and "many.pth: refused" in res.output and "Traceback" not in res.output
    assert not (tmp_path / "out.safetensors").exists()
