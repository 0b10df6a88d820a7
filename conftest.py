"""Makes ``python -m pytest`` self-sufficient, and keeps the checkout clean.

The example packages under ``examples/`` are tested as what they are: installed
distributions, found through their entry points like any third party's.  Those
not installed in this environment are installed for the test session only,
into a temporary directory put on ``sys.path`` and ``PYTHONPATH`` (so the
``chatplug`` subprocesses of the tests see them too) and removed afterwards:
never into the environment, never into the checkout (each is built from a copy).

Under pytest-xdist the workers inherit the controller's ``PYTHONPATH`` and so its
installed examples.

A test run must not leave files in the checkout (an events file, rewritten benchmark
results): a file that is neither tracked nor ignored and was not there before fails the run.
"""

from __future__ import annotations

import importlib
import os
import shutil
import subprocess
import sys
import tempfile
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent
_provisioned: list[str] = []
_untracked_before: set[str] | None = None


def _untracked() -> set[str] | None:
    """Files neither tracked nor ignored by git, or ``None`` outside a git checkout."""
    if shutil.which("git") is None:
        return None
    listing = subprocess.run(["git", "ls-files", "--others", "--exclude-standard", "-z"],
                             cwd=ROOT, capture_output=True, timeout=60)
    if listing.returncode != 0:
        return None
    return set(filter(None, listing.stdout.decode().split("\0")))


def _missing_examples() -> list[Path]:
    missing = []
    for project in sorted((ROOT / "examples").glob("*/pyproject.toml")):
        try:
            distribution(project.parent.name)  # each folder is named for its distribution
        except PackageNotFoundError:
            missing.append(project.parent)
    return missing


def pytest_configure(config: pytest.Config) -> None:
    global _untracked_before
    _untracked_before = _untracked()
    missing = _missing_examples()
    if not missing:
        return
    work = Path(tempfile.mkdtemp(prefix="chatplug-examples-"))
    _provisioned.append(str(work))
    copies = []
    for example in missing:
        copy = work / "src" / example.name
        shutil.copytree(example, copy, ignore=shutil.ignore_patterns(
            "__pycache__", "*.egg-info", "build", ".pytest_cache"))
        copies.append(str(copy))
    site = work / "site"
    result = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
         "--no-index", "--disable-pip-version-check", "--target", str(site), *copies],
        capture_output=True, text=True, timeout=600)
    if result.returncode != 0:
        raise pytest.UsageError(
            f"could not install the example packages for the tests:\n{result.stderr}\n"
            "Install them yourself: pip install -e examples/<name>")
    sys.path.insert(0, str(site))
    os.environ["PYTHONPATH"] = os.pathsep.join(
        [str(site), *filter(None, [os.environ.get("PYTHONPATH")])])
    importlib.invalidate_caches()


def pytest_report_header(config: pytest.Config) -> str | None:
    if _provisioned:
        return f"example packages installed for this session in {_provisioned[0]}"
    return None


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if hasattr(session.config, "workerinput"):
        # An xdist worker: the controller looks once all are done, since one worker's
        # test may have a file of its own there while another starts or ends.
        return
    after = _untracked()
    if _untracked_before is None or after is None:
        return
    left = sorted(after - _untracked_before)
    if left:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_sep("=", f"the tests left files in the checkout: {', '.join(left)}",
                               red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_unconfigure(config: pytest.Config) -> None:
    for path in _provisioned:
        shutil.rmtree(path, ignore_errors=True)
