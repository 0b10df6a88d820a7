"""What every retry loop shares: the commit rule, the deadline, cancellation and the pause.

Two loops retry: a provider's :class:`~chatplug.calls.run.Call` (attempts of one
provider) and a route's :class:`~chatplug.routes.route.RouteCall` (entries and
rounds).  They differ in what they try next; the mechanisms are these, once:

- the **commit rule** (:func:`committed`): once anything of the reply reached
  the caller (text, a tool call, reasoning, a finish), nothing is tried again,
  since that would duplicate what the caller already has; a *buffered* call
  shows the caller nothing before the end, so it never commits;
- the **deadline** and **cancellation** of the whole call (:class:`Attempts`,
  over the call's :class:`~chatplug.transport.context.CallContext`);
- the **pause** between attempts (:meth:`Attempts.pause`): on a worker the
  thread sleeps; on a call an event loop drives, the loop's timer does (the
  generator yields a :class:`~chatplug.transport.pending.Pending` while it
  runs).  :meth:`Attempts.wake` cuts it short from any thread.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Generator
from typing import TYPE_CHECKING, Any

from ..events import Choice, Finish, Reasoning, RedactedReasoning, Refusal, ToolCallDelta
from ..transport.pending import Pending, Sleeper

if TYPE_CHECKING:
    from ..transport.context import CallContext
    from .completion import CompletionBuilder

__all__ = ["COMMITTING", "Attempts", "committed"]

#: Events that reach the caller as content: after one, a stream is committed (as
#: after text; :meth:`CompletionBuilder.has_content` records the same kinds).
COMMITTING = (Finish, ToolCallDelta, Reasoning, RedactedReasoning, Refusal, Choice)


def committed(buffered: bool, builder: CompletionBuilder) -> bool:
    """Whether a failure now must not be retried: the caller already saw part of the
    reply (a buffered call's caller sees nothing before the end)."""
    return not buffered and builder.has_content()


class Attempts:
    """The deadline, cancellation and pauses of one retrying call (see the module)."""

    __slots__ = ("_sleeper", "_wake", "context")

    def __init__(self, context: CallContext) -> None:
        self.context = context
        self._wake: threading.Event | None = None
        self._sleeper: Sleeper | None = None

    def cancelled(self) -> bool:
        """Whether the call was cancelled (a method: it changes between two reads)."""
        return self.context.cancelled

    def left(self) -> float:
        """Seconds before the call's deadline (negative once past; infinite without one)."""
        deadline = self.context.deadline
        return float("inf") if deadline is None else deadline - time.monotonic()

    def expired(self) -> bool:
        """Whether the call's deadline has passed (no attempt may start)."""
        return self.left() <= 0

    def pause(self, seconds: float) -> Generator[Pending[Any], None, bool]:
        """Wait ``seconds`` before the next attempt; ``False`` if the call was cancelled
        before or during the wait (then nothing more is tried)."""
        context = self.context
        loop = context.loop
        # Made on first use (most calls never wait), then the cancellation is read
        # again: a cancel() that found nothing to wake is seen here.
        if loop is None:
            if self._wake is None:
                self._wake = threading.Event()
            if context.cancelled:
                return False
            self._wake.wait(seconds)
        else:
            if self._sleeper is None:
                self._sleeper = Sleeper()
            if context.cancelled:
                return False
            yield from self._sleeper.sleep(loop, seconds)
        return not self.context.cancelled

    def wake(self) -> None:
        """Cut a pause short (the call was cancelled); any thread."""
        wake = self._wake
        if wake is not None:
            wake.set()
        sleeper = self._sleeper
        if sleeper is not None:
            sleeper.wake()
