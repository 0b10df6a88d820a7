"""Routes over real HTTP: failover, the commit point, strategies, cooldowns, one deadline.

Three OpenAI-compatible providers, ``A``, ``B`` and ``C``, each in front of its own
scripted server (or a raw socket server for silence), are registered directly.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from chatplug import (
    AuthenticationError,
    ConfigurationError,
    InvalidRequestError,
    ProviderHTTPError,
    ProviderNotFoundError,
    ProviderTimeoutError,
    Registry,
    RouteFailedError,
    StreamInterruptedError,
    hookimpl,
)
from chatplug.routes import Route
from chatplug.settings import load_settings
from chatplug.testing import ScriptedServer

from .conftest import free_port
from .rawserver import RawServer, sleep_until_stopped

MESSAGES = [{"role": "user", "content": "hello"}]
NAMES = ("A", "B", "C")


class OpenAILike:
    """A provider in front of one server: OpenAI's wire, two listed models."""

    url = "http://127.0.0.1:9"  # replaced by the settings
    model = ("m1", "m2")
    supports_stream = True

    def __init__(self, *, tools: bool = False, needs_auth: bool = False) -> None:
        self.supports_tools = tools
        self.needs_auth = needs_auth

    @hookimpl
    def create_completion(self, model: str, messages: list[Any], stream: bool, url: str,
                          api_key: str | None, http: Any, temperature: float | None = None,
                          tools: list[Any] | None = None) -> Iterator[Any]:
        from chatplug.wire import openai

        return openai.chat(http, f"{url}/v1/chat/completions", model=model, messages=messages,
                           stream=stream, api_key=api_key, temperature=temperature, tools=tools)


@pytest.fixture
def servers() -> Iterator[dict[str, ScriptedServer]]:
    made = {name: ScriptedServer(lifetime=60).start() for name in NAMES}
    yield made
    for server in made.values():
        server.stop()


def make_registry(urls: dict[str, str], **settings: Any) -> Registry:
    values: dict[str, Any] = {
        "provider_urls": {name.lower(): url for name, url in urls.items()},
        "retry_backoff": 0.01, "retry_backoff_max": 0.05, "read_timeout": 2.0,
        "timeout": 10.0,
    }
    values.update(settings)
    registry = Registry(settings=load_settings(**values), entry_points=())
    for name in urls:
        registry.register(OpenAILike(tools=name == "B", needs_auth=name == "C"), name=name)
    return registry


@pytest.fixture
def registry(servers: dict[str, ScriptedServer]) -> Iterator[Registry]:
    registry = make_registry({name: server.url for name, server in servers.items()},
                             provider_api_keys={"c": "route-test-key"})
    yield registry
    registry.close()


def requests_to(server: ScriptedServer) -> int:
    return sum(1 for r in server.requests if r.method == "POST")


# -- failover ---------------------------------------------------------------------------


@pytest.mark.parametrize("script", [
    {"status": 500}, {"status": 502}, {"status": 503}, {"status": 408}, {"status": 409},
    {"status": 429}, {"status": 401}, {"status": 403},
    {"body": b"<html>nginx</html>", "content_type": "text/html"},
    {"pieces": ["x"], "drop_after": 0, "stream": True},
], ids=["500", "502", "503", "408", "409", "429", "401", "403", "html", "cut-before-first"])
@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_fails_over_to_the_next_entry(registry: Registry, servers: dict[str, ScriptedServer],
                                      script: dict[str, Any], stream: bool) -> None:
    servers["A"].add(**script)
    route = registry.route(["A", "B"])
    if stream:
        with route.create(MESSAGES, stream=True) as pieces:
            text = "".join(pieces)
            completion = pieces.completion
    else:
        completion = route.complete(MESSAGES)
        text = completion.text
    assert text == "You said: hello"
    assert (completion.provider, completion.attempts) == ("B", 2)
    assert requests_to(servers["A"]) == 1
    assert requests_to(servers["B"]) == 1


def test_fails_over_when_the_first_port_is_closed(servers: dict[str, ScriptedServer]) -> None:
    registry = make_registry({"A": f"http://127.0.0.1:{free_port()}", "B": servers["B"].url})
    completion = registry.route(["A", "B"]).complete(MESSAGES)
    assert completion.provider == "B"


def test_fails_over_on_a_timeout(servers: dict[str, ScriptedServer]) -> None:
    with RawServer(lifetime=10) as silent:
        silent.then(lambda conn, request: sleep_until_stopped(silent, 5))
        registry = make_registry({"A": silent.url, "B": servers["B"].url}, read_timeout=0.3)
        started = time.monotonic()
        completion = registry.route(["A", "B"]).complete(MESSAGES)
        assert completion.provider == "B"
        assert time.monotonic() - started < 2
        registry.close()


@pytest.mark.parametrize("status", [400, 404, 422])
def test_client_errors_do_not_fail_over(registry: Registry, servers: dict[str, ScriptedServer],
                                        status: int) -> None:
    servers["A"].add(status=status)
    with pytest.raises(ProviderHTTPError) as info:
        registry.route(["A", "B"]).complete(MESSAGES)
    assert info.value.status_code == status  # raised as it is, not wrapped
    assert info.value.provider == "A"
    assert requests_to(servers["B"]) == 0


def test_client_errors_fail_over_when_the_route_says_so(
        registry: Registry, servers: dict[str, ScriptedServer]) -> None:
    servers["A"].add(status=400)
    route = registry.route(["A", "B"], fallback_on_client_errors=True)
    assert route.complete(MESSAGES).provider == "B"


def test_invalid_input_fails_before_the_network(registry: Registry,
                                                servers: dict[str, ScriptedServer]) -> None:
    with pytest.raises(InvalidRequestError, match="no entry can take this call"):
        registry.route(["A", "B"]).complete([{"role": "wizard", "content": "hi"}])
    with pytest.raises(InvalidRequestError, match="temperature"):
        registry.route(["A", "B"]).complete(MESSAGES, temperature="hot")
    assert not servers["A"].requests
    assert not servers["B"].requests


# -- the commit point -------------------------------------------------------------------


def test_a_stream_cut_after_three_pieces_never_switches(
        registry: Registry, servers: dict[str, ScriptedServer]) -> None:
    servers["A"].add(pieces=["one", " two", " three", " four"], drop_after=3, stream=True)
    route = registry.route(["A", "B"])
    received: list[str] = []
    with pytest.raises(StreamInterruptedError) as info, route.create(MESSAGES, stream=True) as s:
        received.extend(s)
    assert received == ["one", " two", " three"]
    completion = info.value.completion
    assert completion is not None
    assert (completion.text, completion.provider) == ("one two three", "A")
    assert info.value.received == len("one two three")
    assert requests_to(servers["B"]) == 0  # nothing duplicated, nothing mixed


def test_a_whole_reply_cut_after_pieces_fails_over_without_duplicating(
        registry: Registry, servers: dict[str, ScriptedServer]) -> None:
    # The caller of a non-streamed call has seen nothing: starting over elsewhere is safe.
    servers["A"].add(pieces=["one", " two", " three", " four"], drop_after=3, stream=True)
    completion = registry.route(["A", "B"]).complete(MESSAGES)
    assert completion.text == "You said: hello"
    assert completion.provider == "B"


def test_events_before_the_first_piece_do_not_commit(
        registry: Registry, servers: dict[str, ScriptedServer]) -> None:
    # A stream that breaks before its first text (headers and a comment only) moves on.
    servers["A"].add(pieces=["x"], drop_after=0, stream=True, comments=True)
    with registry.route(["A", "B"]).create(MESSAGES, stream=True) as stream:
        assert "".join(stream) == "You said: hello"
        assert stream.completion.provider == "B"


# -- final errors -----------------------------------------------------------------------


def test_all_failing_raises_route_failed_with_every_attempt(
        registry: Registry, servers: dict[str, ScriptedServer]) -> None:
    for _ in range(2):
        servers["A"].add(status=503)
        servers["B"].add(status=500)
    route = registry.route(["A", "B"], cooldown=0)
    with pytest.raises(RouteFailedError) as info:
        route.complete(MESSAGES, max_retries=1)
    error = info.value
    assert len(error.errors) == 4
    assert {(e.provider, e.status_code) for e in error.errors} == {("A", 503), ("B", 500)}
    first_line = str(error).splitlines()[0]
    assert "4 attempt(s) over 2 entries in 2 round(s)" in first_line
    assert error.retryable
    assert requests_to(servers["A"]) == requests_to(servers["B"]) == 2


def test_rounds_wait_for_the_largest_retry_after(
        registry: Registry, servers: dict[str, ScriptedServer]) -> None:
    servers["A"].add(status=429, headers={"Retry-After": "0.4"})
    servers["B"].add(status=429, headers={"Retry-After": "0.2"})
    started = time.monotonic()
    completion = registry.route(["A", "B"], cooldown=0).complete(MESSAGES, max_retries=1)
    assert completion.attempts == 3
    assert 0.4 <= time.monotonic() - started < 2


def test_a_route_of_three_silent_servers_ends_at_its_deadline() -> None:
    with RawServer(lifetime=10) as silent:
        silent.then(lambda conn, request: sleep_until_stopped(silent, 8), times=6)
        registry = make_registry({name: silent.url for name in NAMES},
                                 provider_api_keys={"c": "route-test-key"}, read_timeout=5.0)
        started = time.monotonic()
        with pytest.raises(ProviderTimeoutError):
            registry.route(list(NAMES)).complete(MESSAGES, timeout=1)
        assert time.monotonic() - started < 1.5
        registry.close()


# -- entries that cannot take the call -------------------------------------------------------


def test_entries_that_cannot_take_the_call_are_skipped(
        servers: dict[str, ScriptedServer]) -> None:
    # C needs a key and has none; A does not support tools; B does.
    registry = make_registry({name: server.url for name, server in servers.items()})
    route = registry.route(["C", "A", "B/m2"])
    tools = [{"type": "function", "function": {"name": "f", "parameters": {}}}]
    completion = route.complete(MESSAGES, tools=tools)
    assert (completion.provider, completion.model) == ("B", "m2")
    assert not servers["A"].requests
    assert not servers["C"].requests
    with pytest.raises(InvalidRequestError) as info:
        registry.route(["C", "A/m9"]).complete(MESSAGES)
    reasons = str(info.value)
    assert "C: no API key is configured" in reasons  # why, for each entry
    assert "A/m9: model 'm9' is not supported" in reasons
    assert not any(server.requests for server in servers.values()
                   if server is not servers["B"])


def test_an_unknown_provider_in_a_route_is_refused(registry: Registry) -> None:
    with pytest.raises(ProviderNotFoundError):
        registry.route(["A", "Nope"])


# -- strategies -------------------------------------------------------------------------


def served(route: Route, calls: int) -> Counter[str]:
    return Counter(route.complete(MESSAGES).provider or "" for _ in range(calls))


def test_ordered_sends_everything_to_the_first_healthy_entry(registry: Registry) -> None:
    assert served(registry.route(["A", "B"]), 100) == {"A": 100}


def test_round_robin_alternates(registry: Registry) -> None:
    assert served(registry.route(["A", "B"], strategy="round_robin"), 100) == {"A": 50, "B": 50}


def test_shuffle_spreads(registry: Registry) -> None:
    counts = served(registry.route(["A", "B"], strategy="shuffle"), 100)
    assert counts["A"] > 20
    assert counts["B"] > 20


def test_latency_prefers_the_fastest_after_measuring_each(
        registry: Registry, servers: dict[str, ScriptedServer]) -> None:
    for _ in range(100):
        servers["A"].add(text="slow", delay=0.06)
    counts = served(registry.route(["A", "B"], strategy="latency"), 100)
    assert counts["A"] >= 1  # measured once (unmeasured counts as fastest)
    assert counts["B"] >= 96


# -- cooldown ---------------------------------------------------------------------------


def test_cooldown_is_entered_honoured_and_ended_by_success(
        registry: Registry, servers: dict[str, ScriptedServer]) -> None:
    route = registry.route(["A", "B"], cooldown=0.3)
    servers["A"].add(status=503)
    assert route.complete(MESSAGES).provider == "B"
    # Cooling down: A is not tried while B answers.
    assert route.complete(MESSAGES).provider == "B"
    assert requests_to(servers["A"]) == 1
    time.sleep(0.35)
    assert route.complete(MESSAGES).provider == "A"  # cooldown over, A first again
    assert route.state.health(0).failures_in_a_row == 0


def test_allowed_fails_counts_failures_in_a_row(
        registry: Registry, servers: dict[str, ScriptedServer]) -> None:
    route = registry.route(["A", "B"], cooldown=30, allowed_fails=2)
    servers["A"].add(status=503)
    assert route.complete(MESSAGES).provider == "B"
    assert route.state.health(0).cooling_until == 0  # one failure: not cooling yet
    servers["A"].add(status=503)
    assert route.complete(MESSAGES).provider == "B"
    assert route.state.health(0).cooling_until > time.monotonic()


def test_retry_after_lengthens_a_cooldown_and_never_shortens_it(
        registry: Registry, servers: dict[str, ScriptedServer]) -> None:
    route = registry.route(["A", "B"], cooldown=0.1)
    servers["A"].add(status=429, headers={"Retry-After": "5"})
    route.complete(MESSAGES)
    long_until = route.state.health(0).cooling_until
    assert long_until - time.monotonic() > 4
    # A later failure with a short cooldown (all cooling: A is tried again, fails)
    servers["B"].add(status=503)
    servers["A"].add(status=503)
    servers["B"].add(status=503)
    with pytest.raises(RouteFailedError):
        route.complete(MESSAGES, max_retries=0)
    assert route.state.health(0).cooling_until >= long_until


def test_when_every_entry_cools_the_one_ending_first_is_tried(
        registry: Registry, servers: dict[str, ScriptedServer]) -> None:
    route = registry.route(["A", "B"], cooldown=30)
    servers["A"].add(status=503, headers={"Retry-After": "20"})
    servers["B"].add(status=503, headers={"Retry-After": "40"})
    with pytest.raises(RouteFailedError):
        route.complete(MESSAGES, max_retries=0)
    # Both cool; A's cooldown ends first, so it is tried first rather than failing.
    assert route.complete(MESSAGES).provider == "A"
    assert route.state.health(0).cooling_until == 0  # its success ended the cooldown


# -- observers and concurrency -------------------------------------------------------------


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, str, str | None, str]] = []
        self.lock = threading.Lock()

    @hookimpl
    def chatplug_on_request(self, provider: str, request_id: str, route: str | None) -> None:
        with self.lock:
            self.events.append(("request", provider, route, request_id))

    @hookimpl
    def chatplug_on_error(self, provider: str, request_id: str, route: str | None) -> None:
        with self.lock:
            self.events.append(("error", provider, route, request_id))

    @hookimpl
    def chatplug_on_response(self, provider: str, request_id: str, route: str | None) -> None:
        with self.lock:
            self.events.append(("response", provider, route, request_id))


def test_observers_hear_every_attempt_with_the_route_and_one_request_id(
        registry: Registry, servers: dict[str, ScriptedServer]) -> None:
    recorder = Recorder()
    registry.register_observer(recorder, name="recorder")
    servers["A"].add(status=503)
    registry.route(["A", "B"], name="pair").complete(MESSAGES)
    assert registry.flush_observers(5)
    kinds = [(kind, provider, route) for kind, provider, route, _ in recorder.events]
    assert kinds == [("request", "A", "pair"), ("error", "A", "pair"),
                     ("request", "B", "pair"), ("response", "B", "pair")]
    assert len({request_id for *_, request_id in recorder.events}) == 1


def test_fifty_threads_and_two_hundred_tasks_share_one_route(registry: Registry) -> None:
    route = registry.route(["A", "B"], strategy="round_robin")
    results: list[str] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def work() -> None:
        try:
            provider = route.complete(MESSAGES).provider or ""
        except BaseException as exc:
            with lock:
                errors.append(exc)
        else:
            with lock:
                results.append(provider)

    threads = [threading.Thread(target=work) for _ in range(50)]
    for thread in threads:
        thread.start()

    async def tasks() -> list[str]:
        done = await asyncio.gather(*(route.acomplete(MESSAGES) for _ in range(200)))
        return [c.provider or "" for c in done]

    results_async = asyncio.run(tasks())
    for thread in threads:
        thread.join(30)
    assert not errors
    counts = Counter(results + results_async)
    assert counts == {"A": 125, "B": 125}  # the turn is shared, never skipped or doubled
    assert route.state.health(0).calls + route.state.health(1).calls == 250


# -- named routes -----------------------------------------------------------------------


def test_named_routes_from_settings(servers: dict[str, ScriptedServer]) -> None:
    routes = json.dumps({"fast": ["A", "B/m2"],
                         "spread": {"entries": ["A", "B"], "strategy": "round_robin",
                                    "cooldown": 60},
                         "a": ["B"]})
    registry = make_registry({name: s.url for name, s in servers.items()}, routes=routes)
    fast = registry.get("fast")
    assert isinstance(fast, Route)
    assert registry.get("FAST") is fast  # the same Route: its state lives in it
    assert [str(e) for e in fast.entries] == ["A", "B/m2"]
    assert [r.name for r in registry.routes()] == ["fast", "spread"]
    assert registry.get("spread").strategy == "round_robin"  # type: ignore[union-attr]
    assert "route:a" in registry.errors  # a route may not take a provider's name
    assert registry.resolve("fast") == (fast, None)
    servers["A"].add(status=500)
    assert fast.complete(MESSAGES).model == "m2"


def test_a_route_named_like_a_provider_is_a_load_error_before_any_lookup(
        servers: dict[str, ScriptedServer], caplog: pytest.LogCaptureFixture) -> None:
    registry = make_registry({name: s.url for name, s in servers.items()},
                             routes=json.dumps({"A": ["B"], "pair": ["A", "B"]}))
    errors = registry.errors  # no route was looked up: reading errors loads them
    assert "is a provider's name" in errors["route:A"]
    assert "route 'A' was not loaded" in caplog.text
    assert registry.get("a").name == "A"  # the provider keeps its name
    assert [r.name for r in registry.routes()] == ["pair"]
    registry.close()


def test_a_route_says_why_it_skips_an_entry(servers: dict[str, ScriptedServer],
                                           caplog: pytest.LogCaptureFixture) -> None:
    registry = make_registry({name: s.url for name, s in servers.items()})  # no key for C
    route = registry.route(["C", "A"])
    with caplog.at_level("WARNING", logger="chatplug.routes"):
        assert route.complete(MESSAGES).provider == "A"
        route.complete(MESSAGES)
    said = [r.getMessage() for r in caplog.records if r.name == "chatplug.routes"]
    assert len(said) == 1  # once per route and reason, not per call
    assert said[0].startswith("route C+A skips C: no API key is configured. Set CHATPLUG_C_API_KEY")
    registry.close()


@pytest.mark.parametrize("value", ["{not json", "[1, 2]", '{"x": []}', '{"x": {"entries": ["A"], '
                                   '"colour": 1}}', '{"x": ["A/"]}'])
def test_malformed_routes_setting_names_it(servers: dict[str, ScriptedServer],
                                           value: str) -> None:
    registry = make_registry({"A": servers["A"].url}, routes=value)
    with pytest.raises(ConfigurationError, match="CHATPLUG_ROUTES"):
        registry.routes()


def test_a_provider_lookup_never_reads_routes(servers: dict[str, ScriptedServer]) -> None:
    registry = make_registry({"A": servers["A"].url}, routes="{not json")
    assert registry.get("A").name == "A"  # a broken route setting breaks only routes


def test_entry_forms(registry: Registry) -> None:
    route = registry.route(["a", ("B", "m2"), "B/m1"])
    assert [str(e) for e in route.entries] == ["A", "B/m2", "B/m1"]
    with pytest.raises(InvalidRequestError):
        registry.route([42])  # type: ignore[list-item]


def test_a_key_refused_moves_on_without_leaking(servers: dict[str, ScriptedServer]) -> None:
    registry = make_registry({"C": servers["A"].url, "B": servers["B"].url},
                             provider_api_keys={"c": "route-secret-key-123"})
    servers["A"].add(status=401, echo_key=True)
    route = registry.route(["C", "B"], cooldown=0)
    assert route.complete(MESSAGES).provider == "B"
    servers["A"].add(status=401, echo_key=True)
    servers["B"].add(status=401)
    with pytest.raises(RouteFailedError) as info:
        route.complete(MESSAGES, max_retries=0)
    assert isinstance(info.value.errors[0], AuthenticationError)
    assert "route-secret-key-123" not in str(info.value) + repr(info.value.errors)


def test_failover_from_a_closed_port_is_fast(servers: dict[str, ScriptedServer]) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    registry = make_registry({"A": f"http://127.0.0.1:{closed}", "B": servers["B"].url})
    route = registry.route(["A", "B"], cooldown=0)
    route.complete(MESSAGES)  # warm: B's connection is open
    started = time.monotonic()
    assert route.complete(MESSAGES).provider == "B"
    assert time.monotonic() - started < 1  # the 20 ms figure is the benchmark's


# -- the CLI ----------------------------------------------------------------------------


def test_the_cli_chats_through_named_and_ad_hoc_routes() -> None:
    from .conftest import run_cli

    with ScriptedServer(lifetime=30) as first, ScriptedServer(lifetime=30) as second:
        env = {"CHATPLUG_GRAVITYENGINE_URL": first.url,
               "CHATPLUG_OPENAI_URL": second.url + "/v1",
               "CHATPLUG_OPENAI_API_KEY": "route-cli-key", "CHATPLUG_RETRY_BACKOFF": "0.01",
               "CHATPLUG_ROUTES": json.dumps({"fast": ["GravityEngine", "OpenAI/gpt-4o-mini"]})}
        first.add(status=503)
        named = run_cli("chat", "-p", "fast", "--no-log", "hi", env=env)
        assert (named.returncode, named.stdout) == (0, "You said: hi\n"), named.stderr
        first.add(status=503)
        adhoc = run_cli("chat", "-p", "GravityEngine", "-p", "OpenAI", "-m", "gpt-4o-mini",
                        "-o", "temperature=0.5", "--no-log", "hi", env=env)
        assert (adhoc.returncode, adhoc.stdout) == (0, "You said: hi\n"), adhoc.stderr
        # -m reached the entry that names no model; -o was checked and converted per entry.
        sent = second.requests[-1].json
        assert (sent["model"], sent["temperature"]) == ("gpt-4o-mini", 0.5)
        listing = run_cli("providers", env=env)
        assert "fast: GravityEngine, OpenAI/gpt-4o-mini (ordered)" in listing.stdout
        shown = run_cli("providers", "fast", "--json", env=env)
        assert json.loads(shown.stdout)["entries"] == ["GravityEngine", "OpenAI/gpt-4o-mini"]
        # An entry without a key is skipped, and the CLI says so on stderr.
        keyless = {k: v for k, v in env.items() if k != "CHATPLUG_OPENAI_API_KEY"}
        skipped = run_cli("chat", "-p", "OpenAI/gpt-4o-mini", "-p", "GravityEngine",
                          "--no-log", "hi", env=keyless)
        assert (skipped.returncode, skipped.stdout) == (0, "You said: hi\n"), skipped.stderr
        assert skipped.stderr.startswith("chatplug: route OpenAI/gpt-4o-mini+GravityEngine "
                                         "skips OpenAI/gpt-4o-mini: no API key is configured")
        broken = run_cli("providers", env={**env, "CHATPLUG_ROUTES": "{oops"})
        assert broken.returncode == 0
        assert "CHATPLUG_ROUTES" in broken.stdout
