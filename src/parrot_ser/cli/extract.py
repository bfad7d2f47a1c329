"""`parrot-ser extract`: frozen encoder features into a resumable store.

    parrot-ser extract /data/emodb --corpus emodb --encoder logmel --encoder hubert-base --out feats/
    parrot-ser extract --manifest m.csv --encoder hubert-base --checkpoint hubert-base=/models/hubert --out feats/

Rerunning the same command resumes where it stopped; bad audio files are skipped and listed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.markup import escape

from parrot_ser.cli.common import (
    check_out_dir,
    err,
    guard,
    make_progress,
    os_error_message,
    parse_checkpoints,
    print_json,
    warn_untrained,
)
from parrot_ser.errors import ConfigError, FeatureStoreError


def _parse_options(items: list[str], encoders: list[str]) -> dict[str, dict]:
    """NAME:KEY=VALUE -> {NAME: {KEY: "VALUE"}}; build_encoder types the values (registry.typed_value)."""
    from parrot_ser.registry import parse_key_values

    out: dict[str, dict] = {n: {} for n in encoders}
    for it in items:
        name, sep1, kv = it.partition(":")
        if not sep1 or not name:
            raise ConfigError(f"--option expects NAME:KEY=VALUE (e.g. ssam-base:corrected_grouping=true); got {it!r}")
        if name not in encoders:
            raise ConfigError(f"--option {it}: {name!r} is not one of the --encoder names ({', '.join(encoders)})")
        out[name].update(parse_key_values([kv], "--option", form="NAME:KEY=VALUE", option_keys=False))
    return out


def _load_manifest(manifest: Path | None, root: Path | None, corpus: str | None, corpus_option: list[str],
                   labels: str | None = None, label_map: Path | None = None):
    from parrot_ser.cli.corpus import scan_from_cli
    from parrot_ser.corpora import Manifest

    if manifest is not None:
        if root is not None or corpus is not None or corpus_option:
            raise ConfigError("give either --manifest M or ROOT --corpus NAME [--corpus-option K=V], not both")
        from parrot_ser.corpora.base import check_labelled

        man = Manifest.from_csv(manifest)
        if labels is not None or label_map is not None:  # relabel a written manifest (asis: its original_label)
            from parrot_ser.corpora.labels import apply_labels, load_label_map

            man = apply_labels(man, labels or (man.label_policy.get("mode") or "canonical"),
                               load_label_map(label_map) if label_map else None, str(label_map or ""))
            err.print(man.label_policy["note"], markup=False)
        check_labelled(man, manifest)  # a store only holds trainable rows: say which are not, before any work
        return man
    if root is None or corpus is None:
        raise ConfigError("give --manifest M, or a corpus ROOT with --corpus NAME")
    return scan_from_cli(root, corpus, corpus_option, labels=labels, label_map=label_map)


def _check_arguments(out_dir: Path, device: str, dtype: str, engine: str, encoder: list[str], checkpoint: list[str],
                     option: list[str]) -> tuple[list[str], dict[str, str], dict[str, dict]]:
    """Everything checkable before a corpus is scanned -> (encoder names, checkpoints, options)."""
    from parrot_ser.device import check_device
    from parrot_ser.encoders import get_spec
    from parrot_ser.raycluster import check_engine

    check_out_dir(out_dir)
    check_device(device)  # before scanning a corpus, not after
    if dtype not in ("float16", "float32"):
        raise ConfigError(f"--dtype must be float16 or float32; got {dtype!r}")
    check_engine(engine)
    names = list(dict.fromkeys(encoder))
    for n in names:
        get_spec(n)  # unknown names fail before any work
    return names, parse_checkpoints(checkpoint, names), _parse_options(option, names)


def _announce_untrained(name: str, enc: Any) -> None:
    from parrot_ser.training.run import tiny_stand_in_note

    warn_untrained([name])
    note = tiny_stand_in_note(name, {"identity": {"random_init": True, "preprocessing": enc.identity.preprocessing}})
    if note:  # without a local config the real architecture is unknown offline: say what was built
        err.print(f"[bold yellow]{escape(note)}[/]")


@guard
def extract(
    root: Path | None = typer.Argument(None, help="Corpus root (with --corpus).", show_default=False),
    corpus: str | None = typer.Option(None, "--corpus", "-c", help="Corpus name (see `parrot-ser corpus list`)."),
    manifest: Path | None = typer.Option(None, "--manifest", "-m", help="Manifest CSV (instead of ROOT --corpus)."),
    corpus_option: list[str] = typer.Option([], "--corpus-option", help="KEY=VALUE option of the corpus scanner "
                                            "(see `parrot-ser corpus list`); repeat for several."),
    labels: str | None = typer.Option(None, "--labels", help="canonical | asis: label names (see `parrot-ser corpus "
                                      "inspect --help`); recorded in the store."),
    label_map: Path | None = typer.Option(None, "--label-map", help="YAML/JSON label: new_label file (merge, rename; "
                                          "null drops), applied after --labels; recorded in the store."),
    encoder: list[str] = typer.Option(..., "--encoder", "-e", help="Encoder name; repeat for several "
                                                                   "(see `parrot-ser encoders list`)."),
    out_dir: Path = typer.Option(..., "--out", "-o", help="Feature store folder (created or extended)."),
    frames: bool = typer.Option(False, "--frames", help="Also store frame-level features (ragged)."),
    layers: str = typer.Option("last", "--layers", help="Hidden states to store: last | all | 3 | 3,6,9 (indices; 0 = embeddings / CNN output)."),
    checkpoint: list[str] = typer.Option([], "--checkpoint", help="NAME=PATH|HF_ID: weights for one encoder "
                                                                  "(local dir, HF id in the local cache, or file)."),
    option: list[str] = typer.Option([], "--option", help="NAME:KEY=VALUE encoder option, e.g. "
                                     "ssam-base:corrected_grouping=true, ssamba-base:pooling=cls, ssam-tiny:depth=2."),
    random_init: bool = typer.Option(False, "--random-init", help="UNTRAINED seeded weights (for tests/smoke runs)."),
    seed: int = typer.Option(0, "--seed", help="Seed of --random-init weights."),
    device: str = typer.Option("cpu", "--device", help="torch device, e.g. cpu, cuda, cuda:1."),
    dtype: str = typer.Option("float32", "--dtype", help="Storage dtype: float16 | float32."),
    batch_seconds: float = typer.Option(64.0, "--batch-seconds", min=0.1, help="Cap of padded audio seconds per batch."),
    threads: int | None = typer.Option(None, "--threads", min=1, help="torch CPU threads per worker (default 1)."),
    workers: int | None = typer.Option(None, "--workers", min=1, help="Worker processes that each load the "
                                       "encoder and encode whole chunks (default: one per core // --threads, at "
                                       "most one per chunk; 1 = in this process, as are CUDA and logmel)."),
    chunk_size: int = typer.Option(128, "--chunk-size", min=1, help="Utterances per committed (resumable) chunk."),
    as_json: bool = typer.Option(False, "--json", help="Reports as one JSON object on stdout."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
    wait: bool = typer.Option(False, "--wait", help="If another extract is writing this store, wait for it "
                              "instead of stopping."),
    engine: str = typer.Option("local", "--engine", help="local | ray: chunks encoded by Ray actors that load the "
                               "encoder once each; this process stays the only writer of the store."),
    address: str | None = typer.Option(None, "--address", help="Ray cluster address (ray start --head prints it; "
                                       "'auto' = the local cluster). Default: a local Ray instance."),
    actors: int | None = typer.Option(None, "--actors", min=1, help="Ray encoder actors (default: one per "
                                      "--threads CPUs of the cluster, one per GPU with --device cuda)."),
) -> None:
    """Extract frozen PTM features for a corpus into a resumable, memory-mappable store."""
    from parrot_ser.encoders import build_encoder, parse_layers
    from parrot_ser.features import extract_features

    names, ckpts, options = _check_arguments(out_dir, device, dtype, engine, encoder, checkpoint, option)
    import torch

    torch.set_num_threads(threads or 1)  # more threads per process oversubscribe a busy machine: workers
    layer_choice = parse_layers(layers)
    man = _load_manifest(manifest, root, corpus, corpus_option, labels, label_map)
    if len(man) == 0:
        raise ConfigError(f"{manifest or root}: the manifest has no utterances")
    reports = {}
    for n in names:
        enc = build_encoder(n, checkpoint=ckpts.get(n), layers=layer_choice, random_init=random_init, seed=seed,
                            device=device, **options[n])
        if enc.identity.random_init:
            _announce_untrained(n, enc)
        build = {"name": n, "checkpoint": ckpts.get(n), "layers": layer_choice, "random_init": random_init,
                 "seed": seed, "device": device, **options[n]}
        remote = _local_workers(build, workers, threads, device)
        if engine == "ray":
            from parrot_ser.features.distributed import RayChunkRunner

            remote = RayChunkRunner(build, address=address, threads=threads or 1, n_actors=actors)
        try:
            rep = extract_features(man, enc, out_dir, frames=frames, dtype=dtype, batch_seconds=batch_seconds,
                                   chunk_size=chunk_size, progress=None if quiet else make_progress, wait=wait,
                                   remote=remote)
        except OSError as e:  # disk full, read-only, no permission: name the store; chunks are kept
            raise FeatureStoreError(f"feature store {out_dir} ({n}): {os_error_message(e)}") from None
        finally:
            if engine == "ray":
                remote.close()
        reports[n] = rep
        _summary(n, rep, out_dir)
        del enc
    if as_json:
        print_json({"store": str(out_dir), "encoders": {n: _brief(r) for n, r in reports.items()}})


def _local_workers(build: dict, workers: int | None, threads: int | None, device: str):
    """A factory the writer calls with the number of chunks left: worker processes, or None (here)."""

    def make(n_chunks: int, encoder):  # noqa: ANN001
        from parrot_ser.encoders import get_spec
        from parrot_ser.features.pool import ProcessChunkRunner, extraction_workers

        n = extraction_workers(workers, threads, n_chunks, device,
                               handcrafted=get_spec(build["name"]).kind == "handcrafted")
        return ProcessChunkRunner(build, n_workers=n, threads=threads or 1, encoder=encoder) if n > 1 else None

    return make


def _brief(rep: dict) -> dict:
    last = rep.get("last_run", {})
    return {"n_requested": rep["n_requested"], "n_ok": rep["n_ok"], "n_skipped": rep["n_skipped"],
            "skipped": rep["skipped"], "computed_this_run": rep.get("computed_this_run"),
            "resumed": rep.get("resumed"), "up_to_date": rep.get("up_to_date"), "random_init": rep.get("random_init"),
            "utt_per_s": last.get("utt_per_s"), "real_time_factor": last.get("real_time_factor"),
            "padding_waste": last.get("padding_waste"), "outside_forward_share": last.get("outside_forward_share")}


def _summary(name: str, rep: dict, out_dir: Path) -> None:
    b = _brief(rep)
    if b["up_to_date"]:
        err.print(f"{name}: up to date ({b['n_ok']} utterances, {b['n_skipped']} skipped) in {out_dir}")
    elif not b["computed_this_run"]:  # a resume whose chunks were all committed: no rate to speak of
        err.print(f"{name}: {b['n_ok']} utterances in {out_dir / name} (all {b['resumed']} from committed chunks, "
                  f"none computed now)")
    else:
        rtf = b["real_time_factor"]
        err.print(f"{name}: {b['n_ok']} utterances in {out_dir / name} (computed now {b['computed_this_run']}, "
                  f"resumed {b['resumed']}); {b['utt_per_s'] or 0:.1f} utt/s, real-time factor "
                  f"{rtf if rtf is not None else float('nan'):.4f}, padding waste {(b['padding_waste'] or 0):.1%}")
    if b["random_init"]:
        warn_untrained([name])  # printed once: already said when the encoder was built
    if b["n_skipped"]:
        err.print(f"[yellow]{name}: skipped {b['n_skipped']} bad file(s):[/]")
        for s in rep["skipped"][:20]:
            err.print(f"  {s['error']}", markup=False)
        if b["n_skipped"] > 20:
            err.print(f"  ... and {b['n_skipped'] - 20} more (see {out_dir / name / 'report.json'})")
