"""The provider pages' code blocks run as written, against the scripted server."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from chatplug.testing import ScriptedServer

from .conftest import ROOT

FENCE = re.compile(r"^```python\n(.*?)^```$", re.MULTILINE | re.DOTALL)


@pytest.mark.parametrize("page", ["anthropic", "gemini"])
def test_the_python_blocks_run(page: str, chatplug_server: ScriptedServer,
                               tmp_path: object) -> None:
    blocks = FENCE.findall((ROOT / "docs" / f"{page}.md").read_text(encoding="utf-8"))
    assert blocks, f"docs/{page}.md has no python block"
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("CHATPLUG_", "ANTHROPIC_", "GOOGLE_", "GEMINI_"))}
    name = page.upper()
    env.update({f"CHATPLUG_{name}_URL": chatplug_server.url,
                f"CHATPLUG_{name}_API_KEY": "docs-test-key-0000",
                "CHATPLUG_HOME": str(tmp_path), "CHATPLUG_LOG": "off"})
    for block in blocks:
        chatplug_server.add(text="Hello from the docs.")
        done = subprocess.run([sys.executable, "-c", block], env=env, capture_output=True,
                              text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith("Hello from the docs. stop "), done.stdout
    assert chatplug_server.requests[-1].headers.get(
        "x-api-key" if page == "anthropic" else "x-goog-api-key") == "docs-test-key-0000"
