"""``chatplug gateway usage [--by key|model|provider|day] [--since WHEN] [--json]``: what
the gateway's usage ledger holds, summed up (docs/ledger.md), from its database
(``CHATPLUG_SERVER_DATABASE_URL``, else ``gateway.db`` in chatplug's data directory)."""

from __future__ import annotations

import argparse
import re
import time
from datetime import datetime, timezone
from typing import Any

from .output import Output, UsageError, print_json, table

__all__ = ["add_arguments", "parse_since", "run"]

_AGO = re.compile(r"^\s*(\d+)\s*([smhd])\s*$")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_since(text: str, now: float | None = None) -> float:
    """``30m``, ``24h``, ``7d`` (that long ago) or a date or time in ISO 8601
    (``2026-12-01``, ``2026-12-01T08:00``; UTC unless it names its offset): Unix seconds.

    :raises UsageError: anything else.
    """
    ago = _AGO.match(text)
    if ago:
        return (time.time() if now is None else now) - int(ago[1]) * _SECONDS[ago[2]]
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise UsageError(f"--since {text!r} is neither a duration (30m, 24h, 7d) nor a date "
                         "(2026-12-01, 2026-12-01T08:00)") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when.timestamp()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--by", choices=("key", "model", "provider", "day"), default="model",
                        help="sum by virtual key, Provider/model, provider or day (UTC); "
                             "default: model")
    parser.add_argument("--since", metavar="WHEN",
                        help="only since then: 30m, 24h, 7d, or a date 2026-12-01 (UTC)")
    parser.add_argument("--json", action="store_true", help="print JSON")


def run(args: argparse.Namespace) -> int:
    from ..accounting.report import usage_report
    from ..gateway_settings import load_server_settings

    since = parse_since(args.since) if args.since else None
    # The gateway's database as the gateway sees it (the environment, then .env).
    database = load_server_settings().database()
    try:
        report = usage_report(database, args.by, since)
    finally:
        database.close()
    out = Output()
    if args.json:
        print_json({"by": args.by, "since": since, "database": database.where,
                    "rows": report, "total": _total(report)}, out)
        return 0
    if not report:
        out.write(f"No usage{' since then' if since is not None else ' yet'} "
                  f"({database.where}).\n")
        return 0
    header = {"key": "KEY", "model": "MODEL", "provider": "PROVIDER", "day": "DAY"}[args.by]
    rows = [(header, "REQUESTS", "ERRORS", "INPUT", "OUTPUT", "CACHED", "COST (USD)")]
    for entry in [*report, {"name": "total", **_total(report)}]:
        name = entry["name"] or "-"
        if entry.get("key_name"):
            name = f"{name} ({entry['key_name']})"
        rows.append((name, str(entry["requests"]), str(entry["errors"]),
                     _count(entry["input_tokens"]), _count(entry["output_tokens"]),
                     _count(entry["cached_tokens"]), _usd(entry["cost_usd"])))
    out.write(table(rows))
    return 0


def _total(report: list[dict[str, Any]]) -> dict[str, Any]:
    total: dict[str, Any] = {}
    for field in ("requests", "errors", "input_tokens", "output_tokens", "cached_tokens",
                  "reasoning_tokens", "cost_usd"):
        values = [entry[field] for entry in report if entry[field] is not None]
        total[field] = sum(values) if values else (0 if field in ("requests", "errors")
                                                   else None)
    return total


def _count(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


def _usd(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"
