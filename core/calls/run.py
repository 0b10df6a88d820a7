"""Running one prepared call: its attempts, deadline, cancellation, and what observers hear.

The provider's generator is driven here.  Whatever escapes it becomes a
:class:`ChatplugError` carrying provider and model; a failure before the
first piece reached the caller is retried under the :class:`RetryPolicy`,
one after a piece never is (that would duplicate text).  A *buffered* call
(``complete()``, a non-streamed ``create()``) shows the caller nothing until
the end, so it may start over after a failure at any point.  That rule, the
deadline, cancellation and the pause between attempts come from
:mod:`chatplug.calls.attempts`, which routes use too.  Observers hear of the
call through :mod:`chatplug.calls.notify`: posted, never waited on.

:class:`Call` yields what the provider yields (``str`` and the events of
:mod:`chatplug.events`) and assembles the :class:`Completion` on the way.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Iterator
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from ..errors import (
    ChatplugError,
    ProviderResponseError,
    ProviderTimeoutError,
    StreamInterruptedError,
)
from ..transport.context import DEADLINE_MESSAGE, CallContext
from ..transport.pending import Pending
from ..transport.redaction import redact
from .attempts import COMMITTING, Attempts, committed
from .completion import Completion, CompletionBuilder
from .retry import RetryPolicy

if TYPE_CHECKING:
    from ..events import Event
    from .prepared import PreparedCall
    from .runtime import Runtime

__all__ = ["COMMITTING", "REQUEST_ID", "Call"]

logger = logging.getLogger("chatplug.provider")

#: The request id a call takes when it is given none: the gateway sets its own for the
#: request being served, so that observers (metrics, traces) hear the id it logs.
REQUEST_ID: ContextVar[str | None] = ContextVar("chatplug_request_id", default=None)

#: Raised through as they are: the caller closing the stream, and Ctrl-C.
_PASS_THROUGH = (GeneratorExit, KeyboardInterrupt)


class Call:
    """One run of a :class:`PreparedCall`.

    :param buffered: the caller sees nothing before the end (retries may start over).
    :param policy: retries; ``None`` builds it from the settings and the call options.
    :param route: the route's name, for observers, when a route runs this call.
    :param request_id: shared by every attempt a route makes for one request.
    """

    def __init__(
        self,
        prepared: PreparedCall,
        runtime: Runtime,
        *,
        buffered: bool = False,
        policy: RetryPolicy | None = None,
        route: str | None = None,
        request_id: str | None = None,
        deadline: float | None = None,
    ) -> None:
        settings = runtime.settings
        options = prepared.options
        self.prepared = prepared
        self.provider = prepared.provider
        self.model = prepared.model
        self.buffered = buffered
        self.route = route
        self.request_id = request_id or REQUEST_ID.get() or os.urandom(6).hex()
        if deadline is None:
            timeout = options.timeout if options.timeout is not None else settings.timeout
            deadline = time.monotonic() + timeout
        self.context = CallContext(
            provider=prepared.provider, model=prepared.model, api_key=prepared.api_key,
            deadline=deadline, headers=options.headers, extra_body=options.extra_body,
        )
        self.policy = policy or RetryPolicy(
            max_retries=settings.max_retries if options.max_retries is None
            else options.max_retries,
            initial=settings.retry_backoff,
            cap=settings.retry_backoff_max,
        )
        #: Events are recorded but not yielded (the caller reads text only).
        self.text_only = False
        self.builder = CompletionBuilder(prepared.provider, prepared.model)
        self.builder.prices = runtime.prices
        #: The last failure, once the call failed (routes read it).
        self.error: ChatplugError | None = None
        self.first_piece_s: float | None = None
        self._runtime = runtime
        self._hook = runtime.observers()
        self._stop_at = deadline
        self._attempts = Attempts(self.context)
        self._failures: list[str] = []

    def __repr__(self) -> str:
        return f"<chatplug Call {self.provider}/{self.model} {self.request_id}>"

    # -- outside control ---------------------------------------------------------------

    def cancel(self) -> None:
        """End the call from any thread: blocked reads end, a retry wait is cut short,
        and the call ends as ``closed`` at the next piece.  Idempotent."""
        self._stop_at = -1.0
        self.context.cancel()
        self._attempts.wake()

    @property
    def keep_text(self) -> bool:
        """Whether the text is kept for :attr:`completion` (set before the call runs;
        ``False``: counted only, for a relay)."""
        return self.builder.keep_text

    @keep_text.setter
    def keep_text(self, value: bool) -> None:
        self.builder.keep_text = value
        self.builder.reset()

    @property
    def native_io(self) -> bool:
        """Whether an event loop may drive this call itself (:mod:`chatplug.calls.aio`):
        the provider's IO goes only through chatplug.wire (observers never hold a call:
        they are notified, see :mod:`chatplug.calls.notify`)."""
        return self.prepared.native_async

    @property
    def runtime(self) -> Runtime:
        return self._runtime

    @property
    def cancelled(self) -> bool:
        return self.context.cancelled

    @property
    def completion(self) -> Completion:
        """The :class:`Completion` so far (final once the call ended well)."""
        self.builder.attempts = len(self._failures) + 1
        return self.builder.snapshot()

    # -- running -----------------------------------------------------------------------

    def events(self) -> Iterator[str | Event]:
        """The reply's pieces and events, retrying failures the caller has not seen."""
        started = time.perf_counter()
        self._notify("chatplug_on_request", stream=self.prepared.stream)
        builder = self.builder
        failures = self._failures
        outcome = "closed"
        text_only = self.text_only
        monotonic = time.monotonic
        try:
            while True:
                attempt: Any = None
                try:
                    attempt = self._start()
                    append = builder.pieces.append
                    first = self.first_piece_s is None
                    # One loop level between the provider and the caller: it runs per piece.
                    for item in attempt:
                        if type(item) is str:
                            append(item)
                            if first:
                                first = False
                                self.first_piece_s = time.perf_counter() - started
                            yield item
                        elif type(item) is Pending:
                            # A native read waiting: the loop driving the call awaits it.
                            yield item  # type: ignore[misc]
                            continue
                        elif builder.add_event(item):
                            # Read again: a stream switched to events() mid-way yields them.
                            text_only = self.text_only
                            if not text_only:
                                yield item
                        else:
                            raise ProviderResponseError(
                                f"the provider yielded {type(item).__name__}, not text or a "
                                f"chatplug.events event; this is a bug in {self.prepared.origin}."
                            )
                        if monotonic() > self._stop_at:
                            self._past_deadline()
                    outcome = "complete"
                    return
                except BaseException as exc:
                    if isinstance(exc, _PASS_THROUGH) and not _raised_by_plugin(exc):
                        raise
                    if _is_cancellation(exc):
                        raise
                    if self.context.cancelled:
                        return  # cancelled from outside: a clean end, outcome "closed"
                    error = self._as_chatplug_error(exc)
                    failures.append(error.reason)
                    wait = None
                    if not committed(self.buffered, builder):
                        wait = self.policy.delay(error, len(failures), self._attempts.left())
                    if wait is None:
                        outcome = "error"
                        self._fail(error, started)
                        if error is exc:
                            raise
                        raise error from None
                    self._retrying(error, wait)
                    if not (yield from self._attempts.pause(wait)):  # type: ignore[misc]
                        return  # cancelled while waiting
                    builder.reset()
                finally:
                    if attempt is not None:
                        self._close_attempt(attempt)
        finally:
            if outcome != "error":
                self._responded(outcome, started)

    def _start(self) -> Any:
        """Call the provider's function for one attempt; an iterator of what it yields."""
        http = self._runtime.transport.bind(self.context)
        result = self.prepared.function(**self.prepared.arguments(http))
        if isinstance(result, str):
            return iter((result,))
        return result

    def _close_attempt(self, attempt: Any) -> None:
        close = getattr(attempt, "close", None)
        if close is None:
            return
        try:
            close()
        except KeyboardInterrupt:
            raise
        except BaseException as exc:
            if _is_cancellation(exc):
                raise
            # A plugin's cleanup that raises (or ignores GeneratorExit) is its bug, reported
            # as chatplug's error rather than a raw KeyError or RuntimeError.
            raise ProviderResponseError(
                f"the provider failed while closing its reply: {type(exc).__name__}: "
                f"{redact(str(exc), self.context.api_key)}. This is a bug in "
                f"{self.prepared.origin}; please report it.",
                provider=self.provider, model=self.model,
            ) from None

    def _past_deadline(self) -> None:
        if self.context.cancelled:
            raise _Cancelled
        raise ProviderTimeoutError(DEADLINE_MESSAGE, provider=self.provider, model=self.model)

    def _as_chatplug_error(self, exc: BaseException) -> ChatplugError:
        """Whatever escaped the provider, as chatplug's error carrying provider and model."""
        if isinstance(exc, ChatplugError):
            error = exc
        else:
            from ..transport.failures import is_transport_error

            if is_transport_error(exc):
                error = self._runtime.transport.bind(self.context).translate(exc)
            else:
                error = ProviderResponseError(
                    f"the provider failed with {type(exc).__name__}: "
                    f"{redact(str(exc), self.context.api_key)}. This is a bug in "
                    f"{self.prepared.origin}; please report it."
                )
        error.provider = error.provider or self.provider
        error.model = error.model or self.model
        if isinstance(error, StreamInterruptedError):
            error.received = max(error.received, self.builder.text_length)
            error.completion = self.completion
        # Whatever a server or plugin put in the text, the key never leaves in an error.
        error.message = redact(error.message, self.context.api_key)
        return error

    # -- observers ---------------------------------------------------------------------

    def _retrying(self, error: ChatplugError, wait: float) -> None:
        attempt = len(self._failures)
        logger.info("%s: attempt %d failed (%s); retrying in %.2f s",
                    self.provider, attempt, error.reason, wait)
        self._notify("chatplug_on_retry", attempt=attempt,
                     max_attempts=self.policy.max_retries + 1, delay_s=wait, error=error)

    def _fail(self, error: ChatplugError, started: float) -> None:
        self.error = error
        if len(self._failures) > 1:
            error.gave_up(self._failures)
        self._notify("chatplug_on_error", duration_s=time.perf_counter() - started,
                     attempts=len(self._failures), error=error)

    def _responded(self, outcome: str, started: float) -> None:
        if self._hook is None or not self._hook.chatplug_on_response.get_hookimpls():
            return
        builder = self.builder
        self._notify(
            "chatplug_on_response",
            duration_s=time.perf_counter() - started,
            first_piece_s=self.first_piece_s,
            pieces=len(builder.pieces),
            characters=builder.text_length,
            attempts=len(self._failures) + 1,
            outcome=outcome,
            finish_reason=builder.finish_reason,
            usage=builder.usage,
        )

    def _notify(self, name: str, **details: Any) -> None:
        # Only the hooks someone implements are posted: an observer of failures alone
        # (the gateway's metrics) costs a successful call nothing.
        if self._hook is None or not getattr(self._hook, name).get_hookimpls():
            return
        details.update(provider=self.provider, model=self.model, request_id=self.request_id,
                       route=self.route)
        self._runtime.notifications.post(self._hook, name, details)


def _raised_by_plugin(exc: BaseException) -> bool:
    """Whether a ``GeneratorExit`` came out of the provider's code rather than being
    thrown in by the caller's ``close()`` (that one starts in this module's frame)."""
    tb = exc.__traceback__
    return isinstance(exc, GeneratorExit) and tb is not None and tb.tb_next is not None


def _is_cancellation(exc: BaseException) -> bool:
    """Whether ``exc`` is asyncio's task cancellation (which must propagate).

    asyncio is looked up, not imported: a process that never loaded it cannot
    have raised its exception, and importing it would slow every cold start.
    """
    asyncio = sys.modules.get("asyncio")
    return asyncio is not None and isinstance(exc, asyncio.CancelledError)


class _Cancelled(Exception):
    """The call was cancelled between pieces; never leaves this module."""
