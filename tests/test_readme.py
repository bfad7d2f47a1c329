"""The README as a new user follows it (issue 20): its commands write only into folders git ignores
(item 16: `emodb.csv`, `feats/` and `model*/` landed unignored in the clone's root), and its claims
about the package match the repository."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _code_blocks() -> str:
    return "\n".join(re.findall(r"```(?:bash|python)\n(.*?)```", README, flags=re.S))


def _outputs() -> list[str]:
    code = _code_blocks()
    outs = re.findall(r"(?:--out|-o)\s+(\S+)", code)
    outs += re.findall(r"(?:save_pretrained|load_model)\(\"([^\"]+)\"", code)
    return [o for o in outs if not o.startswith(("/", "$", "<"))]


def test_readme_commands_write_only_into_ignored_folders():
    outs = _outputs()
    assert len(outs) >= 10 and "work/feats" in outs and "work/model" in outs
    ignored = subprocess.run(["git", "check-ignore", "--no-index", *outs], cwd=ROOT, capture_output=True,
                             text=True).stdout.split()
    assert sorted(set(outs) - set(ignored)) == []


def test_readme_says_how_to_install_and_counts_corpora_right():
    from parrot_ser.corpora import list_corpora

    assert "not published on PyPI" in README and "pip install parrot-ser\n" not in README
    assert "pip install --no-deps hearvalidator" in README  # the HEAR command and tests need it (item 5)
    generic = {"csv", "folders"}
    named = [name for name, _ in list_corpora() if name not in generic]
    words = {8: "Eight", 9: "Nine", 10: "Ten", 11: "Eleven", 12: "Twelve"}
    assert f"**{words[len(named)]} named corpora plus two generic readers**" in README, (
        f"README.md's 'What you get' bullet must count and list the {len(named)} named corpora: {named}")
