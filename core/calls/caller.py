"""The caller side every target of a call shares: :class:`Caller`.

A provider and a route are both *callers*: they validate a call
(:meth:`Caller.prepare`, no IO) and start it (:meth:`Caller.start`, a
:class:`Running` call).  ``create``, ``complete``, ``acreate`` and
``acomplete`` are written once, here, on those two steps, so the sync API,
the async API and routes share one path and none copies it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, Protocol, overload

from ..errors import InvalidRequestError
from .stream import Stream

if TYPE_CHECKING:
    from ..events import Event
    from ..transport.context import CallContext
    from .aio import AsyncStream
    from .completion import Completion, CompletionBuilder
    from .runtime import Runtime

__all__ = ["Caller", "Messages", "Prepared", "Running"]

Messages = Sequence[Mapping[str, Any]]


class Prepared(Protocol):
    """A validated call: what :meth:`Caller.start` runs."""

    @property
    def stream(self) -> bool: ...

    @property
    def supports_stream(self) -> bool: ...


class Running(Protocol):
    """A call being run (:class:`~chatplug.calls.run.Call`, or a route's)."""

    text_only: bool
    #: ``False``: text pieces are counted, not kept (a relay); set before running.
    keep_text: bool

    @property
    def provider(self) -> str: ...

    @property
    def model(self) -> str: ...

    @property
    def builder(self) -> CompletionBuilder: ...

    @property
    def completion(self) -> Completion: ...

    @property
    def context(self) -> CallContext: ...

    @property
    def runtime(self) -> Runtime: ...

    @property
    def native_io(self) -> bool: ...

    def events(self) -> Iterator[str | Event]: ...

    def cancel(self) -> None: ...


def _drain(call: Running) -> Running:
    call.text_only = True
    for _ in call.events():
        pass
    return call


class Caller(ABC):
    """``create``/``complete``/``acreate``/``acomplete`` on top of ``prepare`` and ``start``."""

    name: str

    @abstractmethod
    def prepare(self, messages: Messages, model: str | None = None, stream: bool = False,
                **options: Any) -> Prepared:
        """Validate a call without sending anything."""

    @abstractmethod
    def start(self, prepared: Any, *, buffered: bool = False) -> Running:
        """Start running ``prepared`` (nothing is sent until it is iterated)."""

    @overload
    def create(
        self,
        messages: Messages,
        model: str | None = ...,
        stream: Literal[False] = ...,
        **options: Any,
    ) -> str: ...

    @overload
    def create(
        self,
        messages: Messages,
        model: str | None = ...,
        *,
        stream: Literal[True],
        **options: Any,
    ) -> Stream: ...

    @overload
    def create(
        self,
        messages: Messages,
        model: str | None = ...,
        stream: bool = ...,
        **options: Any,
    ) -> str | Stream: ...

    def create(
        self,
        messages: Messages,
        model: str | None = None,
        stream: bool = False,
        **options: Any,
    ) -> str | Stream:
        """Send a chat completion; the whole text, or a :class:`Stream` of pieces.

        Everything is validated before any network traffic.  Keyword arguments
        are the provider's parameters (see ``params``) and chatplug's call options:

        :param timeout: total seconds the call may take, retries and waits included
            (default ``CHATPLUG_TIMEOUT``).
        :param max_retries: retries after a failed attempt (default ``CHATPLUG_MAX_RETRIES``).
        :param api_key: the key for this call instead of the configured one.
        :param url: the base URL for this call instead of the configured one.
        :param headers: extra request headers.
        :param extra_body: fields merged into the JSON request body.
        :raises InvalidRequestError: bad messages, parameters, ``stream`` or options.
        :raises ModelNotSupportedError: a model the provider does not list.
        :raises AuthenticationError: the provider needs a key and none is configured.
        :raises ProviderError: (subclasses) when talking to the provider fails.
        """
        prepared = self.prepare(messages, model, stream, **options)
        if stream:
            whole = not prepared.supports_stream
            return Stream(self.start(prepared, buffered=whole), whole=whole)
        text: str = _drain(self.start(prepared, buffered=True)).builder.text
        return text

    def complete(self, messages: Messages, model: str | None = None,
                 **options: Any) -> Completion:
        """Send a chat completion and return the assembled :class:`Completion`:
        text, finish reason, usage, tool calls, reasoning, id, served model.

        Takes the arguments of :meth:`create` (without ``stream``) and raises its errors.
        """
        self._no_stream(options, "complete", "create")
        prepared = self.prepare(messages, model, False, **options)
        return _drain(self.start(prepared, buffered=True)).completion

    async def acreate(self, messages: Messages, model: str | None = None,
                      stream: bool = False, **options: Any) -> str | AsyncStream:
        """:meth:`create` for asyncio: the text, or an :class:`AsyncStream` with
        ``stream=True``.  The call runs on chatplug's worker pool and never blocks
        the event loop; cancelling the task closes the HTTP response."""
        from .aio import acreate

        return await acreate(self, self.prepare(messages, model, stream, **options))

    async def acomplete(self, messages: Messages, model: str | None = None,
                        **options: Any) -> Completion:
        """:meth:`complete` for asyncio."""
        from .aio import acomplete

        self._no_stream(options, "acomplete", "acreate")
        return await acomplete(self, self.prepare(messages, model, False, **options))

    def _no_stream(self, options: Mapping[str, Any], method: str, streaming: str) -> None:
        if "stream" in options:
            raise InvalidRequestError(f"{method}() takes no stream argument; use "
                                      f"{streaming}(stream=True) to stream.", provider=self.name)
