"""The holes of issue 8 ("reliability and security, round two"), one test (or one class
of inputs) each, against real sockets on 127.0.0.1.  docs/reliability.md lists them.

Memory bounds (hole 2) are in test_memory.py; plugin cleanup, deadline and
BaseException handling of plugin code (holes 9 and 12) in test_plugin_faults.py.
"""

from __future__ import annotations

import gc
import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from types import SimpleNamespace

import pytest

from chatplug import (
    ChatplugError,
    ConfigurationError,
    InvalidRequestError,
    PluginLoadError,
    Provider,
    ProviderConnectionError,
    ProviderHTTPError,
    ProviderNotFoundError,
    ProviderTimeoutError,
    Registry,
    hookimpl,
)
from chatplug.settings import load_settings
from chatplug.testing import ScriptedServer

from .conftest import PLANTED_KEY, run_cli
from .distributions import PROVIDER, PROVIDER_GROUP, installed, make_distribution, unique
from .rawserver import (
    SSE_END,
    SSE_HEAD,
    RawServer,
    chunk,
    event,
    response_head,
    sleep_until_stopped,
)
from .registries import Registries

MESSAGES = [{"role": "user", "content": "hello"}]


@pytest.fixture
def raw() -> Iterator[RawServer]:
    with RawServer(lifetime=30) as server:
        yield server


@pytest.fixture
def scripted() -> Iterator[ScriptedServer]:
    with ScriptedServer(lifetime=60) as server:
        yield server


@pytest.fixture
def connect() -> Iterator[Registries]:
    with Registries() as registries:
        yield registries


def gravity(registry: Registry) -> Provider:
    return registry.get("GravityEngine")


def wait_for(condition: Callable[[], bool], seconds: float = 5) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.01)


def pool_of(registry: Registry, url: str) -> object:
    return registry.transport.session.get_adapter(url).poolmanager.connection_from_url(url)


def all_connections_returned(registry: Registry, url: str) -> bool:
    """urllib3 keeps one queue slot per connection: all there means none is checked out."""
    pool: object = pool_of(registry, url)
    queue = pool.pool
    return bool(queue.qsize() == queue.maxsize)


def paced_stream(raw: RawServer, pieces: int, pause: float) -> Callable[[socket.socket, bytes],
                                                                          None]:
    def behaviour(conn: socket.socket, request: bytes) -> None:
        conn.sendall(SSE_HEAD)
        for number in range(pieces):
            conn.sendall(chunk(event(f"b{number}")))
            if raw._stop.wait(pause):
                return
        conn.sendall(SSE_END)

    return behaviour


# -- hole 1: a watch belongs to a call, never to a pooled connection -----------------------


def whole_sse(conn: socket.socket, request: bytes) -> None:
    """An event stream with a Content-Length: read to its last byte in one read, so
    urllib3 returns the connection to the pool while the stream is still being read."""
    body = event("first") + event("second") + b"data: [DONE]\n\n"
    conn.sendall(response_head(Content_Type="text/event-stream",
                               Content_Length=str(len(body))) + body)


def test_a_suspended_streams_deadline_never_cuts_the_next_call_on_its_connection(
        raw: RawServer, connect: Callable[..., Registry]) -> None:
    raw.then(whole_sse).then(paced_stream(raw, 5, 0.3))
    provider = gravity(connect(raw.url))
    first = provider.create(messages=MESSAGES, stream=True, timeout=0.5)
    assert next(first) == "first"  # suspended after its first piece; deadline in 0.5 s
    second = list(provider.create(messages=MESSAGES, stream=True,
                                  timeout=30))  # 1.5 s: past the first's deadline
    assert second == [f"b{n}" for n in range(5)]
    assert len(raw._connections) == 1  # the second call did reuse the first's connection
    first.close()


def test_a_stream_dropped_in_a_reference_cycle_never_cuts_the_next_call(
        raw: RawServer, connect: Callable[..., Registry]) -> None:
    raw.then(whole_sse).then(paced_stream(raw, 5, 0.3))
    provider = gravity(connect(raw.url))
    gc.disable()  # the cycle stays uncollected while the second call runs
    try:
        dropped = provider.create(messages=MESSAGES, stream=True, timeout=0.5)
        assert next(dropped) == "first"
        cycle: list[object] = [dropped]
        cycle.append(cycle)
        del dropped, cycle
        second = list(provider.create(messages=MESSAGES, stream=True,
                                      timeout=30))
    finally:
        gc.enable()
        gc.collect()
    assert second == [f"b{n}" for n in range(5)]
    assert len(raw._connections) == 1


# -- hole 3: a leading byte-order mark ------------------------------------------------------

BOM = b"\xef\xbb\xbf"


@pytest.mark.parametrize("split", [1, 2, 3, 4, 7, None])
@pytest.mark.parametrize("stream", [True, False])
def test_a_leading_byte_order_mark_is_ignored_in_an_event_stream(
        raw: RawServer, connect: Callable[..., Registry], split: int | None,
        stream: bool) -> None:
    body = BOM + event("Hello") + event(" world") + b"data: [DONE]\n\n"

    def serve(conn: socket.socket, request: bytes) -> None:
        conn.sendall(SSE_HEAD)
        size = split or len(body)
        for start in range(0, len(body), size):  # the mark split across reads too
            conn.sendall(chunk(body[start:start + size]))
            time.sleep(0.001)
        conn.sendall(b"0\r\n\r\n")

    raw.then(serve)
    provider = gravity(connect(raw.url))
    if stream:
        assert list(provider.create(messages=MESSAGES, stream=True)) == [
            "Hello", " world"]
    else:
        assert provider.create(messages=MESSAGES) == "Hello world"


def test_a_leading_byte_order_mark_is_ignored_in_ndjson_and_json(raw: RawServer) -> None:
    from chatplug.wire import ndjson

    lines = BOM + b'{"t": "Hello"}\n{"t": " world", "done": true}\n'
    assert list(ndjson.stream_text([lines[:2], lines[2:5], lines[5:]],
                                   text=lambda o: o.get("t"),
                                   is_last=lambda o: o.get("done") is True)) == [
        "Hello", " world"]
    body = BOM + b'{"choices": [{"message": {"content": "whole"}}]}'

    def whole(conn: socket.socket, request: bytes) -> None:
        conn.sendall(response_head(Content_Type="application/json",
                                   Content_Length=str(len(body))) + body)

    raw.then(whole).then(whole)
    registry = Registry(settings=load_settings(provider_urls={"gravityengine": raw.url}))
    assert gravity(registry).create(messages=MESSAGES) == "whole"
    registry.close()


# -- hole 5: re-encoded keys, short keys, keys that cannot be sent --------------------------


def encodings(key: str) -> dict[str, str]:
    """The forms a server or a library gives back a key in."""
    import html
    import re
    from urllib.parse import quote, quote_plus

    escaped = json.dumps(key)[1:-1]
    return {
        "as is": key,
        "JSON": json.dumps(key, ensure_ascii=False)[1:-1],
        "JSON ASCII": escaped,
        "JSON with \\/": escaped.replace("/", "\\/"),
        "URL-encoded": quote(key, safe=""),
        "URL-encoded, / kept": quote(key),
        "URL-encoded, lower-case hex": re.sub("%[0-9A-F]{2}", lambda m: m.group().lower(),
                                              quote(key, safe="")),
        "form-encoded": quote_plus(key),
        "repr": repr(key)[1:-1],
        "whitespace collapsed": " ".join(key.split()),
        "HTML": html.escape(key),
    }


KEYS = ["sk-proj/Ab+Cd=Ef_0123456789", "nk key with spaces", "tab\tinside-the-key-9",
        'quotes"and\\backslash\'s&<x>', "pässwörd-ünïcode-42", "key🔑emoji-0001", "x9Q",
        "a"]


@pytest.mark.parametrize("key", KEYS)
def test_a_key_is_redacted_in_every_form_it_comes_back_in(key: str) -> None:
    from chatplug.transport.redaction import redact

    for name, form in encodings(key).items():
        text = f"401 Unauthorized: Incorrect API key provided: ({form}). Rotate it."
        cleaned = redact(text, key)
        assert cleaned == "401 Unauthorized: Incorrect API key provided: (***). Rotate it.", (
            name, cleaned)


def test_a_short_key_is_masked_as_a_token_not_inside_words() -> None:
    from chatplug.transport.redaction import redact

    assert redact("code x9Q refused (Bearer nk-x9Q)", "x9Q") == (
        "code *** refused (Bearer nk-***)")
    assert redact("ax9Qb stays", "x9Q") == "ax9Qb stays"


@pytest.mark.parametrize("key", ["sk-abc\ndef-123456", "sk-abc\rdef-123456",
                                 "sk-abc\x01def-123456", "sk-abc\x7fdef-123456",
                                 "sk-abc\x85def-123456", "sk-abc\u2028def-123456"])
def test_a_key_that_cannot_be_sent_is_a_configuration_error_before_anything_is_sent(
        scripted: ScriptedServer, monkeypatch: pytest.MonkeyPatch, key: str) -> None:
    monkeypatch.setenv("CHATPLUG_OPENAI_API_KEY", key)
    with pytest.raises(ConfigurationError, match="CHATPLUG_OPENAI_API_KEY") as info:
        load_settings()
    assert "abc" not in str(info.value)
    monkeypatch.delenv("CHATPLUG_OPENAI_API_KEY")
    with pytest.raises(ConfigurationError, match="CHATPLUG_OPENAI_API_KEY"):
        load_settings(provider_api_keys={"openai": key})
    result = run_cli("chat", "-p", "OpenAI", "-m", "m", "hi",
                     env={"CHATPLUG_OPENAI_API_KEY": key,
                          "CHATPLUG_OPENAI_URL": scripted.url + "/v1"})
    assert result.returncode == 1
    assert "CHATPLUG_OPENAI_API_KEY" in result.stderr
    assert "abc" not in result.stdout + result.stderr
    assert scripted.requests == []


@pytest.mark.parametrize("key", ["nk key with spaces-1", "tab\tinside-the-key"])
def test_spaces_or_a_tab_inside_a_key_are_redacted_wherever_they_appear(
        scripted: ScriptedServer, caplog: pytest.LogCaptureFixture, key: str) -> None:
    caplog.set_level(logging.DEBUG)
    registry = Registry(settings=load_settings(
        provider_urls={"openai": scripted.url + "/v1"}, provider_api_keys={"openai": key},
        max_retries=0))
    scripted.add(status=401, echo_key=True, text="refused")  # echoes "Bearer <key>" as is
    scripted.add(status=500, body=json.dumps({"error": {"message": f"bad {key}"}}).encode())
    for _ in range(2):
        with pytest.raises(ChatplugError) as info:
            registry.get("OpenAI").create(messages=MESSAGES, model="m")
        text = f"{info.value} {info.value!r}"
        for form in encodings(key).values():
            assert form not in text
    assert scripted.requests[0].headers["Authorization"] == f"Bearer {key}"  # sent as is
    for record in caplog.records:
        assert " ".join(key.split()) not in " ".join(record.getMessage().split())
    registry.close()


def test_a_header_that_cannot_be_sent_is_an_invalid_request_and_not_retried(
        scripted: ScriptedServer) -> None:
    """requests' InvalidHeader repr shows the value escaped; it was a "broken stream",
    retried."""

    @hookimpl
    def create_completion(model, messages, stream, api_key, http):  # type: ignore[no-untyped-def]
        from chatplug.wire import openai

        yield from openai.chat(http, scripted.url + "/v1/chat/completions", model=model,
                               messages=messages, stream=stream,
                               headers={"Authorization": f"Bearer {api_key}\n"})

    registry = Registry(entry_points=(), settings=load_settings(
        provider_api_keys={"sloppy": PLANTED_KEY}))
    registry.register(SimpleNamespace(url=scripted.url, model=["m"], supports_stream=True,
                                      needs_auth=True, create_completion=create_completion),
                      "Sloppy")
    with pytest.raises(InvalidRequestError, match="a request header cannot be sent") as info:
        registry.get("Sloppy").create(messages=MESSAGES)
    assert PLANTED_KEY not in str(info.value)
    assert not info.value.attempts  # not retried
    assert scripted.requests == []


# -- hole 6: keys in plugin load errors -----------------------------------------------------

LEAKY_IMPORT = '''
import os
raise ValueError(f"got {os.environ['CHATPLUG_OPENAI_API_KEY']!r} and "
                 f"{os.environ['CHATPLUG_LEAKY_API_KEY']}")
'''


def test_plugin_load_errors_never_show_a_configured_key(
        tmp_path: object, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    from pathlib import Path

    site = Path(str(tmp_path)) / "site"
    module = unique("leaky")
    make_distribution(site, "chatplug-leaky", {module: LEAKY_IMPORT},
                      {PROVIDER_GROUP: {"Leaky": module}})
    short = "x7Q"  # an access code: short keys too
    env = {"PYTHONPATH": str(site), "CHATPLUG_OPENAI_API_KEY": PLANTED_KEY,
           "CHATPLUG_LEAKY_API_KEY": short}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.syspath_prepend(str(site))
    caplog.set_level(logging.WARNING)
    registry = Registry(entry_points=installed(site, PROVIDER_GROUP))
    reason = registry.errors["Leaky"]
    assert "ValueError: got '***' and ***" in reason
    with pytest.raises(ProviderNotFoundError) as info:
        registry.get("Leaky")
    texts = [reason, str(info.value), caplog.text]
    texts += [run_cli("providers", env=env).stdout, run_cli("providers", "--json", env=env).stdout]
    strict = run_cli("providers", env={**env, "CHATPLUG_STRICT_PLUGINS": "1"})
    texts.append(strict.stderr)
    assert "failed to load" in texts[-1]
    for text in texts:
        assert PLANTED_KEY not in text
        assert f"and {short}" not in text
    assert "Leaky" in texts[3]


# -- hole 7: the deadline covers an HTTPS proxy's CONNECT -----------------------------------


def dribbling_proxy(server: RawServer) -> Callable[[socket.socket, bytes], None]:
    def behaviour(conn: socket.socket, request: bytes) -> None:
        assert request.startswith(b"CONNECT ")
        conn.sendall(b"HTTP/1.1 200 Connection established\r\n")
        for number in range(300):  # a header line every 0.1 s, never the blank line
            conn.sendall(b"X-Wait-%d: 1\r\n" % number)
            if server._stop.wait(0.1):
                return

    return behaviour


@pytest.fixture
def proxied(raw: RawServer, monkeypatch: pytest.MonkeyPatch) -> RawServer:
    for name in ("NO_PROXY", "no_proxy", "HTTP_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTPS_PROXY", raw.url)
    raw.then(dribbling_proxy(raw), times=5)
    return raw


def test_the_deadline_covers_an_https_proxys_connect(
        proxied: RawServer, connect: Callable[..., Registry]) -> None:
    registry = connect("https://chatplug-tunnel.invalid")
    started = time.monotonic()
    with pytest.raises(ProviderTimeoutError, match="deadline passed"):
        gravity(registry).create(messages=MESSAGES, timeout=2)
    elapsed = time.monotonic() - started
    print(f"CONNECT dribble: create(timeout=2) ended after {elapsed:.2f} s")
    assert elapsed < 3
    assert proxied.requests[0].startswith(b"CONNECT chatplug-tunnel.invalid:443 ")


def test_providers_check_behind_a_dribbling_proxy_exits_within_its_bound(
        proxied: RawServer) -> None:
    started = time.monotonic()
    result = run_cli("providers", "GravityEngine", "--check", "--timeout", "1",
                     env={"CHATPLUG_GRAVITYENGINE_URL": "https://chatplug-tunnel.invalid",
                          "HTTPS_PROXY": proxied.url})
    elapsed = time.monotonic() - started
    print(f"CONNECT dribble: providers --check --timeout 1 exited after {elapsed:.2f} s")
    assert result.returncode == 1
    assert "failing" in result.stdout
    assert elapsed < 5  # twice the timeout, and the interpreter's start


# -- hole 8: Stream.close() from another thread ---------------------------------------------


def read_in_thread(stream: Iterator[str]) -> tuple[list[str], list[BaseException],
                                                    threading.Thread]:
    got: list[str] = []
    errors: list[BaseException] = []

    def read() -> None:
        try:
            for piece in stream:
                got.append(piece)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    return got, errors, thread


@pytest.mark.parametrize("blocked_in", ["body", "headers"])
def test_close_from_another_thread_ends_a_blocked_read_and_releases_the_connection(
        raw: RawServer, connect: Callable[..., Registry], blocked_in: str) -> None:
    def stall(conn: socket.socket, request: bytes) -> None:
        if blocked_in == "body":
            conn.sendall(SSE_HEAD + chunk(event("first")))
        sleep_until_stopped(raw, 20)

    raw.then(stall)
    registry = connect(raw.url, read_timeout=20.0)
    stream = gravity(registry).create(messages=MESSAGES, stream=True)
    got, errors, reader = read_in_thread(stream)
    wait_for(lambda: len(raw.requests) == 1 and (blocked_in == "headers" or got == ["first"]))
    time.sleep(0.2)  # the reader is blocked on the socket now
    started = time.monotonic()
    stream.close()
    reader.join(2)
    assert not reader.is_alive()
    assert time.monotonic() - started < 1
    assert got == (["first"] if blocked_in == "body" else [])
    assert all(isinstance(error, ChatplugError) for error in errors), errors
    wait_for(lambda: all_connections_returned(registry, raw.url), 2)
    stream.close()  # idempotent


def test_a_stream_read_from_two_threads_gives_a_chatplug_error(
        scripted: ScriptedServer, connect: Callable[..., Registry]) -> None:
    scripted.add(text="one two three four five", piece_delay=1.0, stream=True)
    stream = gravity(connect(scripted.url)).create(
        messages=MESSAGES, stream=True)
    mine = iter(stream)
    assert next(mine) == "one"
    _, errors, other = read_in_thread(stream)
    # The other thread is inside the stream, waiting for " two".
    wait_for(lambda: bool(stream._generator.gi_running))  # type: ignore[union-attr]
    with pytest.raises(InvalidRequestError, match="read by another thread"):
        next(mine)
    stream.close()
    other.join(3)
    assert not other.is_alive()
    assert all(isinstance(error, ChatplugError) for error in errors), errors


# -- hole 10: Retry-After with every retried status -----------------------------------------


@pytest.mark.parametrize(("status", "headers", "at_least"), [
    (503, {"Retry-After": "1"}, 1.0),
    (500, {"retry-after-ms": "400"}, 0.4),
    (502, {"Retry-After": "1", "retry-after-ms": "300"}, 0.3),
    (429, {"Retry-After": "1"}, 1.0),
])
def test_retry_after_applies_to_every_retried_status(
        scripted: ScriptedServer, connect: Callable[..., Registry], status: int,
        headers: dict[str, str], at_least: float) -> None:
    scripted.add(status=status, text="busy", headers=headers)
    started = time.monotonic()
    assert gravity(connect(scripted.url)).create(messages=MESSAGES) == (
        "You said: hello")
    assert at_least - 0.05 <= time.monotonic() - started < at_least + 1.5
    assert len(scripted.requests) == 2


@pytest.mark.parametrize("status", [503, 500, 429])
def test_a_retry_hint_above_the_cap_raises_at_once(
        scripted: ScriptedServer, connect: Callable[..., Registry], status: int) -> None:
    scripted.add(status=status, text="come back in an hour", headers={"Retry-After": "3600"})
    started = time.monotonic()
    with pytest.raises(ProviderHTTPError) as info:
        gravity(connect(scripted.url)).create(messages=MESSAGES)
    assert time.monotonic() - started < 1
    assert info.value.retry_after == 3600
    assert len(scripted.requests) == 1


GARBAGE_HINTS = ["nan", "NaN", "inf", "-inf", "1e309", "-5", "soon", "", "0x10",
                 "Wed, 21 Oct 99999 07:28:00 GMT", "Wed, 21 Oct 2015 07:28:00 +99999999",
                 "Mon, 99 Foo 2015 99:99:99 GMT", "Fri, 31 Dec 9999 23:59:59 -2400"]


@pytest.mark.parametrize("value", GARBAGE_HINTS)
@pytest.mark.parametrize("name", ["Retry-After", "retry-after-ms"])
@pytest.mark.parametrize("status", [429, 503])
def test_garbage_retry_hints_are_ignored_for_the_normal_backoff(
        scripted: ScriptedServer, connect: Callable[..., Registry], status: int, name: str,
        value: str) -> None:
    scripted.add(status=status, text="busy", headers={name: value})
    started = time.monotonic()
    assert gravity(connect(scripted.url)).create(messages=MESSAGES) == (
        "You said: hello")
    assert time.monotonic() - started < 1  # the 0.05 s backoff, not a hint
    assert len(scripted.requests) == 2


def test_reading_a_retry_hint_never_raises_for_any_header_value() -> None:
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from chatplug.transport.failures import retry_after

    @settings(max_examples=150, deadline=None)
    @given(name=st.sampled_from(["retry-after", "retry-after-ms"]),
           value=st.one_of(st.text(max_size=40), st.floats().map(str),
                           st.integers().map(str),
                           st.datetimes().map(lambda d: d.strftime("%a, %d %b %Y %H:%M:%S"))
                           .flatmap(lambda d: st.sampled_from(
                               [d + " GMT", d + " +9999", d + " -0000", d]))))
    def check(name: str, value: str) -> None:
        hint = retry_after({name: value})
        assert hint is None or (0 <= hint < float("inf"))

    check()


# -- hole 11: a complete reply is returned as soon as it is complete ------------------------


def test_a_complete_reply_is_returned_while_the_server_dribbles_after_done(
        raw: RawServer, connect: Callable[..., Registry]) -> None:
    def dribble_after_done(conn: socket.socket, request: bytes) -> None:
        conn.sendall(SSE_HEAD + chunk(event("done")) + chunk(b"data: [DONE]\n\n") + b"400\r\n")
        for _ in range(100):  # one more chunk, a byte every 0.4 s
            conn.sendall(b":")
            if raw._stop.wait(0.4):
                return

    raw.then(dribble_after_done).then(dribble_after_done)
    registry = connect(raw.url)
    for stream in (False, True):
        started = time.monotonic()
        if stream:
            assert list(gravity(registry).create(
                messages=MESSAGES, stream=True, timeout=8)) == ["done"]
        else:
            assert gravity(registry).create(messages=MESSAGES, timeout=8) == "done"
        elapsed = time.monotonic() - started
        print(f"post-[DONE] dribble (stream={stream}): returned after {elapsed:.2f} s")
        assert elapsed < 1.5


# -- hole 13: a broken plugin never breaks the others ---------------------------------------


def test_an_import_raising_a_base_exception_is_a_load_error(
        tmp_path: object, monkeypatch: pytest.MonkeyPatch, scripted: ScriptedServer) -> None:
    from pathlib import Path

    site = Path(str(tmp_path)) / "site"
    sources = {
        "Aborts": "class Abort(BaseException):\n    pass\nraise Abort('plugin gave up')\n",
        "Exits": "raise SystemExit(3)\n",
        "GeneratorExitAtImport": "raise GeneratorExit('odd')\n",
    }
    for name, source in sources.items():
        module = unique(name.lower())
        make_distribution(site, f"broken-{name.lower()}", {module: source},
                          {PROVIDER_GROUP: {name: module}})
    good = unique("good")
    make_distribution(site, "chatplug-good", {good: PROVIDER}, {PROVIDER_GROUP: {"Good": good}})
    monkeypatch.syspath_prepend(str(site))
    registry = Registry(settings=load_settings(provider_urls={"good": scripted.url}),
                        entry_points=installed(site, PROVIDER_GROUP))
    for _ in range(2):  # every call, not only the first
        assert registry.get("Good").create(messages=MESSAGES) == "You said: hello"
    assert "Abort: plugin gave up" in registry.errors["Aborts"]
    assert "SystemExit: 3" in registry.errors["Exits"]
    assert "GeneratorExit" in registry.errors["GeneratorExitAtImport"]
    registry.close()


def test_an_unresolvable_forward_reference_is_not_a_raw_pydantic_error(
        caplog: pytest.LogCaptureFixture) -> None:
    seen: dict[str, object] = {}

    @hookimpl
    def create_completion(model, messages, stream,  # type: ignore[no-untyped-def]
                          options: dict[str, Options] | None = None,  # type: ignore[name-defined]  # noqa: F821
                          temperature: float = 1.0):
        seen["options"] = options
        yield "ok"

    create_completion.__annotations__["options"] = 'dict[str, "Options"] | None'
    registry = Registry(entry_points=())
    provider = registry.register(SimpleNamespace(
        url="http://127.0.0.1:9", model=["m"], supports_stream=True, needs_auth=False,
        create_completion=create_completion), "ForwardRef")
    caplog.set_level(logging.WARNING)
    assert provider.create(messages=MESSAGES, options={"a": 1}) == "ok"
    assert seen["options"] == {"a": 1}  # not checked, as a hint shown as written
    with pytest.raises(InvalidRequestError, match="temperature"):  # the others still are
        provider.create(messages=MESSAGES, temperature="hot")
    assert "cannot be resolved" in caplog.text


# -- hole 14: credentials in a URL ----------------------------------------------------------


@pytest.mark.parametrize("url", ["http://user:hunter2pass@127.0.0.1:9",
                                 "https://hunter2pass@api.example.invalid/v1",
                                 "http://user:hunter2pass@[::1]:9"])
def test_a_url_with_credentials_is_refused_saying_where_they_belong(
        monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    monkeypatch.setenv("CHATPLUG_GRAVITYENGINE_URL", url)
    with pytest.raises(ConfigurationError) as info:
        load_settings()
    message = str(info.value)
    assert "CHATPLUG_GRAVITYENGINE_URL must not contain credentials" in message
    assert "CHATPLUG_GRAVITYENGINE_API_KEY" in message
    assert "hunter2pass" not in message
    monkeypatch.delenv("CHATPLUG_GRAVITYENGINE_URL")
    monkeypatch.setenv("OPENAI_BASE_URL", url)
    with pytest.raises(ConfigurationError, match="OPENAI_BASE_URL") as info:
        load_settings()
    assert "hunter2pass" not in str(info.value)
    result = run_cli("providers", env={"CHATPLUG_GRAVITYENGINE_URL": url})
    assert result.returncode == 1
    assert "hunter2pass" not in result.stdout + result.stderr
    registry = Registry(entry_points=())
    with pytest.raises(PluginLoadError, match="must not contain credentials") as loaded:
        registry.register(SimpleNamespace(url=url, model=["m"], supports_stream=True,
                                          needs_auth=False,
                                          create_completion=ok_completion), "Creds")
    assert "hunter2pass" not in str(loaded.value)


@hookimpl
def ok_completion(model, messages, stream):  # type: ignore[no-untyped-def]
    yield "ok"


def test_the_userinfo_of_a_url_is_never_printed(raw: RawServer,
                                                connect: Callable[..., Registry]) -> None:
    def redirect(conn: socket.socket, request: bytes) -> None:
        conn.sendall(response_head("302 Found", Location="https://admin:hunter2pass@elsewhere/x",
                                   Content_Length="0"))

    raw.then(redirect)
    with pytest.raises(ProviderHTTPError) as info:
        gravity(connect(raw.url)).create(messages=MESSAGES)
    assert "hunter2pass" not in str(info.value)
    assert "https://***@elsewhere/x" in str(info.value)
    with pytest.raises(InvalidRequestError) as option:
        gravity(connect(raw.url)).create(
            messages=MESSAGES, url="http://me:hunter2pass@127.0.0.1:9")
    assert "hunter2pass" not in str(option.value)


# -- 1xx answers ----------------------------------------------------------------------------


def test_informational_answers_are_skipped(raw: RawServer,
                                           connect: Callable[..., Registry]) -> None:
    body = b'{"choices": [{"message": {"content": "final"}}]}'

    def early_hints(conn: socket.socket, request: bytes) -> None:
        conn.sendall(b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n"
                     b"HTTP/1.1 102 Processing\r\n\r\n"
                     + response_head(Content_Type="application/json",
                                     Content_Length=str(len(body))) + body)

    def endless_hints(conn: socket.socket, request: bytes) -> None:
        conn.sendall(b"HTTP/1.1 103 Early Hints\r\n\r\n" * 100)
        sleep_until_stopped(raw, 5)

    raw.then(early_hints).then(endless_hints)
    registry = connect(raw.url, max_retries=0)
    assert gravity(registry).create(messages=MESSAGES) == "final"
    with pytest.raises(ProviderConnectionError, match="informational"):
        gravity(registry).create(messages=MESSAGES)


# -- wrong-protocol URLs ----------------------------------------------------------------------


class BannerServer:
    """A TCP server on 127.0.0.1 that sends ``banner`` to each connection, after reading
    what the client sends first (``first=False``: at once), and closes it."""

    def __init__(self, banner: bytes, *, first: bool) -> None:
        self._banner = banner
        self._first = first
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.1)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self.port = self._listener.getsockname()[1]

    def _serve(self) -> None:
        deadline = time.monotonic() + 20
        while not self._stop.is_set() and time.monotonic() < deadline:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(2)
                try:
                    if self._first:
                        conn.recv(4096)
                    conn.sendall(self._banner)
                    if not self._first:
                        conn.recv(4096)
                except OSError:
                    pass

    def __enter__(self) -> BannerServer:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self._listener.close()


def test_https_at_a_plain_http_port_says_to_use_http(connect: Callable[..., Registry]) -> None:
    plain = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    with BannerServer(plain, first=True) as server:
        registry = connect(f"https://127.0.0.1:{server.port}")
        with pytest.raises(ProviderConnectionError) as info:
            gravity(registry).create(messages=MESSAGES)
    message = str(info.value)
    assert "this server does not speak TLS; use http://" in message
    assert "CA" not in message
    assert "ConnectionPool" not in message
    assert not info.value.attempts  # trying again cannot help


def test_a_port_that_is_not_http_says_so(connect: Callable[..., Registry]) -> None:
    with (BannerServer(b"SSH-2.0-OpenSSH_9.6\r\n", first=False) as server,
          pytest.raises(ProviderConnectionError) as info):
        gravity(connect(f"http://127.0.0.1:{server.port}")).create(messages=MESSAGES)
    assert "this is not an HTTP server" in str(info.value)
    assert "SSH-2.0-OpenSSH_9.6" in str(info.value)
    assert not info.value.attempts


# -- first-run friction (plugins and settings) ----------------------------------------------


def test_a_name_far_from_every_provider_gets_no_suggestion() -> None:
    registry = Registry(entry_points=())
    for port, name in enumerate(("OpenAI", "GravityEngine"), 9):
        registry.register(SimpleNamespace(url=f"http://127.0.0.1:{port}", model=["m"],
                                          supports_stream=True, needs_auth=False,
                                          create_completion=ok_completion), name)
    with pytest.raises(ProviderNotFoundError) as info:
        registry.get("Nope")
    assert "Did you mean" not in str(info.value)
    for typo, meant in (("GravityEngin", "GravityEngine"), ("openia", "OpenAI"),
                        ("gravity", "GravityEngine")):
        with pytest.raises(ProviderNotFoundError, match=f"Did you mean '{meant}'"):
            registry.get(typo)


def test_a_misspelled_variable_is_reported_with_the_closest_name(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
        scripted: ScriptedServer) -> None:
    from chatplug.settings import unknown_variables

    environ = {"CHATPLUG_GRAVITYENGIN_URL": "http://x", "CHATPLUG_TIMOUT": "5",
               "CHATPLUG_GRAVITYENGINE_URL": "http://y", "CHATPLUG_JSONL_PATH": "/tmp/x",
               "CHATPLUG_OPENAI_KEY": "k", "HOME": "/root", "chatplug_max_retries": "1"}
    assert unknown_variables(environ, ["GravityEngine", "OpenAI"]) == [
        ("CHATPLUG_GRAVITYENGIN_URL", "CHATPLUG_GRAVITYENGINE_URL"),
        ("CHATPLUG_JSONL_PATH", None),
        ("CHATPLUG_OPENAI_KEY", "CHATPLUG_OPENAI_API_KEY"),
        ("CHATPLUG_TIMOUT", "CHATPLUG_TIMEOUT"),
    ]
    monkeypatch.setenv("CHATPLUG_GRAVITYENGIN_URL", scripted.url)
    caplog.set_level(logging.WARNING, logger="chatplug")
    Registry().get("GravityEngine").url  # noqa: B018  # loading settings and providers
    assert ("CHATPLUG_GRAVITYENGIN_URL is not a chatplug setting and is ignored; did you "
            "mean CHATPLUG_GRAVITYENGINE_URL?") in caplog.text


def test_a_parameter_without_a_default_is_a_load_error_saying_give_it_a_default() -> None:
    @hookimpl
    def create_completion(model, messages, stream, temperature):  # type: ignore[no-untyped-def]
        yield "x"

    with pytest.raises(PluginLoadError) as info:
        Registry(entry_points=()).register(SimpleNamespace(
            url="http://127.0.0.1:9", model=["m"], supports_stream=True, needs_auth=False,
            create_completion=create_completion), "NoDefault")
    message = str(info.value)
    assert "'temperature' have no default" in message
    assert "give a provider parameter a default" in message
    assert "hookspec" not in message


def test_models_instead_of_model_gets_a_hint() -> None:
    with pytest.raises(PluginLoadError) as info:
        Registry(entry_points=()).register(SimpleNamespace(
            url="http://127.0.0.1:9", models=["m"], supports_stream=True, needs_auth=False,
            create_completion=ok_completion), "Plural")
    assert "found 'models': the attribute is called model" in str(info.value)


def test_repr_shows_the_effective_url(scripted: ScriptedServer) -> None:
    registry = Registry(settings=load_settings(provider_urls={"gravityengine": scripted.url}))
    expected = f"<chatplug.Provider GravityEngine {scripted.url}>"
    assert repr(registry.get("GravityEngine")) == expected
    assert repr(Registry(settings=load_settings()).get("GravityEngine")) == (
        "<chatplug.Provider GravityEngine https://gpt4.xunika.uk>")


# -- issue 9: redaction that does not depend on a list of logger names ----------------------


def test_a_logger_added_later_never_prints_a_key(scripted: ScriptedServer,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    registry = Registry(settings=load_settings(
        provider_urls={"openai": scripted.url + "/v1"},
        provider_api_keys={"openai": PLANTED_KEY}))
    assert registry.get("OpenAI").create(messages=MESSAGES, model="m") == "You said: hello"
    caplog.set_level(logging.DEBUG)
    for name in ("chatplug.wire.openai", f"chatplug.{unique('new')}", "acme_provider.http"):
        log = logging.getLogger(name)
        log.debug("sending %s", {"api_key": PLANTED_KEY})
        log.info("url=https://x/?key=%s", PLANTED_KEY.replace("-", "%2D"))
        try:
            raise RuntimeError(f"boom with {PLANTED_KEY}")
        except RuntimeError:
            log.exception("failed")
    assert len(caplog.records) == 9
    assert PLANTED_KEY not in caplog.text
    assert PLANTED_KEY.replace("-", "%2D") not in caplog.text
    for record in caplog.records:
        assert PLANTED_KEY not in record.getMessage()
    registry.close()


def test_the_transport_has_no_dead_ca_bundle_attribute() -> None:
    from chatplug.http import Transport

    transport = Transport(ca_bundle=__file__)
    assert transport.verify == __file__
    assert not hasattr(transport, "ca_bundle")
