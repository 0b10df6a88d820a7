"""What every completion endpoint of the gateway does, whatever wire it speaks.

An :class:`Endpoint` reads and checks the request (its wire's :meth:`~Endpoint.parse`),
resolves ``model`` in the registry (``Provider``, ``Provider/model`` or a route) and
has the library prepare the call (messages, parameters, capabilities, key) before any
status is committed, so a bad request is a 400 naming what is wrong.  The call then
runs on chatplug's async API (nothing here talks HTTP upstream), while
:class:`~.shutdown.Interruption` watches for the client going away and for the end of
a shutdown's grace.  A whole reply is the wire's :meth:`~Endpoint.whole` body; a
stream goes through :class:`~.streaming.EventStream` with the wire's encoder.

The wires (:mod:`.chat`, :mod:`.messages`, :mod:`.responses`) say only what differs:
how a request reads, how a reply and an error are written.  A pure ASGI endpoint: it
reads the body and writes the response itself, so each piece leaves as it arrives and
a disconnect is seen at once.
"""

from __future__ import annotations

import abc
import json
import time
from typing import TYPE_CHECKING, Any

from ..calls.aio import acomplete, acreate
from ..errors import ChatplugError
from .access import SCOPE_KEY, note
from .errors import GatewayError, from_chatplug
from .limits import Disconnected, read_body
from .models import model_error
from .record import KEY_SCOPE, RequestRecord
from .request import ChatRequest
from .shutdown import SHUTDOWN, Interruption
from .streaming import EventStream

if TYPE_CHECKING:
    from starlette.types import Receive, Scope, Send

    from ..calls.aio import AsyncStream
    from ..calls.completion import Completion
    from ..calls.prepared import PreparedCall
    from ..routes.route import PreparedRoute
    from .app import Gateway
    from .streaming import Encoder

__all__ = ["Endpoint", "Upstream"]

_JSON = (b"content-type", b"application/json")
#: ``json.dumps(..., ensure_ascii=False)`` builds an encoder per call; one serves them all.
_encode = json.JSONEncoder(ensure_ascii=False).encode


def _shutting_down() -> GatewayError:
    return GatewayError(503, "the gateway is shutting down and ended this reply; retry, "
                             "another replica will answer.", code="server_shutting_down")


class Upstream:
    """One request's target: a provider's prepared call, or a route (which prepares
    each of its entries itself)."""

    __slots__ = ("model", "prepared", "request", "target")

    def __init__(self, target: Any, model: str | None, request: ChatRequest) -> None:
        self.target = target
        self.model = model
        self.request = request
        prepare = getattr(target, "prepare", None)
        self.prepared: PreparedCall | PreparedRoute | None = None
        if prepare is not None:
            self.prepared = prepare(request.messages, model, request.stream,
                                    extra_body=request.extra_body, **request.params)

    @property
    def name(self) -> str:
        # A provider's prepared call names it; a route's names the route.
        provider = getattr(self.prepared, "provider", None)
        return str(provider or self.target.name)

    @property
    def served_model(self) -> str:
        model = getattr(self.prepared, "model", None)
        return str(model or self.model or self.target.name)

    def _options(self) -> dict[str, Any]:
        return {"extra_body": self.request.extra_body, **self.request.params}

    async def complete(self) -> Completion:
        if self.prepared is not None:
            return await acomplete(self.target, self.prepared)
        completion: Completion = await self.target.acomplete(
            self.request.messages, self.model, **self._options())
        return completion

    async def stream(self) -> AsyncStream:
        if self.prepared is not None:
            # The relay passes each piece on and keeps none of the text.
            stream: Any = await acreate(self.target, self.prepared, keep_text=False)
        else:
            stream = await self.target.acreate(self.request.messages, self.model, stream=True,
                                               **self._options())
        return stream  # type: ignore[no-any-return]


def _ms(seconds: float) -> bytes:
    return f"{seconds * 1000:.2f}".encode()


class Endpoint(abc.ABC):
    """One wire's completion endpoint; one instance per app.  Subclasses say how their
    wire reads a request (:meth:`parse`, :meth:`request_for`) and writes a reply
    (:meth:`whole`, :meth:`encoder`); :attr:`anthropic` picks the error envelope."""

    #: Errors in Anthropic's envelope and statuses (``/v1/messages``), else OpenAI's.
    anthropic = False

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    # -- what a wire says ----------------------------------------------------------------

    @abc.abstractmethod
    def parse(self, body: bytes) -> Any:
        """The wire's request, checked.

        :raises GatewayError: 400 naming what is wrong.
        """

    def request_for(self, parsed: Any, target: Any) -> ChatRequest:
        """The chat request to run against ``target`` (the parsed one, by default)."""
        request: ChatRequest = parsed
        return request

    def headers(self, parsed: Any, request: ChatRequest) -> list[tuple[bytes, bytes]]:
        """Extra response headers of this wire (e.g. the fields it dropped)."""
        return []

    @abc.abstractmethod
    def whole(self, completion: Completion, upstream: Upstream, parsed: Any) -> dict[str, Any]:
        """A whole reply's body."""

    @abc.abstractmethod
    def encoder(self, upstream: Upstream, parsed: Any) -> Encoder:
        """The encoder of a stream."""

    async def before(self, parsed: Any) -> None:
        """Runs after parsing, before the model is resolved (a stored conversation is
        loaded here).

        :raises GatewayError: the request cannot go on.
        """
        return None  # most wires have nothing to load

    async def after(self, parsed: Any, reply: Any) -> None:
        """Runs once a reply is whole, before its last bytes go out (a response is stored
        here): ``reply`` is the whole body, or the stream's encoder."""
        return None  # most wires keep nothing

    # -- the path ------------------------------------------------------------------------

    async def _fail(self, send: Send, error: GatewayError,
                    headers: list[tuple[bytes, bytes]] | None = None) -> None:
        await error.send(send, headers, anthropic=self.anthropic)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        gateway = self.gateway
        # The accountants (keys and limits, the ledger, metrics) see a record of the
        # request; without any, the hot path builds none.
        record: RequestRecord | None = None
        if gateway.accountants:
            info = scope.get(SCOPE_KEY) or {}
            record = RequestRecord(scope["path"], str(info.get("request_id") or ""),
                                   started=started, key=scope.get(KEY_SCOPE))
        try:
            await self._serve(scope, receive, send, record, started)
        finally:
            self._settle(record)

    def _settle(self, record: RequestRecord | None) -> None:
        # Once per request.  A served reply is settled before its last bytes leave, so that
        # whatever the client has received is already in the ledger's journal (a SIGKILL
        # right after it loses no row); every other outcome when the request ends.
        if record is not None and not record.told:
            record.told = True
            record.duration = record.elapsed()
            for accountant in self.gateway.accountants:
                accountant.settled(record)

    async def _serve(self, scope: Scope, receive: Receive, send: Send,
                     record: RequestRecord | None, started: float) -> None:
        gateway = self.gateway
        try:
            body = await read_body(scope, receive, gateway.settings.max_body_bytes)
            if record is not None:
                record.body_bytes = len(body)
            parsed = self.parse(body)
            note(scope, model=parsed.model)
            await self.before(parsed)
        except Disconnected:
            _closed(record)
            return
        except GatewayError as error:
            _failed(record, error)
            await self._fail(send, error)
            return
        gateway.inflight.enter()
        try:
            try:
                # Awaited: a bare name may need the servers' model lists (off the loop).
                target, model = await gateway.registry.aresolve(parsed.model or None)
            except ChatplugError as error:
                gateway_error = model_error(error)
                _failed(record, gateway_error)
                await self._fail(send, gateway_error)
                return
            try:
                request = self.request_for(parsed, target)
                upstream = Upstream(target, model, request)
            except ChatplugError as error:
                gateway_error = from_chatplug(error)
                _failed(record, gateway_error)
                await self._fail(send, gateway_error)
                return
            note(scope, provider=upstream.name)
            if record is not None:
                record.requested_model = parsed.model
                record.stream = bool(request.stream)
                record.provider = upstream.name
                record.model = upstream.served_model
                try:
                    for accountant in gateway.accountants:
                        await accountant.admit(record)
                except GatewayError as error:
                    _failed(record, error)
                    await self._fail(send, error)
                    return
            extra = self.headers(parsed, request)
            if request.stream:
                await self._stream(scope, receive, send, upstream, parsed, extra, started,
                                   record)
            else:
                await self._complete(scope, receive, send, upstream, parsed, extra, started,
                                     record)
        finally:
            gateway.inflight.leave()

    async def _complete(self, scope: Scope, receive: Receive, send: Send, upstream: Upstream,
                        parsed: Any, extra: list[tuple[bytes, bytes]], started: float,
                        record: RequestRecord | None) -> None:
        error: ChatplugError | None = None
        completion: Completion | None = None
        async with Interruption(scope, receive, self.gateway.drain) as interruption:
            called = time.perf_counter()
            try:
                completion = await upstream.complete()
            except ChatplugError as exc:
                error = exc
            upstream_s = time.perf_counter() - called
            interruption.settled()
        if interruption.reason is not None:
            if interruption.reason == SHUTDOWN:
                _failed(record, _shutting_down())
                await self._fail(send, _shutting_down())
            else:
                _closed(record)
            return  # the client is gone: nobody to answer
        if error is not None or completion is None:
            gateway_error = from_chatplug(error or _no_completion())
            _failed(record, gateway_error)
            await self._fail(send, gateway_error, extra)
            return
        if completion.provider:
            note(scope, provider=completion.provider)
        if record is not None:
            _served(record, completion, len(completion.text))
            record.first_piece = record.elapsed()
        reply = self.whole(completion, upstream, parsed)
        await self.after(parsed, reply)
        body = _encode(reply).encode()
        overhead = time.perf_counter() - started - upstream_s
        self._settle(record)
        await send({"type": "http.response.start", "status": 200, "headers": [
            _JSON,
            (b"content-length", b"%d" % len(body)),  # framed by its length, not chunked
            (b"x-chatplug-provider", (completion.provider or upstream.name).encode()),
            (b"x-chatplug-attempts", str(completion.attempts).encode()),
            (b"x-chatplug-overhead-ms", _ms(overhead)),
            *extra,
        ]})
        await send({"type": "http.response.body", "body": body})

    async def _stream(self, scope: Scope, receive: Receive, send: Send, upstream: Upstream,
                      parsed: Any, extra: list[tuple[bytes, bytes]], started: float,
                      record: RequestRecord | None) -> None:
        relay: EventStream | None = None
        async with Interruption(scope, receive, self.gateway.drain) as interruption:
            try:
                stream = await upstream.stream()
            except ChatplugError as error:
                interruption.settled()
                gateway_error = from_chatplug(error)
                _failed(record, gateway_error)
                await self._fail(send, gateway_error, extra)
                return
            setup = time.perf_counter() - started

            def headers() -> list[tuple[bytes, bytes]]:
                completion = stream.completion
                provider = completion.provider or upstream.name
                note(scope, provider=provider)
                if record is not None:  # the status is committed with the first piece
                    record.first_piece = record.elapsed()
                    record.status = 200
                return [(b"x-chatplug-provider", provider.encode()),
                        (b"x-chatplug-attempts", str(completion.attempts).encode()),
                        (b"x-chatplug-overhead-ms", _ms(setup)), *extra]

            encoder = self.encoder(upstream, parsed)

            async def before_end() -> None:
                await self.after(parsed, encoder)
                if record is not None:  # the stream ended whole: settled before its end
                    _served(record, stream.completion, stream.text_length)
                    self._settle(record)

            relay = EventStream(send, encoder, headers, before_end)
            events = stream.batches()
            try:
                await relay.relay(events)
            except ChatplugError as error:
                gateway_error = from_chatplug(error)
                _failed(record, gateway_error, committed=relay.committed)
                if relay.committed:
                    await relay.fail(gateway_error)
                else:
                    await self._fail(send, gateway_error, extra)
            finally:
                relay.close()
                interruption.settled()
                if record is not None:  # a client gone mid-stream was served this much
                    _served(record, stream.completion, stream.text_length)
                close = getattr(events, "aclose", None)  # an async generator's: close it now
                if close is not None:
                    await close()
        if interruption.reason == SHUTDOWN:
            _failed(record, _shutting_down(), committed=relay is not None and relay.committed)
            if relay is not None and relay.committed:
                await relay.fail(_shutting_down())
            else:
                await self._fail(send, _shutting_down())
        elif interruption.reason is not None:
            _closed(record)


#: The status of a request whose client went away before its reply was whole (nginx's).
CLIENT_CLOSED = 499


#: Characters per token, for a reply that reports no usage (a rough, common rule).
_CHARS_PER_TOKEN = 4


def _served(record: RequestRecord, completion: Completion, characters: int) -> None:
    # What served it, and what it cost in tokens (a stream's usage arrives at its end).
    record.status = record.status or 200
    record.provider = completion.provider or record.provider
    record.model = completion.model or record.model
    record.attempts = completion.attempts
    record.usage = completion.usage
    if completion.usage is None:
        record.estimated_tokens = -(-(record.body_bytes + characters) // _CHARS_PER_TOKEN)


def _failed(record: RequestRecord | None, error: GatewayError, *,
            committed: bool = False) -> None:
    if record is not None:
        # A committed stream keeps its 200; the error is the in-band one it ended with.
        record.status = 200 if committed else error.status
        record.error_type = error.code


def _closed(record: RequestRecord | None) -> None:
    if record is not None:
        record.status = CLIENT_CLOSED
        record.error_type = "client_closed"


def _no_completion() -> ChatplugError:
    return ChatplugError("the call ended without a reply or an error; this is a bug in "
                         "chatplug's gateway, please report it.")
