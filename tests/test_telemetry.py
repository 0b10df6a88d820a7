"""OpenTelemetry traces with the GenAI conventions: the library's observer
(:class:`chatplug.telemetry.OTelObserver`) on real calls, the gateway's request spans
with their attempt spans under them, and ``chatplug serve`` configured by the SDK's own
environment variables."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
import requests
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

import chatplug.telemetry.setup
from chatplug.errors import ProviderHTTPError
from chatplug.server import ServerSettings, create_app
from chatplug.telemetry import OTelObserver
from chatplug.testing import ScriptedServer
from chatplug.testing.pytest_plugin import registry_for
from tests.conftest import BIN, free_port
from tests.gatewayserver import GatewayServer

USER = [{"role": "user", "content": "Hi"}]
USAGE = {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18,
         "prompt_tokens_details": {"cached_tokens": 4}}


@pytest.fixture
def exporter() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    yield provider, spans
    provider.shutdown()


@pytest.fixture
def upstream() -> Iterator[ScriptedServer]:
    with ScriptedServer(lifetime=60) as server:
        yield server


def finished(spans: InMemorySpanExporter, count: int) -> list[ReadableSpan]:
    got = list(spans.get_finished_spans())
    assert len(got) == count, [span.name for span in got]
    return got


def test_the_observer_traces_a_call_with_the_genai_attributes(
        upstream: ScriptedServer, exporter: Any) -> None:
    provider, spans = exporter
    registry = registry_for(upstream, max_retries=0, timeout=5)
    registry.register_observer(OTelObserver(provider), name="otel")
    upstream.add(text="Hello", usage=USAGE, stream=False, finish_reason="length")
    completion = registry.provider("OpenAI").complete(USER, "gpt-4o-mini")
    assert completion.text == "Hello"
    assert registry.flush_observers(5)
    (span,) = finished(spans, 1)
    registry.close()
    assert span.name == "chat gpt-4o-mini"
    assert span.kind == SpanKind.CLIENT
    attributes = dict(span.attributes or {})
    assert attributes["gen_ai.operation.name"] == "chat"
    assert attributes["gen_ai.provider.name"] == "OpenAI"
    assert attributes["gen_ai.system"] == "OpenAI"
    assert attributes["gen_ai.request.model"] == "gpt-4o-mini"
    assert attributes["gen_ai.response.model"] == "gpt-4o-mini"
    assert attributes["gen_ai.usage.input_tokens"] == 11
    assert attributes["gen_ai.usage.output_tokens"] == 7
    assert attributes["gen_ai.usage.cache_read.input_tokens"] == 4
    assert tuple(attributes["gen_ai.response.finish_reasons"]) == ("length",)
    assert span.status.status_code == StatusCode.UNSET
    assert span.end_time is not None
    assert span.start_time is not None
    assert span.end_time >= span.start_time
    assert "Hi" not in json.dumps({k: str(v) for k, v in attributes.items()})


def test_each_attempt_is_a_span_and_failures_have_an_error_status(
        upstream: ScriptedServer, exporter: Any) -> None:
    provider, spans = exporter
    registry = registry_for(upstream, max_retries=1, timeout=5, retry_backoff=0.01)
    registry.register_observer(OTelObserver(provider), name="otel")
    upstream.add(status=503, body=b"busy")
    upstream.add(text="ok", stream=False)
    registry.provider("OpenAI").complete(USER, "gpt-4o-mini")
    upstream.add(status=400, body=b"no")
    with pytest.raises(ProviderHTTPError):
        registry.provider("OpenAI").complete(USER, "gpt-4o-mini")
    assert registry.flush_observers(5)
    failed_attempt, retried, refused = finished(spans, 3)
    registry.close()
    assert failed_attempt.status.status_code == StatusCode.ERROR
    assert dict(failed_attempt.attributes or {})["error.type"] == "ProviderHTTPError"
    assert dict(failed_attempt.attributes or {})["http.response.status_code"] == 503
    assert dict(retried.attributes or {})["chatplug.attempt"] == 2
    assert retried.status.status_code == StatusCode.UNSET
    assert retried.context.trace_id != failed_attempt.context.trace_id  # no parent: roots
    assert refused.status.status_code == StatusCode.ERROR
    assert dict(refused.attributes or {})["http.response.status_code"] == 400


def test_a_gateway_request_is_a_server_span_with_its_attempts_under_it(
        upstream: ScriptedServer, exporter: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    provider, spans = exporter
    monkeypatch.setattr(chatplug.telemetry.setup, "configured_provider", lambda: provider)
    with ScriptedServer(lifetime=60) as second:
        registry = registry_for(
            upstream, urls={"OpenAI": second.url + "/v1"}, max_retries=0, timeout=5,
            routes=json.dumps({"pair": {"entries": ["GravityEngine", "OpenAI/gpt-4o-mini"],
                                        "cooldown": 0}}))
        app = create_app(registry, ServerSettings())
        with GatewayServer(app, lifetime=60) as gateway:
            upstream.add(status=503, body=b"busy")
            second.add(text="Hello", usage=USAGE, stream=False)
            reply = requests.post(f"{gateway.url}/v1/chat/completions", timeout=10,
                                  headers={"x-request-id": "req-trace-1"},
                                  json={"model": "pair", "messages": USER})
            assert reply.status_code == 200
            second.add(status=500, body=b"broken")
            with pytest.raises(openai.InternalServerError):
                openai.OpenAI(base_url=f"{gateway.url}/v1", api_key="unused",
                              max_retries=0).chat.completions.create(
                    model="OpenAI/gpt-4o-mini", messages=USER)
            assert registry.flush_observers(5)
        registry.close()
    got = finished(spans, 5)
    servers = [span for span in got if span.kind == SpanKind.SERVER]
    clients = [span for span in got if span.kind == SpanKind.CLIENT]
    assert len(servers) == 2
    assert len(clients) == 3
    served, failed = sorted(servers, key=lambda span: span.start_time or 0)
    assert served.name == "chat pair"
    attributes = dict(served.attributes or {})
    assert attributes["gen_ai.request.model"] == "pair"
    assert attributes["gen_ai.provider.name"] == "OpenAI"
    assert attributes["gen_ai.response.model"] == "gpt-4o-mini"
    assert attributes["gen_ai.usage.input_tokens"] == 11
    assert attributes["gen_ai.usage.output_tokens"] == 7
    assert attributes["http.response.status_code"] == 200
    assert attributes["chatplug.request_id"] == "req-trace-1"
    assert attributes["chatplug.attempts"] == 2
    assert served.status.status_code == StatusCode.UNSET
    under_served = sorted((span for span in clients if span.parent is not None
                           and span.parent.span_id == served.context.span_id),
                          key=lambda span: span.start_time or 0)
    assert [dict(span.attributes or {})["gen_ai.provider.name"] for span in under_served] \
        == ["GravityEngine", "OpenAI"]
    assert all(span.context.trace_id == served.context.trace_id for span in under_served)
    assert under_served[0].status.status_code == StatusCode.ERROR
    assert dict(under_served[0].attributes or {})["chatplug.route"] == "pair"
    # The calls took the gateway's request id: observers hear the id the access log shows.
    assert {dict(span.attributes or {})["chatplug.request_id"] for span in under_served} \
        == {"req-trace-1"}
    assert failed.status.status_code == StatusCode.ERROR
    assert dict(failed.attributes or {})["error.type"] == "upstream_http_error"
    assert dict(failed.attributes or {})["http.response.status_code"] >= 500
    (under_failed,) = [span for span in clients if span.parent is not None
                       and span.parent.span_id == failed.context.span_id]
    assert under_failed.status.status_code == StatusCode.ERROR


def test_importing_chatplug_telemetry_imports_no_opentelemetry() -> None:
    code = ("import sys, chatplug, chatplug.telemetry, chatplug.server;"
            "from chatplug.telemetry import configured_provider;"
            "assert configured_provider() is None;"
            "print(sorted(m for m in sys.modules if m.startswith('opentelemetry')))")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "CHATPLUG_"))}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_chatplug_serve_traces_with_the_sdks_environment_variables(
        upstream: ScriptedServer) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "CHATPLUG_"))}
    env.update(CHATPLUG_GRAVITYENGINE_URL=upstream.url, CHATPLUG_MAX_RETRIES="0",
               CHATPLUG_PLUGINS="", OTEL_TRACES_EXPORTER="console",
               OTEL_SERVICE_NAME="gateway-under-test", OTEL_BSP_SCHEDULE_DELAY="100")
    process = subprocess.Popen([str(BIN / "chatplug"), "serve", "--port", str(port)],
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(200):
            try:
                requests.get(f"{url}/health/liveliness", timeout=1)
                break
            except requests.ConnectionError:
                if process.poll() is not None:
                    break
                time.sleep(0.05)
        reply = requests.post(f"{url}/v1/chat/completions", timeout=10,
                              json={"model": "GravityEngine", "messages": USER})
        assert reply.status_code == 200
    finally:
        process.terminate()
        stdout, stderr = process.communicate(timeout=30)
    decoder = json.JSONDecoder()
    spans, at = [], 0
    text = stdout.strip()
    while at < len(text):
        span, end = decoder.raw_decode(text, at)
        spans.append(span)
        at = end
        while at < len(text) and text[at].isspace():
            at += 1
    by_kind = {span["kind"]: span for span in spans}
    assert set(by_kind) == {"SpanKind.SERVER", "SpanKind.CLIENT"}, stderr
    server, attempt = by_kind["SpanKind.SERVER"], by_kind["SpanKind.CLIENT"]
    assert server["resource"]["attributes"]["service.name"] == "gateway-under-test"
    assert server["attributes"]["gen_ai.provider.name"] == "GravityEngine"
    assert attempt["parent_id"] == server["context"]["span_id"]
    assert attempt["context"]["trace_id"] == server["context"]["trace_id"]


def test_an_exporter_that_is_not_installed_stops_chatplug_serve_naming_it() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "CHATPLUG_"))}
    env.update(OTEL_TRACES_EXPORTER="no-such-exporter", CHATPLUG_PLUGINS="")
    done = subprocess.run([str(BIN / "chatplug"), "serve", "--port", str(free_port())],
                          capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 1
    assert "OTEL_TRACES_EXPORTER names no-such-exporter, not installed (installed: " \
        "console)" in done.stderr
    assert "Traceback" not in done.stderr


def test_the_docs_observer_example_runs(upstream: ScriptedServer) -> None:
    page = (Path(__file__).resolve().parent.parent / "docs" / "observability.md").read_text()
    (block,) = re.findall(r"```python\n(.*?)```", page, re.S)
    namespace: dict[str, Any] = {}
    exec(compile(block, "docs/observability.md", "exec"), namespace)
    registry = namespace["registry"]
    assert "otel" in [observer.name for observer in registry.observers()]
    registry.close()
