"""A loaded provider: its metadata, its parameters, ``create()`` and ``complete()``.

Every call is two steps.  :meth:`Provider.prepare` validates everything before
anything is sent (messages, model, parameters with pydantic's strict types,
capabilities, the key, the call options) and returns a :class:`PreparedCall`;
running it (:class:`~chatplug.calls.run.Call`) calls the provider's own
completion function (not a broadcast hook) and drives what it yields, turning
whatever escapes into chatplug's typed errors.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from types import ModuleType
from typing import TYPE_CHECKING, Any

from ..errors import (
    AuthenticationError,
    ChatplugError,
    InvalidRequestError,
    ModelNotSupportedError,
    ProviderResponseError,
)
from ..naming import env_name, variables_for
from .caller import Caller, Messages
from .messages import TOOLS, VISION, required_capabilities, validate_messages
from .options import check_call_options
from .params import Parameter, ParameterSet
from .prepared import PreparedCall
from .run import Call
from .stream import Stream

if TYPE_CHECKING:
    from .runtime import Runtime

__all__ = ["Provider", "Stream"]

#: Seconds asking a server for its models may take at most (or CHATPLUG_TIMEOUT if lower).
MODELS_TIMEOUT = 5.0
#: Parameters that send tools, whatever the provider calls them.
_TOOL_PARAMETERS = ("tools", "tool_choice", "parallel_tool_calls")


class Provider(Caller):
    """One provider as the registry loaded it.

    ``name``, ``url`` (the effective base URL: the setting if set, else the
    module's), ``models``, ``supports_stream``, ``needs_auth``,
    ``supports_tools``, ``supports_vision``, ``native_async``, ``params`` (the seed's string),
    ``parameters`` (structured), ``distribution`` and ``version``.
    """

    def __init__(
        self,
        name: str,
        plugin: object,
        function: Callable[..., Any],
        *,
        runtime: Runtime,
        url: str,
        models: list[str],
        supports_stream: bool,
        needs_auth: bool,
        supports_tools: bool = False,
        supports_vision: bool = False,
        native_async: bool = False,
        distribution: str | None = None,
        version: str | None = None,
    ) -> None:
        self.name = name
        self.plugin = plugin
        self.default_url = url.rstrip("/")
        self.models = list(models)
        self.supports_stream = supports_stream
        self.needs_auth = needs_auth
        self.supports_tools = supports_tools
        self.supports_vision = supports_vision
        self.native_async = native_async
        self.distribution = distribution
        self.version = version
        self._function = function
        self._runtime = runtime
        self._parameter_set = ParameterSet(function, self.models)
        module = plugin.__name__ if isinstance(plugin, ModuleType) else type(plugin).__module__
        self.module_name: str = module
        self.params: str = self._parameter_set.params_string(module)
        self.parameters: tuple[Parameter, ...] = self._parameter_set.all
        self.origin = (f"the plugin {distribution} {version or ''}".rstrip() if distribution
                       else f"the provider module {module}")

    def __repr__(self) -> str:
        try:
            url = self.url
        except Exception:  # a broken setting must not break a repr
            url = self.default_url
        return f"<chatplug.Provider {self.name} {url}>"

    @property
    def url(self) -> str:
        """The effective base URL: ``CHATPLUG_<NAME>_URL`` if set, else the module's ``url``."""
        return self._runtime.settings.url_for(self.name) or self.default_url

    @property
    def api_key_variable(self) -> str:
        """The environment variable that holds this provider's key."""
        return env_name(self.name, "API_KEY")

    @property
    def api_key_configured(self) -> bool:
        """Whether a key is configured for this provider (the key itself is never exposed)."""
        return self._runtime.settings.api_key_for(self.name) is not None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready metadata (never the key)."""
        return {
            "name": self.name,
            "url": self.url,
            "models": list(self.models),
            "supports_stream": self.supports_stream,
            "needs_auth": self.needs_auth,
            "supports_tools": self.supports_tools,
            "supports_vision": self.supports_vision,
            "native_async": self.native_async,
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

    # -- models ------------------------------------------------------------------------

    @property
    def lists_models(self) -> bool:
        """Whether the provider can ask its server which models it offers (it implements
        the optional ``list_models`` hook)."""
        return self._runtime.implementation("list_models", self.plugin) is not None

    def list_models(self, *, timeout: float | None = None) -> list[str]:
        """The models the provider's server offers now, through the provider's
        ``list_models`` hook; the declared :attr:`models` for a provider without one.

        :param timeout: seconds the request may take (default 5, or
            ``CHATPLUG_TIMEOUT`` if that is lower).
        :raises InvalidRequestError: ``timeout`` is not a number of seconds.
        :raises AuthenticationError: the provider needs a key and none is configured
            (nothing is sent), or the server refused it.
        :raises UntrustedDotenvError: see :meth:`Settings.check_destination`.
        :raises ProviderError: (subclasses) asking the server failed; a
            :class:`ProviderResponseError` too for a hook that returns something other
            than a list of model names.
        """
        implementation = self._runtime.implementation("list_models", self.plugin)
        if implementation is None:
            return list(self.models)
        settings = self._runtime.settings
        options = check_call_options(timeout=timeout, provider=self.name)
        bound = options.timeout or min(MODELS_TIMEOUT, settings.timeout)
        key = self._configured_key(checked_url=True)
        if self.needs_auth and not key:
            raise AuthenticationError(self._missing_key(), provider=self.name)
        import time

        from ..transport.redaction import redact

        http = self._runtime.transport.client(provider=self.name, api_key=key,
                                              deadline=time.monotonic() + bound)
        arguments = {"url": self.url, "api_key": key, "http": http}
        try:
            names = implementation.function(
                **{name: arguments[name] for name in implementation.argnames})
        except ChatplugError as exc:
            exc.provider = exc.provider or self.name
            exc.message = redact(exc.message, key)
            raise
        except Exception as exc:
            from ..transport.failures import is_transport_error

            if is_transport_error(exc):
                raise http.translate(exc, url=self.url) from None
            raise ProviderResponseError(
                f"listing the models failed with {type(exc).__name__}: "
                f"{redact(str(exc), key)}. This is a bug in {self.origin}; please report it.",
                provider=self.name,
            ) from None
        if not isinstance(names, (list, tuple)) or not all(
            isinstance(name, str) and name.strip() for name in names
        ):
            raise ProviderResponseError(
                f"list_models returned {type(names).__name__}, not a list of model names. "
                f"This is a bug in {self.origin}; please report it.",
                provider=self.name,
            )
        return list(dict.fromkeys(name.strip() for name in names))

    # -- calls -------------------------------------------------------------------------

    def prepare(
        self,
        messages: Messages,
        model: str | None = None,
        stream: bool = False,
        *,
        timeout: float | None = None,
        max_retries: int | None = None,
        api_key: str | None = None,
        url: str | None = None,
        headers: Mapping[str, str] | None = None,
        extra_body: Mapping[str, Any] | None = None,
        **params: Any,
    ) -> PreparedCall:
        """Validate a call without sending anything; the :class:`PreparedCall` to run.

        Takes the arguments of :meth:`create`.

        :raises InvalidRequestError: bad messages, parameters, ``stream`` or call
            options; tools or images sent to a provider without that capability.
        :raises ModelNotSupportedError: a model the provider does not list.
        :raises AuthenticationError: the provider needs a key and none is configured.
        :raises UntrustedDotenvError: the working directory's ``.env`` points the provider
            at another URL and the key is the user's own (see ``CHATPLUG_TRUST_DOTENV``).
        """
        if not isinstance(stream, bool):
            raise InvalidRequestError(
                f"stream must be True or False, not {stream!r}.", provider=self.name
            )
        options = check_call_options(timeout=timeout, max_retries=max_retries,
                                     api_key=api_key, url=url, headers=headers,
                                     extra_body=extra_body, provider=self.name)
        key = options.api_key
        if key is None:
            key = self._configured_key(checked_url=options.url is None)
        try:
            checked = validate_messages(messages)
            try:
                chosen = self.resolve_model(model)
            except InvalidRequestError as exc:
                if self.needs_auth and not key and model is None:
                    # Say everything that is missing at once, not one thing per attempt.
                    exc.message += f" Also, {self._missing_key()}"
                raise
            values = self._parameter_set.validate(params)
            self._check_capabilities(checked, values)
        except InvalidRequestError as exc:
            exc.provider = exc.provider or self.name
            exc.model = exc.model or model
            raise
        if self.needs_auth and not key:
            raise AuthenticationError(self._missing_key(), provider=self.name, model=chosen)
        return PreparedCall(
            provider=self.name,
            model=chosen,
            messages=checked,
            stream=stream,
            params=values,
            options=options,
            url=options.url or self.url,
            api_key=key,
            function=self._function,
            injected=self._parameter_set.injected,
            origin=self.origin,
            supports_stream=self.supports_stream,
            native_async=self.native_async,
            all_params=(self._parameter_set.values(values)
                        if "params" in self._parameter_set.injected else {}),
        )

    def _configured_key(self, *, checked_url: bool) -> str | None:
        """The key the settings hold for this provider; with ``checked_url`` (it goes to
        the configured URL), refused when only the working directory's ``.env`` chose
        that URL.

        :raises UntrustedDotenvError: see :meth:`Settings.check_destination`.
        """
        settings = self._runtime.settings
        secret = settings.api_key_for(self.name)
        if secret is None:
            return None
        if checked_url:
            settings.check_destination(self.name, self.default_url)
        return secret.get_secret_value()

    def _missing_key(self) -> str:
        return (f"no API key is configured. Set {variables_for(self.name)}"
                " in the environment or in .env, or pass api_key=.")

    def _check_capabilities(self, messages: list[dict[str, Any]],
                            values: Mapping[str, Any]) -> None:
        needed = set(required_capabilities(messages))
        if values and any(values.get(name) is not None for name in _TOOL_PARAMETERS):
            needed.add(TOOLS)
        if not needed:
            return
        missing = [what for what, has in ((TOOLS, self.supports_tools),
                                          (VISION, self.supports_vision))
                   if what in needed and not has]
        if missing:
            what = " and ".join({"tools": "tools (tool definitions, tool calls or tool "
                                 "messages)", "vision": "images (image_url parts)"}[m]
                                for m in missing)
            raise InvalidRequestError(
                f"{self.name} does not support {what}; use a provider with "
                f"supports_{'_'.join(missing)} = True, or leave them out.",
                provider=self.name,
            )

    def start(self, prepared: PreparedCall, *, buffered: bool = False) -> Call:
        """A :class:`Call` running ``prepared`` (nothing is sent until it is iterated)."""
        return Call(prepared, self._runtime, buffered=buffered)
