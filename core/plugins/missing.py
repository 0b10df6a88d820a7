"""Why a provider is not there: the message of :class:`ProviderNotFoundError`.

Each case says what to do: a typo gets the closest installed name, a plugin
that failed to load gets its reason, a disabled or not-allowed one the setting
that keeps it out.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping

from ..errors import ProviderNotFoundError

__all__ = ["not_found"]


def not_found(
    name: str,
    *,
    installed: list[str],
    failed: Mapping[str, str],
    disabled: bool,
    not_allowed: Mapping[str, str | None],
    models: list[str] | None = None,
) -> ProviderNotFoundError:
    """The error for ``registry.get(name)`` when no loaded provider has that name.

    :param installed: the loaded providers' names.
    :param failed: ``{entry-point name: reason}`` of providers that failed to load.
    :param disabled: whether ``name`` is on CHATPLUG_DISABLED_PROVIDERS.
    :param not_allowed: ``{entry-point name: distribution}`` kept out by CHATPLUG_PLUGINS.
    :param models: for a model name (``registry.get``/``resolve``), the other names that
        resolve (routes, aliases, models): they are suggested too, and the message gives
        the ``Provider/model`` form; ``None`` for a provider name.
    """
    wanted = name.lower()
    if disabled:
        return ProviderNotFoundError(
            f"provider {name!r} is disabled by CHATPLUG_DISABLED_PROVIDERS; "
            "remove it from that list to use it."
        )
    for entry, distribution in not_allowed.items():
        if entry.lower() == wanted:
            names = " or ".join(repr(n) for n in (entry, distribution) if n)
            return ProviderNotFoundError(
                f"provider {entry!r} is installed ({distribution or 'unknown distribution'})"
                f" but not allowed by CHATPLUG_PLUGINS; add {names} to it to use it."
            )
    for entry, reason in failed.items():
        if entry.lower() == wanted:
            return ProviderNotFoundError(
                f"provider {entry!r} is installed but failed to load: {reason}. "
                "Run `chatplug providers` for details."
            )
    # A provider's name first: "gravity" means GravityEngine, not GravityEngine/some-model.
    closest = _closest(wanted, installed) or _closest(wanted, models or [])
    hint = f" Did you mean {closest!r}?" if closest else ""
    if models is not None:
        example = next((n for n in ("OpenAI", *installed) if n in installed), "Provider")
        return ProviderNotFoundError(
            f"no provider, route, alias or model named {name!r}.{hint} Installed providers: "
            f"{', '.join(installed) or 'none'}. Name a model as Provider/model (e.g. "
            f"'{example}/{name.rpartition('/')[2]}'), or give it an alias in CHATPLUG_MODELS "
            "or chatplug.toml's [models].")
    return ProviderNotFoundError(
        f"no provider named {name!r}.{hint} Installed: {', '.join(installed) or 'none'}. "
        "Install a provider package or check the spelling."
    )


#: How alike a name must be to be suggested: a typo, not a shared syllable
#: ("Nope" is not "OpenAI").
SUGGESTION_CUTOFF = 0.75


def _closest(wanted: str, installed: list[str]) -> str | None:
    """The installed name ``wanted`` (lower case) most likely means: a near spelling,
    or a name it is the start of ("gravity" for "GravityEngine")."""
    lowered = {n.lower(): n for n in installed}
    close = difflib.get_close_matches(wanted, list(lowered), n=1, cutoff=SUGGESTION_CUTOFF)
    if close:
        return lowered[close[0]]
    if len(wanted) >= 3:
        starts = [n for low, n in sorted(lowered.items()) if low.startswith(wanted)]
        if len(starts) == 1:
            return starts[0]
    return None
