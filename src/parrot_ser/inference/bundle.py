"""The exported model bundle: a folder of safetensors weights and one JSON description.

Layout (MODEL_DIR)::

    bundle.json                      description + sha256 of every other file (the manifest)
    members/<tag>.safetensors        one per ensemble member: the training module's
                                     StandardisedModel state dict: ``net.*`` (the fusion model) and
                                     ``std_pooled_mean_<i>`` / ``std_pooled_std_<i>`` (+ frames_*),
                                     the standardiser fitted on that member's training data
    anchors.safetensors              (batch-dependent models only) the fixed reference rows
                                     (raw pooled features per encoder input), see predictor.py
    config.json, README.md           Hugging Face config and model card (hub.py); config.json is
                                     hashed in the manifest, the model card is not (owners edit it)

Loading needs no pickle: JSON + safetensors only. Every file listed in ``files`` must exist with
the recorded sha256, and ``content_sha256`` (sha256 of bundle.json's canonical JSON without that
field) catches edits of bundle.json itself. Anything else is a BundleError naming the file."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from parrot_ser.encoders.checkpoint import sha256_file
from parrot_ser.errors import BundleError
from parrot_ser.files import write_json_atomic

BUNDLE_FORMAT = "parrot-ser-bundle"
BUNDLE_VERSION = 1
BUNDLE_JSON = "bundle.json"


def _content_hash(doc: dict) -> str:
    body = {k: v for k, v in doc.items() if k != "content_sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


@dataclass
class Member:
    """One ensemble member: head weights + standardiser buffers (a StandardisedModel state dict)."""

    tag: str  # e.g. "seed0_fold1" or "refit_seed0"
    state_dict: dict[str, torch.Tensor]
    info: dict = field(default_factory=dict)  # seed, fold, best_epoch ...


@dataclass
class Bundle:
    """A verified bundle in memory."""

    root: Path
    doc: dict
    members: list[Member]
    anchors: list[torch.Tensor] | None = None  # per encoder input: (K, D_i) raw pooled rows

    @property
    def labels(self) -> list[str]:
        return list(self.doc["labels"])

    @property
    def untrained(self) -> list[str]:
        return [e["name"] for e in self.doc["encoders"] if e.get("random_init")]


def _readable(path: Path) -> None:
    # safetensors writes 0600 files; a bundle is meant to be shared like bundle.json (umask applies).
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(path, 0o666 & ~mask)


def write_bundle(out_dir: str | Path, doc: dict[str, Any], members: list[Member],
                 anchors: list[torch.Tensor] | None = None, texts: dict[str, str] | None = None) -> Path:
    """Write ``members`` (and ``anchors``) as safetensors and ``doc`` plus the file manifest as
    bundle.json. ``doc`` holds everything else (labels, encoders, model, training summary...).
    ``texts``: further text files (relative path -> content, e.g. the HF config.json) written and
    hashed into the manifest like the weights."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise BundleError(f"{out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / BUNDLE_JSON).is_file():
        # Never write into (and later hash) an unrelated non-empty folder.
        raise BundleError(f"{out}: folder is not empty and is not a model bundle; choose a new --out")
    if not members:
        raise BundleError(f"{out}: nothing to export (no ensemble members)")
    if (out / BUNDLE_JSON).is_file():
        # Re-export over an older bundle: drop its description first (a crash mid-write then leaves
        # no loadable bundle rather than a mixed one) and its weight files (none may linger).
        old = out / BUNDLE_JSON
        try:
            stale = list(json.loads(old.read_text(encoding="utf-8")).get("files", {}))
        except (OSError, ValueError):
            stale = []
        old.unlink()
        for rel in stale:
            p = out / rel
            if not Path(rel).is_absolute() and ".." not in Path(rel).parts and p.is_file():
                p.unlink()
    (out / "members").mkdir(parents=True, exist_ok=True)
    files: dict[str, str] = {}
    member_docs = []
    for m in members:
        rel = f"members/{m.tag}.safetensors"
        save_file({k: v.detach().cpu().contiguous() for k, v in m.state_dict.items()}, str(out / rel),
                  metadata={"tag": m.tag})
        _readable(out / rel)
        files[rel] = sha256_file(out / rel)
        member_docs.append({"tag": m.tag, "file": rel, **m.info})
    if anchors is not None:
        save_file({f"anchors.{i}": a.detach().cpu().float().contiguous() for i, a in enumerate(anchors)},
                  str(out / "anchors.safetensors"))
        _readable(out / "anchors.safetensors")
        files["anchors.safetensors"] = sha256_file(out / "anchors.safetensors")
    for rel, text in (texts or {}).items():
        (out / rel).write_text(text, encoding="utf-8")
        files[rel] = sha256_file(out / rel)
    full = {"format": BUNDLE_FORMAT, "format_version": BUNDLE_VERSION, **doc, "members": member_docs,
            "files": files}
    full["content_sha256"] = _content_hash(full)
    write_json_atomic(out / BUNDLE_JSON, full, indent=2, newline=True)
    return out


def add_files(model_dir: str | Path, rels: list[str]) -> dict:
    """Add files written into a verified bundle afterwards (e.g. onnx/*) to its sha256 manifest and
    rewrite bundle.json with a new content hash. Returns the new description."""
    root = Path(model_dir)
    doc = verify_bundle(root)
    for rel in rels:
        if Path(rel).is_absolute() or ".." in Path(rel).parts or not (root / rel).is_file():
            raise BundleError(f"{root / rel}: not a file inside the bundle")
        doc["files"][rel] = sha256_file(root / rel)
    doc["content_sha256"] = _content_hash(doc)
    write_json_atomic(root / BUNDLE_JSON, doc, indent=2, newline=True)
    return doc


def read_bundle_json(model_dir: str | Path) -> dict:
    """bundle.json, checked for format and self-consistency (not the other files)."""
    root = Path(model_dir)
    path = root / BUNDLE_JSON
    if not root.is_dir():
        raise BundleError(f"{root}: model bundle folder not found")
    if not path.is_file():
        raise BundleError(f"{path}: missing; {root} is not a model bundle (made by `parrot-ser export`)")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise BundleError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(doc, dict) or doc.get("format") != BUNDLE_FORMAT:
        raise BundleError(f"{path}: not a {BUNDLE_FORMAT} description")
    if doc.get("format_version") != BUNDLE_VERSION:
        raise BundleError(f"{path}: bundle format version {doc.get('format_version')} is not supported "
                          f"(this parrot-ser reads version {BUNDLE_VERSION})")
    if doc.get("content_sha256") != _content_hash(doc):
        raise BundleError(f"{path}: content does not match its recorded hash (edited or corrupted)")
    for key in ("labels", "encoders", "model", "members", "files"):
        if key not in doc:
            raise BundleError(f"{path}: lacks the {key!r} entry")
    return doc


def verify_bundle(model_dir: str | Path) -> dict:
    """Check every file in the manifest exists and has its recorded sha256. Returns bundle.json."""
    root = Path(model_dir)
    doc = read_bundle_json(root)
    for rel, digest in doc["files"].items():
        p = root / rel
        # Manifest paths are relative and stay inside the bundle.
        if Path(rel).is_absolute() or ".." in Path(rel).parts:
            raise BundleError(f"{root / BUNDLE_JSON}: file entry {rel!r} points outside the bundle")
        if not p.is_file():
            raise BundleError(f"{p}: missing from the model bundle")
        actual = sha256_file(p)
        if actual != digest:
            raise BundleError(f"{p}: sha256 {actual[:12]}... does not match the recorded {digest[:12]}... "
                              "(file changed or corrupted)")
    return doc


def _load_tensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise BundleError(f"{path}: unreadable safetensors file ({e})") from None


def _check_member_shapes(doc: dict, sd: dict[str, torch.Tensor], path: Path) -> None:
    """The model description must agree with the weights' shapes. The head is rebuilt from
    ``input_shapes`` when present, so an edited ``input_dims`` (hashes recomputed) would otherwise
    load and predict with a description that lies about the model."""
    md = doc["model"]
    where = f"{path.parent.parent / BUNDLE_JSON}"
    dims, shapes = md.get("input_dims"), md.get("input_shapes")
    if not isinstance(dims, list) or not dims or not all(isinstance(d, int) and d > 0 for d in dims):
        raise BundleError(f"{where}: model.input_dims must be a non-empty list of positive ints, got {dims!r}")
    if shapes is not None and (not isinstance(shapes, list) or len(shapes) != len(dims)):
        raise BundleError(f"{where}: model.input_shapes {shapes!r} does not have one entry per input "
                          f"({len(dims)} in model.input_dims)")
    for i, d in enumerate(dims):
        stored = tuple(sd[f"std_pooled_mean_{i}"].shape)
        want = tuple(shapes[i]) if shapes is not None else (d,)
        if stored != want or stored[-1] != d:
            raise BundleError(f"{where}: model.input_dims[{i}]={d}"
                              + (f" / model.input_shapes[{i}]={list(want)}" if shapes is not None else "")
                              + f" disagree with the weights in {path.name} (input {i} has shape {list(stored)}); "
                              "the description was edited: re-export the bundle")
    for i, d in enumerate(md.get("frame_dims") or []):
        key = f"std_frames_mean_{i}"
        if key in sd and tuple(sd[key].shape)[-1:] != (d,):
            raise BundleError(f"{where}: model.frame_dims[{i}]={d} disagrees with the weights in {path.name} "
                              f"(frames of input {i} are {sd[key].shape[-1]} wide); re-export the bundle")


def load_bundle(model_dir: str | Path) -> Bundle:
    """Verify and read a bundle (weights as CPU tensors)."""
    root = Path(model_dir)
    doc = verify_bundle(root)
    n_inputs = len(doc["model"]["input_dims"])
    members = []
    for md in doc["members"]:
        path = root / md["file"]
        if md["file"] not in doc["files"]:
            raise BundleError(f"{path}: member file is not covered by the bundle's manifest")
        sd = _load_tensors(path)
        missing = [k for i in range(n_inputs) for k in (f"std_pooled_mean_{i}", f"std_pooled_std_{i}")
                   if k not in sd]
        if missing:
            raise BundleError(f"{path}: lacks standardiser tensor {missing[0]!r}")
        _check_member_shapes(doc, sd, path)
        info = {k: v for k, v in md.items() if k not in ("tag", "file")}
        members.append(Member(md["tag"], sd, info))
    anchors = None
    if "anchors.safetensors" in doc["files"]:
        t = _load_tensors(root / "anchors.safetensors")
        anchors = [t[f"anchors.{i}"] for i in range(n_inputs)]
    return Bundle(root, doc, members, anchors)
