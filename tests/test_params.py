"""The params string (the seed's form) and validation of provider parameters."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Annotated

import pytest

from chatplug import InvalidRequestError, registry
from chatplug.plugins.params import REQUIRED, ParameterSet

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
        "tool_choice: str | dict[str, Any] | None, user: str | None)"
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
