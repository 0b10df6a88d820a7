"""The OpenAI wire format: request body, JSON reply, SSE chunks, completeness."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chatplug import (
    AuthenticationError,
    ChatplugError,
    Finish,
    Meta,
    Provider,
    ProviderHTTPError,
    ProviderResponseError,
    RateLimitError,
    Reasoning,
    StreamInterruptedError,
    ToolCallDelta,
    Usage,
)
from chatplug.events import Annotations, Choice, Logprobs, Refusal
from chatplug.testing import ScriptedServer
from chatplug.testing.pytest_plugin import registry_for
from chatplug.wire.errors import WINDOW, excerpt
from chatplug.wire.openai import (
    parse_chunk,
    parse_reply,
    reply_events,
    request_body,
    stream_events,
    stream_text,
)

from .conftest import PLANTED_KEY


def sse(*payloads: object, done: bool = True) -> bytes:
    out = b"".join(b"data: " + json.dumps(p).encode() + b"\n\n" for p in payloads)
    return out + (b"data: [DONE]\n\n" if done else b"")


def delta(text: str | None, finish: str | None = None) -> dict[str, object]:
    return {"choices": [{"index": 0, "delta": {"content": text} if text is not None else {},
                         "finish_reason": finish}]}


def test_request_body_leaves_out_unset_options() -> None:
    body = request_body("m", [{"role": "user", "content": "x"}], True,
                        temperature=0.2, top_p=None)
    assert body == {"model": "m", "messages": [{"role": "user", "content": "x"}],
                    "stream": True, "temperature": 0.2}


def test_parse_reply_reads_the_first_choice() -> None:
    reply = {"choices": [{"message": {"role": "assistant", "content": "hi"}}]}
    assert parse_reply(reply) == "hi"


@pytest.mark.parametrize(
    ("payload", "fragment"),
    [
        ({}, "no choices"),
        ({"choices": []}, "no choices"),
        ({"choices": [{"text": "legacy"}]}, "no message"),
        ({"choices": [{"message": {"content": 3}}]}, "not text"),
        ([1, 2], "not an object"),
        ({"error": {"message": "model overloaded"}}, "model overloaded"),
    ],
)
def test_parse_reply_rejects_what_the_format_does_not_promise(
    payload: object, fragment: str
) -> None:
    with pytest.raises(ProviderResponseError, match=fragment):
        parse_reply(payload)


def test_stream_yields_pieces_until_done() -> None:
    data = sse(delta(None), delta("Hel"), delta("lo"), delta(None, "stop"))
    assert list(stream_text([data])) == ["Hel", "lo"]


def test_stream_stops_reading_at_done() -> None:
    def chunks():
        yield sse(delta("a"))
        raise AssertionError("read past [DONE]")

    assert list(stream_text(chunks())) == ["a"]


def test_clean_end_after_a_finish_reason_is_complete() -> None:
    data = sse(delta("a"), delta(None, "stop"), done=False)
    assert list(stream_text([data])) == ["a"]


def test_clean_end_without_done_or_finish_raises_after_the_pieces() -> None:
    pieces: list[str] = []
    with pytest.raises(StreamInterruptedError) as info:
        for piece in stream_text([sse(delta("a"), delta("bc"), done=False)]):
            pieces.append(piece)
    assert pieces == ["a", "bc"]
    assert info.value.received == 3


def test_a_cut_last_line_is_an_interruption_not_a_parse_error() -> None:
    data = sse(delta("a"), done=False) + b'data: {"choices": [{"delta": {"cont'
    with pytest.raises(StreamInterruptedError):
        list(stream_text([data]))


def test_error_event_before_any_content_raises_typed_errors() -> None:
    with pytest.raises(ProviderResponseError, match="upstream exploded"):
        list(stream_text([sse(delta(None), {"error": {"message": "upstream exploded"}})]))
    with pytest.raises(RateLimitError):
        list(stream_text([sse({"error": {"message": "slow", "code": "rate_limit_exceeded"}})]))
    with pytest.raises(RateLimitError):  # LiteLLM puts the HTTP status in "code"
        list(stream_text([sse({"error": {"message": "litellm.RateLimitError", "code": "429"}})]))
    with pytest.raises(AuthenticationError):
        list(stream_text([sse({"error": {"message": "no", "code": "invalid_api_key"}})]))


@pytest.mark.parametrize("error", [
    {"message": "upstream exploded", "type": "None", "code": "500"},
    {"message": "upstream exploded", "code": "rate_limit_exceeded"},  # even a rate limit
])
def test_an_error_event_after_content_means_the_reply_is_incomplete(
    error: dict[str, str]
) -> None:
    # LiteLLM turns an upstream cut into such an event after the pieces it had.
    pieces: list[str] = []
    with pytest.raises(StreamInterruptedError, match="upstream exploded") as info:
        pieces.extend(stream_text([sse(delta("ab"), delta("c"), {"error": error})]))
    assert pieces == ["ab", "c"]
    assert info.value.received == 3
    assert "incomplete" in str(info.value)


def test_chunks_without_choices_are_skipped() -> None:
    data = sse({"choices": [], "prompt_filter_results": []}, delta("x"),
               {"usage": {"total_tokens": 3}, "choices": []}, delta(None, "stop"))
    assert list(stream_text([data])) == ["x"]


@pytest.mark.parametrize("data", ["not json", "[1]", '{"choices": ["x"]}',
                                  '{"choices": [{"delta": {"content": 5}}]}', "[" * 100_000])
def test_bad_chunks_raise_provider_response_error(data: str) -> None:
    with pytest.raises(ProviderResponseError):
        parse_chunk(data)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_property_any_bytes_parse_or_raise_a_chatplug_error(data: bytes) -> None:
    try:
        for piece in stream_text([data]):
            assert isinstance(piece, str)
    except (ProviderResponseError, StreamInterruptedError):
        pass


@settings(max_examples=100, deadline=None)
@given(st.lists(st.text(min_size=1, max_size=10), min_size=1, max_size=10),
       st.lists(st.integers(min_value=1, max_value=50), min_size=1, max_size=30))
def test_property_any_split_gives_the_same_pieces(texts: list[str], sizes: list[int]) -> None:
    data = sse(*(delta(t) for t in texts))
    chunks, position = [], 0
    for size in sizes:
        chunks.append(data[position:position + size])
        position += size
    chunks.append(data[position:])
    assert list(stream_text(chunks)) == texts


# -- events ------------------------------------------------------------------------


def test_a_stream_yields_every_event_in_order() -> None:
    first = {"id": "chatcmpl-1", "model": "served-1", "choices": [
        {"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]}
    data = sse(
        first,
        {"id": "chatcmpl-1", "choices": [{"delta": {"reasoning_content": "think"}}]},
        delta("Hel"), delta("lo"),
        {"id": "chatcmpl-1", "model": "served-1", "choices": [{"delta": {"tool_calls": [
            {"index": 0, "id": "call_1", "type": "function",
             "function": {"name": "f", "arguments": ""}}]}}]},
        {"choices": [{"delta": {"tool_calls": [{"index": 0, "function": {"arguments": '{"a"'}}]}}]},
        {"choices": [{"delta": {"tool_calls": [{"index": 0, "function": {"arguments": ": 1}"}}]}}]},
        delta(None, "tool_calls"),
        {"choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}},
    )
    assert list(stream_events([data])) == [
        Meta("chatcmpl-1", "served-1"), Reasoning("think"), "Hel", "lo",
        ToolCallDelta(0, "call_1", "f", ""), ToolCallDelta(0, None, None, '{"a"'),
        ToolCallDelta(0, None, None, ": 1}"), Finish("tool_calls"), Usage(5, 3, 8)]


def test_meta_comes_once_and_reasoning_may_be_called_reasoning() -> None:
    chunk = {"id": "x", "model": "m", "choices": [{"delta": {"content": None, "reasoning": "r"}}]}
    data = sse(chunk, chunk, {"id": "x", "model": "m", **delta("t", "stop")})
    assert list(stream_events([data])) == [
        Meta("x", "m"), Reasoning("r"), Reasoning("r"), "t", Finish("stop")]


def test_a_finish_reason_is_reported_once_and_done_after_it_ends_the_stream() -> None:
    def chunks() -> Iterator[bytes]:
        yield sse(delta("a"), delta(None, "length"), delta(None, "length"), done=False)
        yield b"data: [DONE]\n\n"
        raise AssertionError("read past [DONE]")

    assert list(stream_events(chunks())) == ["a", Finish("length")]


def test_a_usage_chunk_without_done_after_the_finish_is_complete() -> None:
    data = sse(delta("a", "stop"), {"choices": [], "usage": {"total_tokens": 2}}, done=False)
    assert list(stream_events([data])) == ["a", Finish("stop"), Usage(None, None, 2)]


@pytest.mark.parametrize(("usage", "expected"), [
    ({"prompt_tokens": -1, "completion_tokens": True, "total_tokens": "9"}, None),
    ({"prompt_tokens": 2.0, "completion_tokens": 1, "total_tokens": None}, Usage(2, 1, None)),
    ("lots", None),
    ({}, None),
])
def test_token_counts_that_are_no_counts_are_left_out(usage: object, expected: object) -> None:
    reply = {"choices": [{"message": {"content": "x"}, "finish_reason": "stop"}], "usage": usage}
    assert reply_events(reply) == ["x", Finish("stop"), *([expected] if expected else [])]


def test_a_json_reply_gives_its_whole_tool_calls_reasoning_and_usage() -> None:
    reply = {"id": "chatcmpl-9", "model": "served", "choices": [{
        "message": {"role": "assistant", "content": None, "reasoning_content": "why",
                    "tool_calls": [
                        {"id": "c1", "type": "function",
                         "function": {"name": "a", "arguments": '{"x": 1}'}},
                        # some servers send the arguments as an object
                        {"id": "c2", "type": "function",
                         "function": {"name": "b", "arguments": {"y": "é"}}}]},
        "finish_reason": "tool_calls"}],
        "usage": {"prompt_tokens": 9, "completion_tokens": 4, "total_tokens": 13}}
    assert reply_events(reply) == [
        Meta("chatcmpl-9", "served"), Reasoning("why"),
        ToolCallDelta(0, "c1", "a", '{"x": 1}'), ToolCallDelta(1, "c2", "b", '{"y": "é"}'),
        Finish("tool_calls"), Usage(9, 4, 13)]
    assert parse_reply(reply) == ""


@pytest.mark.parametrize("calls", [
    "not a list",
    [{"index": -1, "function": {"arguments": "{}"}}],
    [{"index": "0", "function": {}}],
    [{"index": 0, "function": "f"}],
    ["call"],
])
def test_malformed_tool_calls_are_response_errors(calls: object) -> None:
    chunk = {"choices": [{"delta": {"tool_calls": calls}}]}
    with pytest.raises(ProviderResponseError, match=r"tool_calls|tool call"):
        list(stream_events([sse(delta("a"), chunk)]))
    with pytest.raises(ProviderResponseError, match=r"tool_calls|tool call"):
        reply_events({"choices": [{"message": {"content": None, "tool_calls": calls}}]})


def test_parse_chunk_gives_the_items_of_one_chunk() -> None:
    assert parse_chunk(json.dumps({"id": "i", **delta("x", "stop")})) == [
        Meta("i", None), "x", Finish("stop")]
    assert parse_chunk(json.dumps({"choices": [], "prompt_filter_results": []})) == []


# -- NextChat (ChatGPT-Next-Web) in front of the model, over real HTTP ---------------

MESSAGES = [{"role": "user", "content": "hello"}]


def gravity(server: ScriptedServer, key: str | None) -> Provider:
    return registry_for(server, api_keys={"GravityEngine": key}).get("GravityEngine")


@pytest.mark.parametrize(("key", "sent"), [
    (PLANTED_KEY, f"Bearer nk-{PLANTED_KEY}"),  # a bare access code
    (f"nk-{PLANTED_KEY}", f"Bearer nk-{PLANTED_KEY}"),  # already prefixed
    (f"sk-{PLANTED_KEY}", f"Bearer sk-{PLANTED_KEY}"),  # the user's own OpenAI key
    (None, None),
])
def test_gravityengine_sends_an_access_code_as_nextchat_reads_it(
    chatplug_server: ScriptedServer, key: str | None, sent: str | None
) -> None:
    provider = gravity(chatplug_server, key)
    assert provider.needs_auth is False
    assert provider.create(messages=MESSAGES) == "You said: hello"
    assert chatplug_server.requests[-1].headers.get("Authorization") == sent


@pytest.mark.parametrize("key", [None, PLANTED_KEY])
@pytest.mark.parametrize("body", [
    {"error": True, "msg": "empty access code"},
    {"error": True, "message": "empty access code"},
])
def test_a_nextchat_401_is_read_and_names_the_variable(
    chatplug_server: ScriptedServer, key: str | None, body: dict[str, Any]
) -> None:
    chatplug_server.add(status=401, body=json.dumps(body).encode())
    with pytest.raises(AuthenticationError) as info:
        gravity(chatplug_server, key).create(messages=MESSAGES, max_retries=0)
    text = str(info.value)
    assert "empty access code" in text
    assert "CHATPLUG_GRAVITYENGINE_API_KEY" in text
    assert "{" not in text, "the raw JSON is read, not shown"
    assert "key you configured" not in text
    assert ("No key was sent" in text) is (key is None)
    assert info.value.status_code == 401


def test_a_nextchat_403_for_a_forbidden_model_is_a_model_restriction(
    chatplug_server: ScriptedServer,
) -> None:
    chatplug_server.add(status=403, body=json.dumps({
        "error": True, "message": "you are not allowed to use gpt-3.5-turbo-0613 model"}).encode())
    with pytest.raises(ProviderHTTPError) as info:
        gravity(chatplug_server, PLANTED_KEY).create(messages=MESSAGES,
                                                     model="gpt-3.5-turbo-0613")
    error = info.value
    assert not isinstance(error, AuthenticationError)
    assert error.status_code == 403
    assert "does not allow the model 'gpt-3.5-turbo-0613'" in str(error)
    assert "you are not allowed to use gpt-3.5-turbo-0613 model" in str(error)
    assert "the key was not refused" in str(error)
    assert len(chatplug_server.requests) == 1, "a model restriction is not retried"
    # A 403 about something else is still a refused key.
    chatplug_server.add(status=403, body=b'{"error": {"message": "invalid key"}}')
    with pytest.raises(AuthenticationError):
        gravity(chatplug_server, PLANTED_KEY).create(messages=MESSAGES)


UPSTREAM_DOWN = json.dumps(
    '```json\n{\n  "cause": {\n    "errno": -111,\n    "code": "ECONNREFUSED",\n'
    '    "syscall": "connect",\n    "address": "127.0.0.1",\n    "port": 4000\n  }\n}\n```'
).encode()


def test_upstream_down_behind_nextchat_shows_the_text_and_is_retried(
    chatplug_server: ScriptedServer,
) -> None:
    provider = gravity(chatplug_server, None)
    chatplug_server.add(body=UPSTREAM_DOWN)  # HTTP 200, a JSON string
    with pytest.raises(ProviderResponseError) as info:
        provider.create(messages=MESSAGES, max_retries=0)
    assert "ECONNREFUSED" in str(info.value)
    assert "not an object (str)" not in str(info.value)
    assert info.value.retryable
    chatplug_server.add(body=UPSTREAM_DOWN)
    assert provider.create(messages=MESSAGES, max_retries=1) == "You said: hello"
    assert len(chatplug_server.requests) == 3


def test_an_in_stream_error_after_pieces_is_an_interruption_with_the_servers_words(
    chatplug_server: ScriptedServer,
) -> None:
    # What LiteLLM sends when its upstream is cut mid-reply.
    chatplug_server.add(pieces=["Hello", " wor"], stream=True, finish=False, error_event={
        "message": "litellm.APIConnectionError: upstream closed the connection",
        "type": None, "param": None, "code": "500"})
    received: list[str] = []
    with pytest.raises(StreamInterruptedError) as info:
        received.extend(gravity(chatplug_server, None).create(messages=MESSAGES, stream=True))
    assert received == ["Hello", " wor"]
    assert "upstream closed the connection" in str(info.value)
    assert info.value.received == len("Hello wor")
    assert info.value.completion is not None
    assert info.value.completion.text == "Hello wor"


@pytest.mark.parametrize("status", [400, 401, 403, 429, 500])
def test_no_double_full_stop_after_the_servers_sentence(
    chatplug_server: ScriptedServer, status: int
) -> None:
    chatplug_server.add(status=status, text="Incorrect API key provided.")
    with pytest.raises(ChatplugError) as info:
        gravity(chatplug_server, PLANTED_KEY).create(messages=MESSAGES, max_retries=0)
    assert "Incorrect API key provided." in str(info.value)
    assert ".." not in str(info.value)


def test_no_double_full_stop_after_an_in_band_error() -> None:
    for error in ({"message": "Slow down.", "code": "rate_limit_exceeded"},
                  {"message": "Bad key.", "code": "invalid_api_key"}):
        with pytest.raises(ChatplugError) as info:
            list(stream_text([sse({"error": error})]))
        assert ".." not in str(info.value)


# -- issue 8 hole 4: a key is masked before any text is cut ---------------------------

def fragments(key: str, size: int = 4) -> set[str]:
    """Every piece of ``key`` long enough to give it away."""
    return {key[at:at + size] for at in range(len(key) - size + 1)}


def leaked(text: str, key: str = PLANTED_KEY) -> list[str]:
    return sorted(part for part in fragments(key) if part in text)


# The key starts at every offset around each excerpt length chatplug uses (120 for a
# stream event, 200 for an error body), so every cut point through the key is tried.
OFFSETS = [*range(100, 125), *range(175, 205)]


@pytest.mark.parametrize("limit", [120, 200, 300])
def test_excerpt_masks_a_key_at_every_cut_point(limit: int) -> None:
    for offset in range(limit - len(PLANTED_KEY) - 2, limit + 2):
        for filler in ("x", "x \n\t "):  # whitespace collapses before the cut, too
            text = (filler * offset)[:offset] + PLANTED_KEY + " tail" * 50
            shown = excerpt(text, PLANTED_KEY, limit)
            assert leaked(shown) == [], (offset, shown[-40:])
            assert len(shown) <= limit
    # A huge text is clipped before masking; a key at the clip point never survives.
    for offset in range(WINDOW - 30, WINDOW + 2):
        shown = excerpt(" " * offset + PLANTED_KEY + "y" * 20_000, PLANTED_KEY, limit)
        assert leaked(shown) == []


@pytest.mark.parametrize("offset", OFFSETS[::3])
def test_a_key_near_the_cut_never_leaks_from_a_401_body(
    chatplug_server: ScriptedServer, offset: int
) -> None:
    chatplug_server.add(status=401, text="e" * offset + f" {PLANTED_KEY} is not a valid key")
    with pytest.raises(AuthenticationError) as info:
        gravity(chatplug_server, PLANTED_KEY).create(messages=MESSAGES, max_retries=0)
    assert leaked(f"{info.value} {info.value!r} {vars(info.value)}") == []


@pytest.mark.parametrize("offset", OFFSETS[::3])
def test_a_key_near_the_cut_never_leaks_from_a_stream(
    chatplug_server: ScriptedServer, offset: int
) -> None:
    provider = gravity(chatplug_server, PLANTED_KEY)
    # An error event in a 200 stream, then an event that is not JSON.
    chatplug_server.add(pieces=[], stream=True, error_event={
        "message": "e" * offset + f" {PLANTED_KEY} refused"})
    chatplug_server.add(body=b"data: " + b"e" * offset + f" {PLANTED_KEY} }}\n\n".encode(),
                        content_type="text/event-stream")
    for _ in range(2):
        with pytest.raises(ProviderResponseError) as info:
            list(provider.create(messages=MESSAGES, stream=True, max_retries=0))
        assert leaked(f"{info.value} {info.value!r}") == []


def test_a_key_near_the_cut_never_leaks_into_the_retry_log(
    chatplug_server: ScriptedServer, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    provider = gravity(chatplug_server, PLANTED_KEY)
    for offset in OFFSETS[::4]:
        chatplug_server.add(status=503, text="e" * offset + f" {PLANTED_KEY} overloaded")
    with caplog.at_level(logging.INFO, logger="chatplug"):
        for _ in OFFSETS[::4]:
            with pytest.raises(ChatplugError):
                provider.create(messages=MESSAGES, max_retries=0, timeout=5)
        chatplug_server.add(status=503, text="e" * 190 + f" {PLANTED_KEY}")
        chatplug_server.add(status=503, text="e" * 195 + f" {PLANTED_KEY}")
        with pytest.raises(ChatplugError) as info:
            provider.create(messages=MESSAGES, max_retries=1, timeout=10)
    assert "attempt 1 failed" in caplog.text
    assert leaked(caplog.text + str(info.value)) == []


# -- n > 1 (issue 19): every choice is read, each under its index, never merged ---------

def two_choices_stream() -> bytes:
    return sse(*({"choices": [{"index": index, "delta": {"content": text},
                               "finish_reason": None}]}
                 for index, text in ((0, "Hello"), (1, "Bonjour"), (0, " there"),
                                     (1, " toi"))),
               {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"},
                            {"index": 1, "delta": {}, "finish_reason": "length"}]})


def test_a_stream_with_a_second_choice_keeps_each_under_its_index() -> None:
    items = list(stream_events([two_choices_stream()]))
    assert [item for item in items if type(item) is str] == ["Hello", " there"]
    assert [item for item in items if isinstance(item, Choice)] == [
        Choice(1, "Bonjour"), Choice(1, " toi"), Choice(1, Finish("length"))]
    assert Finish("stop") in items


def test_a_chunk_carrying_two_choices_gives_both() -> None:
    chunk = {"choices": [{"index": 0, "delta": {"content": "a"}, "finish_reason": None},
                         {"index": 1, "delta": {"content": "b"}, "finish_reason": "stop"}]}
    items = list(stream_events([sse(delta("x"), chunk, delta(None, "stop"))]))
    assert items[:3] == ["x", "a", Choice(1, "b")]
    assert Choice(1, Finish("stop")) in items


def test_a_json_reply_with_two_choices_gives_both_not_the_first_only() -> None:
    reply = {"choices": [{"index": i, "message": {"role": "assistant", "content": t},
                          "finish_reason": "stop"} for i, t in enumerate(("one", "two"))]}
    assert reply_events(reply) == ["one", Finish("stop"), Choice(1, "two"),
                                   Choice(1, Finish("stop"))]


def test_logprobs_refusal_annotations_and_the_fingerprint_are_read() -> None:
    entry = {"token": "No", "logprob": -0.1, "bytes": [78, 111],
             "top_logprobs": [{"token": "No", "logprob": -0.1, "bytes": [78, 111]}]}
    citation = {"type": "url_citation", "url_citation": {
        "url": "https://example.org", "title": "x", "start_index": 0, "end_index": 2}}
    reply = {"id": "c1", "model": "m", "system_fingerprint": "fp_1", "service_tier": "flex",
             "choices": [{"index": 0, "finish_reason": "stop",
                          "logprobs": {"content": None, "refusal": [entry]},
                          "message": {"role": "assistant", "content": None,
                                      "refusal": "No.", "annotations": [citation]}}],
             "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5,
                       "prompt_tokens_details": {"cached_tokens": 1, "audio_tokens": 0},
                       "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 1,
                                                     "accepted_prediction_tokens": 2,
                                                     "rejected_prediction_tokens": 3}}}
    items = reply_events(reply)
    assert items[:4] == [Meta("c1", "m", "fp_1", "flex"), Refusal("No."),
                         Annotations([citation]), Logprobs(None, [entry])]
    usage = items[-1]
    assert isinstance(usage, Usage)
    assert usage.as_dict() == reply["usage"]


def test_a_chunk_with_logprobs_leaves_the_fast_path() -> None:
    entry = {"token": "Hi", "logprob": -0.5, "bytes": None, "top_logprobs": []}
    chunk = {"choices": [{"index": 0, "delta": {"content": "Hi"},
                          "logprobs": {"content": [entry], "refusal": None},
                          "finish_reason": None}]}
    items = list(stream_events([sse(delta("x"), chunk, delta("y"), delta(None, "stop"))]))
    assert items[:4] == ["x", "Hi", Logprobs([entry], None), "y"]


@pytest.mark.parametrize("stream", [True, False])
def test_n_2_over_http_gives_every_choice_and_choice_0_as_the_text(
    chatplug_server: ScriptedServer, stream: bool
) -> None:
    if stream:
        chatplug_server.add(body=two_choices_stream(), content_type="text/event-stream")
    else:
        reply = {"choices": [{"index": i, "message": {"role": "assistant", "content": t},
                              "finish_reason": "stop"} for i, t in enumerate(("Hello there",
                                                                             "Bonjour toi"))]}
        chatplug_server.add(body=json.dumps(reply).encode(), content_type="application/json",
                            stream=False)
    provider = registry_for(chatplug_server).get("OpenAI")
    if stream:
        with provider.create(messages=MESSAGES, model="m", stream=True, n=2,
                             max_retries=0) as result:
            assert "".join(result) == "Hello there"  # the text view: choice 0 only
            completion = result.completion
    else:
        completion = provider.complete(messages=MESSAGES, model="m", n=2, max_retries=0)
    assert completion.text == "Hello there"
    assert [(c.index, c.text) for c in completion.choices] == [(0, "Hello there"),
                                                               (1, "Bonjour toi")]
    assert completion.choices[1].message == {"role": "assistant", "content": "Bonjour toi"}
    assert chatplug_server.requests[-1].json["n"] == 2
