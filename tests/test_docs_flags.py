"""Every command-line flag README.md and docs/*.md mention exists, spelled so, on the command they
mention it with (`parrot-ser train --foo` in a code block, `train --foo` in inline code): a renamed
or removed option otherwise lives on in the docs (issue 21's audit). Reads the click commands typer
builds, so it needs no subprocess and stays well under a second."""

from __future__ import annotations

import re
from pathlib import Path

import typer.main

from parrot_ser.cli.main import app

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
CLI = typer.main.get_command(app)


def _options(cmd) -> set[str]:  # noqa: ANN001
    return {"--help"} | {o for p in cmd.params for o in (*p.opts, *p.secondary_opts) if o.startswith("-")}


def _command_lines(text: str) -> list[tuple[int, str]]:
    """(line, the words after the program name) of every command the text shows: shell lines
    (`parrot-ser ...`, continuation backslashes joined) and inline code starting with a command."""
    found = [(m.start(), m.group(1).replace("\\", " "))
             for m in re.finditer(r"parrot-ser((?:(?:[ \t]|\\\n)+[^\s`|;&)\\]+)+)", text)]
    names = "|".join(map(re.escape, CLI.commands))
    found += [(m.start(), m.group(1)) for m in re.finditer(rf"`((?:{names}) [^`]*)`", text)]
    return [(text[:start].count("\n") + 1, words) for start, words in found]


def unknown_flags(text: str) -> list[str]:
    """'line: command flag' for each flag the command shown does not declare."""
    bad = []
    for line, words in _command_lines(text):
        cmd, path = CLI, []
        for w in words.split():
            if w not in getattr(cmd, "commands", {}):
                break
            cmd, path = cmd.commands[w], [*path, w]
        if not path:
            continue
        for w in words.split()[len(path):]:
            flag = w.strip("[]").split("=")[0].rstrip(",.:;'\"]")
            if re.fullmatch(r"--?[A-Za-z][\w-]*", flag) and flag not in _options(cmd):
                bad.append(f"{line}: parrot-ser {' '.join(path)} {flag}")
    return bad


def test_the_checker_sees_a_wrong_flag_in_each_form():
    text = ("```bash\nparrot-ser train --features f \\\n  --no-such-flag\n```\n"
            "Run `grid --engine ray`, `extract --lyaers 3` and `corpus list [--bogus]`.\n")
    assert unknown_flags(text) == ["2: parrot-ser train --no-such-flag", "5: parrot-ser extract --lyaers",
                                   "5: parrot-ser corpus list --bogus"]


def test_docs_mention_only_flags_the_commands_have():
    seen = sum(len(_command_lines(f.read_text(encoding="utf-8"))) for f in DOCS)
    assert seen > 50  # the docs show many commands: a broken pattern would check none
    bad = [f"{f.relative_to(ROOT)}:{b}" for f in DOCS for b in unknown_flags(f.read_text(encoding="utf-8"))]
    assert bad == [], "docs mention flags the command does not have (see `parrot-ser CMD --help`):\n" + "\n".join(bad)
