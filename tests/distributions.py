"""Installed distributions as pip leaves them (modules plus ``.dist-info``), built in a test's
temporary site directory, so discovery runs through real ``importlib.metadata``."""

from __future__ import annotations

import textwrap
import uuid
from importlib.metadata import EntryPoint, distributions
from pathlib import Path

PROVIDER_GROUP = "chatplug.providers"
OBSERVER_GROUP = "chatplug.observers"

#: A working provider that talks to the scripted server's OpenAI route.
PROVIDER = '''
from chatplug import hookimpl
url = "http://127.0.0.1:9"
model = ["echo-1"]
supports_stream = True
needs_auth = False

@hookimpl
def create_completion(model, messages, stream, url, http):
    from chatplug.wire import openai
    yield from openai.chat(http, url + "/v1/chat/completions", model=model,
                           messages=messages, stream=stream)
'''

#: A working observer that remembers what it saw.
OBSERVER = '''
from chatplug import hookimpl
EVENTS = []

@hookimpl
def chatplug_on_request(provider, model, stream):
    EVENTS.append(("request", provider, model, stream))

@hookimpl
def chatplug_on_response(provider, pieces, outcome):
    EVENTS.append(("response", provider, pieces, outcome))
'''


def unique(prefix: str) -> str:
    """A module name no other test uses, so "was it imported?" has a clean answer."""
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


def make_distribution(
    site: Path,
    name: str,
    modules: dict[str, str],
    entry_points: dict[str, dict[str, str]],
    version: str = "1.2.3",
) -> None:
    """Write ``modules`` and a dist-info declaring ``{group: {entry name: module}}``."""
    site.mkdir(parents=True, exist_ok=True)
    for module, source in modules.items():
        (site / f"{module}.py").write_text(textwrap.dedent(source))
    info = site / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    sections = []
    for group, entries in entry_points.items():
        lines = "".join(f"{entry} = {target}\n" for entry, target in entries.items())
        sections.append(f"[{group}]\n{lines}")
    (info / "entry_points.txt").write_text("\n".join(sections))


def installed(site: Path, group: str) -> list[EntryPoint]:
    """The entry points of ``group`` in ``site``, with their distributions attached."""
    return [ep for dist in distributions(path=[str(site)]) for ep in dist.entry_points
            if ep.group == group]
