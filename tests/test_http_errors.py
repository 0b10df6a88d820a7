"""Failures on the wire reach the caller as chatplug's typed errors, with no key in them."""

from __future__ import annotations

import json
import time

import pytest

from chatplug import (
    AuthenticationError,
    ChatplugError,
    ProviderConnectionError,
    ProviderHTTPError,
    ProviderResponseError,
    ProviderTimeoutError,
    RateLimitError,
    Registry,
)
from chatplug.testing import ScriptedServer
from chatplug.testing.pytest_plugin import registry_for

from .conftest import PLANTED_KEY, free_port
from .rawserver import RawServer, sleep_until_stopped

MESSAGES = [{"role": "user", "content": "hello"}]


def gravity(registry: Registry) -> object:
    return registry.get("GravityEngine")


@pytest.mark.parametrize(
    ("status", "error", "fragment"),
    [
        (500, ProviderHTTPError, "500 Internal Server Error: boom. The server failed"),
        (502, ProviderHTTPError, "502 Bad Gateway"),
        (503, ProviderHTTPError, "503 Service Unavailable"),
        (400, ProviderHTTPError, "400 Bad Request: boom. The server rejected"),
        (401, AuthenticationError, "refused the API key"),
        (403, AuthenticationError, "refused the API key"),
        (429, RateLimitError, "rate limited"),
    ],
)
def test_http_status_maps_to_a_typed_error(
    chatplug_registry: Registry, chatplug_server: ScriptedServer,
    status: int, error: type[ChatplugError], fragment: str,
) -> None:
    chatplug_server.add(status=status, text="boom")
    with pytest.raises(error, match=fragment) as info:
        chatplug_registry.get("GravityEngine").create(messages=MESSAGES, max_retries=0)
    assert info.value.provider == "GravityEngine"
    assert info.value.model == "gpt-3.5-turbo-16k"
    assert getattr(info.value, "status_code", None) == status


def test_404_says_to_check_the_url(chatplug_server: ScriptedServer) -> None:
    registry = registry_for(chatplug_server)
    registry = Registry(settings=registry.settings.model_copy(update={
        "provider_urls": {"gravityengine": chatplug_server.url + "/nothing-here/x"}}))
    chatplug_server.add(status=404, text="not found")
    with pytest.raises(ProviderHTTPError, match="Check the provider's URL setting") as info:
        registry.get("GravityEngine").create(messages=MESSAGES)
    assert info.value.status_code == 404


@pytest.mark.parametrize(("headers", "expected"), [
    ({"Retry-After": "7"}, 7.0),
    ({"retry-after-ms": "1500"}, 1.5),
    ({"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}, 0.0),  # a date in the past
    ({}, None),
])
def test_rate_limit_carries_retry_after(
    chatplug_registry: Registry, chatplug_server: ScriptedServer,
    headers: dict[str, str], expected: float | None,
) -> None:
    chatplug_server.add(status=429, text="slow down", headers=headers)
    with pytest.raises(RateLimitError) as info:
        chatplug_registry.get("GravityEngine").create(messages=MESSAGES, max_retries=0)
    assert info.value.retry_after == expected


def test_html_page_with_status_200(
    chatplug_registry: Registry, chatplug_server: ScriptedServer
) -> None:
    chatplug_server.add(body=b"<!DOCTYPE html><html><body>Login</body></html>",
                        content_type="text/html")
    with pytest.raises(ProviderResponseError, match=r"expected JSON .* text/html"):
        chatplug_registry.get("GravityEngine").create(messages=MESSAGES)


def test_json_without_choices(chatplug_registry: Registry, chatplug_server: ScriptedServer) -> None:
    chatplug_server.add(body=json.dumps({"id": "x", "object": "chat.completion"}).encode())
    with pytest.raises(ProviderResponseError, match="no choices"):
        chatplug_registry.get("GravityEngine").create(messages=MESSAGES)


def test_connection_refused(chatplug_server: ScriptedServer) -> None:
    registry = Registry(settings=registry_for(chatplug_server).settings.model_copy(update={
        "provider_urls": {"gravityengine": f"http://127.0.0.1:{free_port()}"}}))
    with pytest.raises(ProviderConnectionError, match=r"could not reach .* running"):
        registry.get("GravityEngine").create(messages=MESSAGES, max_retries=0)


def test_server_that_never_answers_times_out(chatplug_server: ScriptedServer) -> None:
    with RawServer(lifetime=30) as silent:
        silent.then(lambda conn, request: sleep_until_stopped(silent, 20))
        settings = registry_for(chatplug_server).settings.model_copy(update={
            "provider_urls": {"gravityengine": silent.url}, "read_timeout": 0.5})
        registry = Registry(settings=settings)
        started = time.monotonic()
        with pytest.raises(ProviderTimeoutError, match=r"sent nothing for 0\.5 s"):
            registry.get("GravityEngine").create(messages=MESSAGES, max_retries=0)
        assert time.monotonic() - started < 5
        registry.close()


def test_per_call_timeout_covers_a_stall_mid_stream(
    chatplug_registry: Registry, chatplug_server: ScriptedServer
) -> None:
    chatplug_server.add(text="a b c", hold_after=1, hold=3.0, stream=True)
    received = []
    started = time.monotonic()
    with pytest.raises(ProviderTimeoutError, match="deadline passed"):
        for piece in chatplug_registry.get("GravityEngine").create(
                messages=MESSAGES, stream=True, timeout=0.5):
            received.append(piece)
    assert received == ["a"]
    assert time.monotonic() - started < 2.5


def test_missing_key_names_the_variable_and_sends_nothing(
    chatplug_server: ScriptedServer,
) -> None:
    settings = registry_for(chatplug_server).settings.model_copy(update={
        "provider_api_keys": {}})
    registry = Registry(settings=settings)
    with pytest.raises(AuthenticationError,
                       match="Set CHATPLUG_OPENAI_API_KEY \\(or OPENAI_API_KEY\\)"):
        registry.get("OpenAI").create(messages=MESSAGES, model="gpt-4o-mini")
    assert chatplug_server.requests == []


def test_openai_sends_the_bearer_key_and_needs_a_model(chatplug_server: ScriptedServer) -> None:
    from pydantic import SecretStr

    settings = registry_for(chatplug_server).settings.model_copy(update={
        "provider_api_keys": {"openai": SecretStr(PLANTED_KEY)}})
    provider = Registry(settings=settings).get("OpenAI")
    with pytest.raises(ChatplugError, match="model is required"):
        provider.create(messages=MESSAGES)
    assert provider.create(messages=MESSAGES, model="any-model-name") == "You said: hello"
    request = chatplug_server.requests[-1]
    assert request.path == "/v1/chat/completions"
    assert request.headers["Authorization"] == f"Bearer {PLANTED_KEY}"
    assert request.json["model"] == "any-model-name"


def test_a_key_the_server_echoes_back_never_reaches_the_error(
    chatplug_server: ScriptedServer,
) -> None:
    from pydantic import SecretStr

    settings = registry_for(chatplug_server).settings.model_copy(update={
        "provider_api_keys": {"openai": SecretStr(PLANTED_KEY)}})
    provider = Registry(settings=settings).get("OpenAI")
    for status in (401, 500, 429):
        chatplug_server.add(status=status, text=f"Incorrect API key provided: {PLANTED_KEY}")
        with pytest.raises(ChatplugError) as info:
            provider.create(messages=MESSAGES, model="m", max_retries=0)
        rendered = f"{info.value} {info.value!r} {vars(info.value)}"
        assert PLANTED_KEY not in rendered
        assert "***" in str(info.value)
    chatplug_server.add(body=f"<html>{PLANTED_KEY}</html>".encode(), content_type="text/html")
    with pytest.raises(ProviderResponseError) as info:
        provider.create(messages=MESSAGES, model="m")
    assert PLANTED_KEY not in str(info.value)


def test_a_buggy_plugin_raising_keyerror_becomes_a_chatplug_error(
    chatplug_server: ScriptedServer,
) -> None:
    from types import SimpleNamespace

    from chatplug import hookimpl

    @hookimpl
    def create_completion(model, messages, stream):  # type: ignore[no-untyped-def]
        yield "partial"
        raise KeyError("choices")

    registry = Registry(entry_points=())
    provider = registry.register(SimpleNamespace(
        url="http://127.0.0.1:9", model=["m"], supports_stream=True, needs_auth=False,
        create_completion=create_completion), "Buggy")
    with pytest.raises(ProviderResponseError, match=r"KeyError.*bug in the provider") as info:
        provider.create(messages=MESSAGES)
    assert not isinstance(info.value, KeyError)
    assert info.value.provider == "Buggy"
