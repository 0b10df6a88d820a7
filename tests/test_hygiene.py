"""Nothing writes into the checkout or the working directory unasked."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

from chatplug.cli.commands import Command

from .conftest import ROOT


def test_bench_quick_leaves_the_committed_results_alone(tmp_path: Path) -> None:
    results = ROOT / "bench" / "results.json"
    before = hashlib.sha256(results.read_bytes()).hexdigest()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHATPLUG_")}
    run = subprocess.run([sys.executable, "-m", "bench", "--quick", "--only", "latency",
                          "--rounds", "1"], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "--quick: results not written" in run.stderr
    assert hashlib.sha256(results.read_bytes()).hexdigest() == before
    elsewhere = tmp_path / "quick.json"
    run = subprocess.run([sys.executable, "-m", "bench", "--quick", "--only", "latency",
                          "--rounds", "1", "--json", str(elsewhere)], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert elsewhere.stat().st_size > 0


def test_no_events_file_is_committed_or_written() -> None:
    assert not (ROOT / "chatplug-events.jsonl").exists()


def test_an_optional_command_that_is_not_installed_is_left_out(tmp_path: Path,
                                                                monkeypatch: object) -> None:
    (tmp_path / "extra_command.py").write_text(
        "def add_arguments(parser):\n    parser.add_argument('--n', type=int)\n"
        "def run(args):\n    return args.n\n")
    sys.path.insert(0, str(tmp_path))
    try:
        present = Command("extra", "extra_command", "an extra", optional=True)
        absent = Command("gone", "chatplug.no_such_part.command", "missing", optional=True)
        assert (present.available(), absent.available()) == (True, False)
        assert present.load().run(type("Args", (), {"n": 7})) == 7
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("extra_command", None)
