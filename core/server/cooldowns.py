"""Route cooldowns shared by the replicas through Redis: :class:`SharedCooldowns`.

A route's state lives in the library (:class:`~chatplug.routes.state.RouteState`, used from
worker threads, without Redis); the gateway shares it from the outside, once a second on
its event loop: each entry cooling down here is written to Redis
(``chatplug:route:<name>:<index>``: its end in Unix milliseconds, expiring then), and each
entry cooling down in Redis cools down here too.  An entry that answered here since the
last exchange clears its cooldown in Redis instead, so a recovered provider is not kept
cooling by the others.  With Redis unreachable each replica keeps its own cooldowns (the
limits' log and flag say Redis is down).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..accounting.shared import SharedLimits
    from ..plugins.registry import Registry

__all__ = ["SYNC_SECONDS", "SharedCooldowns"]

logger = logging.getLogger("chatplug.server.limits")

#: Seconds between exchanges of cooldowns with Redis.
SYNC_SECONDS = 1.0

_PUSH = """
for i, name in ipairs(KEYS) do
  local until_ms = tonumber(ARGV[i])
  if until_ms < 0 then
    redis.call('DEL', name)
  elseif until_ms > 0 and tonumber(redis.call('GET', name) or '0') < until_ms then
    redis.call('SET', name, until_ms, 'PX', until_ms - tonumber(ARGV[#ARGV]))
  end
end
return redis.call('MGET', unpack(KEYS))
"""


class SharedCooldowns:
    """Exchanges the cooldowns of ``registry``'s routes through ``limits``' Redis."""

    def __init__(self, registry: Registry, limits: SharedLimits) -> None:
        self.registry = registry
        self.limits = limits
        self._answered: dict[tuple[str, int], int] = {}
        self._task: asyncio.Task[None] | None = None

    async def exchange(self) -> None:
        """One exchange: push this replica's cooldowns, pull the others'."""
        routes = self.registry.routes()
        if not routes or not self.limits.usable():
            return
        names: list[str] = []
        values: list[int] = []
        entries: list[tuple[Any, int]] = []
        now_wall, now_mono = time.time(), time.monotonic()
        for route in routes:
            for index in range(len(route.entries)):
                health = route.state.health(index)
                answered = health.calls - health.failures
                recovered = answered > self._answered.get((route.name, index), answered)
                self._answered[(route.name, index)] = answered
                cooling = health.cooling_until - now_mono
                names.append(f"chatplug:route:{route.name}:{index}")
                values.append(-1 if recovered and cooling <= 0 else
                              int((now_wall + cooling) * 1000) if cooling > 0 else 0)
                entries.append((route, index))
        try:
            script = self.limits.script("cooldowns", _PUSH)
            found = await script(keys=names, args=[*values, int(now_wall * 1000)])
        except Exception as exc:  # Redis down: the limits log it and retry
            self.limits.failed(exc)
            return
        for (route, index), value, pushed in zip(entries, found, values, strict=True):
            if value is not None and pushed >= 0:
                remaining = int(value) / 1000 - now_wall
                if remaining > 0:
                    route.state.cool(index, now_mono + remaining)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(SYNC_SECONDS)
            try:
                await self.exchange()
            except Exception as exc:  # a malformed CHATPLUG_ROUTES: the calls say so
                logger.debug("cannot share route cooldowns: %s", exc)

    def start(self) -> None:
        """Exchange every :data:`SYNC_SECONDS` until :meth:`stop`."""
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
