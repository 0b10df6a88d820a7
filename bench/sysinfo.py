"""What a result was measured on: machine, interpreter, packages, plugins, load, commit.

Absolute figures are only comparable on the same machine under the same
load, so every ``results.json`` records them next to the figures.
"""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

__all__ = ["chatplug_plugins", "machine_info"]

PLUGIN_GROUPS = ("chatplug.providers", "chatplug.observers")
PACKAGES = ("chatplug", "requests", "urllib3", "pluggy", "pydantic", "pydantic-settings")


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _commit(repo: Path) -> str | None:
    try:
        done = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True,
                              text=True, timeout=10, check=False)
    except OSError:
        return None
    return done.stdout.strip() or None


def _cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def chatplug_plugins() -> dict[str, list[str]]:
    """The installed chatplug entry points, ``group: ["name (distribution)", ...]``."""
    found: dict[str, list[str]] = {}
    for group in PLUGIN_GROUPS:
        for entry in metadata.entry_points(group=group):
            dist = getattr(entry, "dist", None)
            owner = getattr(dist, "name", None) or "?"
            found.setdefault(group, []).append(f"{entry.name} ({owner})")
    return found


def machine_info(repo: Path) -> dict[str, Any]:
    """The metadata block of ``results.json``."""
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "executable": sys.executable,
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "packages": {name: _version(name) for name in PACKAGES},
        "chatplug_plugins": chatplug_plugins(),
        "commit": _commit(repo),
    }
