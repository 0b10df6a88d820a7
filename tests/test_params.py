"""The params string (the seed's form) and validation of provider parameters."""

from __future__ import annotations

import types
import typing
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Annotated, Any, ClassVar

import pytest

from chatplug import InvalidRequestError, Range, Registry, hookimpl, registry
from chatplug.calls.params import REQUIRED, ParameterSet
from chatplug.testing import ScriptedServer
from chatplug.testing.pytest_plugin import registry_for

if TYPE_CHECKING:
    from chatplug.http import HTTPClient


def test_gravityengine_params_string_is_the_seed_form() -> None:
    # The seed's parameters first, then what a Next-Web proxy passes through (issue 9).
    provider = registry.get("GravityEngine")
    assert provider.params == (
        "chatplug.providers.gravityengine supports: (model: str, messages: list, "
        "stream: bool, temperature: float, presence_penalty: float, top_p: float | None, "
        "max_tokens: int | None, frequency_penalty: float | None, "
        "stop: str | list[str] | None, tools: list[dict[str, Any]] | None, "
        "tool_choice: str | dict[str, Any] | None, user: str | None, "
        "max_completion_tokens: int | None, response_format: dict[str, Any] | None, "
        "seed: int | None, n: int | None, logprobs: bool | None, top_logprobs: int | None)"
    )


def test_structured_parameters_match_the_string() -> None:
    provider = registry.get("GravityEngine")
    described = [(p.name, p.type, p.default) for p in provider.parameters]
    assert described[:5] == [
        ("model", "str", "gpt-3.5-turbo-16k"),
        ("messages", "list", REQUIRED),
        ("stream", "bool", False),
        ("temperature", "float", 0.7),
        ("presence_penalty", "float", 0.0),
    ]
    assert all(p.default is None for p in provider.parameters[5:])
    assert provider.parameters[1].as_dict() == {
        "name": "messages", "type": "list", "default": None, "required": True}


def test_injected_arguments_are_not_parameters() -> None:
    provider = registry.get("OpenAI")
    names = {p.name for p in provider.parameters}
    assert not names & {"url", "api_key", "http"}
    assert "api_key" not in provider.params


def unannotated(model, messages, stream, temperature=0.5, style="plain"):  # type: ignore[no-untyped-def]
    yield ""


def test_unannotated_parameters_do_not_crash() -> None:
    params = ParameterSet(unannotated, ["m"])
    assert params.params_string("mod") == (
        "mod supports: (model, messages, stream, temperature, style)")
    # With no declared type, any value is accepted.
    assert params.validate({"style": 3}) == {"style": 3}


def forward(model: str, messages: list, stream: bool, http: HTTPClient,  # type: ignore[type-arg]
            top_k: int = 4, note: Undefined = None) -> Iterator[str]:  # type: ignore[name-defined]  # noqa: F821
    yield ""


def test_unresolvable_hints_are_shown_as_written_and_others_still_resolve() -> None:
    params = ParameterSet(forward, [])
    assert params.params_string("m") == (
        "m supports: (model: str, messages: list, stream: bool, top_k: int, note: Undefined)")
    assert params.validate({"top_k": 5}) == {"top_k": 5}
    with pytest.raises(InvalidRequestError, match="top_k"):
        params.validate({"top_k": "5"})


def ranged(model: str, messages: list, stream: bool,  # type: ignore[type-arg]
           temperature: Annotated[float, "0..2"] = 1.0,
           stop: list[str] | None = None) -> Iterator[str]:
    yield ""


def test_generic_and_annotated_types_are_named_readably() -> None:
    params = ParameterSet(ranged, ["m"])
    assert "temperature: float" in params.params_string("m")
    assert "stop: list[str] | None" in params.params_string("m")


@pytest.mark.parametrize(
    ("values", "fragment"),
    [
        ({"temperature": "0.2"}, "temperature='0.2' is invalid"),
        ({"temperature": True}, "temperature=True is invalid"),
        ({"temprature": 0.2}, "Did you mean 'temperature'"),
        ({"url": "http://x"}, "not a provider parameter"),
        ({"api_key": "k"}, "not a provider parameter"),
        ({"http": "k"}, "not a provider parameter"),
        ({"timeout": 3}, "call option"),
    ],
)
def test_validation_names_the_parameter(values: dict[str, object], fragment: str) -> None:
    provider = registry.get("GravityEngine")
    with pytest.raises(InvalidRequestError, match=fragment.replace("(", r"\(")):
        provider._parameter_set.validate(values)


def test_int_is_a_valid_float_and_strings_convert_only_from_the_cli() -> None:
    provider = registry.get("GravityEngine")
    assert provider._parameter_set.validate({"temperature": 1}) == {"temperature": 1.0}
    assert provider.parse_options({"temperature": "0.25"}) == {"temperature": 0.25}
    with pytest.raises(InvalidRequestError, match="temperature"):
        provider.parse_options({"temperature": "warm"})


# -- parameters declared once, received as one mapping (issue 18, section 3) -----------

class Forwarding:
    """A provider that names ``params``: it receives every user parameter at once."""

    url = "http://127.0.0.1:9"
    model: ClassVar[list[str]] = ["m"]
    supports_stream = False
    needs_auth = False

    def __init__(self) -> None:
        self.received: list[Mapping[str, Any]] = []

    @hookimpl
    def create_completion(self, model: str, messages: list, stream: bool,  # type: ignore[type-arg]
                          params: Mapping[str, Any], level: int = 1,
                          style: str | None = None,
                          scale: Annotated[float, Range(0, 2)] = 0.5) -> Iterator[str]:
        self.received.append(params)
        yield "ok"


def test_a_provider_naming_params_receives_every_validated_parameter() -> None:
    local = Registry(entry_points=())
    plugin = Forwarding()
    provider = local.register(plugin, name="Forwarding")
    assert provider.create(messages=[{"role": "user", "content": "x"}], level=3) == "ok"
    # The caller's validated value, else the declared default; nothing left out.
    assert dict(plugin.received[-1]) == {"level": 3, "style": None, "scale": 0.5}
    with pytest.raises(TypeError):
        plugin.received[-1]["level"] = 4  # type: ignore[index]
    # params is chatplug's argument, not a user parameter: never listed, never settable.
    assert "params" not in {p.name for p in provider.parameters}
    assert "params:" not in provider.params
    with pytest.raises(InvalidRequestError, match="'params' is not a provider parameter"):
        provider.create(messages=[{"role": "user", "content": "x"}], params={"level": 2})


def sample(hint: Any) -> Any:
    """A valid value of ``hint`` (inside any Range), to send for a parameter."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Annotated:
        ranges = [a for a in args[1:] if isinstance(a, Range)]
        value = sample(args[0])
        if ranges and ranges[0].ge is not None and value < ranges[0].ge:
            value = type(value)(ranges[0].ge)
        return value
    if origin in (typing.Union, types.UnionType):
        return sample(next(a for a in args if a is not type(None)))
    if origin is list:
        return [sample(args[0]) if args else "s"]
    if origin is dict:
        return {"k": sample(args[1]) if args else "s"}
    return {bool: True, int: 1, float: 0.5, str: "s", dict: {"k": "s"}}.get(hint, "s")


@pytest.mark.parametrize(("name", "url_suffix"), [("OpenAI", "/v1"), ("GravityEngine", "")])
def test_every_declared_parameter_of_a_built_in_reaches_the_request(
        chatplug_server: ScriptedServer, name: str, url_suffix: str) -> None:
    local = registry_for(chatplug_server)
    provider = local.get(name)
    user = [p for p in provider.parameters if p.name not in ("model", "messages", "stream")]
    values = {p.name: sample(p.annotation) for p in user}
    provider.create(messages=[{"role": "user", "content": "x"}], model=provider.models[0]
                    if provider.models else "m", max_retries=0, **values)
    body = chatplug_server.requests[-1].json
    assert {key: body.get(key) for key in values} == values
    local.close()
