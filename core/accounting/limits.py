"""Per-key limits counted in this process: :class:`LocalLimits`.

What is counted for each virtual key:

- requests per minute: a 60 s window that starts with the key's first request in it;
- tokens per minute: the tokens of replies settled in a 60 s window (known only once a
  reply is over, so a request is refused only once the window's tokens reach the limit);
- requests in flight (parallel slots), taken on admission and given back on settling;
- spend this budget period (tokens or USD), added on settling; a request is admitted
  while the spend is below the budget, so a key overshoots by at most the replies it had
  in flight.

:class:`~chatplug.accounting.shared.SharedLimits` counts the same in Redis for every
replica and falls back on this class when Redis is unreachable.  All of it runs on the
event loop and never blocks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .keyspec import period_end, period_start

if TYPE_CHECKING:
    from .keys import VirtualKey

__all__ = ["WINDOW", "LocalLimits", "Refusal", "refusal"]

#: Seconds of a rate-limit window.
WINDOW = 60.0


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a key's request is refused: the limit (``rpm``, ``tpm``, ``parallel``,
    ``budget``) and when to retry (seconds)."""

    limit: str
    retry_after: float


def refusal(key: VirtualKey, limit: str, retry_after: float) -> tuple[str, str]:
    """The message and error code of a refusal, naming the limit."""
    wait = max(1, math.ceil(retry_after))
    if limit == "budget":
        assert key.budget is not None
        return (f"the key {key.name!r} has spent its budget of {key.budget} this "
                f"{key.period}; it renews in {wait} s (or raise the budget).",
                "insufficient_quota")
    what = {"rpm": f"{key.rpm} requests per minute",
            "tpm": f"{key.tpm} tokens per minute",
            "parallel": f"{key.max_parallel} requests in flight"}[limit]
    return (f"the key {key.name!r} is at its limit of {what} ({limit}); retry in {wait} s.",
            "rate_limit_exceeded")


class _Window:
    __slots__ = ("count", "ends")

    def __init__(self) -> None:
        self.ends = 0.0
        self.count = 0.0

    def current(self, now: float) -> float:
        if now >= self.ends:
            self.count = 0.0
        return self.count

    def add(self, now: float, amount: float) -> None:
        if now >= self.ends:
            self.ends, self.count = now + WINDOW, 0.0
        self.count += amount


class _Counts:
    __slots__ = ("inflight", "period", "requests", "spent", "tokens")

    def __init__(self) -> None:
        self.requests = _Window()
        self.tokens = _Window()
        self.inflight = 0
        self.period = 0.0
        self.spent = 0.0


class LocalLimits:
    """Every key's counts in this process (``now`` is Unix seconds)."""

    def __init__(self) -> None:
        self._counts: dict[str, _Counts] = {}

    def _of(self, key: VirtualKey, now: float) -> _Counts:
        counts = self._counts.get(key.id)
        if counts is None:
            counts = self._counts[key.id] = _Counts()
        if key.period is not None:
            start = period_start(key.period, now)
            if counts.period != start:
                counts.period, counts.spent = start, 0.0
        return counts

    def admit(self, key: VirtualKey, now: float) -> Refusal | None:
        """Take a request slot for ``key``, or say which limit refuses it."""
        counts = self._of(key, now)
        if key.budget is not None and key.period is not None \
                and counts.spent >= key.budget.amount:
            return Refusal("budget", period_end(key.period, now) - now)
        if key.rpm is not None and counts.requests.current(now) >= key.rpm:
            return Refusal("rpm", counts.requests.ends - now)
        if key.tpm is not None and counts.tokens.current(now) >= key.tpm:
            return Refusal("tpm", counts.tokens.ends - now)
        if key.max_parallel is not None and counts.inflight >= key.max_parallel:
            return Refusal("parallel", 1.0)
        counts.inflight += 1
        if key.rpm is not None:
            counts.requests.add(now, 1)
        return None

    def settle(self, key: VirtualKey, now: float, tokens: int, spent: float) -> None:
        """Give back ``key``'s slot; count the reply's ``tokens`` and its ``spent``
        (tokens or USD, as the key's budget)."""
        counts = self._of(key, now)
        counts.inflight = max(0, counts.inflight - 1)
        if key.tpm is not None and tokens:
            counts.tokens.add(now, tokens)
        if key.budget is not None and spent:
            counts.spent += spent

    def seed(self, key: VirtualKey, now: float, spent: float) -> None:
        """What the usage ledger says ``key`` spent this period (every replica's replies):
        the count becomes at least that."""
        counts = self._of(key, now)
        counts.spent = max(counts.spent, spent)

    def spent(self, key: VirtualKey, now: float) -> float:
        """What ``key`` spent this period, as counted here."""
        return self._of(key, now).spent
