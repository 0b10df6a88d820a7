"""Settings from ``CHATPLUG_*`` environment variables and a ``.env`` file (pydantic-settings).

Besides the fixed settings, every provider, a third party's included, gets
``CHATPLUG_<NAME>_URL`` and ``CHATPLUG_<NAME>_API_KEY``, where ``<NAME>`` is the
provider's name upper-cased with runs of other characters turned into ``_``.
The OpenAI provider also honours the conventional ``OPENAI_API_KEY`` and
``OPENAI_BASE_URL``.  Keys saved with ``chatplug keys set`` (the keys file,
:mod:`chatplug.keys`) come last: the environment, then ``.env``, then the file.
Keys are ``SecretStr``: they never show in a repr.  :func:`value_origin` says
where a provider's URL or key came from.
"""

from __future__ import annotations

import difflib
import logging
import os
import threading
import unicodedata
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

from pydantic import Field, PrivateAttr, SecretStr, ValidationError, field_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

from .errors import ConfigurationError, UntrustedDotenvError
from .naming import (
    CONVENTIONAL,
    ENVIRONMENT_ONLY,
    PREFIX,
    TRUST_DOTENV,
    env_name,
    provider_slug,
    variables_for,
)

__all__ = ["OTHER_VARIABLES", "Settings", "env_name", "known_variables", "load_settings",
           "provider_slug", "unknown_variables", "value_origin", "warn_unknown_variables"]

logger = logging.getLogger("chatplug.settings")

CA_BUNDLE_FALLBACKS = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE")
#: chatplug's variables read from the environment only (not misspellings).
OTHER_VARIABLES = ENVIRONMENT_ONLY
_TRUE = frozenset({"1", "true", "yes", "on"})


class _ProviderEntries(PydanticBaseSettingsSource):
    """Collects ``CHATPLUG_<NAME>_URL`` / ``_API_KEY`` for any name, from env and ``.env``."""

    def __init__(self, settings_cls: type[BaseSettings], dotenv: PydanticBaseSettingsSource):
        super().__init__(settings_cls)
        self._dotenv = dotenv

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        dotenv_vars = getattr(self._dotenv, "env_vars", {}) or {}
        values = {str(k).lower(): v for k, v in dotenv_vars.items()}
        values.update((k.lower(), v) for k, v in os.environ.items())
        urls: dict[str, str] = {}
        keys: dict[str, str] = {}
        prefix = PREFIX.lower()
        for key, value in values.items():
            if not key.startswith(prefix) or value is None or not str(value).strip():
                continue
            rest = key[len(prefix):]
            if rest.startswith("server_"):
                continue  # the gateway's own (CHATPLUG_SERVER_DATABASE_URL), no provider's
            if rest.endswith("_api_key"):
                keys[rest[: -len("_api_key")]] = str(value).strip()
            elif rest.endswith("_url"):
                urls[rest[: -len("_url")]] = str(value).strip()
        for slug, names in CONVENTIONAL.items():
            for found, what in ((urls, "url"), (keys, "api_key")):
                for variable in names.get(what, ()):
                    value = values.get(variable.lower())
                    if slug not in found and value and str(value).strip():
                        found[slug] = str(value).strip()
        return {"provider_urls": urls, "provider_api_keys": keys}


class _KeysFile(PydanticBaseSettingsSource):
    """The keys saved with ``chatplug keys set`` (read after the environment and ``.env``)."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        from .keys import load_keys

        saved = load_keys()
        if not saved:
            return {}
        return {"provider_api_keys": {provider_slug(name): key.strip()
                                      for name, key in saved.items() if key.strip()}}


class Settings(BaseSettings):
    """chatplug's settings; see docs/configuration.md for the table."""

    model_config = SettingsConfigDict(
        # Never the value in pydantic's own messages: it may be a key.
        env_prefix=PREFIX, env_file=".env", extra="ignore", frozen=True,
        hide_input_in_errors=True,
    )

    timeout: float = Field(600.0, gt=0, le=86400, description="total seconds one call may take")
    read_timeout: float = Field(
        60.0, gt=0, le=3600, description="seconds the server may stay silent"
    )
    connect_timeout: float = Field(10.0, gt=0, le=600, description="seconds to connect")
    max_retries: int = Field(2, ge=0, le=10, description="retries after a failed attempt")
    retry_backoff: float = Field(0.5, gt=0, le=60, description="first retry delay, seconds")
    retry_backoff_max: float = Field(8.0, gt=0, le=600, description="longest retry delay")
    max_response_bytes: int = Field(
        64 * 1024 * 1024, ge=1024, description="most bytes one reply may send"
    )
    async_workers: int = Field(
        256, ge=1, le=4096, description="worker threads the async API runs calls on"
    )
    native_async: bool = Field(
        True, description="run async calls of native_async providers on the event loop itself"
    )
    strict_plugins: bool = Field(False, description="raise on any plugin load error")
    plugins: str | None = Field(
        None,
        description="comma-separated allow-list of third-party entry-point or distribution "
        "names; unset: all; empty: only the built-ins",
    )
    disabled_providers: str = Field(
        "", description="comma-separated provider names to block, built-ins included"
    )
    ca_bundle: str | None = Field(
        None, description="CA bundle path for TLS verification (which is never off)"
    )
    routes: str | None = Field(
        None, description='named routes as JSON: {"fast": ["GravityEngine", "OpenAI/gpt-4o-mini"]}'
    )
    provider_urls: dict[str, str] = Field(default_factory=dict)
    provider_api_keys: dict[str, SecretStr] = Field(default_factory=dict)
    #: check_destination's verdict per provider slug ("" when the call may go).
    _destinations: dict[str, str] = PrivateAttr(default_factory=dict)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (
            init_settings,
            env_settings,
            dotenv_settings,
            _ProviderEntries(settings_cls, dotenv_settings),
            _KeysFile(settings_cls),
            file_secret_settings,
        )

    @field_validator("ca_bundle")
    @classmethod
    def _ca_bundle_is_a_path(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        if not os.path.exists(value):
            raise ValueError(
                "must be the path of a CA bundle file or directory; TLS verification "
                "cannot be turned off"
            )
        return value

    @field_validator("provider_urls")
    @classmethod
    def _urls_are_http(cls, urls: dict[str, str]) -> dict[str, str]:
        for slug, url in urls.items():
            variable = _variable(slug, "url")
            if not url.startswith(("http://", "https://")):
                raise ValueError(f"{PREFIX}{slug.upper()}_URL={_without_userinfo(url)!r} "
                                 "must start with http:// or https://")
            try:
                parts = urlsplit(url)
                credentials = parts.username is not None or parts.password is not None
            except ValueError:
                raise ValueError(f"{variable} is not a valid URL") from None
            if credentials:
                raise ValueError(
                    f"{variable} must not contain credentials (user:password@); put the key "
                    f"in {_variable(slug, 'api_key')} instead"
                )
        return {slug: url.rstrip("/") for slug, url in urls.items()}

    @field_validator("provider_api_keys")
    @classmethod
    def _keys_can_be_sent(cls, keys: dict[str, SecretStr]) -> dict[str, SecretStr]:
        for slug, secret in keys.items():
            problem = key_problem(secret.get_secret_value())
            if problem:
                raise ValueError(f"{_variable(slug, 'api_key')} {problem}")
        return keys

    @property
    def plugin_allow_list(self) -> frozenset[str] | None:
        """Lower-cased allowed third-party names, or ``None`` when every plugin is allowed."""
        if self.plugins is None:
            return None
        return frozenset(n.strip().lower() for n in self.plugins.split(",") if n.strip())

    @property
    def disabled(self) -> frozenset[str]:
        """Lower-cased names of the providers to block."""
        return frozenset(
            n.strip().lower() for n in self.disabled_providers.split(",") if n.strip()
        )

    @property
    def effective_ca_bundle(self) -> str | None:
        """``CHATPLUG_CA_BUNDLE``, else the usual ``REQUESTS_CA_BUNDLE`` / ``SSL_CERT_FILE``
        when they name an existing path; ``None`` means the default trust store."""
        if self.ca_bundle:
            return self.ca_bundle
        for variable in CA_BUNDLE_FALLBACKS:
            value = os.environ.get(variable, "").strip()
            if value and os.path.exists(value):
                return value
        return None

    def url_for(self, provider: str) -> str | None:
        """The configured base URL of ``provider``, or ``None``."""
        return self.provider_urls.get(provider_slug(provider))

    def api_key_for(self, provider: str) -> SecretStr | None:
        """The configured API key of ``provider``, or ``None``."""
        return self.provider_api_keys.get(provider_slug(provider))

    def check_destination(self, provider: str, default_url: str) -> None:
        """Refuse to send ``provider``'s configured key to a URL that only the working
        directory's ``.env`` chose: a checkout anyone may have written could otherwise
        collect the key the user saved with ``chatplug keys set`` (or exported).  A URL
        or a key from the same ``.env``, the environment's URL, the default URL and
        values set in code all pass; so does everything with ``CHATPLUG_TRUST_DOTENV=1``
        in the environment.  Decided once per provider for these settings.

        :raises UntrustedDotenvError: such a combination; nothing is to be sent.
        :raises ConfigurationError: the ``.env`` file or the keys file cannot be read.
        """
        url = self.url_for(provider)
        if url is None or url == default_url.rstrip("/") or self.api_key_for(provider) is None:
            return
        if os.environ.get(TRUST_DOTENV, "").strip().lower() in _TRUE:
            return
        slug = provider_slug(provider)
        verdict = self._destinations.get(slug)
        if verdict is None:
            verdict = self._destinations[slug] = _untrusted(self, provider, url, default_url)
        if verdict:
            raise UntrustedDotenvError(verdict, provider=provider)


def key_problem(key: str) -> str | None:
    """Why ``key`` cannot be sent in an HTTP header, or ``None``.

    A line break or another control character (a tab excepted) would split or
    break the header; characters beyond Latin-1 cannot be sent at all.
    """
    for c in key:
        if c != "\t" and unicodedata.category(c) == "Cc":
            return ("contains a line break or another control character; copy the key "
                    "again without it")
        if ord(c) > 0xFF:
            return (f"contains {unicodedata.name(c, 'a character')} (U+{ord(c):04X}), which "
                    "cannot be sent in an HTTP header; copy the key again without it")
    return None


def _variable(slug: str, what: str) -> str:
    """The variable(s) a provider setting comes from, for messages."""
    return variables_for(slug, what)


def _without_userinfo(url: str) -> str:
    """``url`` for a message: never its ``user:password@`` part."""
    if "@" not in url:
        return url
    scheme = url.split("://", 1)[0] + "://" if "://" in url else ""
    return f"{scheme}***@{url.rsplit('@', 1)[1]}"


_ENV_FOR_FIELD = {
    "timeout": "CHATPLUG_TIMEOUT",
    "read_timeout": "CHATPLUG_READ_TIMEOUT",
    "connect_timeout": "CHATPLUG_CONNECT_TIMEOUT",
    "max_retries": "CHATPLUG_MAX_RETRIES",
    "retry_backoff": "CHATPLUG_RETRY_BACKOFF",
    "retry_backoff_max": "CHATPLUG_RETRY_BACKOFF_MAX",
    "max_response_bytes": "CHATPLUG_MAX_RESPONSE_BYTES",
    "strict_plugins": "CHATPLUG_STRICT_PLUGINS",
    "async_workers": "CHATPLUG_ASYNC_WORKERS",
    "native_async": "CHATPLUG_NATIVE_ASYNC",
    "ca_bundle": "CHATPLUG_CA_BUNDLE",
    "routes": "CHATPLUG_ROUTES",
    "plugins": "CHATPLUG_PLUGINS",
    "disabled_providers": "CHATPLUG_DISABLED_PROVIDERS",
}


def load_settings(**overrides: Any) -> Settings:
    """Read the settings; ``overrides`` take precedence over the environment.

    :raises ConfigurationError: a value is invalid (the message names the variable), or
        the ``.env`` file cannot be read.
    """
    try:
        return Settings(**overrides)
    except SettingsError as exc:
        raise ConfigurationError(
            f"invalid settings: {' '.join(str(exc).split())}. Fix it in the environment or in .env."
        ) from None
    except (UnicodeDecodeError, OSError) as exc:
        raise _unreadable_dotenv(exc) from None
    except ValidationError as exc:
        error = exc.errors()[0]
        loc = [str(part) for part in error["loc"]]
        variable = _ENV_FOR_FIELD.get(loc[0], loc[0]) if loc else "settings"
        if loc and loc[0] in ("provider_urls", "provider_api_keys") and len(loc) > 1:
            variable = env_name(loc[1], "URL" if loc[0] == "provider_urls" else "API_KEY")
        message = error["msg"].removeprefix("Value error, ")
        if loc and (loc[0] == "provider_urls" or (loc[0] == "provider_api_keys"
                                                  and len(loc) == 1)):
            raise ConfigurationError(
                f"invalid setting {message}. Fix it in the environment or in .env."
            ) from None
        value = "" if loc and loc[0] == "provider_api_keys" else f"={error.get('input')!r}"
        raise ConfigurationError(
            f"invalid setting {variable}{value}: {message}. "
            "Fix it in the environment or in .env."
        ) from None


def value_origin(settings: Settings, provider: str, what: str) -> str | None:
    """Where ``provider``'s ``"url"`` or ``"api_key"`` in ``settings`` came from, in words:
    ``"CHATPLUG_OPENAI_API_KEY in the environment"``, ``"OPENAI_BASE_URL in .env"``,
    ``"the keys file /home/me/.config/chatplug/keys.json"``, ``"set in code"``;
    ``None`` when it is not set.  Never the value itself.

    :raises ValueError: ``what`` is neither ``"url"`` nor ``"api_key"``.
    :raises ConfigurationError: the ``.env`` file or the keys file cannot be read.
    """
    if what == "url":
        current: str | None = settings.url_for(provider)
    elif what == "api_key":
        secret = settings.api_key_for(provider)
        current = secret.get_secret_value() if secret is not None else None
    else:
        raise ValueError(f"what must be 'url' or 'api_key', not {what!r}")
    if current is None:
        return None
    variables = [env_name(provider, what)]
    variables += CONVENTIONAL.get(provider_slug(provider), {}).get(what, ())
    environment = {k.lower(): v for k, v in os.environ.items()}
    dotenv = {k.lower(): v for k, v in _dotenv_values().items() if v is not None}
    for variable in variables:
        for values, where in ((environment, "the environment"), (dotenv, ".env")):
            value = str(values.get(variable.lower(), "")).strip()
            if value:
                # The first one set is the one in force, as in _ProviderEntries.
                return f"{variable} in {where}" if _same(value, current, what) else "set in code"
    if what == "api_key":
        from .keys import keys_path, load_keys

        path = keys_path()
        saved = {provider_slug(name): key.strip() for name, key in load_keys(path).items()}
        if saved.get(provider_slug(provider)) == current:
            return f"the keys file {path}"
    return "set in code"


def _untrusted(settings: Settings, provider: str, url: str, default_url: str) -> str:
    """Why ``provider``'s key must not go to ``url``, or ``""``."""
    url_origin = value_origin(settings, provider, "url") or ""
    key_origin = value_origin(settings, provider, "api_key") or ""
    if not url_origin.endswith(" in .env") or key_origin.endswith(" in .env") \
            or key_origin == "set in code":
        return ""
    variable = url_origin.removesuffix(" in .env")
    return (f"the .env file in {os.getcwd()} sets {variable} to {_without_userinfo(url)} "
            f"(the default is {default_url}), and the API key from {key_origin} would be "
            f"sent there; nothing was sent. If you trust this .env, set {TRUST_DOTENV}=1 in "
            f"the environment; otherwise remove {variable} from it.")


def _same(value: str, current: str, what: str) -> bool:
    return (value.rstrip("/") if what == "url" else value) == current


def _dotenv_values() -> dict[str, str | None]:
    if not os.path.isfile(".env"):
        return {}
    from dotenv import dotenv_values

    try:
        return dict(dotenv_values(".env", encoding="utf-8"))
    except (UnicodeDecodeError, OSError) as exc:
        raise _unreadable_dotenv(exc) from None


def _unreadable_dotenv(exc: Exception) -> ConfigurationError:
    return ConfigurationError(f"could not read the .env file in {os.getcwd()}: {exc}. "
                              "Save it as UTF-8 text, or remove it.")
def known_variables(providers: Iterable[str] = ()) -> frozenset[str]:
    """The ``CHATPLUG_*`` variables chatplug reads: its settings, and ``_URL`` and
    ``_API_KEY`` of each of ``providers`` (names)."""
    names = {_ENV_FOR_FIELD.get(field, PREFIX + field.upper()) for field in Settings.model_fields
             if field not in ("provider_urls", "provider_api_keys")}
    names.update(OTHER_VARIABLES)
    # The gateway's own settings (CHATPLUG_SERVER_*), read by the same library.
    from .gateway_settings import ServerSettings

    prefix = str(ServerSettings.model_config.get("env_prefix", "")).upper()
    names.update(prefix + field.upper() for field in ServerSettings.model_fields)
    for provider in providers:
        names.update((env_name(provider, "URL"), env_name(provider, "API_KEY")))
    return frozenset(names)


def unknown_variables(
    environ: Mapping[str, str], providers: Iterable[str] = ()
) -> list[tuple[str, str | None]]:
    """``CHATPLUG_*`` names in ``environ`` that chatplug does not read, each with the
    closest name it does read (``None`` when none is close: a plugin's own variable,
    or one for a provider that is not installed), sorted by name.

    :param providers: the names of the loaded providers (their ``_URL``/``_API_KEY``
        variables are known).
    """
    known = known_variables(providers)
    rests = {name[len(PREFIX):]: name for name in known}
    unknown = []
    for name in sorted(environ):
        upper = name.upper()
        if not upper.startswith(PREFIX) or upper in known:
            continue
        # Compared without the shared prefix, which would make every name look close.
        close = difflib.get_close_matches(upper[len(PREFIX):], list(rests), n=1, cutoff=0.75)
        unknown.append((name, rests[close[0]] if close else None))
    return unknown


_warned: set[str] = set()
_warned_lock = threading.Lock()


def warn_unknown_variables(environ: Mapping[str, str], providers: Iterable[str] = ()) -> None:
    """Log a warning (once per process and name) for each ``CHATPLUG_*`` variable that
    looks like a misspelling of one chatplug reads."""
    for name, suggestion in unknown_variables(environ, providers):
        if suggestion is None:
            continue
        with _warned_lock:
            if name in _warned:
                continue
            _warned.add(name)
        logger.warning("%s is not a chatplug setting and is ignored; did you mean %s?",
                       name, suggestion)
