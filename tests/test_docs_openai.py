"""docs/openai.md: its parameter table is the declaration's, and its Python block runs."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from chatplug import registry
from chatplug.calls.chat_params import ChatParameters
from chatplug.hooks import CORE_ARGUMENTS
from chatplug.testing import ScriptedServer

from .conftest import ROOT

PAGE = ROOT / "docs" / "openai.md"
TABLE = re.compile(r"<!-- parameters: generated from ChatParameters -->\n(.*?)"
                   r"<!-- end of parameters -->", re.DOTALL)
FENCE = re.compile(r"^```python\n(.*?)^```$", re.MULTILINE | re.DOTALL)


def generated_table() -> str:
    """The table as the OpenAI provider's declared parameters give it."""
    rows = ["| parameter | type |", "|---|---|"]
    for parameter in registry.get("OpenAI").parameters:
        if parameter.name not in CORE_ARGUMENTS:
            kind = parameter.type.removesuffix(" | None").replace(" | ", " or ")
            rows.append(f"| `{parameter.name}` | `{kind}` |")
    return "\n".join(rows) + "\n"


def test_the_parameter_table_is_the_declaration() -> None:
    found = TABLE.search(PAGE.read_text(encoding="utf-8"))
    assert found is not None, "docs/openai.md lost its generated parameter table"
    assert found.group(1) == generated_table(), (
        "docs/openai.md's table differs from ChatParameters; paste this:\n" + generated_table())
    declared = {p.name for p in registry.get("OpenAI").parameters} - set(CORE_ARGUMENTS)
    assert declared == set(ChatParameters.__annotations__)


def test_the_python_block_runs(chatplug_server: ScriptedServer, tmp_path: Path) -> None:
    [block] = FENCE.findall(PAGE.read_text(encoding="utf-8"))
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("CHATPLUG_", "OPENAI_"))}
    env.update(CHATPLUG_OPENAI_URL=chatplug_server.url + "/v1",
               CHATPLUG_OPENAI_API_KEY="docs-test-key-0000", CHATPLUG_HOME=str(tmp_path),
               CHATPLUG_LOG="off")
    chatplug_server.add(text="Blue", choices=["Green"])
    chatplug_server.add(text="Red", choices=["Teal"])
    done = subprocess.run([sys.executable, "-c", block], env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[:2] == ["0 Blue stop", "1 Green stop"]
    assert "'token': 'Green'" in lines[2]
    assert lines[3:] == ["1 Teal", "1 Finish(reason='stop', native=None, stop_sequence=None)",
                         "Teal"]
    first = chatplug_server.requests[0].json
    assert (first["n"], first["logprobs"], first["top_logprobs"],
            first["max_completion_tokens"]) == (2, True, 2, 20)
