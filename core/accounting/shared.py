"""Per-key limits shared by every replica through Redis: :class:`SharedLimits`.

``CHATPLUG_SERVER_REDIS_URL`` names the Redis (redis-py's asyncio client, ``pip install
".[redis]"``).  Admission is one Lua script (atomic: two replicas never both take the last
slot of a window); settling is another.  Keys: ``chatplug:{id}:rpm|tpm|par|spend:<period>``,
each with an expiry (a window's 60 s, a period's end, parallel slots 10 minutes after
their last change, so that a replica killed mid-request leaks no slot for ever).

When Redis cannot be reached the gateway keeps serving with :class:`LocalLimits` (per
process), logs it once and sets :attr:`SharedLimits.degraded`; it tries Redis again
every :data:`RETRY_SECONDS`.  With ``fail_closed`` it refuses (503) instead.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from .keyspec import period_end, period_start
from .limits import WINDOW, LocalLimits, Refusal

if TYPE_CHECKING:
    from .keys import VirtualKey

__all__ = ["RETRY_SECONDS", "SharedLimits"]

logger = logging.getLogger("chatplug.server.limits")

#: Seconds between attempts to reach Redis again after it failed.
RETRY_SECONDS = 1.0
#: Seconds Redis may take to answer before it counts as unreachable.
TIMEOUT_SECONDS = 1.0
_SLOT_SECONDS = 600

_ADMIT = """
local budget = tonumber(ARGV[4])
if budget > 0 and tonumber(redis.call('GET', KEYS[4]) or '0') >= budget then
  return {'budget', 0}
end
local rpm = tonumber(ARGV[1])
if rpm > 0 and tonumber(redis.call('GET', KEYS[1]) or '0') >= rpm then
  return {'rpm', redis.call('PTTL', KEYS[1])}
end
local tpm = tonumber(ARGV[2])
if tpm > 0 and tonumber(redis.call('GET', KEYS[2]) or '0') >= tpm then
  return {'tpm', redis.call('PTTL', KEYS[2])}
end
local parallel = tonumber(ARGV[3])
if parallel > 0 then
  if tonumber(redis.call('GET', KEYS[3]) or '0') >= parallel then return {'parallel', 1000} end
  redis.call('INCR', KEYS[3])
  redis.call('EXPIRE', KEYS[3], ARGV[5])
end
if rpm > 0 then
  redis.call('INCR', KEYS[1])
  if redis.call('PTTL', KEYS[1]) < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[6]) end
end
return {'ok', 0}
"""

_SETTLE = """
if ARGV[1] == '1' and tonumber(redis.call('DECR', KEYS[1])) < 0 then
  redis.call('SET', KEYS[1], 0, 'EX', ARGV[5])
end
if tonumber(ARGV[2]) > 0 then
  redis.call('INCRBY', KEYS[2], ARGV[2])
  if redis.call('PTTL', KEYS[2]) < 0 then redis.call('PEXPIRE', KEYS[2], ARGV[6]) end
end
if tonumber(ARGV[3]) > 0 then
  redis.call('INCRBYFLOAT', KEYS[3], ARGV[3])
  redis.call('EXPIRE', KEYS[3], ARGV[4])
end
return 0
"""

_SEED = """
if tonumber(redis.call('GET', KEYS[1]) or '0') < tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
end
return 0
"""


def _names(key: VirtualKey, now: float) -> list[str]:
    base = f"chatplug:{key.id}:"
    period = f"{int(period_start(key.period, now))}" if key.period else "none"
    return [base + "rpm", base + "tpm", base + "par", f"{base}spend:{period}"]


def _spend_ttl(key: VirtualKey, now: float) -> int:
    # A period's spend outlives its period by a day (then nobody reads it).
    return int(period_end(key.period, now) - now) + 86400 if key.period else 86400


class SharedLimits:
    """Limits in Redis at ``url``, else (unreachable) in ``local``.

    :ivar degraded: Redis is unreachable: limits are per process (or refused, fail-closed).
    :ivar failures: how many times a Redis call failed (for the metrics).
    :ivar fallbacks: how many admissions were counted per process because of it.
    """

    def __init__(self, url: str, *, fail_closed: bool = False,
                 local: LocalLimits | None = None) -> None:
        self._url = url
        self.fail_closed = fail_closed
        self.local = local if local is not None else LocalLimits()
        self.degraded = False
        self.failures = 0
        self.fallbacks = 0
        self._client: Any = None
        self._scripts: dict[str, Any] = {}
        self._retry_at = 0.0

    def _redis(self) -> Any:
        if self._client is None:
            import redis.asyncio

            self._client = redis.asyncio.Redis.from_url(
                self._url, socket_timeout=TIMEOUT_SECONDS,
                socket_connect_timeout=TIMEOUT_SECONDS, retry_on_timeout=False,
                health_check_interval=0)
            self._scripts = {name: self._client.register_script(source) for name, source in
                             (("admit", _ADMIT), ("settle", _SETTLE), ("seed", _SEED))}
        return self._client

    def script(self, name: str, source: str) -> Any:
        """A Lua script on this Redis, registered once (route cooldowns use it)."""
        self._redis()
        if name not in self._scripts:
            self._scripts[name] = self._client.register_script(source)
        return self._scripts[name]

    def failed(self, exc: BaseException) -> None:
        """A Redis call failed: count it, fall back (logged once), retry later."""
        self._failed(exc)

    def _failed(self, exc: BaseException) -> None:
        self.failures += 1
        self._retry_at = time.monotonic() + RETRY_SECONDS
        if not self.degraded:
            self.degraded = True
            how = ("refusing keys' requests (503, CHATPLUG_SERVER_REDIS_FAIL_CLOSED)"
                   if self.fail_closed else "counting limits per process until it is back")
            logger.warning("Redis is unreachable (%s): %s.", type(exc).__name__, how)

    def _recovered(self) -> None:
        if self.degraded:
            self.degraded = False
            logger.warning("Redis is reachable again: limits are shared by the replicas.")

    def usable(self) -> bool:
        """Whether to try Redis now (not within :data:`RETRY_SECONDS` of a failure)."""
        return not self.degraded or time.monotonic() >= self._retry_at

    async def admit(self, key: VirtualKey, now: float) -> tuple[Refusal | None, bool]:
        """Take a slot for ``key``: ``(refusal or None, whether Redis counted it)``.

        A refusal with limit ``unavailable`` means Redis is down and the gateway fails
        closed.
        """
        if self.usable():
            try:
                self._redis()
                answer = await self._scripts["admit"](
                    keys=_names(key, now),
                    args=[key.rpm or 0, key.tpm or 0, key.max_parallel or 0,
                          key.budget.amount if key.budget else 0, _SLOT_SECONDS,
                          int(WINDOW * 1000)])
            except Exception as exc:  # redis-py's ConnectionError, TimeoutError, OSError
                self._failed(exc)
            else:
                self._recovered()
                limit = answer[0].decode() if isinstance(answer[0], bytes) else answer[0]
                if limit == "ok":
                    return None, True
                wait = (period_end(key.period, now) - now if limit == "budget" and key.period
                        else max(float(answer[1]), 0.0) / 1000)
                return Refusal(limit, wait), True
        if self.fail_closed:
            return Refusal("unavailable", RETRY_SECONDS), False
        self.fallbacks += 1
        return self.local.admit(key, now), False

    async def settle(self, key: VirtualKey, now: float, tokens: int, spent: float,
                     shared: bool) -> None:
        """Give back the slot ``admit`` took (in Redis if ``shared``), count the reply."""
        if shared and self.usable():
            try:
                self._redis()
                names = _names(key, now)
                await self._scripts["settle"](
                    keys=[names[2], names[1], names[3]],
                    args=[1 if key.max_parallel else 0, tokens if key.tpm else 0,
                          spent if key.budget else 0, _spend_ttl(key, now), _SLOT_SECONDS,
                          int(WINDOW * 1000)])
                return
            except Exception as exc:  # the slot in Redis expires by itself
                self._failed(exc)
        self.local.settle(key, now, tokens, spent)

    async def seed(self, key: VirtualKey, now: float, spent: float) -> None:
        """The usage ledger's spend for ``key`` this period: the shared count becomes at
        least that (Redis restarted empty, or a replica's replies it never heard of)."""
        self.local.seed(key, now, spent)
        if not spent or not self.usable():
            return
        try:
            self._redis()
            await self._scripts["seed"](keys=[_names(key, now)[3]],
                                        args=[spent, _spend_ttl(key, now)])
        except Exception as exc:
            self._failed(exc)

    async def close(self) -> None:
        """Close the connection to Redis."""
        if self._client is not None:
            client, self._client = self._client, None
            try:
                await client.aclose()
            except Exception as exc:
                logger.debug("closing Redis failed: %s", type(exc).__name__)
