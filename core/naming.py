"""Provider names as settings see them.

``CHATPLUG_<NAME>_URL`` and ``CHATPLUG_<NAME>_API_KEY`` are keyed by the name's
*slug*: lower case, runs of other characters turned into ``_``.  Two names with
one slug would share one key, so the registry refuses the second (a plugin
called ``OpenAI-`` must never receive the OpenAI key).  Kept apart from the
settings module so that the registry can use it without importing pydantic.
"""

from __future__ import annotations

import functools
import re

__all__ = ["CONVENTIONAL", "ENVIRONMENT_ONLY", "PREFIX", "TRUST_DOTENV", "env_name",
           "provider_slug", "variables_for"]

PREFIX = "CHATPLUG_"
#: Conventional variables other tools (the vendors' own SDKs) use, honoured as fallbacks
#: in this order after chatplug's own, by provider slug and setting.
CONVENTIONAL: dict[str, dict[str, tuple[str, ...]]] = {
    "openai": {"url": ("OPENAI_BASE_URL",), "api_key": ("OPENAI_API_KEY",)},
    "anthropic": {"url": ("ANTHROPIC_BASE_URL",), "api_key": ("ANTHROPIC_API_KEY",)},
    # google-genai's own order: GOOGLE_API_KEY first.
    "gemini": {"api_key": ("GOOGLE_API_KEY", "GEMINI_API_KEY")},
}
#: Trusts the working directory's ``.env`` to point a provider at another URL while the
#: key comes from the environment or the keys file (``Settings.check_destination``).
TRUST_DOTENV = "CHATPLUG_TRUST_DOTENV"
#: chatplug's variables read outside the settings model, from the environment only: where
#: its files are (``chatplug.paths``, ``chatplug.configfile``), the CLI's log switch and
#: the ``.env`` trust (a ``.env`` must not vouch for itself).  They are not misspellings.
ENVIRONMENT_ONLY = ("CHATPLUG_HOME", "CHATPLUG_CONFIG", "CHATPLUG_LOG", TRUST_DOTENV)


@functools.lru_cache(maxsize=1024)  # every call looks its provider's settings up by it
def provider_slug(provider: str) -> str:
    """The settings key of a provider name: lower case, runs of other characters as `_`."""
    return re.sub(r"[^0-9a-z]+", "_", provider.lower()).strip("_")


def env_name(provider: str, what: str = "API_KEY") -> str:
    """The environment variable holding ``what`` (``URL`` or ``API_KEY``) for a provider."""
    return f"{PREFIX}{provider_slug(provider).upper()}_{what.upper()}"


def variables_for(provider: str, what: str = "api_key") -> str:
    """The variable(s) a provider's ``url`` or ``api_key`` comes from, for messages:
    ``CHATPLUG_OPENAI_API_KEY (or OPENAI_API_KEY)``."""
    conventional = CONVENTIONAL.get(provider_slug(provider), {}).get(what.lower())
    name = env_name(provider, what)
    return f"{name} (or {' or '.join(conventional)})" if conventional else name
