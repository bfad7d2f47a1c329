"""The ``parrot-ser`` command. Each command group lives in its own module next to this one."""

from __future__ import annotations

import warnings

import typer

from parrot_ser import __version__

app = typer.Typer(
    name="parrot-ser",
    help="PARROT-SER: speech emotion recognition with Mamba + attention PTM fusion.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"parrot-ser {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Show the version."),
) -> None:
    """Corpus -> audio -> frozen PTM features -> fusion models -> cross-validation -> exported model."""


def _one_line_warning(message, category, filename, lineno, line=None) -> str:
    # On the command line a warning is a message for the user, not a pointer into our source.
    return f"warning: {message}\n"


def _conventional_help() -> None:
    """Typer 0.2x help shows ``<bool>`` for flags (users then type ``--json true``, which fails) and
    writes required arguments as ``{root}`` in the usage line but ``root`` in the table, while our
    messages say ROOT. Show flags without a type and arguments as ROOT / [ROOT], as docs and errors do.
    Guarded: another typer version without these hooks keeps its own format."""
    import typer.core as tc

    opt, arg = getattr(tc, "TyperOption", None), getattr(tc, "TyperArgument", None)
    if opt is not None and hasattr(opt, "display_type_rich"):
        original = opt.display_type_rich

        def display_type_rich(self, ctx):  # noqa: ANN001, ANN202
            return None if getattr(self, "is_flag", False) and self.metavar is None else original(self, ctx)

        opt.display_type_rich = display_type_rich
    if arg is not None and hasattr(arg, "_usage_display_name") and isinstance(
            getattr(arg, "display_name_raw", None), property):
        arg.display_name_raw = property(lambda self: (self.metavar or self.name or "").upper())

        def usage(self) -> str:  # noqa: ANN001
            name = self.display_name_raw + ("..." if self.nargs != 1 else "")
            return name if self.required else f"[{name}]"

        arg._usage_display_name = usage


def _literal_brackets(group: typer.Typer) -> None:
    """Help texts are plain text, but typer renders them as rich markup, where ``parrot-ser[onnx]``
    is a style tag and vanishes from --help. Escape the brackets of every parameter and command help
    once, at registration, so the sources keep writing extras as users type them."""
    import inspect

    from rich.markup import escape
    from typer.models import ParameterInfo

    seen: set[int] = set()  # one OptionInfo can serve several commands: escape it once

    def fix(info) -> None:  # noqa: ANN001
        if id(info) not in seen and isinstance(getattr(info, "help", None), str):
            seen.add(id(info))
            info.help = escape(info.help)

    for cmd in group.registered_commands:
        fix(cmd)
        for par in inspect.signature(cmd.callback).parameters.values():
            if isinstance(par.default, ParameterInfo):
                fix(par.default)
    for sub in group.registered_groups:
        fix(sub)
        _literal_brackets(sub.typer_instance)


def _register() -> None:
    # Imported here so `parrot-ser --help` stays fast and each group stays in its own module.
    _conventional_help()
    from parrot_ser.cli import analyze, corpus, demo, encoders, extract, inference, models, serve, train

    app.add_typer(corpus.app, name="corpus", help="List, inspect and export SER corpora.")
    app.add_typer(encoders.app, name="encoders", help="List and convert PTM encoders.")
    app.add_typer(models.app, name="models", help="List the models and their settings.")
    app.command("extract", help="Extract frozen PTM features into a resumable store.")(extract.extract)
    app.command("train", help="Cross-validate one model on stored features.")(train.train)
    app.command("grid", help="Every encoder / pair x every model, paper-style tables.")(train.grid)
    app.command("export", help="Export a trained run as a self-describing model bundle.")(inference.export)
    app.command("predict", help="Predict emotions for audio files with an exported model.")(inference.predict)
    app.command("analyze", help="Emotion over time: speech regions, windows, a merged timeline.")(analyze.analyze)
    app.command("serve", help="Serve an exported model over HTTP (FastAPI).")(serve.serve)
    app.command("demo", help="Offline end-to-end demo on a synthetic acted-prosody corpus.")(demo.demo)
    _literal_brackets(app)


_register()


def main() -> None:
    # Set here, in the console entry point, so importing the CLI module changes nothing globally.
    warnings.formatwarning = _one_line_warning
    app()


if __name__ == "__main__":
    main()
