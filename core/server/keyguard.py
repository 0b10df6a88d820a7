"""Virtual keys' limits at the gateway: :class:`KeyLimits`, an accountant
(:mod:`.record`).

On admission it refuses, before anything goes upstream and in the client's wire:

- 403 ``model_not_allowed``: the model is not among the key's patterns (checked against
  the model as requested, ``Provider/model`` as resolved, and the provider or route);
  with a budget in USD, also a model with no price (it could not be counted);
- 429 ``rate_limit_exceeded`` with ``Retry-After``: requests or tokens per minute, or
  requests in flight, naming the limit;
- 429 ``insufficient_quota``: the budget of the period is spent;
- 503 ``limits_unavailable``: Redis is unreachable and ``CHATPLUG_SERVER_REDIS_FAIL_CLOSED``.

On settling it gives the parallel slot back and counts the reply's tokens (and cost, for a
USD budget) — in Redis in a task on the loop, so that settling never blocks.  A reply
served by a route entry with no price counts 0 USD and is logged.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING

from ..accounting.keyspec import allowed
from ..accounting.limits import LocalLimits, refusal
from ..accounting.pricing import cost_of, price_for, price_list
from ..accounting.shared import SharedLimits
from ..errors import ConfigurationError
from ..events import Usage
from .errors import GatewayError

if TYPE_CHECKING:
    from ..accounting.keys import VirtualKey
    from ..configfile import Price
    from ..gateway_settings import ServerSettings
    from .keycache import KeyCache
    from .record import RequestRecord

__all__ = ["KeyLimits"]

logger = logging.getLogger("chatplug.server.keys")
#: The record's note holding whether Redis counted the admission.
_ADMITTED = "chatplug.keys.shared"


class KeyLimits:
    """Admits and settles the requests of virtual keys against ``limits``."""

    def __init__(self, limits: LocalLimits | SharedLimits,
                 prices: Mapping[str, Price]) -> None:
        self.limits = limits
        self.prices = prices
        self._tasks: set[asyncio.Task[None]] = set()

    @classmethod
    def for_settings(cls, settings: ServerSettings) -> KeyLimits:
        """Limits in Redis with ``redis_url``, else per process; prices from chatplug.toml.

        :raises ConfigurationError: Redis is named and redis-py is not installed, or the
            config file is malformed.
        """
        from ..configfile import load_config

        prices = price_list(load_config())
        url = settings.redis_url.get_secret_value().strip() if settings.redis_url else ""
        if not url:
            return cls(LocalLimits(), prices)
        if importlib.util.find_spec("redis") is None:
            raise ConfigurationError(
                "CHATPLUG_SERVER_REDIS_URL is set, which needs redis-py: install chatplug "
                "with its redis extra, pip install \".[redis]\" from the checkout.")
        return cls(SharedLimits(url, fail_closed=settings.redis_fail_closed), prices)

    @property
    def degraded(self) -> bool:
        """Redis is configured and unreachable (limits per process, or refused)."""
        return isinstance(self.limits, SharedLimits) and self.limits.degraded

    @property
    def redis_failures(self) -> int:
        """Redis calls that failed (0 without Redis), for the metrics."""
        return self.limits.failures if isinstance(self.limits, SharedLimits) else 0

    @property
    def local_fallbacks(self) -> int:
        """Admissions counted per process because Redis was unreachable."""
        return self.limits.fallbacks if isinstance(self.limits, SharedLimits) else 0

    async def admit(self, record: RequestRecord) -> None:
        key: VirtualKey | None = record.key
        if key is None:
            return
        resolved = f"{record.provider}/{record.model}" if record.model else None
        if not allowed(key.models, record.requested_model, resolved, record.provider):
            raise GatewayError(
                403, f"the key {key.name!r} may not use the model "
                     f"{record.requested_model!r}; it may use: {', '.join(key.models or ())}.",
                code="model_not_allowed", type="permission_error", retry=False)
        if key.budget is not None and key.budget.unit == "usd" and record.model \
                and price_for(record.provider, record.model, self.prices,
                              record.requested_model) is None:
            raise GatewayError(
                403, f"the key {key.name!r} has a budget in USD and {resolved!r} has no "
                     "price in chatplug.toml's [prices], so its cost could not be counted; "
                     "use a priced model or ask the operator to add its price.",
                code="model_not_priced", type="permission_error", retry=False)
        now = time.time()
        if isinstance(self.limits, SharedLimits):
            refused, shared = await self.limits.admit(key, now)
        else:
            refused, shared = self.limits.admit(key, now), False
        if refused is None:
            record.notes[_ADMITTED] = shared
            return
        if refused.limit == "unavailable":
            raise GatewayError(503, "the gateway cannot reach Redis, which counts the keys' "
                                    "limits, and is configured to refuse until it is back "
                                    "(CHATPLUG_SERVER_REDIS_FAIL_CLOSED); retry shortly.",
                               code="limits_unavailable", retry_after=refused.retry_after)
        message, code = refusal(key, refused.limit, refused.retry_after)
        spent = code == "insufficient_quota"  # retrying cannot help before the period ends
        raise GatewayError(429, message, code=code, retry_after=max(1.0, refused.retry_after),
                           type="insufficient_quota" if spent else None, param=refused.limit,
                           retry=not spent)

    def _spent(self, key: VirtualKey, record: RequestRecord, tokens: int) -> float:
        if key.budget is None or not tokens:
            return 0.0
        if key.budget.unit == "tokens":
            return float(tokens)
        # A reply without usage is priced at its estimate, all of it as output (the dearer
        # kind): a budget is never spent by replies that say nothing.
        usage = record.usage or Usage(prompt_tokens=0, completion_tokens=tokens,
                                      total_tokens=tokens)
        cost = cost_of(usage, record.provider, record.model, self.prices,
                       record.requested_model)
        if cost is None:
            logger.warning("no price for %s/%s: the reply counts 0 USD against the key %s.",
                           record.provider, record.model, key.id)
            return 0.0
        return cost

    def settled(self, record: RequestRecord) -> None:
        key: VirtualKey | None = record.key
        if key is None or _ADMITTED not in record.notes:
            return
        now = time.time()
        tokens = record.tokens()  # the usage, else an estimate: never a free reply
        spent = self._spent(key, record, tokens)
        if isinstance(self.limits, SharedLimits):
            task = asyncio.get_running_loop().create_task(
                self.limits.settle(key, now, tokens, spent, record.notes[_ADMITTED]))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        else:
            self.limits.settle(key, now, tokens, spent)

    async def seed(self, keys: list[VirtualKey], cache: KeyCache) -> None:
        """Bring the budgets' spend up to what the usage ledger holds (called after each
        reload of the keys)."""
        store = cache.store
        budgeted = [key for key in keys if key.budget is not None and key.usable(time.time())]
        if store is None or not budgeted:
            return
        try:
            spends = await asyncio.to_thread(lambda: [store.spent(k) for k in budgeted])
        except Exception as exc:
            logger.warning("cannot read the keys' spend from the usage ledger (%s).", exc)
            return
        now = time.time()
        for key, spent in zip(budgeted, spends, strict=True):
            if isinstance(self.limits, SharedLimits):
                await self.limits.seed(key, now, spent)
            else:
                self.limits.seed(key, now, spent)

    async def close(self) -> None:
        """Let the settling still in flight finish (briefly), close Redis."""
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=2)
        if isinstance(self.limits, SharedLimits):
            await self.limits.close()
