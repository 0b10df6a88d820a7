"""A plain ``pip install .`` gives the package ``chatplug`` and nothing generic."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import ROOT


@pytest.mark.slow
def test_regular_install_has_only_chatplug_and_works(tmp_path: Path) -> None:
    source = tmp_path / "source"
    source.mkdir()
    for part in ("core", "providers"):
        shutil.copytree(ROOT / part, source / part,
                        ignore=shutil.ignore_patterns("__pycache__"))
    for part in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / part, source / part)
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
         "--no-index", "--target", str(target), str(source)],
        check=True, capture_output=True, timeout=300,
    )
    top_level = {p.name for p in target.iterdir()} - {"bin"}
    assert top_level == {"chatplug", "chatplug-0.1.0.dist-info"}
    assert (target / "chatplug" / "py.typed").is_file()
    assert (target / "chatplug" / "providers" / "gravityengine.py").is_file()
    entry_points = (target / "chatplug-0.1.0.dist-info" / "entry_points.txt").read_text()
    assert "GravityEngine = chatplug.providers.gravityengine" in entry_points
    assert "chatplug = chatplug.cli:main" in entry_points

    probe = (
        "import chatplug, chatplug.providers, chatplug.testing, chatplug.wire.openai\n"
        "from chatplug import registry\n"
        "p = registry.get('GravityEngine')\n"
        "print(chatplug.__file__)\nprint(p.distribution, p.version)\nprint(p.params)\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"},
                            cwd=tmp_path, timeout=60, check=True)
    location, origin, params = result.stdout.splitlines()
    assert location.startswith(str(target))
    assert origin == "chatplug 0.1.0"
    assert params.startswith("chatplug.providers.gravityengine supports: (model: str")
