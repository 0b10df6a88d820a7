"""``POST /v1/chat/completions``: one OpenAI request through chatplug's own call path.

The request is checked (:mod:`.request`), its ``model`` resolved by the
registry (``Provider``, ``Provider/model`` or a route name) and the call
prepared by the library (messages, parameters, capabilities, key) before any
status is committed, so a bad request is a 400 naming what is wrong.  The
call then runs on chatplug's async API (the library's worker pool and
transport: nothing here talks HTTP upstream), while :class:`Interruption`
watches for the client going away and for the end of a shutdown's grace.

A pure ASGI endpoint: it reads the body and writes the response itself, so
each piece leaves as it arrives and a disconnect is seen at once.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

from ..calls.aio import acomplete, acreate
from ..errors import ChatplugError
from ..wire.encode import ChunkEncoder
from ..wire.openai import completion_body
from .access import note
from .errors import GatewayError, from_chatplug
from .limits import Disconnected, read_body
from .request import ChatRequest, parse_request
from .shutdown import SHUTDOWN, Interruption
from .streaming import EventStream

if TYPE_CHECKING:
    from starlette.types import Receive, Scope, Send

    from ..calls.aio import AsyncStream
    from ..calls.completion import Completion
    from ..calls.prepared import PreparedCall
    from ..routes.route import PreparedRoute
    from .app import Gateway

__all__ = ["ChatCompletions"]

_JSON = (b"content-type", b"application/json")


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


class ChatCompletions:
    """The endpoint; one instance per app."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        gateway = self.gateway
        try:
            request = parse_request(
                await read_body(scope, receive, gateway.settings.max_body_bytes))
            note(scope, model=request.model)
            gateway.inflight.enter()
        except Disconnected:
            return
        except GatewayError as error:
            await error.send(send)
            return
        try:
            try:
                target, model = gateway.registry.resolve(request.model)
                upstream = Upstream(target, model, request)
            except ChatplugError as error:
                await from_chatplug(error).send(send)
                return
            note(scope, provider=upstream.name)
            if request.stream:
                await self._stream(scope, receive, send, upstream, started)
            else:
                await self._complete(scope, receive, send, upstream, started)
        finally:
            gateway.inflight.leave()

    async def _complete(self, scope: Scope, receive: Receive, send: Send, upstream: Upstream,
                        started: float) -> None:
        error: ChatplugError | None = None
        completion: Completion | None = None
        async with Interruption(receive, self.gateway.drain) as interruption:
            called = time.perf_counter()
            try:
                completion = await upstream.complete()
            except ChatplugError as exc:
                error = exc
            upstream_s = time.perf_counter() - called
            interruption.settled()
        if interruption.reason is not None:
            if interruption.reason == SHUTDOWN:
                await _shutting_down().send(send)
            return  # the client is gone: nobody to answer
        if error is not None or completion is None:
            await from_chatplug(error or _no_completion()).send(send)
            return
        if completion.provider:
            note(scope, provider=completion.provider)
        body = json.dumps(completion_body(completion), ensure_ascii=False).encode()
        overhead = time.perf_counter() - started - upstream_s
        await send({"type": "http.response.start", "status": 200, "headers": [
            _JSON,
            (b"x-chatplug-provider", (completion.provider or upstream.name).encode()),
            (b"x-chatplug-attempts", str(completion.attempts).encode()),
            (b"x-chatplug-overhead-ms", _ms(overhead)),
        ]})
        await send({"type": "http.response.body", "body": body})

    async def _stream(self, scope: Scope, receive: Receive, send: Send, upstream: Upstream,
                      started: float) -> None:
        relay: EventStream | None = None
        async with Interruption(receive, self.gateway.drain) as interruption:
            try:
                stream = await upstream.stream()
            except ChatplugError as error:
                interruption.settled()
                await from_chatplug(error).send(send)
                return
            setup = time.perf_counter() - started

            def headers() -> list[tuple[bytes, bytes]]:
                completion = stream.completion
                provider = completion.provider or upstream.name
                note(scope, provider=provider)
                return [(b"x-chatplug-provider", provider.encode()),
                        (b"x-chatplug-attempts", str(completion.attempts).encode()),
                        (b"x-chatplug-overhead-ms", _ms(setup))]

            encoder = ChunkEncoder(model=upstream.served_model,
                                   include_usage=upstream.request.include_usage)
            relay = EventStream(send, encoder, headers)
            events = stream.events()
            try:
                await relay.relay(events)
            except ChatplugError as error:
                if relay.committed:
                    await relay.fail(from_chatplug(error).body)
                else:
                    await from_chatplug(error).send(send)
            finally:
                interruption.settled()
                close = getattr(events, "aclose", None)  # an async generator's: close it now
                if close is not None:
                    await close()
        if interruption.reason == SHUTDOWN:
            if relay is not None and relay.committed:
                await relay.fail(_shutting_down().body)
            else:
                await _shutting_down().send(send)


def _no_completion() -> ChatplugError:
    return ChatplugError("the call ended without a reply or an error; this is a bug in "
                         "chatplug's gateway, please report it.")

