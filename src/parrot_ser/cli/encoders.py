"""`parrot-ser encoders list | convert`."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import typer

from parrot_ser.cli.common import err, guard, print_columns, print_json

app = typer.Typer(no_args_is_help=True, help="List and convert PTM encoders.")


@app.command("list")
@guard
def list_cmd(as_json: bool = typer.Option(False, "--json", help="A JSON list of spec objects on stdout.")) -> None:
    """Every registered encoder: family, kind, sample rate, widths, default checkpoint."""
    from parrot_ser.encoders.catalog import cached_specs

    specs = cached_specs()
    if specs is None:  # the snapshot is older than the sources: ask the (slow, torch-importing) registry
        from parrot_ser.encoders import list_specs

        specs = list_specs()
    if as_json:
        print_json([asdict(s) for s in specs])
        return
    rows = [("name", "family", "kind", "sr", "hidden", "layers", "pooled", "default checkpoint")]
    rows += [(s.name, s.family, s.kind, str(s.sample_rate), str(s.hidden_size), str(s.num_layers),
              str(s.pooled_dim), s.default_checkpoint or "-") for s in specs]
    print_columns(rows)


@app.command("convert")
@guard
def convert(
    src: Path = typer.Argument(..., help="Official checkpoint file (SSAM checkpoint-*.pth, SSAMBA *.pth) or the "
                                        "SSAM download folder (its latest checkpoints/checkpoint-<epoch>.pth)."),
    dst: Path = typer.Argument(..., help="Output (safetensors + JSON config)."),
) -> None:
    """Convert an official Mamba checkpoint into this package's safe format (no pickle needed to load)."""
    from parrot_ser.encoders.checkpoint import convert_checkpoint  # the Mamba families' converter

    result = convert_checkpoint(src, dst)
    err.print(f"converted {src} -> {result if result is not None else dst}")
