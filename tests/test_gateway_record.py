"""The gateway's accounting seam (``chatplug.server.record``): every completion request
is admitted (or refused, in the client's wire) before anything goes upstream, and settled
exactly once with what served it, its status and its usage — whole replies, streams,
upstream failures and clients that go away."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import anthropic
import openai
import pytest
import requests

from chatplug.server import ServerSettings, create_app
from chatplug.server.errors import GatewayError
from chatplug.server.record import RequestRecord
from chatplug.testing import ScriptedServer
from chatplug.testing.pytest_plugin import registry_for
from tests.gatewayserver import GatewayServer

USAGE = {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12}
USER = [{"role": "user", "content": "Hi"}]


class Recorder:
    """An accountant that refuses the model ``OpenAI/refused`` and keeps every record."""

    def __init__(self) -> None:
        self.admitted: list[RequestRecord] = []
        self.settled_records: list[RequestRecord] = []
        self.settled_event = threading.Event()

    async def admit(self, record: RequestRecord) -> None:
        self.admitted.append(record)
        if record.requested_model == "OpenAI/refused":
            raise GatewayError(429, "this key's 10 requests per minute are used up; retry "
                               "in 7 s.", code="rate_limit_exceeded", retry_after=7)

    def settled(self, record: RequestRecord) -> None:
        self.settled_records.append(record)
        self.settled_event.set()

    def wait(self, count: int) -> list[RequestRecord]:
        deadline = time.monotonic() + 10
        while len(self.settled_records) < count and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.settled_records


@pytest.fixture
def setup() -> Iterator[tuple[ScriptedServer, GatewayServer, Recorder]]:
    with ScriptedServer(lifetime=60) as upstream:
        app = create_app(registry_for(upstream, max_retries=0, timeout=5),
                         ServerSettings())
        recorder = Recorder()
        app.state.gateway.accountants.append(recorder)
        with GatewayServer(app, lifetime=60) as gateway:
            yield upstream, gateway, recorder


def test_a_whole_reply_is_settled_once_with_its_usage(setup: Any) -> None:
    upstream, gateway, recorder = setup
    upstream.add(text="Hello there", usage=USAGE, stream=False)
    client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key="unused", max_retries=0)
    reply = client.chat.completions.create(model="OpenAI/gpt-4o-mini", messages=USER)
    assert reply.choices[0].message.content == "Hello there"
    (record,) = recorder.wait(1)
    assert record.endpoint == "/v1/chat/completions"
    assert record.request_id
    assert record.requested_model == "OpenAI/gpt-4o-mini"
    assert (record.provider, record.model, record.status) == ("OpenAI", "gpt-4o-mini", 200)
    assert record.usage is not None
    assert (record.usage.prompt_tokens, record.usage.completion_tokens) == (5, 7)
    assert record.error_type is None
    assert record.duration is not None
    assert record.first_piece is not None
    assert record.first_piece <= record.duration


def test_a_stream_is_settled_after_its_end_with_the_usage_of_its_last_chunk(setup: Any
                                                                            ) -> None:
    upstream, gateway, recorder = setup
    upstream.add(text="one two three", usage=USAGE)
    client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key="unused", max_retries=0)
    pieces = [chunk.choices[0].delta.content for chunk in client.chat.completions.create(
        model="OpenAI/gpt-4o-mini", messages=USER, stream=True) if chunk.choices]
    assert "".join(p for p in pieces if p) == "one two three"
    (record,) = recorder.wait(1)
    assert record.stream
    assert record.status == 200
    assert record.usage is not None
    assert record.usage.total_tokens == 12
    assert record.first_piece is not None
    assert record.duration is not None
    assert 0 < record.first_piece <= record.duration


def test_a_refusal_is_in_the_clients_wire_and_nothing_goes_upstream(setup: Any) -> None:
    upstream, gateway, recorder = setup
    before = len(upstream.requests)
    client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key="unused", max_retries=0)
    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model="OpenAI/refused", messages=USER)
    assert caught.value.code == "rate_limit_exceeded"
    assert caught.value.response.headers["retry-after"] == "7"
    claude = anthropic.Anthropic(base_url=gateway.url, api_key="unused", max_retries=0)
    with pytest.raises(anthropic.RateLimitError):
        claude.messages.create(model="OpenAI/refused", max_tokens=10, messages=USER)
    assert len(upstream.requests) == before
    records = recorder.wait(2)
    assert [(r.endpoint, r.status, r.error_type) for r in records] == [
        ("/v1/chat/completions", 429, "rate_limit_exceeded"),
        ("/v1/messages", 429, "rate_limit_exceeded")]


def test_upstream_failures_and_bad_requests_are_settled_with_their_status(setup: Any
                                                                          ) -> None:
    upstream, gateway, recorder = setup
    upstream.add(status=400, text="bad")
    response = requests.post(f"{gateway.url}/v1/chat/completions", timeout=10,
                             json={"model": "OpenAI/gpt-4o-mini", "messages": USER})
    assert response.status_code == 400
    response = requests.post(f"{gateway.url}/v1/chat/completions", timeout=10,
                             json={"model": "OpenAI/gpt-4o-mini", "messages": "nope"})
    assert response.status_code == 400
    records = recorder.wait(2)
    assert [r.status for r in records] == [400, 400]
    assert records[0].provider == "OpenAI"
    assert records[1].requested_model is None  # refused before its model was resolved
    assert len(recorder.admitted) == 1


def test_a_client_that_goes_away_mid_stream_is_settled_as_closed(setup: Any) -> None:
    upstream, gateway, recorder = setup
    upstream.add(pieces=["a"] * 50, piece_delay=0.05)
    with requests.post(f"{gateway.url}/v1/chat/completions", stream=True, timeout=10,
                       json={"model": "OpenAI/gpt-4o-mini", "messages": USER,
                             "stream": True}) as response:
        next(response.iter_lines())
    (record,) = recorder.wait(1)
    assert (record.status, record.error_type) == (499, "client_closed")
    assert record.first_piece is not None
