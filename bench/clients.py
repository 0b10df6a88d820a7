"""The clients under comparison: chatplug, and the hand-written ``requests`` baseline.

Both send the same request (GravityEngine's body: model, messages, stream,
temperature, presence_penalty, and its Accept/Origin/Referer headers) to the
same URL, and return the same text.  Each module-level import happens inside
the client's constructor, so a chatplug process never imports the baseline's
code and the other way round (peak RSS and import time stay honest).

The baseline is what a competent developer writes with ``requests`` alone:

* one ``requests.Session`` (keep-alive), ``session.post(url, json=body)``,
  ``raise_for_status()``, ``resp.json()["choices"][0]["message"]["content"]``;
* for streaming, ``stream=True`` and ``resp.iter_lines()`` with its default
  ``chunk_size`` (512).  On a chunked reply urllib3 returns each HTTP chunk
  as soon as it is complete (it never waits for 512 bytes), so this is live;
  each ``data:`` line is ``json.loads``-ed and ``choices[0].delta.content``
  yielded, stopping at ``[DONE]``;
* with threads, one session per thread, as the requests documentation advises
  (chatplug shares one registry, whose transport pools 64 connections).
"""

from __future__ import annotations

import json
import os
from collections.abc import Generator, Iterator
from typing import Any, Protocol

from bench import scenarios

__all__ = ["CLIENTS", "ChatplugClient", "Client", "Pieces", "RequestsClient", "make_client"]

CONNECT_TIMEOUT = 10.0
READ_TIMEOUT = 60.0
#: chatplug's GravityEngine defaults, sent by the baseline too so bodies match.
OPTIONS: dict[str, Any] = {"temperature": 0.7, "presence_penalty": 0.0}


class Pieces(Protocol):
    """A stream of text pieces that can be closed early (a generator, chatplug's Stream)."""

    def __iter__(self) -> Iterator[str]: ...

    def __next__(self) -> str: ...

    def close(self) -> None: ...


class Client(Protocol):
    """What every measurement needs from a client."""

    name: str

    def complete(self, scenario: str) -> str:
        """The whole reply text of a non-streamed call."""
        ...

    def stream(self, scenario: str) -> Pieces:
        """The pieces of a streamed call, as they arrive."""
        ...

    def for_thread(self) -> Client:
        """The client one more worker thread should use."""
        ...

    def close(self) -> None: ...


def headers_for(base_url: str) -> dict[str, str]:
    """GravityEngine's headers (see ``chatplug.providers.gravityengine.headers_for``)."""
    return {
        "Accept": "text/event-stream, application/json",
        "Origin": base_url,
        "Referer": f"{base_url}/",
    }


def request_body(scenario: str, stream: bool) -> dict[str, Any]:
    """The JSON body both clients send for ``scenario``."""
    return {
        "model": scenarios.MODEL,
        "messages": scenarios.messages(scenario),
        "stream": stream,
        **OPTIONS,
    }


class ChatplugClient:
    """chatplug as its README shows it: ``registry.get(...).create(...)``."""

    name = "chatplug"

    def __init__(self, base_url: str) -> None:
        # Read when the registry's settings are first needed, i.e. on the first call.
        os.environ["CHATPLUG_GRAVITYENGINE_URL"] = base_url
        from chatplug import registry

        self._registry = registry
        self._provider = registry.get("GravityEngine")

    def complete(self, scenario: str) -> str:
        return self._provider.create(scenarios.messages(scenario))

    def stream(self, scenario: str) -> Pieces:
        return self._provider.create(scenarios.messages(scenario), stream=True)

    def for_thread(self) -> ChatplugClient:
        return self  # one registry, one pooled transport, shared by every thread

    def close(self) -> None:
        self._registry.close()


class RequestsClient:
    """The hand-written baseline: ``requests.Session`` and nothing else."""

    name = "requests"

    def __init__(self, base_url: str) -> None:
        import requests

        self._base_url = base_url
        self._url = base_url + scenarios.CHAT_PATH
        self._headers = headers_for(base_url)
        self._session = requests.Session()

    def complete(self, scenario: str) -> str:
        response = self._session.post(
            self._url,
            json=request_body(scenario, False),
            headers=self._headers,
            timeout=(CONNECT_TIMEOUT, READ_TIMEOUT),
        )
        response.raise_for_status()
        text: str = response.json()["choices"][0]["message"]["content"]
        return text

    def stream(self, scenario: str) -> Pieces:
        return self._stream(scenario)

    def _stream(self, scenario: str) -> Generator[str, None, None]:
        with self._session.post(
            self._url,
            json=request_body(scenario, True),
            headers=self._headers,
            stream=True,
            timeout=(CONNECT_TIMEOUT, READ_TIMEOUT),
        ) as response:
            response.raise_for_status()
            for line in response.iter_lines():
                if not line.startswith(b"data:"):
                    continue
                data = line[5:].strip()
                if data == b"[DONE]":
                    return
                text = json.loads(data)["choices"][0]["delta"].get("content")
                if text:
                    yield text

    def for_thread(self) -> RequestsClient:
        return RequestsClient(self._base_url)

    def close(self) -> None:
        self._session.close()


def make_client(kind: str, base_url: str) -> Client:
    """The client called ``kind`` (``chatplug``, ``requests`` or ``raw``)."""
    if kind == "chatplug":
        return ChatplugClient(base_url)
    if kind == "requests":
        return RequestsClient(base_url)
    if kind == "raw":
        from bench.rawclient import RawClient

        return RawClient(base_url)
    raise ValueError(f"unknown client {kind!r}; expected one of {', '.join(CLIENTS)}")


CLIENTS = ("chatplug", "requests", "raw")
