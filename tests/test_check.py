"""``chatplug providers --check``: endpoints probed concurrently, briefly, never with a key."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator

import pytest

from chatplug import Registry
from chatplug.calls.probe import AUTH_NEEDED, FAILING, REACHABLE, probe, probe_all
from chatplug.testing import ScriptedServer
from chatplug.testing.pytest_plugin import registry_for

from .conftest import PLANTED_KEY, free_port, run_cli


@pytest.fixture
def registry(chatplug_server: ScriptedServer) -> Iterator[Registry]:
    registry = registry_for(chatplug_server, api_keys={"OpenAI": None, "GravityEngine": None})
    yield registry
    registry.close()


def test_reachable_failing_and_auth_needed_in_one_round(chatplug_server: ScriptedServer) -> None:
    env = {"CHATPLUG_GRAVITYENGINE_URL": chatplug_server.url,
           "CHATPLUG_OLLAMA_URL": chatplug_server.url,
           "CHATPLUG_LLAMACPP_URL": f"http://127.0.0.1:{free_port()}"}
    started = time.monotonic()
    result = run_cli("providers", "--check", "--json", "--timeout", "2", env=env)
    assert time.monotonic() - started < 10
    assert result.returncode == 1, result.stderr  # LlamaCpp is failing
    checks = {c["provider"]: c for c in json.loads(result.stdout)["checks"]}
    gravity = checks["GravityEngine"]
    assert (gravity["status"], gravity["http_status"], gravity["url"]) == (
        REACHABLE, 200, chatplug_server.url + "/api/openai/v1/models")
    assert 0 <= gravity["latency_ms"] < 2000
    assert checks["OpenAI"]["status"] == AUTH_NEEDED
    assert checks["OpenAI"]["latency_ms"] is None  # nothing was sent
    assert "set CHATPLUG_OPENAI_API_KEY" in checks["OpenAI"]["detail"]
    if "Ollama" in checks:  # the example package, installed by CI
        assert checks["Ollama"]["url"] == chatplug_server.url + "/api/tags"
        assert checks["Ollama"]["status"] == REACHABLE
    if "LlamaCpp" in checks:
        assert checks["LlamaCpp"]["status"] == FAILING
        assert "Connection refused" in checks["LlamaCpp"]["detail"]
    assert {r.path for r in chatplug_server.requests} <= {"/api/openai/v1/models", "/api/tags"}


def test_the_table_and_exit_zero_when_nothing_fails(chatplug_server: ScriptedServer) -> None:
    result = run_cli("providers", "GravityEngine", "--check",
                     env={"CHATPLUG_GRAVITYENGINE_URL": chatplug_server.url})
    assert result.returncode == 0, result.stderr
    header, row = result.stdout.splitlines()
    assert header.split() == ["NAME", "STATUS", "LATENCY", "URL", "DETAIL"]
    assert row.split()[:2] == ["GravityEngine", "reachable"]
    assert " ms " in row
    assert row.endswith("HTTP 200 OK")
    usage = run_cli("providers", "--timeout", "1")
    assert (usage.returncode, usage.stderr) == (2, "chatplug: error: --timeout goes with "
                                                   "--check\n")
    assert run_cli("providers", "--check", "--timeout", "0").returncode == 2


NGINX = b"<!DOCTYPE html><html><head><title>Welcome to nginx!</title></head></html>"


@pytest.mark.parametrize(("script", "status", "detail"), [
    ({"status": 503, "text": "down"}, FAILING, "HTTP 503 Service Unavailable: the server fails"),
    ({"status": 404}, FAILING,
     "HTTP 404 Not Found: no API at this URL; check CHATPLUG_GRAVITYENGINE_URL"),
    ({"body": NGINX, "content_type": "text/html"}, FAILING,
     "HTTP 200 OK, but a web page (HTML), not the API; check CHATPLUG_GRAVITYENGINE_URL"),
    ({"status": 404, "body": NGINX, "content_type": "text/html"}, FAILING,
     "HTTP 404 Not Found: no API at this URL; check CHATPLUG_GRAVITYENGINE_URL"),
    ({"status": 405}, REACHABLE, "HTTP 405 Method Not Allowed"),
    ({"status": 429}, REACHABLE, "HTTP 429 Too Many Requests"),
    ({"status": 401}, AUTH_NEEDED,
     "HTTP 401 Unauthorized: the server wants a key; set CHATPLUG_GRAVITYENGINE_API_KEY"),
    ({"status": 302, "headers": {"Location": "http://192.0.2.1/elsewhere"}}, FAILING,
     "HTTP 302 Found: the URL redirects, and chats do not follow redirects; set "
     "CHATPLUG_GRAVITYENGINE_URL to the final address"),
])
def test_what_an_answer_means(
    registry: Registry, chatplug_server: ScriptedServer,
    script: dict[str, object], status: str, detail: str,
) -> None:
    chatplug_server.add(method="GET", **script)  # type: ignore[arg-type]
    result = probe(registry.get("GravityEngine"), registry.transport, timeout=2)
    assert (result.provider, result.status, result.detail) == ("GravityEngine", status, detail)
    assert len(chatplug_server.requests) == 1  # a redirect is not followed


def test_without_a_check_path_only_the_host_is_checked(registry: Registry,
                                                        chatplug_server: ScriptedServer) -> None:
    """A third party that names no API path: any answer but 5xx proves the host, and the
    detail says that is all it proves."""
    from types import SimpleNamespace

    from chatplug import hookimpl

    @hookimpl
    def create_completion(model, messages, stream):  # type: ignore[no-untyped-def]
        yield ""

    fresh = Registry(settings=registry.settings, entry_points=())
    plugin = SimpleNamespace(url=chatplug_server.url, model=["m"], supports_stream=True,
                             needs_auth=False, create_completion=create_completion)
    chatplug_server.add(method="GET", body=NGINX, content_type="text/html")
    result = probe(fresh.register(plugin, "Plain"), fresh.transport, timeout=2)
    assert (result.status, result.url) == (REACHABLE, chatplug_server.url)
    assert result.detail == ("HTTP 200 OK (the host answers; the provider names no API path "
                             "to check)")
    fresh.close()


def test_a_silent_server_is_failing_within_the_timeout(
    registry: Registry, chatplug_server: ScriptedServer
) -> None:
    chatplug_server.add(method="GET", delay=3)
    started = time.monotonic()
    [result] = probe_all([registry.get("GravityEngine")], registry.transport, timeout=0.3)
    assert time.monotonic() - started < 2
    assert (result.status, result.detail) == (FAILING, "no answer within 0.3 s")


def test_a_server_dribbling_its_headers_ends_at_the_probe_deadline() -> None:
    """The command exits within twice the timeout even if the headers never end."""
    import threading

    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    stop = threading.Event()

    def dribble() -> None:
        deadline = time.monotonic() + 20
        while not stop.is_set() and time.monotonic() < deadline:
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            with conn:
                conn.sendall(b"HTTP/1.1 200 OK\r\n")
                for number in range(100):  # a header line every 0.1 s, never the end
                    try:
                        conn.sendall(b"X-Wait-%d: 1\r\n" % number)
                    except OSError:
                        break
                    if stop.wait(0.1):
                        break

    thread = threading.Thread(target=dribble, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        started = time.monotonic()
        result = run_cli("providers", "GravityEngine", "--check", "--timeout", "0.5",
                         env={"CHATPLUG_GRAVITYENGINE_URL": url})
        assert time.monotonic() - started < 5
        assert result.returncode == 1
        assert "failing" in result.stdout
    finally:
        stop.set()
        thread.join(5)
        listener.close()


def test_the_key_is_never_sent(chatplug_server: ScriptedServer) -> None:
    registry = registry_for(chatplug_server, api_keys={"OpenAI": PLANTED_KEY})
    chatplug_server.add(method="GET", status=401, echo_key=True)
    result = probe(registry.get("OpenAI"), registry.transport, timeout=2)
    registry.close()
    assert result.status == REACHABLE  # answers; a key is configured, though not verified
    assert "not verified" in result.detail
    [request] = chatplug_server.requests
    assert (request.method, request.path) == ("GET", "/v1/models")
    assert PLANTED_KEY not in json.dumps(request.headers)
    assert "Authorization" not in request.headers


def test_probes_run_concurrently(chatplug_server: ScriptedServer) -> None:
    registry = registry_for(chatplug_server)
    for _ in range(2):
        chatplug_server.add(method="GET", delay=0.6)
    providers = [registry.get("GravityEngine"), registry.get("OpenAI")]
    started = time.monotonic()
    results = probe_all(providers, registry.transport, timeout=3)
    elapsed = time.monotonic() - started
    registry.close()
    assert [r.status for r in results] == [REACHABLE, REACHABLE]
    assert elapsed < 1.1, "the probes ran one after the other"


def test_a_bad_check_path_is_reported_not_raised(registry: Registry) -> None:
    from types import SimpleNamespace

    from chatplug import hookimpl

    @hookimpl
    def create_completion(model, messages, stream):  # type: ignore[no-untyped-def]
        yield ""

    plugin = SimpleNamespace(url="http://127.0.0.1:9", model=["m"], supports_stream=True,
                             needs_auth=False, check_path="api/tags",
                             create_completion=create_completion)
    fresh = Registry(settings=registry.settings, entry_points=())
    result = probe(fresh.register(plugin, "Odd"), fresh.transport)
    assert (result.status, result.latency_ms) == (FAILING, None)
    assert "check_path must be a path starting with '/'" in result.detail
