"""`parrot-ser models list | show`: the registered models (fusion/registry.py) and their config keys,
the names `train --model`, `grid --models` and `--model-option` take."""

from __future__ import annotations

import typer

from parrot_ser.cli.common import guard, out, print_columns, print_json

app = typer.Typer(no_args_is_help=True, help="List the models and their settings.")


def _type_name(t: object) -> str:
    if getattr(t, "__args__", None):  # tuple[int, ...], int | None: the full spelling
        return str(t).replace("typing.", "")
    return getattr(t, "__name__", None) or str(t)


@app.command("list")
@guard
def list_cmd(as_json: bool = typer.Option(False, "--json", help="A JSON list of model specs on stdout.")) -> None:
    """Every registered model: encoder inputs, whether a prediction depends on its batch mates (the
    paper's batch-level OT), whether it takes frame features (--frames), what it is."""
    from dataclasses import asdict

    from parrot_ser.fusion import list_models

    specs = list_models()
    if as_json:
        print_json([asdict(s) for s in specs])
        return
    rows = [("name", "inputs", "batch-dependent", "frames", "description")]
    rows += [(s.name, str(s.n_inputs), "yes" if s.batch_dependent else "no", "yes" if s.uses_frames else "no",
              s.description) for s in specs]
    print_columns(rows)
    out.print("settings of one model: parrot-ser models show NAME (set them with --model-option KEY=VALUE)",
              markup=False)


@app.command("show")
@guard
def show(name: str = typer.Argument(..., help="Model name (parrot-ser models list)."),
         as_json: bool = typer.Option(False, "--json", help="The model spec and its keys as JSON on stdout.")) -> None:
    """One model's config keys: type and default (the paper's where it gives one). Set them with
    `train/grid --model-option KEY=VALUE` (or `MODEL.KEY=VALUE` for one model of a grid) or YAML `model:`."""
    from dataclasses import asdict

    from parrot_ser.files import json_default
    from parrot_ser.fusion import config_options, get_model_spec

    spec = get_model_spec(name)  # an unknown name: "unknown model ...; known: ..." (one line, exit 2)
    opts = config_options(name)
    if as_json:
        import json

        keys = {k: {"type": _type_name(o.type), "default": json.loads(json.dumps(o.default, default=json_default))}
                for k, o in opts.items()}
        print_json({**asdict(spec), "config": keys})
        return
    out.print(f"{spec.name}: {spec.description}", markup=False)
    print_columns([("key", "type", "default")] + [(k, _type_name(o.type), repr(o.default)) for k, o in opts.items()])
    from parrot_ser.models.head import FROM_INPUTS

    derived = [k for k in (*FROM_INPUTS, "position") if k in opts]
    out.print(f"{', '.join(derived)}: set by train --layer / --frames and the feature store (leave them)",
              markup=False)
