"""What a virtual key's limits are written as: budgets (``150000tokens``, ``5usd``),
periods (``day``, ``week``, ``month``), expiries (``30s``, ``15m``, ``8h``, ``30d``) and
model patterns (``OpenAI/gpt-4o-mini``, ``OpenAI/*``, an alias, a route).

Parsing raises :class:`KeySyntaxError` naming the option and showing what is accepted.
Periods are calendar periods in UTC: a day starts at midnight, a week on Monday, a month
on its first day.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from ..errors import InvalidRequestError

__all__ = ["PERIODS", "Budget", "KeySyntaxError", "allowed", "parse_budget",
           "parse_duration", "parse_models", "period_end", "period_start"]

PERIODS = ("day", "week", "month")
_BUDGET = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(tokens?|usd|\$)\s*$", re.IGNORECASE)
_DURATION = re.compile(r"^\s*(\d+)\s*([smhd])\s*$")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


class KeySyntaxError(InvalidRequestError):
    """A key's option is written wrong (a budget, a period, an expiry, a limit)."""


@dataclass(frozen=True)
class Budget:
    """A spending cap per period: ``amount`` tokens or US dollars."""

    amount: float
    unit: str  # "tokens" or "usd"

    def __str__(self) -> str:
        if self.unit == "tokens":
            return f"{int(self.amount)}tokens"
        return f"{self.amount:g}usd"


def parse_budget(text: str) -> Budget:
    """``150000tokens`` or ``5usd`` (``5.50usd``).

    :raises KeySyntaxError: anything else, or a budget of 0.
    """
    match = _BUDGET.match(text)
    if match is None:
        raise KeySyntaxError(f"--budget {text!r} is not a budget: write a number of tokens "
                             "(150000tokens) or of US dollars (5usd).")
    amount = float(match.group(1))
    unit = "tokens" if match.group(2).lower().startswith("token") else "usd"
    if amount <= 0 or (unit == "tokens" and not amount.is_integer()):
        raise KeySyntaxError(f"--budget {text!r} must be more than 0 (tokens: a whole "
                             "number).")
    return Budget(amount, unit)


def parse_duration(text: str) -> int:
    """``30s``, ``15m``, ``8h`` or ``30d``: seconds.

    :raises KeySyntaxError: anything else, or 0.
    """
    match = _DURATION.match(text)
    if match is None or int(match.group(1)) == 0:
        raise KeySyntaxError(f"--expires {text!r} is not a duration: write a whole number "
                             "and s, m, h or d (30s, 15m, 8h, 30d).")
    return int(match.group(1)) * _SECONDS[match.group(2)]


def parse_models(text: str) -> tuple[str, ...]:
    """``OpenAI/*,claude,fast``: the patterns, comma-separated.

    :raises KeySyntaxError: no pattern, or a ``*`` anywhere but a whole model part.
    """
    patterns = tuple(part.strip() for part in text.split(",") if part.strip())
    if not patterns:
        raise KeySyntaxError("--models names no model: write patterns separated by commas "
                             "(OpenAI/gpt-4o-mini,Anthropic/*,my-alias).")
    for pattern in patterns:
        if "*" in pattern and (not pattern.endswith("/*") or pattern.count("*") > 1):
            raise KeySyntaxError(f"--models {pattern!r}: a pattern is a model "
                                 "(Provider/model), an alias, a route, or Provider/*.")
    return patterns


def allowed(patterns: tuple[str, ...] | None, *names: str | None) -> bool:
    """Whether any of ``names`` (the model as requested; ``Provider/model`` as resolved;
    the provider or route that serves it) is allowed by ``patterns`` (``None``: any).
    Provider names compare without case, as the registry resolves them."""
    if patterns is None:
        return True
    wanted = {name.lower() for name in names if name}
    for pattern in patterns:
        lowered = pattern.lower()
        if lowered in wanted:
            return True
        if lowered.endswith("/*"):
            prefix = lowered[:-1]
            if any(name.startswith(prefix) or name == lowered[:-2] for name in wanted):
                return True
    return False


def _utc(moment: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(moment, dt.timezone.utc)


def period_start(period: str, now: float) -> float:
    """Unix seconds at which the ``period`` holding ``now`` began (UTC)."""
    day = _utc(now).replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "week":
        day -= dt.timedelta(days=day.weekday())
    elif period == "month":
        day = day.replace(day=1)
    return day.timestamp()


def period_end(period: str, now: float) -> float:
    """Unix seconds at which the ``period`` holding ``now`` ends (UTC)."""
    start = _utc(period_start(period, now))
    if period == "day":
        end = start + dt.timedelta(days=1)
    elif period == "week":
        end = start + dt.timedelta(days=7)
    else:
        end = (start + dt.timedelta(days=32)).replace(day=1)
    return end.timestamp()
