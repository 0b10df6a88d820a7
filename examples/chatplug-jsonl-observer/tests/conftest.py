"""Test hygiene: no developer settings, and the working directory is a fresh temporary one
(an installed observer such as chatplug-jsonl-observer writes where it runs)."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _isolated(chatplug_isolated: None) -> None:
    """chatplug's own fixture: no developer settings, a fresh working directory."""
