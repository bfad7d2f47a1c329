"""`parrot-ser export` (run -> model bundle) and `parrot-ser predict` (bundle + audio -> labels)."""

from __future__ import annotations

import math
import time
import warnings
from collections import Counter
from pathlib import Path

import typer
from rich.markup import escape

from parrot_ser.cli.common import (
    check_out_dir,
    err,
    guard,
    make_progress,
    out,
    parse_checkpoints,
    print_json,
    rate_text,
    write_stdout,
)
from parrot_ser.errors import AudioError, ConfigError, ParrotError
from parrot_ser.notices import untrained_models_text, untrained_warnings


@guard
def export(
    run_dir: Path = typer.Argument(..., help="RUN_DIR written by `parrot-ser train`."),
    out_dir: Path = typer.Option(..., "--out", "-o", help="Bundle folder to write (new or an older bundle)."),
    refit: bool = typer.Option(True, "--refit/--ensemble", help="--refit (default): one model trained on all "
                               "the run's data with its settings and first seed (early-stopping speakers held "
                               "out; needs the run's feature store). --ensemble: every fold x seed model of the "
                               "run, probabilities averaged (no training; n_folds x n_seeds times the size and "
                               "the prediction time)."),
    json_out: bool = typer.Option(False, "--json", help="Print the bundle description as JSON on stdout."),
    onnx: bool = typer.Option(False, "--onnx", help="Also write onnx/head.onnx and (logmel / Hugging Face "
                                                    "encoders) onnx/model.onnx, checked against PyTorch with "
                                                    "onnxruntime (needs parrot-ser[onnx])."),
) -> None:
    """Write a self-describing bundle: safetensors weights + bundle.json (encoders and their checkpoint
    hashes, labels, model config, standardiser, training summary, sha256 of every file), the Hugging
    Face config.json and model card README.md, and with --onnx the ONNX graphs."""
    from parrot_ser.export import export_run
    from parrot_ser.inference.bundle import read_bundle_json

    check_out_dir(out_dir)
    t0 = time.perf_counter()
    with make_progress("epoch", disable=not refit) as progress:
        path = export_run(run_dir, out_dir, refit=refit, progress=progress if refit else None)
    onnx_report = None
    if onnx:
        from parrot_ser.inference.onnx_export import export_onnx

        onnx_report = export_onnx(path)
    doc = read_bundle_json(path)
    if json_out:
        print_json(doc)
    head = doc["training"].get("headline", {})
    acc, f1 = head.get("accuracy", {}), head.get("macro_f1", {})
    err.print(f"exported {doc['ensemble']['kind']} ({doc['ensemble']['n_members']} model(s), "
              f"{doc['model']['name']}, {'+'.join(e['name'] for e in doc['encoders'])}) to {path} "
              f"in {time.perf_counter() - t0:.1f} s")
    if acc:
        err.print(f"run's cross-validated accuracy {acc.get('mean', 0):.2f} +- {acc.get('std', 0):.2f}, "
                  f"macro-F1 {f1.get('mean', 0):.2f} +- {f1.get('std', 0):.2f}")
    if head.get("ccc"):
        err.print(f"run's cross-validated mean CCC {head['ccc']['mean']:.3f} +- {head['ccc']['std']:.3f} "
                  f"({', '.join(doc.get('dims') or [])})")
    if onnx_report is not None:
        for name, f in onnx_report["files"].items():
            err.print(f"onnx/{name}: onnxruntime vs PyTorch max abs diff {f['max_abs_diff_vs_torch']:.1e}")
        for name, why in onnx_report.get("not_exported", {}).items():
            err.print(f"[yellow]onnx/{name} not written:[/] {why}")
    if doc.get("warning"):
        err.print(f"[bold red]{doc['warning']}[/]")


WINDOW_HELP = ("Window seconds; default: recordings longer than the model's longest training clip are cut into "
               "windows of its median clip length (bundles without clip lengths: 10 s windows above 20 s); "
               "0: never split.")


@guard
def predict(
    model_dir: Path = typer.Argument(..., help="Model bundle folder (from `parrot-ser export`)."),
    audio: list[str] = typer.Argument(..., help="Audio files, folders (searched recursively) and/or "
                                                "manifests (.csv with a path column)."),
    json_out: bool = typer.Option(False, "--json", help="One JSON document on stdout."),
    csv_path: Path | None = typer.Option(None, "--csv", help="Also write a CSV: one row per recording "
                                                               "(window 'all') and per window; errors too."),
    window: float | None = typer.Option(None, "--window", help=WINDOW_HELP),
    hop: float | None = typer.Option(None, "--hop", help="Hop seconds (default: the window with the model's "
                                                          "clip length, else window/2)."),
    batch_size: int = typer.Option(8, "--batch-size", min=1, help="Recordings encoded per batch."),
    checkpoint: list[str] | None = typer.Option(None, "--checkpoint", help="NAME=PATH: an encoder checkpoint "
                                                                           "that moved (its hash is still checked)."),
) -> None:
    """Predict emotions. Bad files are listed with their error and the others still predicted.
    Exit 0 when at least one recording was predicted, 1 when none was, 2 on a usage or bundle error."""
    from parrot_ser.audio import load_audio
    from parrot_ser.inference.inputs import collect_inputs
    from parrot_ser.inference.predictor import load_model_quiet
    from parrot_ser.inference.writers import predictions_doc, render

    # isfinite first: NaN passes every comparison and inf asks for one endless window
    if window is not None and not (math.isfinite(window) and window >= 0):
        raise ConfigError(f"--window must be a finite number of seconds >= 0 (got {window})")
    if hop is not None and not (math.isfinite(hop) and hop > 0):
        raise ConfigError(f"--hop must be a finite number of seconds > 0 (got {hop})")
    if csv_path is not None:
        if csv_path.is_dir():
            raise ConfigError(f"{csv_path}: --csv is a folder; give a file name, e.g. {csv_path / 'predictions.csv'}")
        check_out_dir(csv_path.parent, "--csv")
    predictor = load_model_quiet(model_dir, checkpoints=parse_checkpoints(checkpoint))
    if predictor.untrained:
        err.print(f"[bold red]warning: {escape(untrained_models_text(predictor.untrained))}[/]")
    items, problems = collect_inputs(audio)
    errors = [{"path": p.path, "error": p.error} for p in problems]
    results: list[tuple] = []  # (item, prediction)
    notes: list[str] = []
    t0 = time.perf_counter()
    with make_progress("file", disable=len(items) < 2) as progress:
        task = progress.add_task("predict", total=len(items), rate="")
        for s in range(0, len(items), batch_size):
            chunk, waves = [], []
            for it in items[s:s + batch_size]:
                try:
                    with warnings.catch_warnings(record=True) as caught:
                        warnings.simplefilter("always")
                        waves.append(load_audio(it.path, predictor.sample_rate))
                    notes += [str(w.message) for w in caught]
                    chunk.append(it)
                except AudioError as e:
                    errors.append({"path": str(it.path), "error": str(e)})
            if chunk:
                results += _predict_chunk(predictor, chunk, waves, errors, window=window, hop=hop,
                                          batch_size=batch_size)
            done = min(s + batch_size, len(items))
            progress.update(task, completed=done, rate=rate_text(done, time.perf_counter() - t0, "file"))
    for n in notes:
        err.print(f"[yellow]warning:[/] {n}")
    for e in errors:
        err.print(f"[bold red]error:[/] {e['error']}")
    summary = _score_summary(predictor.labels, results, errors)
    doc = predictions_doc(str(model_dir), predictor.labels,
                          [{**p.to_dict(), "utt_id": it.utt_id, "reference": it.reference} for it, p in results],
                          errors, untrained_warnings(predictor.untrained) + notes, summary,
                          dims=getattr(predictor, "dims", []))
    if csv_path is not None:
        csv_path.parent.mkdir(parents=True, exist_ok=True)
        csv_path.write_bytes(render(doc, "csv"))
    if json_out:
        write_stdout(render(doc, "json"))
    else:
        for it, p in results:
            out.print(escape(f"{it.path}\t{_answer_text(p)}{_windows_note(p)}"))
    _print_summary(summary, predictor.labels)
    if not results:
        raise typer.Exit(1)


def _score_summary(labels: list[str], results: list[tuple], errors: list[dict]) -> dict:
    """Counts and the accuracy against the manifest's labels the model knows; the ground-truth labels it
    does not know (not trained on) are counted per label: reported, not silently left out."""
    refs = [(it.reference, p.label) for it, p in results if it.reference in labels]
    unknown = Counter(it.reference for it, _ in results if it.reference and it.reference not in labels)
    return {"predicted": len(results), "failed": len(errors),
            "accuracy_vs_manifest": round(100 * sum(a == b for a, b in refs) / len(refs), 2) if refs else None,
            "n_scored": len(refs), "unknown_reference_labels": dict(sorted(unknown.items()))}


def _print_summary(summary: dict, labels: list[str]) -> None:
    refs, unknown = summary["n_scored"], summary["unknown_reference_labels"]
    err.print(f"{summary['predicted']} predicted, {summary['failed']} failed"
              + (f"; accuracy vs manifest labels {summary['accuracy_vs_manifest']:.2f} % ({refs} scored)"
                 if refs else ""))
    if unknown:
        err.print(f"[yellow]warning:[/] {sum(unknown.values())} manifest label(s) the model does not know, not scored: "
                  + ", ".join(f"{k} x{n}" for k, n in unknown.items()) + f" (model labels: {', '.join(labels)})")


def _windows_note(p) -> str:
    """For a recording cut into windows: how many, how long, and how their labels differ (one label
    for a long recording hides a change of emotion; `analyze` draws the timeline)."""
    if not p.windows:
        return ""
    w = p.windows[0]
    if p.label is None:  # a regression-only model: the windows carry dimensions, no labels
        return f"  [cut into {len(p.windows)} windows of {w.end - w.start:.1f} s]"
    counts: dict[str, int] = {}
    for x in p.windows:
        counts[x.label] = counts.get(x.label, 0) + 1
    per = ", ".join(f"{k} {v}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1]))
    return (f"  [cut into {len(p.windows)} windows of {w.end - w.start:.1f} s: {per}"
            + ("; see `parrot-ser analyze` for the timeline]" if len(counts) > 1 else "]"))


def _answer_text(p) -> str:
    """One recording's answer on one line: label and top probabilities, then the dimensions."""
    parts = []
    if p.label is not None:
        top = ", ".join(f"{k} {v:.2f}" for k, v in sorted(p.probabilities.items(), key=lambda kv: -kv[1])[:3])
        parts.append(f"{p.label}\t({top})")
    if p.dimensions:
        parts.append("  ".join(f"{k} {v:.3f}" for k, v in p.dimensions.items()))
    return "\t".join(parts)


def _predict_chunk(predictor, chunk: list, waves: list, errors: list[dict], **kw) -> list[tuple]:
    """Predict a batch; when the model refuses it (e.g. a clip too short for an encoder), retry the
    files one by one so only the offending file is listed as failed."""
    if len(chunk) > 1:
        try:
            return list(zip(chunk, predictor.predict_waveforms(waves, [str(it.path) for it in chunk], **kw)))
        except ParrotError:
            pass
    out = []
    for it, w in zip(chunk, waves):
        try:
            out += list(zip([it], predictor.predict_waveforms([w], [str(it.path)], **kw)))
        except AudioError as e:
            errors.append({"path": str(it.path), "error": f"{it.path}: {e.problem}" + (f" ({e.detail})" if e.detail else "")})
        except ParrotError as e:
            errors.append({"path": str(it.path), "error": f"{it.path}: {e}"})
    return out
