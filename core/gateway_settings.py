"""The gateway's own settings: ``CHATPLUG_SERVER_*`` environment variables and ``.env``.

Declared here, beside the library's settings, so that :mod:`chatplug.settings`
knows every variable (a misspelling check) without importing the gateway:
the dependency points from ``chatplug.server`` to the settings only.

======================================  ========  =============================================
variable                                default   meaning
======================================  ========  =============================================
``CHATPLUG_SERVER_API_KEYS``            (none)    gateway keys (16 characters or more),
                                                  comma-separated, or the path of a file with
                                                  one key per line (a line starting with ``#``
                                                  is a comment); with keys set every endpoint
                                                  but the health checks needs
                                                  ``Authorization: Bearer <key>``
``CHATPLUG_SERVER_ALLOWED_HOSTS``       (none)    host names a request's ``Host`` may name
                                                  besides ``localhost``, loopback addresses and
                                                  the address the connection arrived on
                                                  (comma-separated; ``*``: any)
``CHATPLUG_SERVER_CORS_ORIGINS``        (none)    origins browsers may call from
``CHATPLUG_SERVER_AUTH``                true      ``false``: serve without checking keys
``CHATPLUG_SERVER_GRACE``               10        seconds in-flight replies may run on after
                                                  SIGTERM
``CHATPLUG_SERVER_MAX_BODY_BYTES``      16 MiB    a larger request body is refused with 413
``CHATPLUG_SERVER_MAX_CONCURRENCY``     512       completions in flight per worker; beyond: 429
``CHATPLUG_SERVER_MAX_CONNECTIONS``     1000      open client connections per worker; beyond:
                                                  503 and close
``CHATPLUG_SERVER_MAX_HEADER_BYTES``    32 KiB    a longer request head is refused with 431
``CHATPLUG_SERVER_MAX_HEADERS``         100       more request header lines: 431
``CHATPLUG_SERVER_REQUEST_TIMEOUT``     30        seconds a client has to send a whole request
                                                  (head and body); then 408 and close
``CHATPLUG_SERVER_ADMIN_KEY``           (none)    the key of ``/admin/keys``, ``/metrics`` and
                                                  ``/ui`` (16 characters or more); unset: no
                                                  admin API
``CHATPLUG_SERVER_METRICS``             true      ``false``: no ``/metrics``, no counting
``CHATPLUG_SERVER_REDIS_URL``           (none)    Redis shared by the replicas for virtual
                                                  keys' limits (``redis://host:6379/0``)
``CHATPLUG_SERVER_REDIS_FAIL_CLOSED``   false     ``true``: with Redis unreachable, refuse
                                                  virtual keys' requests (503) instead of
                                                  counting limits per process
``CHATPLUG_SERVER_DATABASE_URL``        (none)    the gateway's database (virtual keys, usage
                                                  ledger): ``postgresql://...`` or
                                                  ``sqlite:///path``; unset: ``gateway.db``
``CHATPLUG_SERVER_KEYS_REFRESH``        5         seconds between reloads of the virtual keys
                                                  from the database (revocations, new keys)
``CHATPLUG_SERVER_LEDGER``              true      ``false``: keep no usage ledger (one row per
                                                  completion in the gateway's database)
``CHATPLUG_SERVER_LEDGER_QUEUE``        10000     ledger rows held in memory for the writer;
                                                  beyond, in the journal only
``CHATPLUG_SERVER_LEDGER_JOURNAL_MB``   1024      MiB of ledger journal per process at most
                                                  (rows wait there while the database is down;
                                                  0: no journal, rows not kept across a crash)
======================================  ========  =============================================

The provider settings (URLs, keys, ``CHATPLUG_TIMEOUT``...) are chatplug's own
(:mod:`chatplug.settings`); the gateway never reads a provider key from a request.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict, SettingsError

from .errors import ConfigurationError

if TYPE_CHECKING:
    from .accounting.database import Database

__all__ = ["MIN_KEY_LENGTH", "PREFIX", "ServerSettings", "load_server_settings"]

#: The prefix of the gateway's own settings (``CHATPLUG_SERVER_API_KEYS``...).
PREFIX = "CHATPLUG_SERVER_"
#: The shortest gateway key accepted: a shorter one could be guessed.
MIN_KEY_LENGTH = 16


class ServerSettings(BaseSettings):
    """What the gateway runs with; ``create_app(settings=ServerSettings(...))`` sets them in code.

    :ivar cors_origins: origins browsers may call from (``--cors-origin``); none by default.
    :ivar allowed_hosts: host names a request's ``Host`` header may name besides the
        local ones (``--allowed-host``); ``*`` allows any.
    :ivar auth: ``False`` serves without checking gateway keys even if some are set
        (``chatplug serve --no-auth``).
    """

    model_config = SettingsConfigDict(env_prefix=PREFIX, env_file=".env", extra="ignore",
                                      frozen=True)

    api_keys: SecretStr | None = Field(
        None, description="gateway keys: comma-separated, or a file with one per line")
    grace: float = Field(10.0, ge=0, le=3600,
                         description="seconds in-flight replies may take after SIGTERM")
    max_body_bytes: int = Field(16 * 1024 * 1024, ge=1024, le=1024 ** 3,
                                description="largest request body accepted")
    max_concurrency: int = Field(512, ge=1, le=100_000,
                                 description="completions in flight per worker")
    max_connections: int = Field(1000, ge=1, le=1_000_000,
                                 description="open client connections per worker")
    max_header_bytes: int = Field(32 * 1024, ge=1024, le=1024 * 1024,
                                  description="longest request head (request line and headers)")
    max_headers: int = Field(100, ge=8, le=10_000, description="most request header lines")
    request_timeout: float = Field(30.0, gt=0, le=3600,
                                   description="seconds a client has to send a whole request")
    ledger: bool = Field(True, description="keep the usage ledger")
    ledger_queue: int = Field(10_000, ge=1, le=10_000_000,
                              description="ledger rows held in memory for the writer")
    ledger_journal_mb: int = Field(1024, ge=0, le=1024 * 1024,
                                   description="MiB of ledger journal per process at most")
    # A comma-separated string in the environment, or a JSON list.
    cors_origins: tuple[str, ...] | str = ()
    allowed_hosts: tuple[str, ...] | str = ()
    auth: bool = True
    admin_key: SecretStr | None = Field(
        None, description="the admin key: the admin API, /metrics and /ui")
    redis_url: SecretStr | None = Field(None, description="Redis shared by the replicas")
    database_url: SecretStr | None = Field(
        None, description="the gateway's database (virtual keys, usage ledger)")
    redis_fail_closed: bool = False
    keys_refresh: float = Field(5.0, gt=0, le=3600,
                                description="seconds between reloads of the virtual keys")
    metrics: bool = Field(True, description="serve /metrics and count every request")

    @field_validator("cors_origins", "allowed_hosts", mode="before")
    @classmethod
    def _listed(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    def keys(self) -> tuple[bytes, ...]:
        """The gateway keys (UTF-8), read from the file when the setting names one.

        In a file, one key per line; a line whose first non-blank character is ``#``
        is a comment (a ``#`` inside a key is part of it).

        :raises ConfigurationError: the file cannot be read, holds no key, or a key is
            shorter than :data:`MIN_KEY_LENGTH` characters.
        """
        if self.api_keys is None:
            return ()
        raw = self.api_keys.get_secret_value().strip()
        if not raw:
            return ()
        if raw.startswith(("/", "./", "../", "~")) or os.path.isfile(raw):
            try:
                with open(os.path.expanduser(raw), encoding="utf-8") as file:
                    lines = [line.strip() for line in file]
            except (OSError, UnicodeDecodeError) as exc:
                # The path is not a secret; its contents would be.
                raise ConfigurationError(
                    f"{PREFIX}API_KEYS names the file {raw!r}, which cannot be read "
                    f"({type(exc).__name__}). Fix the path or its permissions."
                ) from None
            keys = [line for line in lines if not line.startswith("#")]
            where = f"the file {raw!r}"
        else:
            keys = [key.strip() for key in raw.split(",")]
            where = f"{PREFIX}API_KEYS"
        found = [key for key in keys if key]
        if not found:
            raise ConfigurationError(f"{where} holds no key; put one key per line, or unset "
                                     f"{PREFIX}API_KEYS to serve without keys.")
        for number, key in enumerate(found, 1):
            if len(key) < MIN_KEY_LENGTH:
                # Its position and length only: the key itself is a secret.
                raise ConfigurationError(
                    f"key {number} of {where} has {len(key)} characters; a gateway key "
                    f"needs at least {MIN_KEY_LENGTH} so that it cannot be guessed. Make one "
                    "with: python -c \"import secrets; print(secrets.token_urlsafe(32))\"")
        return tuple(key.encode() for key in found)

    def database(self, *, migrate: bool = True) -> Database:
        """Open the gateway's database (``CHATPLUG_SERVER_DATABASE_URL`` from the
        environment or ``.env``, else ``gateway.db``; :func:`chatplug.accounting.open_database`).

        :raises ConfigurationError: the URL is malformed, or names PostgreSQL without psycopg.
        :raises StorageError: it cannot be opened or migrated.
        """
        from .accounting.database import open_database

        url = self.database_url.get_secret_value().strip() if self.database_url else None
        return open_database(url or None, migrate=migrate)

    def admin(self) -> bytes | None:
        """The admin key (UTF-8), or ``None`` when unset.

        :raises ConfigurationError: it is shorter than :data:`MIN_KEY_LENGTH` characters.
        """
        raw = self.admin_key.get_secret_value().strip() if self.admin_key else ""
        if not raw:
            return None
        if len(raw) < MIN_KEY_LENGTH:
            raise ConfigurationError(
                f"{PREFIX}ADMIN_KEY has {len(raw)} characters; it needs at least "
                f"{MIN_KEY_LENGTH}. Make one with: python -c \"import secrets; "
                "print(secrets.token_urlsafe(32))\"")
        return raw.encode()

    @property
    def origins(self) -> tuple[str, ...]:
        """:attr:`cors_origins` as a tuple (the field also takes a comma-separated string)."""
        return _as_tuple(self.cors_origins)

    @property
    def hosts(self) -> tuple[str, ...]:
        """:attr:`allowed_hosts` as a tuple."""
        return _as_tuple(self.allowed_hosts)


def _as_tuple(value: tuple[str, ...] | str) -> tuple[str, ...]:
    return (value,) if isinstance(value, str) else value


def load_server_settings(**overrides: object) -> ServerSettings:
    """Read the gateway's settings; ``overrides`` take precedence over the environment.

    :raises ConfigurationError: a value is invalid (the message names the variable).
    """
    try:
        return ServerSettings(**overrides)  # type: ignore[arg-type]
    except SettingsError as exc:
        raise ConfigurationError(f"invalid gateway settings: {' '.join(str(exc).split())}. "
                                 "Fix it in the environment or in .env.") from None
    except ValidationError as exc:
        error = exc.errors()[0]
        name = str(error["loc"][0]) if error["loc"] else "settings"
        secret = name in ("api_keys", "admin_key", "redis_url", "database_url")
        value = "" if secret else f"={error.get('input')!r}"
        raise ConfigurationError(
            f"invalid setting {PREFIX}{name.upper()}{value}: {error['msg']}. "
            "Fix it in the environment or in .env."
        ) from None
