"""Prediction writers: one registry of output formats that the CLI and the HTTP service share.

A writer turns a *document* into bytes. Two kinds of document exist, told apart by ``doc["kind"]``:

- ``"predictions"`` (``predict``): ``{"kind", "model", "labels", "predictions": [record], "errors",
  "warnings", "summary"}``; a record is ``Prediction.to_dict()`` plus ``utt_id`` / ``reference``.
- ``"timeline"`` (``analyze``): ``{"kind", "model", "labels", "recordings": [timeline], "warnings"}``;
  a timeline is ``Timeline.to_dict()`` (inference/timeline.py).

Adding a format is one function decorated with ``@writer(name, suffix, media_type, kinds)``; the
CLI (``--format`` / ``--out``) and the service (``?format=``) find it here by name."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from parrot_ser.errors import ConfigError
from parrot_ser.registry import Registry


@dataclass(frozen=True)
class Writer:
    name: str
    suffix: str  # file name suffix when written to a folder
    media_type: str  # HTTP Content-Type
    kinds: tuple[str, ...]  # document kinds it can write
    render: Callable[[dict], bytes]


WRITERS: Registry[Writer] = Registry("prediction writer")


def writer(name: str, suffix: str, media_type: str, kinds: tuple[str, ...] = ("predictions", "timeline")):
    """Register ``fn(doc) -> bytes`` as the writer ``name``."""
    def deco(fn: Callable[[dict], bytes]) -> Callable[[dict], bytes]:
        WRITERS.add(name, Writer(name, suffix, media_type, kinds, fn))
        return fn

    return deco


def get_writer(name: str, kind: str) -> Writer:
    """The writer ``name`` for a ``kind`` document, or a one-line ConfigError listing the choices."""
    choices = [n for n, w in WRITERS.items() if kind in w.kinds]
    if name not in choices:
        raise ConfigError(f"unknown output format {name!r} for {kind}; choose one of {', '.join(choices)}")
    return WRITERS.get(name)


def render(doc: dict, name: str) -> bytes:
    return get_writer(name, doc["kind"]).render(doc)


def formats(kind: str) -> list[str]:
    return [n for n, w in WRITERS.items() if kind in w.kinds]


# --- documents -----------------------------------------------------------------------------------
def predictions_doc(model: str, labels: list[str], records: list[dict], errors: list[dict] | None = None,
                    warnings: list[str] | None = None, summary: dict | None = None,
                    dims: list[str] | None = None) -> dict:
    """``dims``: the dimensions of a model trained on them (records then carry ``dimensions``)."""
    return {"kind": "predictions", "model": model, "labels": list(labels), "dims": list(dims or []),
            "predictions": records, "errors": list(errors or []), "warnings": list(warnings or []),
            "summary": summary or {}}


def timeline_doc(model: str, labels: list[str], timelines: list[dict], warnings: list[str] | None = None,
                 errors: list[dict] | None = None, dims: list[str] | None = None) -> dict:
    """``dims``: the dimensions of a model trained on them (windows and segments then carry
    ``dimensions``); ``labels`` is empty for a regression-only model."""
    return {"kind": "timeline", "model": model, "labels": list(labels), "dims": list(dims or []),
            "recordings": timelines, "errors": list(errors or []), "warnings": list(warnings or [])}


# --- formats -------------------------------------------------------------------------------------
@writer("json", ".json", "application/json")
def _json(doc: dict) -> bytes:
    return (json.dumps(doc, indent=2, ensure_ascii=False) + "\n").encode()


def _csv_text(header: list[str], rows: list[list[Any]]) -> bytes:
    buf = io.StringIO(newline="")
    w = csv.writer(buf)
    w.writerow(header)
    w.writerows(rows)
    return buf.getvalue().encode()


def _probs(p: dict, labels: list[str]) -> list[str]:
    return [f"{p['probabilities'][lab]:.6f}" for lab in labels]


@writer("csv", ".csv", "text/csv")
def _csv(doc: dict) -> bytes:
    """predictions: one row per recording (window 'all') and per window, errors last;
    timeline: one row per merged segment and per window (column ``level``)."""
    labels = doc["labels"]
    if doc["kind"] == "timeline":
        return _timeline_csv(doc)
    dims = doc.get("dims") or []  # one column per dimension (training data's scale) after the probabilities
    rows = []
    for rec in doc["predictions"]:
        for row, win in [(rec, "all"), *[(x, str(x.get("window"))) for x in rec.get("windows", [])]]:
            rows.append([rec.get("path") or "", rec.get("utt_id") or "", rec.get("reference") or "", win,
                         f"{row['start']:.3f}", f"{row['end']:.3f}", row.get("label") or "", *_probs(row, labels),
                         *[f"{row['dimensions'][d]:.6f}" for d in dims], ""])
    rows += [[e["path"], "", "", "", "", "", "", *["" for _ in labels], *["" for _ in dims], e["error"]]
             for e in doc["errors"]]
    return _csv_text(["path", "utt_id", "reference", "window", "start", "end", "label",
                      *[f"prob_{lab}" for lab in labels], *dims, "error"], rows)


def _timeline_csv(doc: dict) -> bytes:
    """One row per segment and per window: label probabilities, then one column per dimension."""
    labels, dims = doc["labels"], doc.get("dims") or []
    rows = []
    for rec in doc["recordings"]:
        for level in ("segments", "windows"):
            for x in rec[level]:
                rows.append([rec["path"] or "", level[:-1], f"{x['start']:.3f}", f"{x['end']:.3f}", x["label"] or "",
                             *_probs(x, labels), *[f"{x['dimensions'][d]:.6f}" for d in dims], ""])
    rows += [[e["path"], "", "", "", "", *["" for _ in labels], *["" for _ in dims], e["error"]]
             for e in doc.get("errors", [])]
    return _csv_text(["path", "level", "start", "end", "label", *[f"prob_{lab}" for lab in labels], *dims, "error"],
                     rows)


@writer("png", ".png", "image/png", kinds=("timeline",))
def _png(doc: dict) -> bytes:
    """The timeline picture of the document's first recording (timeline_plot.py)."""
    from parrot_ser.inference.timeline_plot import timeline_png

    if not doc["recordings"]:
        raise ConfigError("no recording was analysed; nothing to draw")
    return timeline_png(doc["recordings"][0], doc["labels"], title_model=doc.get("model", ""),
                        dims=doc.get("dims") or [])
