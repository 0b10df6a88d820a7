"""Retries do not multiply: the real openai and anthropic SDKs, with their default retries,
against the gateway against a scripted upstream, counting the upstream's requests.

The gateway retries an upstream 429/5xx (``CHATPLUG_MAX_RETRIES``, waiting the upstream's
``Retry-After``) and then says ``x-should-retry: false``, so the SDK does not start the
whole round again; a gateway that did not retry leaves the retrying to the SDK.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import anthropic
import openai
import pytest

from chatplug.server import ServerSettings, create_app
from chatplug.testing import ScriptedServer
from chatplug.testing.pytest_plugin import registry_for
from tests.gatewayserver import GatewayServer

MESSAGES = [{"role": "user", "content": "hello"}]
MODEL = "OpenAI/gpt-4o-mini"
#: More failures than any number of retries here could use: an extra request would
#: fail too, and be counted.
FAILURES = 12


@pytest.fixture
def upstream() -> Iterator[ScriptedServer]:
    with ScriptedServer(lifetime=60) as server:
        yield server


def gateway_for(upstream: ScriptedServer, **settings: Any) -> GatewayServer:
    """The gateway with fast backoff (an upstream's Retry-After still rules)."""
    registry = registry_for(upstream, timeout=20, retry_backoff=0.02, retry_backoff_max=0.05,
                            **settings)
    return GatewayServer(create_app(registry, ServerSettings()), lifetime=60)


def fail(upstream: ScriptedServer, status: int, headers: dict[str, str] | None = None) -> None:
    for _ in range(FAILURES):
        upstream.add(status=status, text="try later", headers=headers or {})


def sdk(gateway: GatewayServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.url + "/v1", api_key="client-key", timeout=20)


@pytest.mark.parametrize("stream", [False, True])
def test_a_429_the_gateway_waited_on_is_not_retried_again(upstream: ScriptedServer,
                                                          stream: bool) -> None:
    fail(upstream, 429, {"Retry-After": "1"})
    with gateway_for(upstream) as gateway, sdk(gateway) as client:
        started = time.monotonic()
        with pytest.raises(openai.RateLimitError) as info:
            client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=stream)
        elapsed = time.monotonic() - started
    assert len(upstream.requests) == 3  # the gateway's three attempts; none from the SDK
    headers = info.value.response.headers
    assert headers["x-should-retry"] == "false"
    assert headers["retry-after"] == "1"
    assert headers["x-chatplug-attempts"] == "3"
    assert 2 <= elapsed < 5  # the gateway's two waits of 1 s, and no second round of them


def test_a_5xx_after_the_gateways_retries_is_final(upstream: ScriptedServer) -> None:
    fail(upstream, 503)
    with gateway_for(upstream) as gateway, sdk(gateway) as client, \
            pytest.raises(openai.InternalServerError) as info:
        client.chat.completions.create(model=MODEL, messages=MESSAGES)
    assert info.value.status_code == 502
    assert info.value.response.headers["x-should-retry"] == "false"
    assert len(upstream.requests) == 3


def test_a_wait_longer_than_the_sdks_honour_is_not_retried(upstream: ScriptedServer) -> None:
    # Over a minute: the gateway does not wait, and the SDK (which would back off half a
    # second instead of honouring it) is told not to retry.
    fail(upstream, 429, {"Retry-After": "120"})
    with gateway_for(upstream) as gateway, sdk(gateway) as client:
        started = time.monotonic()
        with pytest.raises(openai.RateLimitError) as info:
            client.chat.completions.create(model=MODEL, messages=MESSAGES)
        elapsed = time.monotonic() - started
    assert len(upstream.requests) == 1
    assert info.value.response.headers["retry-after"] == "120"
    assert info.value.response.headers["x-should-retry"] == "false"
    assert elapsed < 2


def test_a_gateway_that_does_not_retry_leaves_it_to_the_sdk(upstream: ScriptedServer) -> None:
    fail(upstream, 429, {"Retry-After": "0.2"})
    with gateway_for(upstream, max_retries=0) as gateway, sdk(gateway) as client, \
            pytest.raises(openai.RateLimitError) as info:
        client.chat.completions.create(model=MODEL, messages=MESSAGES)
    assert "x-should-retry" not in info.value.response.headers
    assert len(upstream.requests) == 3  # the SDK's three tries, one upstream request each


@pytest.fixture
def claude_gateway(upstream: ScriptedServer) -> Iterator[GatewayServer]:
    with gateway_for(upstream) as gateway:
        yield gateway


@pytest.mark.parametrize(("status", "headers", "error"), [
    (429, {"Retry-After": "1"}, anthropic.RateLimitError),
    (503, {}, anthropic.APIStatusError),  # 529 overloaded_error, which the SDK retries
])
def test_the_anthropic_sdk_does_not_retry_either(
        upstream: ScriptedServer, claude_gateway: GatewayServer, status: int,
        headers: dict[str, str], error: type[Exception]) -> None:
    fail(upstream, status, headers)
    with anthropic.Anthropic(base_url=claude_gateway.url, api_key="client-key",
                             timeout=20) as client, pytest.raises(error) as info:
        client.messages.create(model=MODEL, max_tokens=10, messages=MESSAGES)  # type: ignore[arg-type]
    assert isinstance(info.value, anthropic.APIStatusError)
    assert info.value.response.headers["x-should-retry"] == "false"
    assert info.value.status_code == (429 if status == 429 else 529)
    assert len(upstream.requests) == 3
