"""chatplug-jsonl-observer: found through its entry point, one JSON line per event, no key."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import chatplug_jsonl_observer as observer
import pytest

from chatplug import AuthenticationError, Registry
from chatplug.testing import ScriptedServer
from chatplug.testing.pytest_plugin import registry_for

MESSAGES = [{"role": "user", "content": "hello"}]
PLANTED_KEY = "planted-secret-jsonl-51c2"


@pytest.fixture
def events(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "events.jsonl"
    monkeypatch.setenv(observer.ENV_PATH, str(path))
    return path


def read(path: Path, registry: Registry) -> list[dict[str, Any]]:
    # Observers are notified after the call returns: wait until they heard everything.
    assert registry.flush_observers(5)
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_loaded_through_its_entry_point(chatplug_registry: Registry) -> None:
    [loaded] = [o for o in chatplug_registry.observers() if o.name == "jsonl"]
    assert (loaded.plugin, loaded.distribution) == (observer, "chatplug-jsonl-observer")
    assert loaded.hooks == ("chatplug_on_error", "chatplug_on_request", "chatplug_on_response")


def test_each_completion_writes_a_request_and_a_response(
    chatplug_registry: Registry, chatplug_server: ScriptedServer, events: Path
) -> None:
    provider = chatplug_registry.get("GravityEngine")
    assert provider.create(messages=MESSAGES) == "You said: hello"
    chatplug_server.add(text="a b c")
    assert list(provider.create(messages=MESSAGES, stream=True)) == ["a", " b", " c"]
    lines = read(events, chatplug_registry)
    assert [line["event"] for line in lines] == ["request", "response", "request", "response"]
    request, response = lines[2], lines[3]
    assert request["request_id"] == response["request_id"] != lines[0]["request_id"]
    assert (request["provider"], request["model"], request["stream"]) == (
        "GravityEngine", "gpt-3.5-turbo-16k", True)
    assert (response["pieces"], response["characters"], response["attempts"],
            response["outcome"]) == (3, 5, 1, "complete")
    assert 0 <= response["first_piece_s"] <= response["duration_s"]


def test_a_stream_closed_early_is_reported_as_closed(
    chatplug_registry: Registry, chatplug_server: ScriptedServer, events: Path
) -> None:
    chatplug_server.add(text="a b c d", piece_delay=0.2)
    with chatplug_registry.get("GravityEngine").create(messages=MESSAGES, stream=True) as stream:
        assert next(stream) == "a"
    assert [(line["event"], line.get("outcome")) for line in read(events, chatplug_registry)] == [
        ("request", None), ("response", "closed")]


def test_an_error_is_written_and_the_key_never_is(
    chatplug_server: ScriptedServer, events: Path
) -> None:
    registry = registry_for(chatplug_server, api_keys={"OpenAI": PLANTED_KEY})
    chatplug_server.add(status=401, text="Incorrect API key provided", echo_key=True)
    with pytest.raises(AuthenticationError):
        registry.get("OpenAI").create(messages=MESSAGES, model="m", max_retries=0)
    request, error = read(events, registry)
    registry.close()
    assert (request["event"], error["event"]) == ("request", "error")
    assert (error["error"], error["status_code"], error["attempts"]) == (
        "AuthenticationError", 401, 1)
    assert "refused the API key" in error["message"]
    assert PLANTED_KEY not in events.read_text(encoding="utf-8")


def test_concurrent_completions_write_whole_lines(
    chatplug_registry: Registry, events: Path
) -> None:
    provider = chatplug_registry.get("GravityEngine")
    results: list[str] = []

    def call() -> None:
        results.append(provider.create(messages=MESSAGES, timeout=10))

    threads = [threading.Thread(target=call) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(15)
    assert results == ["You said: hello"] * 8
    lines = read(events, chatplug_registry)  # every line parses: none was interleaved with another
    assert sorted(line["event"] for line in lines) == ["request"] * 8 + ["response"] * 8
    assert len({line["request_id"] for line in lines}) == 8


def test_an_unwritable_file_never_breaks_a_completion(
    chatplug_registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv(observer.ENV_PATH, str(tmp_path / "no-such-dir" / "events.jsonl"))
    assert chatplug_registry.get("GravityEngine").create(messages=MESSAGES) == "You said: hello"
    assert chatplug_registry.flush_observers(5)
    assert "cannot write chatplug events" in caplog.text


def test_nothing_is_written_unless_a_path_is_configured(
    chatplug_registry: Registry, tmp_path: Path
) -> None:
    # conftest made tmp_path the working directory and unset CHATPLUG_JSONL_PATH.
    observer.chatplug_on_request(provider="P", model="m", stream=False, request_id="r1")
    assert chatplug_registry.get("GravityEngine").create(messages=MESSAGES) == "You said: hello"
    assert chatplug_registry.flush_observers(5)
    assert observer.events_path() is None
    assert list(tmp_path.iterdir()) == []


def test_it_can_be_disabled_by_name(chatplug_server: ScriptedServer, events: Path) -> None:
    registry = registry_for(chatplug_server, disabled_providers="JSONL")
    assert registry.observers() == []
    assert registry.disabled == {"jsonl": "chatplug-jsonl-observer"}
    registry.get("GravityEngine").create(messages=MESSAGES)
    assert registry.flush_observers(5)
    registry.close()
    assert not events.exists()
