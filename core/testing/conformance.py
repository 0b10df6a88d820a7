"""The conformance suite a provider package runs against its own provider.

::

    # tests/test_conformance.py of a provider package
    from chatplug.testing.conformance import ProviderConformance

    class TestAcmeConformance(ProviderConformance):
        provider_name = "Acme"          # the entry-point name
        model = "acme-1"                # if the provider lists no models
        url_suffix = "/v1"              # if the provider's URL is not the server's root

Every test talks real HTTP to the scripted server (``chatplug_server``) on
127.0.0.1, which speaks the OpenAI chat-completions protocol (any path ending
in ``/chat/completions``) and Ollama's ``/api/chat``.  A provider for another
protocol can still run the metadata and parameter tests; override the others.

What "conformant" means here: metadata present and well-typed; ``params`` and
``parameters`` agree with the completion function's signature; ``create()``
returns the scripted text, whole and streamed; streaming is live and closing
a stream early releases its connection; wire failures arrive as chatplug's
typed errors; and a key the server echoes never appears in any error.
"""

from __future__ import annotations

import inspect
import json
import time
import types
import typing
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import pytest

from ..errors import (
    AuthenticationError,
    ChatplugError,
    ProviderHTTPError,
    ProviderResponseError,
    RateLimitError,
    StreamInterruptedError,
)
from .pytest_plugin import TEST_API_KEY, registry_for
from .server import ScriptedServer

if TYPE_CHECKING:
    from .. import Provider, Registry

__all__ = ["PLANTED_KEY", "ProviderConformance"]

#: A key planted to prove it never leaks; it looks like no real provider's key.
PLANTED_KEY = "conformance-planted-key-4b7e19"
MESSAGES = [{"role": "user", "content": "Привет, conformance?"}]
TEXT = "Conformance reply: héllo wörld ✓ 🎉"
PIECES = ["Hello", ",", " wörld", " ✓", " 🎉"]
#: Seconds any single call of the suite may take; nothing here waits longer.
CALL_TIMEOUT = 10.0
_INJECTED = frozenset({"url", "api_key", "http"})
_CORE = ("model", "messages", "stream")

#: Scripted faults: name -> (script fields, streamed?, expected error, status code).
FAULTS: dict[str, tuple[dict[str, Any], bool, type[ChatplugError], int | None]] = {
    "http-500": ({"status": 500, "text": "conformance failure"}, False,
                 ProviderHTTPError, 500),
    "http-401": ({"status": 401, "text": "bad key"}, False, AuthenticationError, 401),
    "http-429": ({"status": 429, "text": "slow down"}, False, RateLimitError, 429),
    "html-200": ({"body": b"<!DOCTYPE html><html><body>Sign in</body></html>",
                  "content_type": "text/html"}, False, ProviderResponseError, None),
    "cut-stream": ({"pieces": PIECES, "drop_after": 2, "stream": True}, True,
                   StreamInterruptedError, None),
    "no-last-event": ({"pieces": PIECES, "finish": False, "done": False, "stream": True}, True,
                      StreamInterruptedError, None),
    "error-in-stream": ({"pieces": PIECES[:2], "error_event": {"message": "upstream overloaded"},
                         "stream": True}, True, ProviderResponseError, None),
}
#: Faults whose error text the server fills with the credential it received.
ECHO_FAULTS = {
    "http-401": {"status": 401, "text": "Incorrect API key provided"},
    "http-500": {"status": 500, "text": "internal error"},
    "http-429": {"status": 429, "text": "quota exceeded"},
    "error-in-stream": {"pieces": PIECES[:1], "stream": True,
                        "error_event": {"message": "bad credential"}},
}


def _shown(hint: Any) -> str:
    """How a type hint reads in ``params`` (independent of chatplug.params)."""
    if hint is inspect.Parameter.empty or hint is None:
        return ""
    if isinstance(hint, str):
        return hint
    if typing.get_origin(hint) is typing.Annotated:
        return _shown(typing.get_args(hint)[0])
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return " | ".join(_shown(arg) for arg in typing.get_args(hint))
    if hint is type(None):
        return "None"
    if isinstance(hint, type):
        return hint.__name__
    return str(hint).replace("typing.", "").replace("NoneType", "None")


def _resolved(function: Callable[..., Any], annotation: Any) -> Any:
    if not isinstance(annotation, str):
        return annotation
    try:
        return eval(annotation, dict(getattr(function, "__globals__", {})))
    except Exception:
        return annotation  # names imported only for type checkers stay as written


class ProviderConformance:
    """Subclass as ``Test<Something>`` and set :attr:`provider_name`; pytest does the rest.

    The suite uses the ``chatplug_server`` fixture of chatplug's pytest plugin,
    registered automatically when chatplug is installed.  Each test takes well
    under two seconds (the live-streaming test about one).
    """

    #: The provider's name (its entry-point name), as ``registry.get`` takes it.
    provider_name: ClassVar[str] = ""
    #: The model to ask for; ``None`` uses the provider's first model.
    model: ClassVar[str | None] = None
    #: Appended to the scripted server's URL to form the provider's URL setting.
    url_suffix: ClassVar[str] = ""
    #: Extra call parameters for every ``create()``.
    options: ClassVar[Mapping[str, Any]] = {}
    #: A provider object to register directly instead of the installed entry point
    #: (lets a package run the suite before it is installed).
    plugin: ClassVar[object | None] = None

    # -- set-up ----------------------------------------------------------------------

    def make_registry(self, server: ScriptedServer, *, api_key: str = TEST_API_KEY) -> Registry:
        """A registry whose provider talks to ``server`` with ``api_key``."""
        if not self.provider_name:
            pytest.fail(f"{type(self).__name__}: set provider_name to the provider's name")
        registry = registry_for(server, urls={self.provider_name: server.url + self.url_suffix},
                                api_keys={self.provider_name: api_key})
        if self.plugin is not None:
            from .. import Registry

            registry = Registry(settings=registry.settings, entry_points=())
            registry.register(self.plugin, self.provider_name)
        return registry

    @pytest.fixture
    def conformance_registry(self, chatplug_server: ScriptedServer) -> Iterator[Registry]:
        registry = self.make_registry(chatplug_server)
        yield registry
        registry.close()

    @pytest.fixture
    def provider(self, conformance_registry: Registry) -> Provider:
        return conformance_registry.provider(self.provider_name)

    def create(self, provider: Provider, *, stream: bool) -> Any:
        """One call as every test makes it: bounded in time, never retried."""
        return provider.create(messages=MESSAGES, model=self.model, stream=stream,
                               timeout=CALL_TIMEOUT, max_retries=0, **self.options)

    def consume(self, provider: Provider, *, stream: bool, into: list[str]) -> None:
        """Make one call and collect its text in ``into`` (piece by piece when streamed)."""
        if stream:
            with self.create(provider, stream=True) as pieces:
                into.extend(pieces)
        else:
            into.append(self.create(provider, stream=False))

    # -- metadata and parameters -----------------------------------------------------

    def test_metadata_is_present_and_well_typed(self, provider: Provider) -> None:
        plugin = provider.plugin
        assert provider.name.lower() == self.provider_name.lower()
        assert isinstance(plugin.url, str)  # type: ignore[attr-defined]
        assert plugin.url.startswith(("http://", "https://"))  # type: ignore[attr-defined]
        assert provider.default_url == plugin.url.rstrip("/")  # type: ignore[attr-defined]
        models = plugin.model  # type: ignore[attr-defined]
        assert isinstance(models, (list, tuple))
        assert all(isinstance(m, str) and m.strip() == m and m for m in models)
        assert provider.models == list(models)
        assert type(plugin.supports_stream) is bool  # type: ignore[attr-defined]
        assert type(plugin.needs_auth) is bool  # type: ignore[attr-defined]
        assert provider.distribution is None or isinstance(provider.distribution, str)
        assert provider.version is None or isinstance(provider.version, str)
        if not models:
            assert self.model, "the provider lists no models: set model on the test class"
        json.dumps(provider.as_dict())  # JSON-ready, as `chatplug providers --json` needs

    def _function(self, provider: Provider, registry: Registry) -> Callable[..., Any]:
        impls = [impl for impl in registry.plugin_manager.hook.create_completion.get_hookimpls()
                 if impl.plugin is provider.plugin]
        assert len(impls) == 1, "exactly one @hookimpl create_completion per provider"
        return impls[0].function

    def _expected(self, provider: Provider, function: Callable[..., Any]) -> list[
            tuple[str, str, Any, bool]]:
        """(name, type, default, required) per parameter, straight from the signature."""
        expected = []
        for name, spec in inspect.signature(function).parameters.items():
            if name in _INJECTED or spec.kind in (spec.VAR_POSITIONAL, spec.VAR_KEYWORD):
                continue
            shown = _shown(_resolved(function, spec.annotation))
            required = spec.default is spec.empty
            default = None if required else spec.default
            if name == "model" and required and provider.models:
                default, required = provider.models[0], False
            if name == "stream" and required:
                default, required = False, False
            expected.append((name, shown, default, required))
        return expected

    def test_params_string_matches_the_function(
        self, provider: Provider, conformance_registry: Registry
    ) -> None:
        function = self._function(provider, conformance_registry)
        shown = [f"{n}: {t}" if t else n for n, t, _, _ in self._expected(provider, function)]
        assert provider.params == f"{provider.module_name} supports: ({', '.join(shown)})"

    def test_structured_parameters_agree_with_the_function(
        self, provider: Provider, conformance_registry: Registry
    ) -> None:
        function = self._function(provider, conformance_registry)
        actual = [(p.name, p.type, None if p.required else p.default, p.required)
                  for p in provider.parameters]
        assert actual == self._expected(provider, function)
        assert [p.name for p in provider.parameters][: len(_CORE)] == list(_CORE), \
            "a completion function starts with (model, messages, stream)"
        for parameter in provider.parameters:
            assert set(parameter.as_dict()) == {"name", "type", "default", "required"}
            json.dumps(parameter.as_dict())

    # -- replies ---------------------------------------------------------------------

    def test_create_returns_the_scripted_text(
        self, provider: Provider, chatplug_server: ScriptedServer
    ) -> None:
        chatplug_server.add(text=TEXT)
        assert self.create(provider, stream=False) == TEXT

    def test_streaming_returns_the_scripted_pieces(
        self, provider: Provider, chatplug_server: ScriptedServer
    ) -> None:
        chatplug_server.add(pieces=PIECES)
        with self.create(provider, stream=True) as stream:
            pieces = list(stream)
        assert pieces == (PIECES if provider.supports_stream else ["".join(PIECES)])

    def test_streaming_is_live(self, provider: Provider, chatplug_server: ScriptedServer) -> None:
        if not provider.supports_stream:
            pytest.skip("the provider does not stream")
        chatplug_server.add(pieces=["first", " then", " the", " rest"], hold_after=1, hold=1.0)
        started = time.monotonic()
        arrivals = []
        with self.create(provider, stream=True) as stream:
            for piece in stream:
                arrivals.append((piece, time.monotonic() - started))
        assert [piece for piece, _ in arrivals] == ["first", " then", " the", " rest"]
        assert arrivals[0][1] < 0.5, "the first piece waited for the rest of the reply"
        assert arrivals[1][1] >= 0.9

    def test_closing_a_stream_early_releases_the_response(
        self, provider: Provider, chatplug_server: ScriptedServer
    ) -> None:
        if not provider.supports_stream:
            pytest.skip("the provider does not stream")
        chatplug_server.add(pieces=["a", " b", " c", " d", " e", " f"], piece_delay=0.3)
        started = time.monotonic()
        with self.create(provider, stream=True) as stream:
            assert next(stream) == "a"
        assert time.monotonic() - started < 1.0, "closing waited for the rest of the reply"
        with pytest.raises(StopIteration):
            next(stream)
        started = time.monotonic()
        assert self.create(provider, stream=False) == f"You said: {MESSAGES[-1]['content']}"
        assert time.monotonic() - started < 1.0, "the next call waited for a connection"

    # -- failures --------------------------------------------------------------------

    @pytest.mark.parametrize("fault", list(FAULTS))
    def test_wire_failures_are_typed_errors(
        self, provider: Provider, chatplug_server: ScriptedServer, fault: str
    ) -> None:
        script, streamed, expected, status = FAULTS[fault]
        if streamed and not provider.supports_stream:
            pytest.skip("a streaming fault; the provider does not stream")
        chatplug_server.add(**script)
        received: list[str] = []
        with pytest.raises(expected) as info:
            self.consume(provider, stream=streamed, into=received)
        assert info.value.provider == provider.name
        if status is not None:
            assert getattr(info.value, "status_code", None) == status
        if fault == "cut-stream":
            assert received == PIECES[:2], "the pieces that arrived are delivered first"
        if fault == "error-in-stream":
            assert "upstream overloaded" in str(info.value)

    @pytest.mark.parametrize("fault", list(ECHO_FAULTS))
    def test_no_key_in_any_error_text(self, chatplug_server: ScriptedServer, fault: str) -> None:
        registry = self.make_registry(chatplug_server, api_key=PLANTED_KEY)
        try:
            provider = registry.provider(self.provider_name)
            script = ECHO_FAULTS[fault]
            streamed = bool(script.get("stream"))
            if streamed and not provider.supports_stream:
                pytest.skip("a streaming fault; the provider does not stream")
            chatplug_server.add(echo_key=True, **script)
            with pytest.raises(ChatplugError) as info:
                self.consume(provider, stream=streamed, into=[])
            error = info.value
            rendered = " ".join([str(error), repr(error), repr(error.args),
                                 repr(vars(error)), *map(str, _chain(error))])
            assert PLANTED_KEY not in rendered, f"the key leaked into {type(error).__name__}"
        finally:
            registry.close()


def _chain(error: BaseException) -> Iterator[BaseException]:
    """The error and its causes and contexts (a bounded walk: chains can loop)."""
    current: BaseException | None = error
    for _ in range(10):
        if current is None:
            return
        yield current
        current = current.__cause__ or current.__context__
