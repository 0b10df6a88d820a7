"""Cold start: wall time of fresh interpreters, and what they import.

Each command runs ``runs`` times; the commands take turns (rotating order) so
a burst of load on the shared machine hits all of them alike, and the median
is kept.  One untimed run of each first warms the page cache.  Besides the
times it records which heavy modules a command ends up importing
(``requests``, ``pydantic``...) and ``python -X importtime``'s biggest entries.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench import scenarios
from bench.stats import median

__all__ = [
    "BASELINE",
    "FIRST_REPLY",
    "FIRST_REPLY_BASELINE",
    "commands",
    "first_reply_commands",
    "import_probe",
    "importtime",
    "measure",
]

GET_CODE = "from chatplug import registry; registry.get('GravityEngine')"
#: The reference the targets are stated against.
BASELINE = "import requests, pluggy, pydantic_settings"
FIRST_REPLY = "chatplug: import + first reply"
FIRST_REPLY_BASELINE = "requests: import + first reply"
HEAVY = ("requests", "urllib3", "pydantic", "pydantic_settings", "pluggy", "chatplug.http",
         "chatplug.settings")
TIMEOUT = 120.0

_PROBE = """
import contextlib, io, json, sys
{action}
print(json.dumps({{name: name in sys.modules for name in {heavy!r}}}))
"""
_LIST = """
from chatplug.cli import main
with contextlib.redirect_stdout(io.StringIO()):
    main(["providers"])
"""


def console_script(name: str) -> str:
    """The venv's console script next to the running interpreter."""
    return str(Path(sys.executable).with_name(name))


def commands() -> dict[str, list[str]]:
    """The timed commands, by the label the report shows."""
    python = sys.executable
    return {
        "chatplug providers": [console_script("chatplug"), "providers"],
        "registry.get('GravityEngine')": [python, "-c", GET_CODE],
        "import requests": [python, "-c", "import requests"],
        BASELINE: [python, "-c", BASELINE],
    }


def _run(argv: list[str], env: dict[str, str], cwd: str) -> float:
    started = time.perf_counter()
    subprocess.run(argv, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   check=True, timeout=TIMEOUT)
    return time.perf_counter() - started


def first_reply_commands(url: str) -> dict[str, list[str]]:
    """Start, import and make one non-streamed call: chatplug, then plain ``requests``.

    chatplug's lazy imports move the cost of requests and pydantic from the
    import to the first call; this pair shows the total a short script pays.
    """
    scenario = scenarios.reply(8, 16)
    body = {"model": scenarios.MODEL, "messages": scenarios.messages(scenario), "stream": False}
    chatplug = (
        "from chatplug import registry; "
        f"registry.get('GravityEngine').create({scenarios.messages(scenario)!r})"
    )
    plain = (
        "import requests; "
        f"requests.post({url + scenarios.CHAT_PATH!r}, json={body!r}, timeout=(10, 60))"
        ".json()['choices'][0]['message']['content']"
    )
    return {
        FIRST_REPLY: [sys.executable, "-c", chatplug],
        FIRST_REPLY_BASELINE: [sys.executable, "-c", plain],
    }


def measure(
    runs: int, env: dict[str, str], cwd: str, table: dict[str, list[str]] | None = None
) -> dict[str, dict[str, Any]]:
    """Median wall time (ms) of each command over ``runs`` interleaved runs."""
    table = table or commands()
    labels = list(table)
    for label in labels:
        _run(table[label], env, cwd)  # page cache, .pyc files
    times: dict[str, list[float]] = {label: [] for label in labels}
    for index in range(runs):
        shift = index % len(labels)
        for label in labels[shift:] + labels[:shift]:
            times[label].append(_run(table[label], env, cwd))
    return {
        label: {
            "median_ms": median(values) * 1000,
            "min_ms": min(values) * 1000,
            "runs": len(values),
            "argv": [os.path.basename(table[label][0]), *table[label][1:]],
        }
        for label, values in times.items()
    }


def import_probe(env: dict[str, str], cwd: str) -> dict[str, dict[str, bool]]:
    """Which heavy modules ``registry.get`` and the providers listing leave in sys.modules."""
    actions = {"registry.get('GravityEngine')": GET_CODE, "chatplug providers": _LIST}
    found: dict[str, dict[str, bool]] = {}
    for label, action in actions.items():
        code = _PROBE.format(action=action, heavy=HEAVY)
        output = subprocess.run([sys.executable, "-c", code], env=env, cwd=cwd, check=True,
                                capture_output=True, text=True, timeout=TIMEOUT).stdout
        found[label] = json.loads(output.strip().splitlines()[-1])
    return found


def _parse_importtime(stderr: str) -> list[tuple[str, int, int, int]]:
    """``(module, depth, self_us, cumulative_us)`` for each ``-X importtime`` line."""
    rows = []
    for line in stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        fields = line[len("import time:"):].split("|")
        if len(fields) != 3:
            continue
        name = fields[2].rstrip()
        stripped = name.lstrip()
        depth = (len(name) - len(stripped) - 1) // 2
        rows.append((stripped, depth, int(fields[0]), int(fields[1])))
    return rows


def importtime(env: dict[str, str], cwd: str, repeat: int = 3, top: int = 15) -> dict[str, Any]:
    """The biggest ``-X importtime`` entries (median over ``repeat`` runs) per command."""
    python = sys.executable
    targets = {
        "registry.get('GravityEngine')": [python, "-X", "importtime", "-c", GET_CODE],
        "chatplug providers": [python, "-X", "importtime", console_script("chatplug"),
                               "providers"],
        BASELINE: [python, "-X", "importtime", "-c", BASELINE],
    }
    report: dict[str, Any] = {}
    for label, argv in targets.items():
        cumulative: dict[str, list[int]] = {}
        own: dict[str, list[int]] = {}
        depths: dict[str, int] = {}
        totals: list[int] = []
        for _ in range(repeat):
            stderr = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True,
                                    check=True, timeout=TIMEOUT).stderr
            rows = _parse_importtime(stderr)
            totals.append(sum(row[3] for row in rows if row[1] == 0))
            for name, depth, self_us, cumulative_us in rows:
                cumulative.setdefault(name, []).append(cumulative_us)
                own.setdefault(name, []).append(self_us)
                depths[name] = depth
        by_cumulative = sorted(cumulative, key=lambda n: -median(cumulative[n]))[:top]
        by_self = sorted(own, key=lambda n: -median(own[n]))[:top]
        report[label] = {
            "total_ms": median(totals) / 1000,
            "modules": len(cumulative),
            "top_cumulative": [
                {"module": n, "depth": depths[n], "cumulative_ms": median(cumulative[n]) / 1000,
                 "self_ms": median(own[n]) / 1000}
                for n in by_cumulative
            ],
            "top_self": [{"module": n, "self_ms": median(own[n]) / 1000} for n in by_self],
        }
    return report
