"""An upstream error's ``code``, ``type`` and ``param`` survive: on
:class:`chatplug.ProviderHTTPError`, and through the gateway to the openai and anthropic
SDKs as they came; the gateway's own validation errors name the parameter; a chain of
gateways shows the origin's message once; a base URL without ``/v1`` is named as such.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import anthropic
import openai
import pytest
import requests

from chatplug import ProviderHTTPError, RateLimitError, Registry
from chatplug.server import ServerSettings, create_app
from chatplug.testing import ScriptedServer
from chatplug.testing.pytest_plugin import TEST_API_KEY, registry_for
from tests.conftest import BIN, ROOT, free_port
from tests.gatewayserver import GatewayServer

MESSAGES = [{"role": "user", "content": "a very long conversation"}]
#: OpenAI's answer to a prompt longer than the model's context, word for word.
CONTEXT_MESSAGE = (
    "This model's maximum context length is 128000 tokens. However, your messages resulted "
    "in 131072 tokens (131000 in the messages, 72 in the functions). Please reduce the "
    "length of the messages or functions.")
CONTEXT_BODY = json.dumps({"error": {
    "message": CONTEXT_MESSAGE, "type": "invalid_request_error", "param": "messages",
    "code": "context_length_exceeded"}}).encode()
ANTHROPIC_BODY = json.dumps({"type": "error", "error": {
    "type": "billing_error", "message": "Your credit balance is too low."}}).encode()
GOOGLE_BODY = json.dumps({"error": {
    "code": 429, "message": "Quota exceeded for quota metric 'Generate requests'.",
    "status": "RESOURCE_EXHAUSTED", "details": [{
        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
        "reason": "RATE_LIMIT_EXCEEDED"}]}}).encode()


@pytest.fixture(scope="module")
def upstream() -> Iterator[ScriptedServer]:
    with ScriptedServer(lifetime=120) as server:
        yield server


@pytest.fixture(scope="module")
def registry(upstream: ScriptedServer) -> Iterator[Registry]:
    registry = registry_for(upstream, max_retries=0, timeout=5)
    yield registry
    registry.close()


@pytest.fixture(scope="module")
def gateway(registry: Registry) -> Iterator[GatewayServer]:
    with GatewayServer(create_app(registry, ServerSettings())) as server:
        yield server


@pytest.fixture
def client(gateway: GatewayServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=gateway.url + "/v1", api_key="client-key", max_retries=0,
                       timeout=10) as client:
        yield client


# -- the library ---------------------------------------------------------------------------


def test_openais_fields_are_kept_on_the_error(registry: Registry,
                                             upstream: ScriptedServer) -> None:
    upstream.add(status=400, body=CONTEXT_BODY)
    with pytest.raises(ProviderHTTPError) as info:
        registry.get("OpenAI").complete(MESSAGES, model="gpt-4o-mini")
    error = info.value
    assert (error.upstream_code, error.upstream_type, error.param) == (
        "context_length_exceeded", "invalid_request_error", "messages")
    assert error.upstream_message == CONTEXT_MESSAGE
    assert error.code == "upstream_http_error"  # chatplug's own kind stays
    # The server's sentence is quoted whole, not cut mid-word at 200 characters.
    assert CONTEXT_MESSAGE in str(error)


def test_anthropics_type_is_kept(registry: Registry, upstream: ScriptedServer) -> None:
    upstream.add(status=400, body=ANTHROPIC_BODY)
    with pytest.raises(ProviderHTTPError) as info:
        registry.get("Anthropic").complete(MESSAGES, model="claude-test-1")
    assert info.value.upstream_type == "billing_error"
    assert info.value.upstream_code is None
    assert info.value.param is None
    assert info.value.upstream_message == "Your credit balance is too low."


def test_googles_status_and_reason_are_kept(registry: Registry,
                                            upstream: ScriptedServer) -> None:
    upstream.add(status=429, body=GOOGLE_BODY)
    with pytest.raises(RateLimitError) as info:
        registry.get("Gemini").complete(MESSAGES, model="gemini-2.0-flash")
    # Google's numeric code repeats the status; its ErrorInfo reason is the code to match.
    assert info.value.upstream_type == "RESOURCE_EXHAUSTED"
    assert info.value.upstream_code == "RATE_LIMIT_EXCEEDED"


def test_a_body_without_an_envelope_has_no_fields(registry: Registry,
                                                  upstream: ScriptedServer) -> None:
    upstream.add(status=400, body=b"<html>bad request</html>", content_type="text/html")
    with pytest.raises(ProviderHTTPError) as info:
        registry.get("OpenAI").complete(MESSAGES, model="gpt-4o-mini")
    error = info.value
    assert (error.upstream_code, error.upstream_type, error.param,
            error.upstream_message) == (None, None, None, None)


def test_x_should_retry_false_makes_the_error_final(upstream: ScriptedServer) -> None:
    registry = registry_for(upstream, max_retries=2, retry_backoff=0.01)
    try:
        before = len(upstream.requests)
        upstream.add(status=503, text="already retried", headers={"x-should-retry": "false"})
        with pytest.raises(ProviderHTTPError) as info:
            registry.get("OpenAI").complete(MESSAGES, model="gpt-4o-mini")
        assert not info.value.retryable
        assert len(upstream.requests) - before == 1
    finally:
        registry.close()


def test_a_url_without_v1_that_gets_a_404_says_to_add_it(upstream: ScriptedServer) -> None:
    registry = registry_for(upstream, urls={"OpenAI": upstream.url}, max_retries=0)
    try:
        upstream.add(status=404, body=b'{"detail": "Not Found"}')
        with pytest.raises(ProviderHTTPError) as info:
            registry.get("OpenAI").complete(MESSAGES, model="gpt-4o-mini")
    finally:
        registry.close()
    message = str(info.value)
    assert "probably needs /v1" in message
    assert f"CHATPLUG_OPENAI_URL (or OPENAI_BASE_URL) to {upstream.url}/v1" in message


def test_a_404_at_a_versioned_url_does_not_mention_v1(registry: Registry,
                                                      upstream: ScriptedServer) -> None:
    upstream.add(status=404, body=b'{"error": {"message": "The model does not exist",'
                                  b' "type": "invalid_request_error",'
                                  b' "code": "model_not_found"}}')
    with pytest.raises(ProviderHTTPError) as info:
        registry.get("OpenAI").complete(MESSAGES, model="gpt-9")
    assert "/v1" not in str(info.value).replace(upstream.url + "/v1", "")
    assert info.value.upstream_code == "model_not_found"


def test_the_example_of_the_errors_page_runs(upstream: ScriptedServer) -> None:
    page = (ROOT / "docs" / "errors.md").read_text(encoding="utf-8")
    (block,) = re.findall(r"```python\n(.*?)```", page, re.DOTALL)
    upstream.add(status=400, body=CONTEXT_BODY)
    env = {**os.environ, "CHATPLUG_OPENAI_URL": upstream.url + "/v1",
           "CHATPLUG_OPENAI_API_KEY": TEST_API_KEY, "CHATPLUG_MAX_RETRIES": "0"}
    result = subprocess.run([sys.executable, "-c", block], env=env, capture_output=True,
                            text=True, timeout=60)
    assert result.stdout == "too long: messages\n", result.stderr


# -- through the gateway --------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
def test_the_openai_sdk_sees_the_upstreams_code_type_and_param(
        client: openai.OpenAI, upstream: ScriptedServer, stream: bool) -> None:
    upstream.add(status=400, body=CONTEXT_BODY)
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="OpenAI/gpt-4o-mini", messages=MESSAGES,
                                       stream=stream)
    error = info.value
    assert error.code == "context_length_exceeded"
    assert error.param == "messages"
    assert error.type == "invalid_request_error"
    assert error.body == {"message": CONTEXT_MESSAGE, "type": "invalid_request_error",
                          "param": "messages", "code": "context_length_exceeded"}
    assert error.response.headers["x-should-retry"] == "false"
    assert error.response.headers["x-chatplug-provider"] == "OpenAI"


def test_a_gateway_whose_provider_url_lacks_v1_says_so(upstream: ScriptedServer) -> None:
    registry = registry_for(upstream, urls={"OpenAI": upstream.url}, max_retries=0)
    upstream.add(status=404, body=b'{"detail": "Not Found"}')
    try:
        with GatewayServer(create_app(registry, ServerSettings())) as gateway, \
                openai.OpenAI(base_url=gateway.url + "/v1", api_key="client-key",
                              max_retries=0) as client, \
                pytest.raises(openai.NotFoundError) as info:
            client.chat.completions.create(model="OpenAI/gpt-4o-mini", messages=MESSAGES)
    finally:
        registry.close()
    # The URL is at fault, not the request: the gateway's words, not the upstream's.
    assert "probably needs /v1" in info.value.message


@pytest.mark.parametrize(("params", "param"), [
    ({"temperature": "hot"}, "temperature"),
    ({"extra_body": {"max_tokenz": 5}}, "max_tokenz"),
    ({"messages": [{"role": "wizard", "content": "hi"}]}, "messages[0].role"),
    ({"messages": [{"role": "user", "content": "hi"}, {"role": "user", "content": ""}]},
     "messages[1].content"),
    ({"messages": []}, "messages"),
])
def test_the_gateways_validation_names_the_parameter(
        client: openai.OpenAI, params: dict[str, Any], param: str) -> None:
    request: dict[str, Any] = {"model": "OpenAI/gpt-4o-mini", "messages": MESSAGES, **params}
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(**request)
    assert info.value.param == param
    assert info.value.code == "invalid_request"


@pytest.fixture
def claude(gateway: GatewayServer) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=gateway.url, api_key="client-key", max_retries=0,
                             timeout=10) as client:
        yield client


def _anthropic_error(claude: anthropic.Anthropic, model: str) -> anthropic.APIStatusError:
    with pytest.raises(anthropic.APIStatusError) as info:
        claude.messages.create(model=model, max_tokens=10, messages=MESSAGES)  # type: ignore[arg-type]
    return info.value


def test_anthropics_wire_keeps_an_anthropic_type(claude: anthropic.Anthropic,
                                                 upstream: ScriptedServer) -> None:
    upstream.add(status=400, body=ANTHROPIC_BODY)
    error = _anthropic_error(claude, "Anthropic/claude-test-1")
    assert error.body == {"type": "error", "error": {
        "type": "billing_error", "message": "Your credit balance is too low."}}
    assert error.status_code == 400


def test_anthropics_wire_says_its_own_type_for_another(claude: anthropic.Anthropic,
                                                       upstream: ScriptedServer) -> None:
    upstream.add(status=500, body=b'{"error": {"message": "The server had an error",'
                                  b' "type": "server_error", "code": null}}')
    error = _anthropic_error(claude, "OpenAI/gpt-4o-mini")
    assert error.body == {"type": "error", "error": {
        "type": "api_error", "message": "The server had an error"}}
    upstream.add(status=400, body=CONTEXT_BODY)
    error = _anthropic_error(claude, "OpenAI/gpt-4o-mini")
    assert isinstance(error, anthropic.BadRequestError)
    assert error.body == {"type": "error", "error": {
        "type": "invalid_request_error", "message": CONTEXT_MESSAGE}}


# -- a chain: client -> chatplug serve -> gateway -> upstream -------------------------------


def _serve(url: str, port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "CHATPLUG_OPENAI_URL": url, "CHATPLUG_OPENAI_API_KEY": TEST_API_KEY,
           "CHATPLUG_MAX_RETRIES": "0"}
    return subprocess.Popen([str(BIN / "chatplug"), "serve", "--port", str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _wait_ready(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if requests.get(url + "/health/readiness", timeout=1).status_code == 200:
                return
        except requests.ConnectionError:
            time.sleep(0.1)
    raise AssertionError("chatplug serve did not start")


@pytest.fixture(scope="module")
def chain(gateway: GatewayServer) -> Iterator[str]:
    """``chatplug serve`` (its own process) in front of the gateway, in front of upstream."""
    port = free_port()
    process = _serve(gateway.url + "/v1", port)
    try:
        _wait_ready(f"http://127.0.0.1:{port}", process)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
        assert process.stderr is not None
        process.stderr.close()


@pytest.mark.parametrize(("status", "body"), [
    (400, CONTEXT_BODY),
    (503, b'{"error": {"message": "The engine is currently overloaded, please try again '
          b'later.", "type": "server_error", "code": null}}'),
])
def test_a_chain_of_gateways_shows_the_origins_message_once(
        chain: str, upstream: ScriptedServer, status: int, body: bytes) -> None:
    origin = json.loads(body)["error"]
    upstream.add(status=status, body=body)
    with openai.OpenAI(base_url=chain + "/v1", api_key="client-key", max_retries=0,
                       timeout=20) as client, pytest.raises(openai.APIStatusError) as info:
        # The front gateway sends the model "OpenAI/gpt-4o-mini" on to the one behind.
        client.chat.completions.create(model="OpenAI/OpenAI/gpt-4o-mini", messages=MESSAGES)
    error = info.value
    assert error.status_code == (400 if status == 400 else 502)
    assert isinstance(error.body, dict)
    assert error.body["message"] == origin["message"]  # once, whole
    assert error.code == (origin["code"] or "upstream_http_error")
    assert error.type == origin["type"]
    assert error.param == origin.get("param")
    # Neither gateway retried (CHATPLUG_MAX_RETRIES=0): a 5xx leaves it to the client.
    assert error.response.headers.get("x-should-retry") == ("false" if status == 400 else None)
