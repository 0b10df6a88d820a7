"""The gateway's own settings: ``CHATPLUG_SERVER_*`` environment variables and ``.env``.

=================================  =======  ==================================================
variable                           default  meaning
=================================  =======  ==================================================
``CHATPLUG_SERVER_API_KEYS``       (none)   gateway keys, comma-separated, or the path of a
                                            file with one key per line; with keys set every
                                            endpoint but ``/health/liveliness`` needs
                                            ``Authorization: Bearer <key>``
``CHATPLUG_SERVER_GRACE``          10       seconds in-flight replies may run on after SIGTERM
``CHATPLUG_SERVER_MAX_BODY_BYTES`` 16 MiB   a larger request body is refused with 413
``CHATPLUG_SERVER_MAX_CONCURRENCY`` 512     completions in flight per worker; beyond: 429
=================================  =======  ==================================================

The provider settings (URLs, keys, ``CHATPLUG_TIMEOUT``...) are chatplug's own
(:mod:`chatplug.settings`); the gateway never reads a provider key from a request.
"""

from __future__ import annotations

import os

from pydantic import Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict, SettingsError

from ..errors import ConfigurationError
from . import PREFIX

__all__ = ["ServerSettings", "load_server_settings"]


class ServerSettings(BaseSettings):
    """What the gateway runs with; ``create_app(settings=ServerSettings(...))`` sets them in code.

    :ivar cors_origins: origins browsers may call from (``--cors-origin``); none by default.
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
    cors_origins: tuple[str, ...] = ()
    auth: bool = True

    def keys(self) -> tuple[bytes, ...]:
        """The gateway keys (UTF-8), read from the file when the setting names one.

        :raises ConfigurationError: the file cannot be read, or holds no key.
        """
        if self.api_keys is None:
            return ()
        raw = self.api_keys.get_secret_value().strip()
        if not raw:
            return ()
        if raw.startswith(("/", "./", "../", "~")) or os.path.isfile(raw):
            try:
                with open(os.path.expanduser(raw), encoding="utf-8") as file:
                    lines = [line.split("#", 1)[0] for line in file]
            except (OSError, UnicodeDecodeError) as exc:
                # The path is not a secret; its contents would be.
                raise ConfigurationError(
                    f"{PREFIX}API_KEYS names the file {raw!r}, which cannot be read "
                    f"({type(exc).__name__}). Fix the path or its permissions."
                ) from None
            keys = [key.strip() for line in lines for key in line.split(",")]
            where = f"the file {raw!r}"
        else:
            keys = [key.strip() for key in raw.split(",")]
            where = f"{PREFIX}API_KEYS"
        found = tuple(key.encode() for key in keys if key)
        if not found:
            raise ConfigurationError(f"{where} holds no key; put one key per line, or unset "
                                     f"{PREFIX}API_KEYS to serve without keys.")
        return found


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
        value = "" if name == "api_keys" else f"={error.get('input')!r}"
        raise ConfigurationError(
            f"invalid setting {PREFIX}{name.upper()}{value}: {error['msg']}. "
            "Fix it in the environment or in .env."
        ) from None
