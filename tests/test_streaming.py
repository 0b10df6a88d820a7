"""create() over real HTTP against the scripted server on 127.0.0.1."""

from __future__ import annotations

import gc
import time

import pytest

from chatplug import (
    InvalidRequestError,
    Registry,
    Stream,
    StreamInterruptedError,
)
from chatplug.testing import ScriptedServer

MESSAGES = [{"role": "user", "content": "Привет, как дела?"}]


def test_non_streaming_returns_the_whole_text(chatplug_registry: Registry) -> None:
    text = chatplug_registry.get("GravityEngine").create(messages=MESSAGES)
    assert text == "You said: Привет, как дела?"


def test_streaming_yields_pieces(chatplug_registry: Registry) -> None:
    stream = chatplug_registry.get("GravityEngine").create(messages=MESSAGES, stream=True)
    assert isinstance(stream, Stream)
    assert list(stream) == ["You", " said:", " Привет,", " как", " дела?"]


def test_gravityengine_sends_the_callers_options_and_headers(
    chatplug_registry: Registry, chatplug_server: ScriptedServer
) -> None:
    provider = chatplug_registry.get("gravityengine")  # case-insensitive
    list(provider.create(messages=MESSAGES, model="gpt-3.5-turbo-0613", stream=True,
                         temperature=0.2, presence_penalty=0.5))
    request = chatplug_server.requests[-1]
    assert request.path == "/api/openai/v1/chat/completions"  # no double slash
    assert request.json == {
        "model": "gpt-3.5-turbo-0613", "messages": MESSAGES, "stream": True,
        "temperature": 0.2, "presence_penalty": 0.5,
    }
    assert request.headers["Accept"].startswith("text/event-stream")
    assert request.headers["Origin"] == chatplug_server.url
    assert request.headers["Content-Type"] == "application/json"


def test_streaming_is_live(chatplug_registry: Registry, chatplug_server: ScriptedServer) -> None:
    chatplug_server.add(text="first then the rest", hold_after=1, hold=1.0)
    started = time.monotonic()
    arrivals = []
    for piece in chatplug_registry.get("GravityEngine").create(messages=MESSAGES, stream=True):
        arrivals.append((piece, time.monotonic() - started))
    assert [p for p, _ in arrivals] == ["first", " then", " the", " rest"]
    assert arrivals[0][1] < 0.5, "the first piece waited for the rest of the body"
    assert arrivals[1][1] >= 0.9


@pytest.mark.parametrize("newline", ["\r\n", "\r"])
def test_crlf_cr_split_bytes_and_comments(
    chatplug_registry: Registry, chatplug_server: ScriptedServer, newline: str
) -> None:
    chatplug_server.add(text="héllo wörld ✓ 🎉 done", newline=newline, split=1, comments=True)
    pieces = list(chatplug_registry.get("GravityEngine").create(messages=MESSAGES, stream=True))
    assert "".join(pieces) == "héllo wörld ✓ 🎉 done"


def test_close_delimited_stream_is_live_too(
    chatplug_registry: Registry, chatplug_server: ScriptedServer
) -> None:
    chatplug_server.add(text="a b c", chunked=False, hold_after=1, hold=0.8)
    started = time.monotonic()
    stream = chatplug_registry.get("GravityEngine").create(messages=MESSAGES, stream=True)
    first = next(stream)
    assert (first, time.monotonic() - started < 0.5) == ("a", True)
    assert list(stream) == [" b", " c"]


def test_server_answering_json_to_a_stream_request_is_one_piece(
    chatplug_registry: Registry, chatplug_server: ScriptedServer
) -> None:
    chatplug_server.add(text="whole reply", stream=False)
    assert list(chatplug_registry.get("GravityEngine").create(
        messages=MESSAGES, stream=True)) == ["whole reply"]


def test_server_streaming_to_a_non_stream_request_is_joined(
    chatplug_registry: Registry, chatplug_server: ScriptedServer
) -> None:
    chatplug_server.add(text="streamed anyway", stream=True)
    assert chatplug_registry.get("GravityEngine").create(messages=MESSAGES) == "streamed anyway"


@pytest.mark.parametrize("reset", [False, True])
def test_dropped_connection_raises_after_the_pieces_that_arrived(
    chatplug_registry: Registry, chatplug_server: ScriptedServer, reset: bool
) -> None:
    chatplug_server.add(text="one two three four", drop_after=2, reset=reset)
    received = []
    with pytest.raises(StreamInterruptedError) as info:
        for piece in chatplug_registry.get("GravityEngine").create(messages=MESSAGES,
                                                                   stream=True):
            received.append(piece)
    assert received == ["one", " two"]
    assert info.value.provider == "GravityEngine"
    assert info.value.model == "gpt-3.5-turbo-16k"


def test_clean_close_without_done_or_finish_is_not_a_whole_reply(
    chatplug_registry: Registry, chatplug_server: ScriptedServer
) -> None:
    chatplug_server.add(text="cut short", finish=False, done=False, stream=True)
    with pytest.raises(StreamInterruptedError, match="incomplete"):
        chatplug_registry.get("GravityEngine").create(messages=MESSAGES, max_retries=0)


def test_a_cut_reply_nobody_saw_yet_is_fetched_again(
    chatplug_registry: Registry, chatplug_server: ScriptedServer
) -> None:
    # A non-streamed call shows the caller nothing before the end: a reply cut after
    # some pieces can start over, and the text is never doubled.
    chatplug_server.add(pieces=["cut", " short"], finish=False, done=False, stream=True)
    chatplug_server.add(pieces=["whole", " reply"], stream=True)
    provider = chatplug_registry.get("GravityEngine")
    completion = provider.complete(MESSAGES)
    assert completion.text == "whole reply"
    assert completion.attempts == 2
    assert len(chatplug_server.requests) == 2


def test_finish_reason_then_clean_close_is_complete(
    chatplug_registry: Registry, chatplug_server: ScriptedServer
) -> None:
    chatplug_server.add(text="done fine", done=False, stream=True)
    assert chatplug_registry.get("GravityEngine").create(messages=MESSAGES) == "done fine"


def test_error_event_inside_a_200_stream(
    chatplug_registry: Registry, chatplug_server: ScriptedServer
) -> None:
    # After content arrived, an error event means the reply is incomplete (issue 8).
    chatplug_server.add(text="partial", error_event={"message": "upstream overloaded"})
    with pytest.raises(StreamInterruptedError, match="upstream overloaded") as info:
        list(chatplug_registry.get("GravityEngine").create(messages=MESSAGES, stream=True))
    assert info.value.provider == "GravityEngine"
    assert info.value.received == len("partial")


def test_breaking_out_of_the_loop_closes_the_response(
    chatplug_registry: Registry, chatplug_server: ScriptedServer
) -> None:
    chatplug_server.add(text="a b c d e f", piece_delay=0.2)
    provider = chatplug_registry.get("GravityEngine")
    for piece in provider.create(messages=MESSAGES, stream=True):
        assert piece == "a"
        break
    gc.collect()
    # The pool has a free, healthy connection again: the next call succeeds at once.
    started = time.monotonic()
    assert provider.create(messages=MESSAGES) == "You said: Привет, как дела?"
    assert time.monotonic() - started < 1.0


def test_close_and_context_manager_release_the_response(
    chatplug_registry: Registry, chatplug_server: ScriptedServer
) -> None:
    chatplug_server.add(text="a b c d e f", piece_delay=0.5)
    provider = chatplug_registry.get("GravityEngine")
    started = time.monotonic()
    with provider.create(messages=MESSAGES, stream=True) as stream:
        assert next(stream) == "a"
    with pytest.raises(StopIteration):
        next(stream)
    assert time.monotonic() - started < 1.0, "closing waited for the rest of the body"


def test_provider_without_stream_support_yields_one_piece(
    chatplug_server: ScriptedServer,
) -> None:
    from types import SimpleNamespace

    from chatplug import hookimpl
    from chatplug.wire import openai

    @hookimpl
    def create_completion(model, messages, stream, url, http):  # type: ignore[no-untyped-def]
        assert stream is False
        yield from openai.chat(http, url + "/v1/chat/completions", model=model,
                               messages=messages, stream=stream)

    plugin = SimpleNamespace(url=chatplug_server.url, model=["m"], supports_stream=False,
                             needs_auth=False, create_completion=create_completion)
    registry = Registry(entry_points=())
    provider = registry.register(plugin, "NoStream")
    assert list(provider.create(messages=MESSAGES, stream=True)) == [
        "You said: Привет, как дела?"]
    assert chatplug_server.requests[-1].json["stream"] is False
    registry.close()


@pytest.mark.parametrize(
    ("call", "fragment"),
    [
        ({"messages": []}, "messages is empty"),
        ({"messages": "hi"}, "must be a list"),
        ({"messages": [{"role": "bot", "content": "x"}]}, r"messages\[0\].role"),
        ({"messages": [{"role": "user", "content": 3}]}, r"messages\[0\].content"),
        ({"messages": [{"role": "user", "content": ""}]}, "is empty"),
        ({"messages": [{"role": "user"}]}, "content must be a string"),
        ({"messages": [{"role": "user", "content": "x", "tool": 1}]}, "unknown key"),
        ({"messages": MESSAGES, "stream": "yes"}, "stream must be"),
        ({"messages": MESSAGES, "temperature": "hot"}, "temperature"),
        ({"messages": MESSAGES, "top_k": 3}, "unknown parameter 'top_k'"),
        ({"messages": MESSAGES, "timeout": -1}, "timeout"),
        ({"messages": MESSAGES, "timeout": 1e9}, "timeout"),
        ({"messages": MESSAGES, "timeout": "10"}, "timeout"),
        ({"messages": MESSAGES, "max_retries": -1}, "max_retries"),
        ({"messages": MESSAGES, "max_retries": True}, "max_retries"),
        ({"messages": MESSAGES, "max_retries": 2.5}, "max_retries"),
        ({"messages": [{"role": "user", "content": "x", "name": 3}]}, "name must be"),
        ({"messages": [None]}, "must be a dict"),
        ({"messages": [{"role": "user", "content": "a\ud800"}]}, "not valid Unicode"),
        ({"messages": MESSAGES, "temperature": float("nan")}, "finite number"),
        ({"messages": MESSAGES, "temperature": float("inf")}, "finite number"),
        ({"messages": MESSAGES, "temperature": 3}, "less than or equal to 2"),
        ({"messages": MESSAGES, "presence_penalty": -2.5}, "greater than or equal to -2"),
        ({"messages": MESSAGES, "model": ""}, "model"),
    ],
)
def test_bad_input_is_rejected_before_any_request(
    chatplug_registry: Registry, chatplug_server: ScriptedServer,
    call: dict[str, object], fragment: str,
) -> None:
    with pytest.raises(InvalidRequestError, match=fragment):
        chatplug_registry.get("GravityEngine").create(**call)  # type: ignore[arg-type]
    assert chatplug_server.requests == []
