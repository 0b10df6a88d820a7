"""Test hygiene: no developer settings, and the working directory is a fresh temporary one
(an installed observer such as chatplug-jsonl-observer writes where it runs)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for key in list(os.environ):
        if key.startswith("CHATPLUG_") or key in ("OPENAI_API_KEY", "OPENAI_BASE_URL"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
