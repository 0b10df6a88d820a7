"""The whole OpenAI chat-completions API in the library, the CLI, batch and the scripted
server's command line: several choices, logprobs, refusals, annotations, usage details,
and today's parameters sent as given (issue 19)."""

from __future__ import annotations

import json
import subprocess
import sys
import types
from collections.abc import Iterator
from pathlib import Path

import pytest

from chatplug import Provider
from chatplug.events import Annotations, Choice, Finish, Logprobs, Refusal
from chatplug.testing import ScriptedServer
from chatplug.testing.pytest_plugin import TEST_API_KEY, registry_for

from .conftest import run_cli

MESSAGES = [{"role": "user", "content": "Say hello"}]
CITATION = {"type": "url_citation", "url_citation": {
    "url": "https://example.org/", "title": "Example", "start_index": 0, "end_index": 5}}


@pytest.fixture
def openai_provider(chatplug_server: ScriptedServer) -> Iterator[Provider]:
    registry = registry_for(chatplug_server, max_retries=0, timeout=10)
    yield registry.get("OpenAI")
    registry.close()


def test_stream_events_carry_each_choice_and_the_text_view_is_choice_0(
    openai_provider: Provider, chatplug_server: ScriptedServer
) -> None:
    chatplug_server.add(text="Hello there", choices=["Bonjour toi"], logprobs=True)
    with openai_provider.create(MESSAGES, model="m", stream=True, n=2) as stream:
        items = list(stream.events())
        completion = stream.completion
    others = [item for item in items if isinstance(item, Choice)]
    assert {item.index for item in others} == {1}
    assert "".join(item.item for item in others if isinstance(item.item, str)) == "Bonjour toi"
    assert Choice(1, Finish("stop")) in others
    assert "".join(item for item in items if type(item) is str) == "Hello there"
    assert [choice.text for choice in completion.choices] == ["Hello there", "Bonjour toi"]
    assert [choice.finish_reason for choice in completion.choices] == ["stop", "stop"]
    logprobs = completion.choices[1].logprobs
    assert logprobs is not None
    assert [entry["token"] for entry in logprobs["content"]] == ["Bonjour", " toi"]
    with openai_provider.create(MESSAGES, model="m", stream=True, n=2) as stream:
        assert "".join(stream) == "You said: Say hello"  # the echo, n copies: choice 0 only
        assert len(stream.completion.choices) == 2


def test_a_whole_reply_keeps_refusal_annotations_logprobs_and_details(
    openai_provider: Provider, chatplug_server: ScriptedServer
) -> None:
    usage = {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8,
             "prompt_tokens_details": {"cached_tokens": 2, "audio_tokens": 1},
             "completion_tokens_details": {"reasoning_tokens": 1, "audio_tokens": 0,
                                           "accepted_prediction_tokens": 2,
                                           "rejected_prediction_tokens": 1}}
    chatplug_server.add(text="Example", annotations=[CITATION], usage=usage,
                        system_fingerprint="fp_1", service_tier="flex")
    completion = openai_provider.complete(MESSAGES, model="m", logprobs=True, top_logprobs=3)
    assert completion.annotations == [CITATION]
    assert completion.message == {"role": "assistant", "content": "Example",
                                  "annotations": [CITATION]}
    assert completion.logprobs is not None
    assert [len(entry["top_logprobs"]) for entry in completion.logprobs["content"]] == [3]
    assert (completion.system_fingerprint, completion.service_tier) == ("fp_1", "flex")
    assert completion.usage is not None
    assert completion.usage.as_dict() == usage
    assert completion.usage.accepted_prediction_tokens == 2
    chatplug_server.add(text="", refusal="I can't help with that.")
    refused = openai_provider.complete(MESSAGES, model="m")
    assert refused.refusal == "I can't help with that."
    assert refused.message == {"role": "assistant", "content": None,
                               "refusal": "I can't help with that."}
    chatplug_server.add(text="", refusal="No can do.", annotations=[CITATION])
    with openai_provider.create(MESSAGES, model="m", stream=True) as stream:
        items = list(stream.events())
    assert [item.text for item in items if isinstance(item, Refusal)] == ["No", " can", " do."]
    assert Annotations([CITATION]) in items
    assert stream.completion.refusal == "No can do."
    assert not any(isinstance(item, Logprobs) for item in items)  # not asked for


def test_every_parameter_is_sent_as_given(openai_provider: Provider,
                                          chatplug_server: ScriptedServer) -> None:
    options = {"max_completion_tokens": 9, "max_tokens": 8, "n": 1, "logprobs": True,
               "top_logprobs": 0, "reasoning_effort": "minimal", "verbosity": "low",
               "store": False, "metadata": {"a": "b"}, "service_tier": "flex",
               "prompt_cache_key": "p", "safety_identifier": "s", "modalities": ["text"],
               "audio": {"voice": "alloy", "format": "wav"},
               "prediction": {"type": "content", "content": "x"},
               "web_search_options": {"search_context_size": "low"},
               "parallel_tool_calls": True, "logit_bias": {"1": 5}, "seed": 1,
               "functions": [{"name": "f", "parameters": {"type": "object"}}],
               "function_call": "auto", "user": "u", "stop": ["\n"],
               "response_format": {"type": "json_object"}}
    openai_provider.complete(MESSAGES, model="m", **options)
    body = chatplug_server.requests[-1].json
    assert {name: body[name] for name in options} == options
    with openai_provider.create(MESSAGES, model="m", stream=True,
                                stream_options={"include_obfuscation": False}) as stream:
        "".join(stream)
    assert chatplug_server.requests[-1].json["stream_options"] == {
        "include_obfuscation": False, "include_usage": True}


@pytest.mark.parametrize(("name", "value"), [("n", "2"), ("store", "no"), ("metadata", [1]),
                                             ("top_logprobs", 21), ("logprobs", 1)])
def test_a_wrong_type_is_refused_before_anything_is_sent(
    openai_provider: Provider, chatplug_server: ScriptedServer, name: str, value: object
) -> None:
    from chatplug import InvalidRequestError

    with pytest.raises(InvalidRequestError, match=f"parameter {name}"):
        openai_provider.complete(MESSAGES, model="m", **{name: value})
    assert chatplug_server.requests == []


def test_an_undeclared_parameter_names_the_provider_and_extra_body(
    chatplug_server: ScriptedServer
) -> None:
    from chatplug import InvalidRequestError

    registry = registry_for(chatplug_server, max_retries=0)
    with pytest.raises(InvalidRequestError) as info:
        registry.get("GravityEngine").complete(MESSAGES, reasoning_effort="low")
    text = str(info.value)
    assert "GravityEngine" in text
    assert "'reasoning_effort'" in text
    assert "extra_body" in text
    registry.get("GravityEngine").complete(MESSAGES, extra_body={"reasoning_effort": "low"})
    assert chatplug_server.requests[-1].json["reasoning_effort"] == "low"
    registry.close()


def test_the_cli_takes_todays_parameters(chatplug_server: ScriptedServer,
                                         tmp_path: Path) -> None:
    env = {"CHATPLUG_HOME": str(tmp_path), "CHATPLUG_OPENAI_URL": chatplug_server.url + "/v1",
           "CHATPLUG_OPENAI_API_KEY": TEST_API_KEY}
    result = run_cli("chat", "-p", "OpenAI", "-m", "m", "-o", "max_completion_tokens=5",
                     "-o", "n=2", "-o", "reasoning_effort=low", "-o", "store=false",
                     "-o", 'metadata={"team": "a"}', "-o", 'logit_bias={"50256": -100}',
                     "hi", env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "You said: hi\n"  # choice 0
    body = chatplug_server.requests[-1].json
    assert (body["max_completion_tokens"], body["n"], body["reasoning_effort"], body["store"],
            body["metadata"], body["logit_bias"]) == (5, 2, "low", False, {"team": "a"},
                                                      {"50256": -100})


def test_batch_sends_todays_parameters_and_writes_every_choice(
    chatplug_server: ScriptedServer, tmp_path: Path
) -> None:
    source = tmp_path / "in.jsonl"
    line = {"custom_id": "r1", "method": "POST", "url": "/v1/chat/completions",
            "body": {"model": "OpenAI/m", "messages": MESSAGES, "n": 2,
                     "max_completion_tokens": 7, "logprobs": True}}
    source.write_text(json.dumps(line) + "\n", encoding="utf-8")
    output = tmp_path / "out.jsonl"
    result = run_cli("batch", str(source), "-o", str(output), env={
        "CHATPLUG_HOME": str(tmp_path), "CHATPLUG_OPENAI_URL": chatplug_server.url + "/v1",
        "CHATPLUG_OPENAI_API_KEY": TEST_API_KEY}, timeout=60)
    assert result.returncode == 0, result.stderr
    body = json.loads(output.read_text(encoding="utf-8"))["response"]["body"]
    assert [choice["index"] for choice in body["choices"]] == [0, 1]
    assert body["choices"][1]["logprobs"]["content"][0]["token"] == "You"
    sent = chatplug_server.requests[-1].json
    assert (sent["n"], sent["max_completion_tokens"]) == (2, 7)


def _serve(*args: str) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "chatplug.testing.server", "--port", "0", "--lifetime", "60",
         *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert process.stdout is not None
    line = process.stdout.readline()
    assert "chatplug test server on http://" in line, line + process.stderr.read() \
        if process.stderr else line
    return process, line.split(" on ", 1)[1].split()[0]


def _stop(process: subprocess.Popen[str]) -> None:
    process.terminate()
    process.wait(timeout=10)
    for pipe in (process.stdout, process.stderr):
        if pipe is not None:
            pipe.close()


def test_the_server_command_line_scripts_choices_usage_tools_and_errors(tmp_path: Path) -> None:
    from chatplug import ProviderHTTPError

    script = tmp_path / "replies.json"
    script.write_text(json.dumps([
        {"text": "", "tool_calls": [{"id": "call_1", "type": "function", "function": {
            "name": "weather", "arguments": "{\"city\": \"Paris\"}"}}]},
        {"text": "One", "choices": ["Two"], "logprobs": True, "refusal": None,
         "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3,
                   "prompt_tokens_details": {"cached_tokens": 1}}},
        {"status": 400, "text": "This model's maximum context length is 8 tokens.",
         "error": {"type": "invalid_request_error", "code": "context_length_exceeded",
                   "param": "messages"}},
    ]), encoding="utf-8")
    process, url = _serve("--script", str(script))
    try:
        registry = registry_for(types.SimpleNamespace(url=url))  # type: ignore[arg-type]
        provider = registry.get("OpenAI")
        first = provider.complete(MESSAGES, model="m", max_retries=0)
        assert [call.name for call in first.tool_calls] == ["weather"]
        second = provider.complete(MESSAGES, model="m", max_retries=0)
        assert [choice.text for choice in second.choices] == ["One", "Two"]
        assert second.usage is not None
        assert second.usage.cached_tokens == 1
        with pytest.raises(ProviderHTTPError) as info:
            provider.complete(MESSAGES, model="m", max_retries=0)
        assert info.value.status_code == 400
        assert "maximum context length" in str(info.value)
        registry.close()
    finally:
        _stop(process)
    bad = tmp_path / "bad.json"
    bad.write_text('[{"txet": "typo"}]', encoding="utf-8")
    refused = subprocess.run([sys.executable, "-m", "chatplug.testing.server", "--script",
                              str(bad)], capture_output=True, text=True, timeout=30)
    assert refused.returncode == 2
    assert "'txet'" in refused.stderr


def test_the_readme_tool_example_runs_offline_against_call_tools(tmp_path: Path) -> None:
    from .test_readme import blocks, clean_environment

    [code] = blocks("Rich results", "python")
    block = tmp_path / "block.py"
    block.write_text(code, encoding="utf-8")
    process, url = _serve("--call-tools")
    try:
        env = clean_environment(tmp_path, CHATPLUG_OPENAI_URL=url + "/v1",
                                CHATPLUG_OPENAI_API_KEY="readme-placeholder")
        result = subprocess.run([sys.executable, str(block)], capture_output=True, text=True,
                                env=env, timeout=60, cwd=tmp_path)
    finally:
        _stop(process)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("tool_calls weather The tool said: 18 °C")
