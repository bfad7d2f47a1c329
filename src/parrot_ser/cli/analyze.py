"""`parrot-ser analyze`: emotion over time for long recordings (files or a stream on stdin)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import typer
from rich.markup import escape

from parrot_ser.cli.common import check_out_dir, err, guard, out, write_stdout
from parrot_ser.errors import ConfigError, ParrotError
from parrot_ser.notices import untrained_models_text, untrained_warnings


@guard
def analyze(
    model_dir: Path = typer.Argument(..., help="Model bundle folder (from `parrot-ser export`)."),
    audio: list[str] = typer.Argument(None, help="Audio files, folders and/or manifests (as `predict`); "
                                                 "none with --stream."),
    out_dir: Path | None = typer.Option(None, "--out", "-o", help="Write NAME.timeline.{json,csv,png} per "
                                                                  "recording into this folder."),
    formats: str = typer.Option("json,csv,png", "--formats", help="With --out: which writers (comma list)."),
    json_out: bool = typer.Option(False, "--json", help="One JSON document on stdout instead of the table."),
    vad: str = typer.Option("silero", "--vad", help="Voice activity: silero (needs the 'vad' extra) or "
                                                   "energy (a simple loudness fallback)."),
    window: float | None = typer.Option(None, "--window", help="Window seconds (default: the median clip "
                                                                "length the model was trained on)."),
    hop: float | None = typer.Option(None, "--hop", help="Hop seconds (default: the window)."),
    smooth: int = typer.Option(1, "--smooth", min=1, help="Average the probabilities of N neighbouring "
                                                           "windows of a speech region (1: none)."),
    batch_size: int = typer.Option(16, "--batch-size", min=1, help="Windows encoded per batch."),
    stream: bool = typer.Option(False, "--stream", help="Read audio from stdin (a WAV stream, or raw PCM "
                                                        "with --rate); one JSON line per finished segment."),
    rate: int | None = typer.Option(None, "--rate", help="--stream raw PCM: samples per second."),
    pcm_format: str = typer.Option("s16le", "--format", help="--stream raw PCM: s16le or f32le."),
    channels: int = typer.Option(1, "--channels", help="--stream raw PCM: interleaved channels."),
) -> None:
    """Speech regions (voice activity), windows of the model's clip length, a label and probabilities
    per window, merged into segments of one label. Prints the merged timeline; --out writes JSON,
    CSV and a timeline PNG per recording. Exit 0 when at least one recording was analysed."""
    from parrot_ser.inference.predictor import load_model_quiet

    options = {"vad": vad, "window": window, "hop": hop, "smooth": smooth, "batch_size": batch_size}
    if stream:
        if audio:
            raise ConfigError("--stream reads stdin; give no AUDIO arguments with it")
    elif not audio:
        raise ConfigError("give AUDIO files, folders or manifests, or --stream to read stdin")
    if out_dir is not None:
        check_out_dir(out_dir)
    _check_formats(formats)
    predictor = load_model_quiet(model_dir)
    if predictor.untrained:
        err.print(f"[bold red]warning: {escape(untrained_models_text(predictor.untrained))}[/]")
    if stream:
        return _stream(predictor, options, rate, pcm_format, channels)
    _files(predictor, str(model_dir), audio, options, out_dir, formats, json_out)


def _check_formats(formats: str) -> None:
    from parrot_ser.inference.writers import get_writer

    for name in formats.split(","):
        get_writer(name.strip(), "timeline")


def _files(predictor, model: str, audio: list[str], options: dict, out_dir: Path | None, formats: str,
           json_out: bool) -> None:
    from parrot_ser.inference.inputs import collect_inputs
    from parrot_ser.inference.writers import timeline_doc

    items, problems = collect_inputs(audio)
    errors = [{"path": p.path, "error": p.error} for p in problems]
    timelines = []
    for it in items:
        t0 = time.perf_counter()
        try:
            tl = _analyze_with_progress(predictor, it.path, options)
        except ConfigError:
            raise  # a setting (--vad, --window) is wrong for every file: stop with its message
        except ParrotError as e:
            errors.append({"path": str(it.path), "error": str(e)})
            continue
        took = time.perf_counter() - t0
        err.print(f"{it.path}: {_mmss(tl.duration)} analysed in {took:.1f} s (real-time factor "
                  f"{took / max(tl.duration, 1e-9):.3f}), {tl.speech_seconds / max(tl.duration, 1e-9):.0%} speech, "
                  f"{len(tl.segments)} segments")
        timelines.append(tl)
        if out_dir is not None:
            _write(out_dir, it.path, timeline_doc(model, predictor.labels, [tl.to_dict()],
                                                  untrained_warnings(predictor.untrained), dims=_dims(predictor)),
                   formats)
        elif not json_out:
            _print_timeline(tl)
    if json_out:
        from parrot_ser.inference.writers import render

        write_stdout(render(timeline_doc(model, predictor.labels, [t.to_dict() for t in timelines],
                                         untrained_warnings(predictor.untrained), errors, _dims(predictor)), "json"))
    for e in errors:
        err.print(f"[bold red]error:[/] {escape(e['error'])}")
    if not timelines:
        raise typer.Exit(1)


def _analyze_with_progress(predictor, path: Path, options: dict):
    """analyze_file with a bar in audio seconds (a long recording takes minutes): the same blocks,
    counted as they pass to the analyzer."""
    from parrot_ser.audio import read_info
    from parrot_ser.cli.common import make_progress
    from parrot_ser.inference.timeline import analyze_blocks, file_blocks
    from parrot_ser.inference.vad import VAD_RATE

    total = read_info(path, max_seconds=float("inf")).duration
    with make_progress("s", disable=total < 60) as progress:
        task = progress.add_task(Path(path).name, total=int(total), rate="")
        t0 = time.perf_counter()

        def counted():
            done = 0.0
            for block in file_blocks(path):
                yield block
                done += len(block) / VAD_RATE
                rtf = (time.perf_counter() - t0) / max(done, 1e-9)
                progress.update(task, completed=min(int(done), int(total)), rate=f"RTF {rtf:.3f}")

        return analyze_blocks(predictor, counted(), str(path), **options)


def _write(out_dir: Path, path: Path, doc: dict, formats: str) -> None:
    from parrot_ser.files import atomic_path
    from parrot_ser.inference.writers import get_writer

    out_dir.mkdir(parents=True, exist_ok=True)
    for name in formats.split(","):
        w = get_writer(name.strip(), "timeline")
        target = out_dir / f"{Path(path).stem}.timeline{w.suffix}"
        with atomic_path(target) as tmp:
            tmp.write_bytes(w.render(doc))
        err.print(f"  wrote {target}")


def _mmss(seconds: float) -> str:
    from parrot_ser.inference.timeline_plot import mmss

    return mmss(seconds)


def _dims(predictor) -> list[str]:
    return list(getattr(predictor, "dims", None) or [])


def _print_timeline(tl) -> None:
    out.print(f"{tl.path}  ({_mmss(tl.duration)}, {len(tl.regions)} speech regions)")
    for s in tl.segments:
        top = sorted(s.probabilities.items(), key=lambda kv: -kv[1])[:2]
        facts = [f"{k} {v:.2f}" for k, v in top] + [f"{k} {v:.2f}" for k, v in s.dimensions.items()]
        head = f"{s.label:<10} " if s.label is not None else ""
        out.print(f"  {_clock(s.start)} - {_clock(s.end)}  {head}({', '.join(facts)}; {s.n_windows} window(s))")
    if not tl.segments:
        out.print("  no speech found")


def _clock(t: float) -> str:
    return f"{int(t) // 60:d}:{t % 60:04.1f}"


def _stream(predictor, options: dict, rate: int | None, pcm_format: str, channels: int) -> None:
    from parrot_ser.inference.streams import PcmFormat, pcm_blocks
    from parrot_ser.inference.timeline import TimelineAnalyzer

    fmt = PcmFormat(rate, pcm_format, channels) if rate is not None else None
    an = TimelineAnalyzer(predictor, eager=True, **options)
    src = sys.stdin.buffer

    def emit(segments) -> None:
        for s in segments:
            sys.stdout.write(json.dumps(s.to_dict()) + "\n")
        sys.stdout.flush()

    for block in pcm_blocks(src, fmt):
        emit(an.feed(block))
    emit(an.finish())
    tl = an.timeline("<stdin>")
    err.print(f"stream ended: {_mmss(tl.duration)} of audio, {len(tl.regions)} speech regions, "
              f"{len(tl.segments)} segments")
