"""chatplug.wire.ndjson: newline-delimited JSON decoded from raw bytes, then over real HTTP."""

from __future__ import annotations

import json
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chatplug import (
    ProviderError,
    ProviderResponseError,
    Registry,
    StreamInterruptedError,
    hookimpl,
)
from chatplug.testing import ScriptedServer
from chatplug.wire import ndjson

from .conftest import PLANTED_KEY


def objects(data: bytes | list[bytes], **kwargs: Any) -> list[dict[str, Any]]:
    chunks = [data] if isinstance(data, bytes) else data
    return list(ndjson.iter_objects(chunks, **kwargs))


def done(payload: Any) -> bool:
    return payload.get("done") is True


@pytest.mark.parametrize("newline", [b"\n", b"\r\n", b"\r"])
def test_one_object_per_line_blank_lines_skipped(newline: bytes) -> None:
    data = newline.join([b'{"a": 1}', b"", b"  ", b'{"b": "\xc3\xa9"}', b""])
    assert objects(data) == [{"a": 1}, {"b": "é"}]


def test_a_whole_last_object_needs_no_terminator() -> None:
    assert objects(b'{"a": 1}\n{"b": 2}') == [{"a": 1}, {"b": 2}]


def test_a_last_line_cut_in_transit_is_an_interruption() -> None:
    with pytest.raises(StreamInterruptedError, match="in the middle of a line"):
        objects(b'{"a": 1}\n{"b": "trunc')


def test_a_page_that_is_not_ndjson_says_so() -> None:
    with pytest.raises(ProviderResponseError, match=r"not JSON: '<!DOCTYPE html>.*URL setting"):
        objects(b"<!DOCTYPE html><html>Sign in</html>")


@pytest.mark.parametrize(("line", "fragment"), [
    (b"[1, 2]", "JSON but not an object"),
    (b'"text"', "JSON but not an object"),
    (b"NaN", "JSON but not an object"),
    (b"{nope}", "not JSON"),
    (b'{"a": "\xff\xfe"}', "not JSON"),
    (b"[" * 100_000, "not JSON"),
])
def test_lines_that_are_no_object_are_response_errors(line: bytes, fragment: str) -> None:
    with pytest.raises(ProviderResponseError, match=fragment):
        objects(line + b"\n")


@pytest.mark.parametrize("error", [
    "model not found for {key}",
    {"message": "model not found for {key}", "type": "not_found"},
])
def test_an_error_line_raises_with_the_key_masked(error: Any) -> None:
    if isinstance(error, str):
        error = error.format(key=PLANTED_KEY)
    else:
        error = {**error, "message": error["message"].format(key=PLANTED_KEY)}
    stream = ndjson.iter_objects(
        [b'{"a": 1}\n', json.dumps({"error": error}).encode() + b"\n"], secret=PLANTED_KEY)
    assert next(stream) == {"a": 1}
    with pytest.raises(ProviderResponseError,
                       match=r"reported an error in its reply: model not found for \*\*\*$"
                       ) as info:
        next(stream)
    assert PLANTED_KEY not in repr(info.value)


def test_is_last_stops_reading_and_its_absence_is_an_interruption() -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"n": 1, "done": false}\n{"n": 2, "done": true}\n'
        raise AssertionError("read past the last object")

    assert [o["n"] for o in ndjson.iter_objects(chunks(), is_last=done)] == [1, 2]
    with pytest.raises(StreamInterruptedError, match="before its last object"):
        objects(b'{"n": 1, "done": false}\n', is_last=done)


def test_each_object_is_handed_on_before_the_next_read() -> None:
    reads: list[int] = []

    def chunks() -> Iterator[bytes]:
        for index, data in enumerate([b'{"n": 1}\n{"n"', b': 2}\n', b'{"n": 3}\n']):
            reads.append(index)
            yield data

    stream = ndjson.iter_objects(chunks())
    assert (next(stream), reads) == ({"n": 1}, [0])
    assert (next(stream), reads) == ({"n": 2}, [0, 1])


def test_an_endless_line_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ndjson, "MAX_LINE_BYTES", 1024)
    with pytest.raises(ProviderResponseError, match="longer than 1024 bytes"):
        objects([b'{"a": "' + b"x" * 600] * 3)


def text_of(payload: Any) -> Any:
    return payload["message"]["content"] if "message" in payload else None


def test_stream_text_counts_what_arrived_before_a_cut() -> None:
    lines = [b'{"message": {"content": "abc"}}\n', b'{"message": {"content": "de"}}\n']
    pieces: list[str] = []
    with pytest.raises(StreamInterruptedError, match="after 5 characters") as info:
        pieces.extend(ndjson.stream_text(lines, text=text_of, is_last=done))
    assert (pieces, info.value.received) == (["abc", "de"], 5)


@pytest.mark.parametrize("line", [b'{"message": "flat"}', b'{"message": {"content": 3}}'])
def test_stream_text_reports_an_object_without_text(line: bytes) -> None:
    with pytest.raises(ProviderResponseError, match=r"no text .* \(keys: message\)"):
        list(ndjson.stream_text([line + b"\n"], text=text_of, is_last=done))


# -- properties --------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                max_size=3),
    max_leaves=8,
)
json_objects = st.dictionaries(st.text(max_size=8).filter(lambda k: k != "error"), json_values,
                               max_size=4)


@settings(max_examples=150, deadline=None)
@given(st.lists(json_objects, max_size=6), st.sampled_from(["\n", "\r\n", "\r"]),
       st.data())
def test_any_split_of_the_bytes_gives_the_same_objects(
    items: list[dict[str, Any]], newline: str, data: st.DataObject
) -> None:
    encoded = "".join(json.dumps(item, ensure_ascii=False) + newline for item in items).encode()
    cuts = sorted(data.draw(st.lists(st.integers(0, len(encoded)), max_size=8)))
    chunks = [encoded[a:b] for a, b in zip([0, *cuts], [*cuts, len(encoded)], strict=True)]
    assert objects(chunks) == items


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=40), max_size=6))
def test_any_bytes_give_objects_or_a_provider_error(chunks: list[bytes]) -> None:
    try:
        result = objects(chunks)
    except (ProviderResponseError, StreamInterruptedError):
        return
    assert all(isinstance(item, dict) for item in result)


# -- over HTTP, with a provider written inline -------------------------------------


@pytest.fixture
def ndjson_provider(chatplug_server: ScriptedServer) -> Iterator[Any]:
    @hookimpl
    def create_completion(model, messages, stream, url, api_key, http):  # type: ignore[no-untyped-def]
        yield from ndjson.chat(http, url + "/api/chat",
                               {"model": model, "messages": messages, "stream": stream},
                               text=text_of, is_last=done, api_key=api_key)

    plugin = SimpleNamespace(url=chatplug_server.url, model=["m"], supports_stream=True,
                             needs_auth=False, create_completion=create_completion)
    registry = Registry(entry_points=())
    yield registry.register(plugin, "Lines")
    registry.close()


def test_chat_streams_and_reads_a_whole_json_reply(
    ndjson_provider: Any, chatplug_server: ScriptedServer
) -> None:
    messages = [{"role": "user", "content": "Привет"}]
    assert list(ndjson_provider.create(messages=messages, stream=True)) == [
        "You", " said:", " Привет"]
    assert chatplug_server.requests[-1].headers["Accept"].startswith("application/x-ndjson")
    assert ndjson_provider.create(messages=messages) == "You said: Привет"  # application/json
    chatplug_server.add(status=404, text="model 'm' not found, try pulling it first")
    with pytest.raises(ProviderError, match="model 'm' not found"):
        ndjson_provider.create(messages=messages, max_retries=0)


# -- events: Ollama's objects --------------------------------------------------------


def ollama_lines(*payloads: dict[str, Any]) -> list[bytes]:
    return [json.dumps(payload).encode() + b"\n" for payload in payloads]


def ollama_events(*payloads: dict[str, Any]) -> list[Any]:
    reply = ndjson.OllamaReply()
    return list(ndjson.stream_events(ollama_lines(*payloads), text=reply.text,
                                     is_last=reply.is_last, events=reply.events))


def test_ollama_objects_give_meta_reasoning_text_tool_calls_finish_and_usage() -> None:
    from chatplug import Finish, Meta, Reasoning, ToolCallDelta, Usage

    message = {"role": "assistant", "content": ""}
    items = ollama_events(
        {"model": "llama3.2", "message": {**message, "thinking": "hmm"}, "done": False},
        {"model": "llama3.2", "message": {**message, "content": "Hi"}, "done": False},
        {"model": "llama3.2", "message": {**message, "tool_calls": [
            {"function": {"name": "get_weather", "arguments": {"city": "Zürich"}}}]},
         "done": False},
        # a second call in a later object is a second call, not part of the first
        {"model": "llama3.2", "message": {**message, "tool_calls": [
            {"function": {"name": "get_time", "arguments": {}}}]}, "done": False},
        {"model": "llama3.2", "message": message, "done": True, "done_reason": "stop",
         "prompt_eval_count": 26, "eval_count": 9},
    )
    assert items == [
        Meta(model="llama3.2"), Reasoning("hmm"), "Hi",
        ToolCallDelta(0, "call_0", "get_weather", '{"city": "Zürich"}'),
        ToolCallDelta(1, "call_1", "get_time", "{}"),
        Finish("stop"), Usage(26, 9, 35),
    ]


def test_ollama_counts_that_are_no_counts_are_left_out() -> None:
    from chatplug import Finish, Meta, Usage

    items = ollama_events({"model": "m", "message": {"content": "x"}, "done": True,
                           "done_reason": "length", "prompt_eval_count": -3, "eval_count": 4})
    assert items == [Meta(model="m"), "x", Finish("length"), Usage(None, 4, None)]


@pytest.mark.parametrize("calls", [
    [{"function": {"arguments": {}}}],  # no name
    [{"name": "f"}],  # not in a function
    ["f"],
])
def test_malformed_ollama_tool_calls_are_response_errors(calls: Any) -> None:
    with pytest.raises(ProviderResponseError, match="no well-formed events"):
        ollama_events({"message": {"content": "", "tool_calls": calls}, "done": True})


def test_an_error_line_after_content_is_an_interruption() -> None:
    with pytest.raises(StreamInterruptedError, match="runner crashed") as info:
        ollama_events({"message": {"content": "abc"}, "done": False},
                      {"error": "llama runner process has terminated: runner crashed"})
    assert info.value.received == 3


@pytest.mark.parametrize("offset", range(100, 125))
def test_a_key_near_the_excerpt_cut_never_leaks(offset: int) -> None:
    line = b"<" + b"e" * offset + PLANTED_KEY.encode() + b" not json\n"
    with pytest.raises(ProviderResponseError) as info:
        objects(line, secret=PLANTED_KEY)
    text = str(info.value)
    assert not any(PLANTED_KEY[at:at + 4] in text for at in range(len(PLANTED_KEY) - 3))
