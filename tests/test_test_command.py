"""The test command itself: it runs wherever a contributor starts it (SIGINT ignored by a
script's `&`), installs what most contributors need, and CI still runs Ray's tests."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

from .conftest import ROOT

#: Every test that stops a child with Ctrl-C (SIGINT, or ^C on a terminal).
CTRL_C_TESTS = [
    "tests/test_cli.py::test_ctrl_c_exits_130_and_closes_the_stream",
    "tests/test_cli_chat.py::test_ctrl_c_stops_the_reply_and_the_chat_goes_on",
    "tests/test_batch.py::test_ctrl_c_cancels_requests_in_flight_exits_130_and_the_rerun_resumes",
    "tests/test_batch.py::test_a_second_run_on_the_same_output_is_refused",
]


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # as `python -m pytest &` in a script


def test_every_ctrl_c_test_is_listed() -> None:
    senders = set()
    for path in sorted((ROOT / "tests").glob("test_*.py")):
        if path.name == "test_test_command.py":
            continue
        text = path.read_text(encoding="utf-8")
        for match in re.finditer(r"^def (test_\w+)\(.*?(?=^def |\Z)", text, re.M | re.S):
            if "SIGINT" in match.group(0) or r'"\x03"' in match.group(0):
                senders.add(f"tests/{path.name}::{match.group(1)}")
    assert senders == set(CTRL_C_TESTS)


def test_ctrl_c_tests_pass_under_a_pytest_started_with_sigint_ignored() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *CTRL_C_TESTS],
        cwd=ROOT, capture_output=True, text=True, timeout=300, preexec_fn=_ignore_sigint)
    assert result.returncode == 0, result.stdout[-3000:]
    assert f"{len(CTRL_C_TESTS)} passed" in result.stdout


def test_the_test_extra_leaves_ray_out_and_ci_runs_its_tests() -> None:
    pyproject = (ROOT / "pyproject.toml").read_text()
    test = re.search(r"^test = \[(.*?)^\]", pyproject, re.M | re.S)
    assert test is not None
    requirements = [line.split("#")[0] for line in test.group(1).splitlines()]
    assert not any("ray" in requirement.lower() for requirement in requirements)
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    # Ray goes in before the README's command, which then runs as written; there a Ray
    # test that would skip fails.
    readme_command = 'pip install -e ".[test]" && python -m pytest'
    assert ci.index('pip install -e ".[ray,test]"') < ci.index(readme_command)
    assert ci.index("export CHATPLUG_REQUIRE_RAY=1") < ci.index(readme_command)


def _without_ray(tmp_path: Path, **extra: str) -> subprocess.Popen[str]:
    """tests/test_ray.py started where ``import ray`` fails (a package that refuses to load
    stands in front of the installed one); ``communicate()`` gives its output."""
    hidden = tmp_path / "hidden" / "ray"
    hidden.mkdir(parents=True)
    (hidden / "__init__.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'ray'\", name='ray')\n")
    env = {k: v for k, v in os.environ.items() if k != "CHATPLUG_REQUIRE_RAY"}
    # In front of this session's PYTHONPATH, which holds the example packages the root
    # conftest installed (so the child need not install them again).
    env.update(PYTHONPATH=os.pathsep.join(filter(None, [str(hidden.parent),
                                                        os.environ.get("PYTHONPATH")])),
               **extra)
    return subprocess.Popen(
        # With one test beside them: a session of skipped modules alone collects nothing,
        # which this suite turns into a failure on purpose.  -n 0: two tests need no
        # workers of their own.
        [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", "-n", "0",
         "tests/test_ray.py", "tests/test_test_command.py", "-k", "500_rows or listed"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)


def test_ray_tests_skip_with_a_reason_without_ray_and_fail_where_ci_requires_them(
        tmp_path: Path) -> None:
    # Both sessions at once: each mostly waits on its own start-up.
    runs = [_without_ray(tmp_path), _without_ray(tmp_path / "ci", CHATPLUG_REQUIRE_RAY="1")]
    try:
        skipped, required = (run.communicate(timeout=300)[0] for run in runs)
    finally:
        for run in runs:
            run.kill()
            run.wait()
    assert runs[0].returncode == 0, skipped[-2000:]
    assert "skipped" in skipped
    assert "Ray is not installed" in skipped
    assert runs[1].returncode == 1, required[-2000:]
    assert "skipped" not in required
