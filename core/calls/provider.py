"""A loaded provider: its metadata, its parameters, and ``create()``.

``create()`` validates everything before anything is sent: messages, model,
parameters (pydantic, strict types) and the API key.  It then calls the
provider's own completion function (not a broadcast hook) and drives the
pieces it yields, turning whatever escapes into chatplug's typed errors.
"""

from __future__ import annotations

import difflib
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from types import ModuleType, TracebackType
from typing import TYPE_CHECKING, Any, Literal, overload

from ..errors import (
    AuthenticationError,
    InvalidRequestError,
    ModelNotSupportedError,
)
from ..naming import env_name
from ..plugins.params import Parameter, ParameterSet
from .messages import validate_messages
from .retry import RetryPolicy
from .run import Completion

if TYPE_CHECKING:
    from ..plugins.registry import Registry

__all__ = ["Provider", "Stream"]

#: Keyword arguments of ``create()`` that are chatplug's own, never a provider's.
RESERVED_PARAMETERS = frozenset({"timeout", "max_retries"})


class Stream(Iterator[str]):
    """The pieces of a streamed reply, yielded as they arrive on the wire.

    Closing it (``close()``, leaving a ``with`` block, breaking out of a
    ``for`` loop over a temporary) closes the HTTP response.

    :raises StreamInterruptedError: while iterating, when the reply was cut.
    """

    __slots__ = ("_pieces", "model", "provider")

    def __init__(self, pieces: Iterator[str], provider: str, model: str) -> None:
        self._pieces = pieces
        self.provider = provider
        self.model = model

    def __iter__(self) -> Iterator[str]:
        return self._pieces  # the loop then runs at generator speed

    def __next__(self) -> str:
        return next(self._pieces)

    def close(self) -> None:
        close = getattr(self._pieces, "close", None)
        if close is not None:
            close()

    def __enter__(self) -> Stream:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<chatplug.Stream provider={self.provider!r} model={self.model!r}>"


class Provider:
    """One provider as the registry loaded it.

    ``name``, ``url`` (the effective base URL: the setting if set, else the
    module's), ``models``, ``supports_stream``, ``needs_auth``, ``params`` (the
    seed's string), ``parameters`` (structured), ``distribution`` and ``version``.
    """

    def __init__(
        self,
        name: str,
        plugin: object,
        function: Callable[..., Any],
        *,
        registry: Registry,
        url: str,
        models: list[str],
        supports_stream: bool,
        needs_auth: bool,
        distribution: str | None = None,
        version: str | None = None,
    ) -> None:
        self.name = name
        self.plugin = plugin
        self.default_url = url.rstrip("/")
        self.models = list(models)
        self.supports_stream = supports_stream
        self.needs_auth = needs_auth
        self.distribution = distribution
        self.version = version
        self._function = function
        self._registry = registry
        self._parameter_set = ParameterSet(function, self.models)
        reserved = RESERVED_PARAMETERS & set(self._parameter_set.user)
        if reserved:
            raise ValueError(
                f"parameter name(s) {', '.join(sorted(reserved))} are reserved by chatplug's "
                "create(); rename them in the completion function."
            )
        module = plugin.__name__ if isinstance(plugin, ModuleType) else type(plugin).__module__
        self.module_name: str = module
        self.params: str = self._parameter_set.params_string(module)
        self.parameters: tuple[Parameter, ...] = self._parameter_set.all

    def __repr__(self) -> str:
        return f"<chatplug.Provider {self.name} {self.default_url}>"

    @property
    def url(self) -> str:
        """The effective base URL: ``CHATPLUG_<NAME>_URL`` if set, else the module's ``url``."""
        return self._registry.settings.url_for(self.name) or self.default_url

    @property
    def api_key_variable(self) -> str:
        """The environment variable that holds this provider's key."""
        return env_name(self.name, "API_KEY")

    @property
    def api_key_configured(self) -> bool:
        """Whether a key is configured for this provider (the key itself is never exposed)."""
        return self._registry.settings.api_key_for(self.name) is not None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready metadata (never the key)."""
        return {
            "name": self.name,
            "url": self.url,
            "models": list(self.models),
            "supports_stream": self.supports_stream,
            "needs_auth": self.needs_auth,
            "params": self.params,
            "parameters": [p.as_dict() for p in self.parameters],
            "distribution": self.distribution,
            "version": self.version,
        }

    def parse_options(self, options: Mapping[str, str]) -> dict[str, Any]:
        """Convert ``KEY=VALUE`` texts (the CLI's ``-o``) to the declared parameter types.

        :raises InvalidRequestError: an unknown parameter or a value that does not convert.
        """
        try:
            return self._parameter_set.validate(options, from_strings=True)
        except InvalidRequestError as exc:
            exc.provider = self.name
            raise

    def resolve_model(self, model: str | None) -> str:
        """The model a call will use.

        :raises ModelNotSupportedError: the provider does not list it (no silent substitution).
        :raises InvalidRequestError: no model given where the provider accepts any name.
        """
        if model is None:
            if self.models:
                return self.models[0]
            raise InvalidRequestError(
                f"model is required: {self.name} accepts any model name, so name one "
                "(create(model=...) or chatplug chat -m MODEL).",
                provider=self.name,
            )
        if not isinstance(model, str) or not model.strip():
            raise InvalidRequestError(
                f"model must be a non-empty string, not {model!r}.", provider=self.name
            )
        if self.models and model not in self.models:
            close = difflib.get_close_matches(model, self.models, n=1, cutoff=0.5)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ModelNotSupportedError(
                f"model {model!r} is not supported.{hint} "
                f"Supported: {', '.join(self.models)}.",
                provider=self.name,
                model=model,
            )
        return model

    @overload
    def create(
        self,
        messages: Sequence[Mapping[str, str]],
        model: str | None = ...,
        stream: Literal[False] = ...,
        *,
        timeout: float | None = ...,
        max_retries: int | None = ...,
        **params: Any,
    ) -> str: ...

    @overload
    def create(
        self,
        messages: Sequence[Mapping[str, str]],
        model: str | None = ...,
        *,
        stream: Literal[True],
        timeout: float | None = ...,
        max_retries: int | None = ...,
        **params: Any,
    ) -> Stream: ...

    @overload
    def create(
        self,
        messages: Sequence[Mapping[str, str]],
        model: str | None = ...,
        stream: bool = ...,
        *,
        timeout: float | None = ...,
        max_retries: int | None = ...,
        **params: Any,
    ) -> str | Stream: ...

    def create(
        self,
        messages: Sequence[Mapping[str, str]],
        model: str | None = None,
        stream: bool = False,
        *,
        timeout: float | None = None,
        max_retries: int | None = None,
        **params: Any,
    ) -> str | Stream:
        """Send a chat completion; the whole text, or a :class:`Stream` of pieces.

        Everything is validated before any network traffic.

        :param timeout: total seconds the call may take, retries and waits included
            (default ``CHATPLUG_TIMEOUT``).
        :param max_retries: retries after a failed attempt (default ``CHATPLUG_MAX_RETRIES``).
        :raises InvalidRequestError: bad messages, parameters, ``stream``, ``timeout``
            or ``max_retries``.
        :raises ModelNotSupportedError: a model the provider does not list.
        :raises AuthenticationError: the provider needs a key and none is configured.
        :raises ProviderError: (subclasses) when talking to the provider fails.
        """
        if not isinstance(stream, bool):
            raise InvalidRequestError(
                f"stream must be True or False, not {stream!r}.", provider=self.name
            )
        _check_call_options(timeout, max_retries, self.name)
        try:
            checked = validate_messages(messages)
            chosen = self.resolve_model(model)
            options = self._parameter_set.validate(params)
        except InvalidRequestError as exc:
            exc.provider = exc.provider or self.name
            exc.model = exc.model or model
            raise
        settings = self._registry.settings
        secret = settings.api_key_for(self.name)
        api_key = secret.get_secret_value() if secret is not None else None
        if self.needs_auth and not api_key:
            raise AuthenticationError(
                f"no API key is configured. Set {self.api_key_variable}"
                + (" (or OPENAI_API_KEY)" if self.name.lower() == "openai" else "")
                + " in the environment or in .env.",
                provider=self.name,
                model=chosen,
            )
        deadline = time.monotonic() + (timeout if timeout is not None else settings.timeout)
        http = self._registry.transport.client(
            provider=self.name, model=chosen, api_key=api_key, deadline=deadline
        )
        arguments: dict[str, Any] = {
            "model": chosen,
            "messages": checked,
            "stream": stream and self.supports_stream,
            **options,
        }
        injected = self._parameter_set.injected
        if "url" in injected:
            arguments["url"] = self.url
        if "api_key" in injected:
            arguments["api_key"] = api_key
        if "http" in injected:
            arguments["http"] = http
        completion = Completion(
            provider=self.name,
            model=chosen,
            stream=stream,
            function=self._function,
            arguments=arguments,
            translate=http.translate,
            api_key=api_key,
            policy=RetryPolicy(
                max_retries=settings.max_retries if max_retries is None else max_retries,
                initial=settings.retry_backoff,
                cap=settings.retry_backoff_max,
            ),
            deadline=deadline,
            hook=self._registry.observer_hook(),
            origin=self._origin(),
        )
        pieces = completion.pieces()
        if stream:
            if not self.supports_stream:
                pieces = _as_one_piece(pieces)
            return Stream(pieces, self.name, chosen)
        return "".join(pieces)

    def _origin(self) -> str:
        if self.distribution:
            return f"the plugin {self.distribution} {self.version or ''}".rstrip()
        return f"the provider module {self.module_name}"


def _check_call_options(timeout: Any, max_retries: Any, provider: str) -> None:
    if timeout is not None and (
        isinstance(timeout, bool) or not isinstance(timeout, (int, float))
        or not 0 < timeout <= 86400
    ):
        raise InvalidRequestError(
            f"timeout must be a number of seconds in (0, 86400], not {timeout!r}.",
            provider=provider,
        )
    if max_retries is not None and (
        isinstance(max_retries, bool) or not isinstance(max_retries, int)
        or not 0 <= max_retries <= 10
    ):
        raise InvalidRequestError(
            f"max_retries must be a whole number from 0 to 10, not {max_retries!r}.",
            provider=provider,
        )


def _as_one_piece(pieces: Iterator[str]) -> Iterator[str]:
    """A provider without stream support: its whole reply as one piece, fetched lazily."""
    yield "".join(pieces)
