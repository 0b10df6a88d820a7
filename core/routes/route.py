"""A route: fallback and load-spreading across providers, never duplicating text.

The commit point is the first piece that reaches the caller.  A failure
before it moves on to the next entry (a buffered call shows the caller
nothing before the end, so it can always move on); after it the route never
switches: the caller gets :class:`StreamInterruptedError` whose ``completion``
holds what arrived and which provider was serving.

The route is the only retry loop: its entries run with their own retries off,
every usable entry is tried once per round, and when all failed with a
retryable error the next round starts after the backoff (or the largest
``Retry-After`` seen, at most 60 s), for ``max_retries`` more rounds.  One
deadline bounds the whole call, rounds and waits included.  The commit rule,
deadline, cancellation and pause are those of a provider's own attempts
(:mod:`chatplug.calls.attempts`).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..calls.attempts import Attempts, committed
from ..calls.caller import Caller, Messages
from ..calls.completion import Completion, CompletionBuilder
from ..calls.options import CallOptions, check_call_options
from ..calls.retry import MAX_RETRY_AFTER, RetryPolicy
from ..calls.run import REQUEST_ID, Call
from ..errors import (
    AuthenticationError,
    ChatplugError,
    InvalidRequestError,
    ProviderConnectionError,
    ProviderHTTPError,
    ProviderResponseError,
    ProviderTimeoutError,
    RouteFailedError,
    StreamInterruptedError,
)
from ..transport.context import CallContext
from .entries import Entry, parse_entry
from .state import STRATEGIES, RouteState

if TYPE_CHECKING:
    from ..calls.prepared import PreparedCall
    from ..calls.provider import Provider
    from ..calls.runtime import Runtime
    from ..events import Event

__all__ = ["PreparedRoute", "Route", "RouteCall"]

logger = logging.getLogger("chatplug.routes")

#: Failures that move a call on to the next entry whatever their status.
_MOVE_ON = (ProviderConnectionError, ProviderTimeoutError, StreamInterruptedError,
            AuthenticationError, ProviderResponseError)


@dataclass(frozen=True)
class PreparedRoute:
    """A route call validated for each entry that can take it.

    :ivar calls: ``(entry index, prepared call)`` of the usable entries.
    :ivar skipped: ``(entry index, reason)`` of the entries that cannot take the call.
    """

    route: str
    stream: bool
    calls: tuple[tuple[int, PreparedCall], ...]
    skipped: tuple[tuple[int, str], ...]
    options: CallOptions
    supports_stream: bool = True


class Route(Caller):
    """Several providers behind the caller side of one: ``create``, ``complete``,
    ``acreate``, ``acomplete``, with the same arguments, streams and errors.

    Made by :meth:`chatplug.Registry.route` or from ``CHATPLUG_ROUTES``; its state
    (cooldowns, latency, the round-robin turn) lives here and is shared by every
    caller, sync and async, thread-safely.

    :param strategy: ``"ordered"``, ``"shuffle"``, ``"round_robin"`` or ``"latency"``.
    :param cooldown: seconds an entry is skipped after ``allowed_fails`` failures in a row
        (longer if its server's ``Retry-After`` says so).
    :param fallback_on_client_errors: move on after an upstream 400/404/422 too.
    :raises InvalidRequestError: a bad entry or option.
    """

    def __init__(
        self,
        name: str,
        entries: Sequence[Entry],
        providers: Sequence[Provider],
        runtime: Runtime,
        *,
        strategy: str = "ordered",
        cooldown: float = 30.0,
        allowed_fails: int = 1,
        fallback_on_client_errors: bool = False,
    ) -> None:
        if strategy not in STRATEGIES:
            raise InvalidRequestError(f"route strategy {strategy!r} is unknown; use one of "
                                      f"{', '.join(STRATEGIES)}.")
        if isinstance(cooldown, bool) or not isinstance(cooldown, (int, float)) or not (
                0 <= cooldown <= 86400):
            raise InvalidRequestError(f"route cooldown must be seconds in [0, 86400], "
                                      f"not {cooldown!r}.")
        if isinstance(allowed_fails, bool) or not isinstance(allowed_fails, int) or (
                allowed_fails < 1):
            raise InvalidRequestError(f"route allowed_fails must be a whole number >= 1, "
                                      f"not {allowed_fails!r}.")
        if not entries:
            raise InvalidRequestError("a route needs at least one entry.")
        self.name = name
        self.entries: tuple[Entry, ...] = tuple(parse_entry(e) for e in entries)
        self.providers: tuple[Provider, ...] = tuple(providers)
        self.strategy = strategy
        self.cooldown = float(cooldown)
        self.allowed_fails = allowed_fails
        self.fallback_on_client_errors = fallback_on_client_errors
        self.runtime = runtime
        self.state = RouteState(len(self.entries), strategy=strategy, cooldown=self.cooldown,
                                allowed_fails=allowed_fails)
        #: The skip reasons already logged (each is said once per route).
        self._said: set[str] = set()

    def __repr__(self) -> str:
        return f"<chatplug.Route {self.name} [{', '.join(map(str, self.entries))}]>"

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready description."""
        return {"name": self.name, "entries": [str(e) for e in self.entries],
                "strategy": self.strategy, "cooldown": self.cooldown,
                "allowed_fails": self.allowed_fails,
                "fallback_on_client_errors": self.fallback_on_client_errors}

    def prepare(self, messages: Messages, model: str | None = None, stream: bool = False,
                **options: Any) -> PreparedRoute:
        """Validate the call for every entry; entries that cannot take it are skipped,
        and why is logged (a warning of the ``chatplug.routes`` logger, once per route
        and reason: the CLI shows it on stderr).

        ``model`` is the model of entries that name none.  Takes the arguments of
        :meth:`create`; per-provider parameters are checked per entry.

        :raises InvalidRequestError: no entry can take the call (the reason of each).
        """
        route_options = check_call_options(timeout=options.get("timeout"),
                                           max_retries=options.get("max_retries"),
                                           provider=self.name)
        entry_options = {**options, "max_retries": 0}  # the route is the only retry loop
        calls: list[tuple[int, PreparedCall]] = []
        skipped: list[tuple[int, str]] = []
        for index, (entry, provider) in enumerate(zip(self.entries, self.providers,
                                                      strict=True)):
            try:
                prepared = provider.prepare(messages, entry.model or model, stream,
                                            **entry_options)
            except (InvalidRequestError, AuthenticationError) as exc:
                skipped.append((index, f"{entry}: {exc.message}"))
            else:
                calls.append((index, prepared))
        if not calls:
            # The error says every reason; nothing was skipped in favour of another entry.
            raise InvalidRequestError(
                f"route {self.name!r}: no entry can take this call: "
                + "; ".join(reason for _, reason in skipped),
                provider=self.name,
            )
        for _, reason in skipped:
            if reason not in self._said:
                self._said.add(reason)
                logger.warning("route %s skips %s", self.name, reason)
        return PreparedRoute(self.name, stream, tuple(calls), tuple(skipped), route_options)

    def start(self, prepared: PreparedRoute, *, buffered: bool = False) -> RouteCall:
        """A :class:`RouteCall` running ``prepared`` (nothing is sent until it is iterated)."""
        return RouteCall(self, prepared, buffered=buffered)

    def parse_options(self, options: Mapping[str, str]) -> dict[str, Any]:
        """Convert ``KEY=VALUE`` texts (the CLI's ``-o``) for this route's entries.

        Each entry checks its own parameters when a call is prepared (an entry that
        does not know one is skipped); this converts the texts to the types the
        first entry that accepts them all declares.

        :raises InvalidRequestError: no entry accepts them (the first entry's reason).
        """
        first: InvalidRequestError | None = None
        for provider in self.providers:
            try:
                return provider.parse_options(options)
            except InvalidRequestError as exc:
                first = first or exc
        assert first is not None
        raise first

    def moves_on(self, error: ChatplugError) -> bool:
        """Whether ``error`` sends the call on to the next entry (else it is raised as is)."""
        if isinstance(error, _MOVE_ON):
            return True
        if isinstance(error, ProviderHTTPError):
            return error.retryable or self.fallback_on_client_errors
        return False


class RouteCall:
    """One run of a :class:`PreparedRoute`, with the caller side of a
    :class:`~chatplug.calls.run.Call` (``events()``, ``completion``, ``cancel()``)."""

    def __init__(self, route: Route, prepared: PreparedRoute, *, buffered: bool) -> None:
        settings = route.runtime.settings
        options = prepared.options
        self.route = route
        self.prepared = prepared
        self.buffered = buffered
        self.request_id = REQUEST_ID.get() or os.urandom(6).hex()
        timeout = options.timeout if options.timeout is not None else settings.timeout
        self.policy = RetryPolicy(
            max_retries=settings.max_retries if options.max_retries is None
            else options.max_retries,
            initial=settings.retry_backoff, cap=settings.retry_backoff_max)
        #: The route call's own context: its deadline, and cancellation of the whole call.
        self.context = CallContext(provider=route.name, deadline=time.monotonic() + timeout)
        self._attempts = Attempts(self.context)
        #: One chatplug error per failed attempt, oldest first.
        self.errors: list[ChatplugError] = []
        self.attempts = 0
        self._text_only = False
        #: Whether each attempt keeps its text (set before the call runs).
        self.keep_text = True
        self._current: Call | None = None
        self._empty = CompletionBuilder(route.name, None)

    def __repr__(self) -> str:
        return f"<chatplug RouteCall {self.route.name} {self.request_id}>"

    @property
    def runtime(self) -> Runtime:
        return self.route.runtime

    @property
    def text_only(self) -> bool:
        return self._text_only

    @text_only.setter
    def text_only(self, value: bool) -> None:
        self._text_only = value
        if self._current is not None:
            self._current.text_only = value

    @property
    def provider(self) -> str:
        """The provider serving (or last tried); the route's name before any attempt."""
        return self._current.provider if self._current is not None else self.route.name

    @property
    def model(self) -> str:
        current = self._current
        return current.model if current is not None else (self.route.entries[0].model or "")

    @property
    def builder(self) -> CompletionBuilder:
        return self._current.builder if self._current is not None else self._empty

    @property
    def completion(self) -> Completion:
        """The :class:`Completion` so far: which provider and model served it, and how
        many attempts the route made."""
        builder = self.builder
        builder.attempts = max(self.attempts, 1)
        return builder.snapshot()

    @property
    def cancelled(self) -> bool:
        return self.context.cancelled

    def cancel(self) -> None:
        """End the call from any thread (the current attempt's reads end at once)."""
        self.context.cancel()
        current = self._current
        if current is not None:
            current.cancel()
        self._attempts.wake()

    @property
    def native_io(self) -> bool:
        """Whether an event loop may drive this call itself: every entry's may."""
        return all(prepared.native_async for _, prepared in self.prepared.calls)

    def events(self) -> Iterator[str | Event]:
        """What the serving provider yields; failures before the commit point move on."""
        route = self.route
        usable = [index for index, _ in self.prepared.calls]
        prepared_by_index = dict(self.prepared.calls)
        rounds = self.policy.max_retries + 1
        attempts = self._attempts
        for number in range(1, rounds + 1):
            round_errors: list[ChatplugError] = []
            for index in route.state.order(usable):
                if attempts.cancelled():
                    return
                if attempts.expired():
                    raise self._timed_out(number)
                call = Call(prepared_by_index[index], self.runtime, buffered=self.buffered,
                            policy=RetryPolicy(max_retries=0), route=route.name,
                            request_id=self.request_id, deadline=self.context.deadline)
                call.text_only = self._text_only
                call.keep_text = self.keep_text
                call.context.loop = self.context.loop
                self._current = call
                self.attempts += 1
                try:
                    yield from call.events()
                except ChatplugError as error:
                    if attempts.cancelled():
                        return
                    if committed(self.buffered, call.builder):
                        raise self._interrupted(error) from None
                    if not route.moves_on(error):
                        raise
                    route.state.failed(index, getattr(error, "retry_after", None))
                    self.errors.append(error)
                    round_errors.append(error)
                    continue
                if not call.context.cancelled:
                    route.state.succeeded(index, call.first_piece_s)
                return
            if attempts.expired():
                raise self._timed_out(number)
            wait = self._round_wait(round_errors, number, rounds)
            if wait is None:
                raise self._failed(number)
            if not (yield from attempts.pause(wait)):  # type: ignore[misc]
                return  # cancelled while waiting

    def _round_wait(self, errors: list[ChatplugError], number: int, rounds: int) -> float | None:
        """Seconds before the next round, or ``None`` to give up."""
        if number >= rounds or not errors or not all(e.retryable for e in errors):
            return None
        hints = [hint for hint in (getattr(e, "retry_after", None) for e in errors)
                 if isinstance(hint, (int, float))]
        wait = min(max(hints), MAX_RETRY_AFTER) if hints else self.policy.backoff(number)
        return wait if wait < self._attempts.left() else None

    def _summary(self, rounds: int) -> str:
        entries = len(self.prepared.calls)
        return (f"route {self.route.name!r}: {self.attempts} attempt(s) over {entries} "
                f"entr{'y' if entries == 1 else 'ies'} in {rounds} round(s)")

    def _failed(self, rounds: int) -> RouteFailedError:
        last = self.errors[-1] if self.errors else None
        reason = f"; last: {last.provider}: {last.reason}" if last is not None else ""
        return RouteFailedError(f"{self._summary(rounds)} all failed{reason}.",
                                errors=self.errors, route=self.route.name, rounds=rounds)

    def _timed_out(self, rounds: int) -> ProviderTimeoutError:
        error = ProviderTimeoutError(
            f"{self._summary(rounds)}: the call's deadline passed before any entry answered. "
            "Raise CHATPLUG_TIMEOUT or pass a larger timeout=.",
            provider=self.route.name,
        )
        error.attempts = tuple(f"{e.provider}/{e.model}: {e.reason}" for e in self.errors)
        return error

    def _interrupted(self, error: ChatplugError) -> StreamInterruptedError:
        """A failure after the commit point: the reply stays with the provider that served."""
        if isinstance(error, StreamInterruptedError):
            interrupted = error
        else:
            interrupted = StreamInterruptedError(
                f"{error.reason}; the reply is incomplete (route {self.route.name!r} does not "
                "switch providers after the first piece). Try again.",
                provider=error.provider, model=error.model,
            )
        builder = self.builder
        interrupted.received = max(interrupted.received, builder.text_length)
        interrupted.completion = self.completion
        return interrupted
