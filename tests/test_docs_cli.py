"""docs/cli.md stays true: every command has its section, every command line in its example
sessions is one the real parser accepts, and its Python block runs."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from chatplug.cli.commands import COMMANDS, _parser, _requested
from chatplug.cli.interactive import COMMANDS as CHAT_COMMANDS

from .conftest import ROOT

GUIDE = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
FENCE = re.compile(r"^```(\w*)\n(.*?)^```$", re.MULTILINE | re.DOTALL)


def command_lines() -> list[str]:
    lines = []
    for match in FENCE.finditer(GUIDE):
        if match.group(1) == "console":
            lines += [line[2:] for line in match.group(2).splitlines() if line.startswith("$ ")]
    return lines


def test_every_command_has_a_section() -> None:
    for command in COMMANDS:
        if not command.optional:
            assert f"\n## {command.name}\n" in GUIDE, command.name
            assert f"[`{command.name}`](#{command.name})" in GUIDE, command.name


def _words(line: str) -> list[str]:
    return shlex.split(line.split("|")[-1].replace("&", ""))


# Only the chatplug commands: the guide's sessions also start the demo server and export.
@pytest.mark.parametrize("line", [line for line in command_lines()
                                  if _words(line)[:1] == ["chatplug"]])
def test_each_example_command_parses(line: str) -> None:
    words = _words(line)
    chosen = _requested(words[1:])
    assert chosen is not None, line
    parser, _ = _parser(chosen)
    try:
        parser.parse_args(words[1:])
    except SystemExit as exc:
        pytest.fail(f"docs/cli.md: `{line}` does not parse (exit {exc.code})")


def test_the_interactive_commands_are_the_documented_ones() -> None:
    for name in CHAT_COMMANDS:
        assert f"`{name}`" in GUIDE, name


def test_the_python_block_runs(tmp_path: Path) -> None:
    [code] = [m.group(2) for m in FENCE.finditer(GUIDE) if m.group(1) == "python"]
    script = tmp_path / "opt_in.py"
    script.write_text(code + '\nprint("logs" in [o.name for o in registry.observers()])\n',
                      encoding="utf-8")
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                            env=dict(os.environ), timeout=60, cwd=tmp_path)
    assert (result.returncode, result.stdout) == (0, "True\n"), result.stderr
