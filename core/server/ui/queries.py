"""What the ``/ui`` page shows, read from the gateway's database (:mod:`chatplug.accounting`):
usage by day, usage by key and model, the keys and their limits, the last errors.

Plain SQL valid in SQLite and PostgreSQL, bounded by a time window and a row limit; it
blocks, so the page runs it on a worker thread.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ...accounting.database import Database

__all__ = ["DAYS", "Overview", "read_overview"]

#: Days of usage the page shows.
DAYS = 14
#: Rows of each table at most.
LIMIT = 50

_DAY_SQLITE = "CAST(ts / 86400 AS INTEGER)"
_DAY_POSTGRESQL = "CAST(FLOOR(ts / 86400) AS BIGINT)"
_SUMS = ("COUNT(*), SUM(COALESCE(input_tokens, 0)), SUM(COALESCE(output_tokens, 0)), "
         "SUM(COALESCE(cost_usd, 0))")


@dataclass
class Overview:
    """The page's figures.  ``days``: (day number since the epoch, requests, input
    tokens, output tokens, USD); ``by_key_model``: (key id, provider, model, requests,
    input, output, USD); ``keys``: rows of ``virtual_keys``; ``errors``: the last
    usage rows with an error type."""

    since: float
    days: list[tuple[int, int, int, int, float]] = field(default_factory=list)
    by_key_model: list[tuple[Any, ...]] = field(default_factory=list)
    keys: list[dict[str, Any]] = field(default_factory=list)
    errors: list[tuple[Any, ...]] = field(default_factory=list)

    def key_names(self) -> dict[str, str]:
        return {str(key["id"]): str(key["name"]) for key in self.keys}


_KEY_COLUMNS = ("id", "name", "models", "rpm", "tpm", "max_parallel", "budget_tokens",
                "budget_usd", "budget_period", "created_at", "expires_at", "revoked_at")


def read_overview(database: Database, now: float | None = None) -> Overview:
    """Read the page's figures for the last :data:`DAYS` days.

    :raises StorageError: the database cannot be read.
    """
    now = time.time() if now is None else now
    first_day = int(now // 86400) - DAYS + 1
    since = first_day * 86400.0
    day = _DAY_POSTGRESQL if database.dialect == "postgresql" else _DAY_SQLITE
    overview = Overview(since)
    overview.days = [
        (int(d), int(n), int(i or 0), int(o or 0), float(c or 0))
        for d, n, i, o, c in database.execute(
            f"SELECT {day} AS day, {_SUMS} FROM usage WHERE ts >= ? GROUP BY {day} "
            "ORDER BY day", (since,))]
    overview.by_key_model = database.execute(
        f"SELECT key_id, provider, model, {_SUMS} FROM usage WHERE ts >= ? "
        "GROUP BY key_id, provider, model "
        "ORDER BY SUM(COALESCE(input_tokens, 0)) + SUM(COALESCE(output_tokens, 0)) DESC, "
        f"COUNT(*) DESC LIMIT {LIMIT}", (since,))
    overview.keys = [dict(zip(_KEY_COLUMNS, row, strict=True)) for row in database.execute(
        f"SELECT {', '.join(_KEY_COLUMNS)} FROM virtual_keys "
        f"ORDER BY created_at DESC LIMIT {LIMIT * 4}")]
    overview.errors = database.execute(
        "SELECT ts, key_id, endpoint, requested_model, provider, model, status, "
        "error_type, request_id FROM usage WHERE error_type IS NOT NULL "
        f"ORDER BY ts DESC LIMIT {LIMIT}")
    return overview
