"""``GET /metrics``: the gateway's Prometheus metrics, scraped over HTTP from a real gateway
in front of a scripted upstream, parsed with prometheus_client's own parser."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import openai
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from chatplug.server import ServerSettings, create_app
from chatplug.server import metrics as metrics_module
from chatplug.server.metrics import Metrics
from chatplug.testing import ScriptedServer
from chatplug.testing.pytest_plugin import registry_for
from tests.gatewayserver import GatewayServer

USER = [{"role": "user", "content": "Hi"}]
USAGE = {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18,
         "prompt_tokens_details": {"cached_tokens": 4},
         "completion_tokens_details": {"reasoning_tokens": 3}}
ADMIN = "admin-key-for-tests-only-0123456789"


def scrape(url: str, **headers: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of ``/metrics`` by name and sorted labels."""
    response = requests.get(f"{url}/metrics", headers=headers, timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=")
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(response.text)
            for sample in family.samples}


def value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture
def upstream() -> Iterator[ScriptedServer]:
    with ScriptedServer(lifetime=60) as server:
        yield server


def client(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)


def test_requests_tokens_and_latency_are_counted_by_what_served_them(
        upstream: ScriptedServer) -> None:
    registry = registry_for(upstream, max_retries=0, timeout=5)
    upstream.add(text="Hello there", usage=USAGE, stream=False)
    upstream.add(pieces=["Hel", "lo"], usage=USAGE, stream=True)
    upstream.add(status=400, body=b'{"error": {"message": "bad"}}')
    app = create_app(registry, ServerSettings())
    with GatewayServer(app, lifetime=60) as gateway:
        chat = client(gateway.url)
        chat.chat.completions.create(model="OpenAI/gpt-4o-mini", messages=USER)
        stream = chat.chat.completions.create(model="OpenAI/gpt-4o-mini", messages=USER,
                                              stream=True)
        assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == \
            "Hello"
        with pytest.raises(openai.BadRequestError):
            chat.chat.completions.create(model="OpenAI/gpt-4o-mini", messages=USER)
        with pytest.raises(openai.NotFoundError):  # resolves to nothing: no such label
            chat.chat.completions.create(model="NoSuchProvider/x-1", messages=USER)
        samples = scrape(gateway.url)
    registry.close()
    series = {"endpoint": "/v1/chat/completions", "provider": "OpenAI",
              "model": "gpt-4o-mini"}
    assert value(samples, "chatplug_requests_total", status="200", **series) == 2
    assert value(samples, "chatplug_requests_total", status="400", **series) == 1
    assert value(samples, "chatplug_requests_total", endpoint="/v1/chat/completions",
                 provider="none", model="none", status="404") == 1
    assert not any("NoSuchProvider" in str(key) or "x-1" in str(key) for key in samples)
    tokens = {"provider": "OpenAI", "model": "gpt-4o-mini"}
    assert value(samples, "chatplug_tokens_total", kind="input", **tokens) == 22
    assert value(samples, "chatplug_tokens_total", kind="output", **tokens) == 14
    assert value(samples, "chatplug_tokens_total", kind="cached", **tokens) == 8
    assert value(samples, "chatplug_tokens_total", kind="reasoning", **tokens) == 6
    assert value(samples, "chatplug_request_duration_seconds_count", **series) == 3
    assert value(samples, "chatplug_time_to_first_piece_seconds_count", **series) == 2
    assert 0 < value(samples, "chatplug_request_duration_seconds_sum", **series) < 10
    assert value(samples, "chatplug_requests_in_flight") == 0


def test_retries_upstream_errors_and_route_failovers_are_counted(
        upstream: ScriptedServer) -> None:
    with ScriptedServer(lifetime=60) as second:
        registry = registry_for(
            upstream, urls={"OpenAI": second.url + "/v1"}, max_retries=1, timeout=5,
            retry_backoff=0.01,
            routes=json.dumps({"pair": {"entries": ["GravityEngine", "OpenAI/gpt-4o-mini"],
                                        "cooldown": 0}}))
        app = create_app(registry, ServerSettings())
        with GatewayServer(app, lifetime=60) as gateway:
            second.add(status=503, body=b"busy")   # OpenAI directly: retried once
            second.add(text="ok", stream=False)
            client(gateway.url).chat.completions.create(model="OpenAI/gpt-4o-mini",
                                                        messages=USER)
            upstream.add(status=429, body=b"slow down")  # the route: GravityEngine fails
            second.add(text="ok", stream=False)          # and OpenAI serves
            reply = requests.post(f"{gateway.url}/v1/chat/completions", timeout=10,
                                  json={"model": "pair", "messages": USER})
            assert reply.status_code == 200
            assert reply.headers["x-chatplug-provider"] == "OpenAI"
            assert registry.flush_observers(5)
            samples = scrape(gateway.url)
        registry.close()
    assert value(samples, "chatplug_retries_total", provider="OpenAI") == 1
    assert value(samples, "chatplug_upstream_errors_total", provider="OpenAI",
                 type="ProviderHTTPError") == 1
    assert value(samples, "chatplug_upstream_errors_total", provider="GravityEngine",
                 type="RateLimitError") == 1
    assert value(samples, "chatplug_route_failovers_total", route="pair") == 1
    assert value(samples, "chatplug_requests_total", endpoint="/v1/chat/completions",
                 provider="OpenAI", model="gpt-4o-mini", status="200") == 2


def test_requests_in_flight_are_seen_while_a_stream_runs(upstream: ScriptedServer) -> None:
    registry = registry_for(upstream, max_retries=0, timeout=10)
    upstream.add(pieces=["a", "b", "c"], piece_delay=0.5, stream=True)
    with GatewayServer(create_app(registry, ServerSettings()), lifetime=60) as gateway:
        done = threading.Event()

        def run() -> None:
            for _ in client(gateway.url).chat.completions.create(
                    model="OpenAI/gpt-4o-mini", messages=USER, stream=True):
                pass
            done.set()

        worker = threading.Thread(target=run)
        worker.start()
        seen = 0.0
        deadline = time.monotonic() + 5
        while not seen and time.monotonic() < deadline and not done.is_set():
            seen = value(scrape(gateway.url), "chatplug_requests_in_flight")
            time.sleep(0.05)
        worker.join(10)
        assert seen == 1
        assert value(scrape(gateway.url), "chatplug_requests_in_flight") == 0
    registry.close()


def test_model_labels_are_capped(upstream: ScriptedServer,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(metrics_module, "MAX_MODELS", 2)
    registry = registry_for(upstream, max_retries=0, timeout=5)
    with GatewayServer(create_app(registry, ServerSettings()), lifetime=60) as gateway:
        for number in range(5):
            upstream.add(text="ok", stream=False)
            client(gateway.url).chat.completions.create(model=f"OpenAI/made-up-{number}",
                                                        messages=USER)
        samples = scrape(gateway.url)
    registry.close()
    models = {dict(labels)["model"] for name, labels in samples
              if name == "chatplug_requests_total"}
    assert models == {"made-up-0", "made-up-1", "other"}
    assert value(samples, "chatplug_requests_total", endpoint="/v1/chat/completions",
                 provider="OpenAI", model="other", status="200") == 3


def test_each_app_counts_alone(upstream: ScriptedServer) -> None:
    registry = registry_for(upstream, max_retries=0, timeout=5)
    first, second = create_app(registry, ServerSettings()), create_app(registry,
                                                                       ServerSettings())
    with GatewayServer(first, lifetime=60) as one, GatewayServer(second, lifetime=60) as two:
        upstream.add(text="ok", stream=False)
        client(one.url).chat.completions.create(model="OpenAI/gpt-4o-mini", messages=USER)
        samples_one, samples_two = scrape(one.url), scrape(two.url)
    registry.close()
    assert value(samples_one, "chatplug_requests_total", endpoint="/v1/chat/completions",
                 provider="OpenAI", model="gpt-4o-mini", status="200") == 1
    assert not any(name == "chatplug_requests_total" for name, _ in samples_two)
    # The ledger's dropped rows are read when scraped (tests/test_ledger.py drops some).
    assert value(samples_one, "chatplug_ledger_rows_dropped_total") == 0


def test_metrics_need_the_admin_key_once_keys_are_configured(
        upstream: ScriptedServer) -> None:
    registry = registry_for(upstream, max_retries=0, timeout=5)
    gateway_key = "gateway-key-for-tests-only-0123456789"
    with_admin = ServerSettings(api_keys=gateway_key, admin_key=ADMIN)
    without_admin = ServerSettings(api_keys=gateway_key)
    with GatewayServer(create_app(registry, with_admin), lifetime=60) as gateway:
        assert requests.get(f"{gateway.url}/metrics", timeout=5).status_code == 401
        refused = requests.get(f"{gateway.url}/metrics", timeout=5,
                               headers={"Authorization": f"Bearer {gateway_key}"})
        assert refused.status_code == 401
        assert refused.json()["error"]["code"] == "invalid_api_key"
        assert ADMIN not in refused.text
        assert scrape(gateway.url, Authorization=f"Bearer {ADMIN}") is not None
        # The admin key is no gateway key: completions still want one of those.
        assert requests.post(f"{gateway.url}/v1/chat/completions", timeout=5,
                             headers={"Authorization": f"Bearer {ADMIN}"},
                             json={"model": "OpenAI/x", "messages": USER}).status_code == 401
    with GatewayServer(create_app(registry, without_admin), lifetime=60) as gateway:
        refused = requests.get(f"{gateway.url}/metrics", timeout=5,
                               headers={"Authorization": f"Bearer {gateway_key}"})
        assert refused.status_code == 403
        assert "CHATPLUG_SERVER_ADMIN_KEY" in refused.json()["error"]["message"]
    with GatewayServer(create_app(registry, ServerSettings(metrics=False)),
                       lifetime=60) as gateway:
        off = requests.get(f"{gateway.url}/metrics", timeout=5)
        assert off.status_code == 404
        assert "CHATPLUG_SERVER_METRICS" in off.text
        accountants = gateway.server.config.app.state.gateway.accountants
        assert not any(isinstance(accountant, Metrics) for accountant in accountants)
    registry.close()
