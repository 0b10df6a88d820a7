"""The plugin contract: what a provider and an observer must look like to load.

A **provider** (entry-point group ``chatplug.providers``) has the seed's
metadata attributes ``url``, ``model``, ``supports_stream`` and ``needs_auth``
and one ``@hookimpl create_completion``.  An **observer** (group
``chatplug.observers``) implements one or more of the observer hooks of
:mod:`chatplug.hooks` for logging, metrics or caching; it is registered with
the same pluggy manager under ``observer:<name>``, so it never collides with
a provider of the same name, and it never sees a key.

Every check raises :class:`Rejected` with a one-line reason, which becomes the
plugin's line in ``registry.errors``; a plugin that fails a check is left
unregistered.
"""

from __future__ import annotations

import contextlib
import difflib
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import EntryPoint
from typing import Any

import pluggy

from .. import hooks

__all__ = [
    "OBSERVER_GROUP",
    "Metadata",
    "Observer",
    "Rejected",
    "add_observer",
    "add_provider_hooks",
    "distribution_of",
    "pluggy_name",
    "plugin_name",
    "provider_metadata",
]

OBSERVER_GROUP = "chatplug.observers"


class Rejected(Exception):
    """Why one plugin was rejected (becomes its line in ``Registry.errors``)."""


@dataclass(frozen=True)
class Observer:
    """One loaded observer: its name, the plugin object, where it came from, its hooks."""

    name: str
    plugin: object
    distribution: str | None
    version: str | None
    hooks: tuple[str, ...]

    def as_dict(self) -> dict[str, object]:
        """JSON-ready description."""
        return {"name": self.name, "distribution": self.distribution,
                "version": self.version, "hooks": list(self.hooks)}


def pluggy_name(observer: str) -> str:
    """The name an observer is registered under in pluggy (never a provider's name)."""
    return f"observer:{observer}"


@dataclass(frozen=True)
class Metadata:
    """A provider's metadata attributes: the seed's four, and the optional capabilities."""

    url: str
    models: list[str]
    supports_stream: bool
    needs_auth: bool
    supports_tools: bool = False
    supports_vision: bool = False
    native_async: bool = False


def provider_metadata(plugin: Any) -> Metadata:
    """Read and check the metadata attributes of a provider: the seed's ``url``,
    ``model``, ``supports_stream`` and ``needs_auth``, and the optional
    ``supports_tools``, ``supports_vision`` and ``native_async`` (default ``False``).

    :raises Rejected: an attribute is missing or of the wrong type, or reading it
        raised (a module ``__getattr__`` or a property that fails, with any exception
        but ``KeyboardInterrupt``).
    """
    try:
        return _check_metadata(plugin)
    except (Rejected, KeyboardInterrupt):
        raise
    except BaseException as exc:
        raise Rejected(f"reading its metadata failed: {type(exc).__name__}: {exc}") from None


def _near_misses(plugin: Any, missing: list[str]) -> str:
    """``(found 'models': the attribute is called model)`` for attributes spelled wrong."""
    try:
        present = [name for name in dir(plugin) if not name.startswith("_")]
    except Exception:
        return ""
    hints = []
    for name in missing:
        close = difflib.get_close_matches(name, present, n=1, cutoff=0.8)
        if close:
            hints.append(f"found {close[0]!r}: the attribute is called {name}")
    return f" ({'; '.join(hints)})" if hints else ""


def _check_metadata(plugin: Any) -> Metadata:
    missing = [n for n in ("url", "model", "supports_stream", "needs_auth")
               if not hasattr(plugin, n)]
    if missing:
        raise Rejected(
            f"missing metadata attribute(s) {', '.join(missing)}{_near_misses(plugin, missing)}"
            " (a provider needs url: str, model: list[str], supports_stream: bool, "
            "needs_auth: bool)"
        )
    url = plugin.url
    models = plugin.model
    supports_stream = plugin.supports_stream
    needs_auth = plugin.needs_auth
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        from ..transport.redaction import strip_userinfo

        raise Rejected(f"url must be an http(s) URL string, not "
                       f"{strip_userinfo(url) if isinstance(url, str) else url!r}")
    if "@" in url.split("/", 3)[2]:
        raise Rejected("url must not contain credentials (user:password@); a provider reads "
                       "its key from its API_KEY setting (the api_key argument)")
    if not isinstance(models, (list, tuple)) or not all(
        isinstance(m, str) and m for m in models
    ):
        raise Rejected(f"model must be a list of model names, not {models!r}")
    supports_tools = getattr(plugin, "supports_tools", False)
    supports_vision = getattr(plugin, "supports_vision", False)
    native_async = getattr(plugin, "native_async", False)
    for attribute, value in (("supports_stream", supports_stream), ("needs_auth", needs_auth),
                             ("supports_tools", supports_tools),
                             ("supports_vision", supports_vision),
                             ("native_async", native_async)):
        if not isinstance(value, bool):
            raise Rejected(f"{attribute} must be True or False, not {value!r}")
    return Metadata(url, list(models), supports_stream, needs_auth, supports_tools,
                    supports_vision, native_async)


def _register(manager: pluggy.PluginManager, plugin: object, name: str) -> list[str]:
    """Register ``plugin``; the names of the hooks it implements, all of them known."""
    try:
        registered = manager.register(plugin, name=name)
    except (pluggy.PluginValidationError, ValueError) as exc:
        problem = None
        if isinstance(exc, pluggy.PluginValidationError):
            problem = _argument_problem(manager, plugin)
        raise Rejected(problem or " ".join(str(exc).split())) from None
    except KeyboardInterrupt:
        raise
    except BaseException as exc:
        # pluggy reads every attribute of the plugin; one that raises must not leave
        # the name half-registered.
        with contextlib.suppress(Exception):
            manager.unregister(name=name)
        raise Rejected(
            f"registering its hooks failed: {type(exc).__name__}: {exc}"
        ) from None
    if registered is None:  # pluggy's answer for a blocked name
        raise Rejected("disabled by CHATPLUG_DISABLED_PROVIDERS")
    callers = manager.get_hookcallers(plugin) or []
    unknown = [caller.name for caller in callers if not caller.has_spec()]
    if unknown:
        manager.unregister(plugin)
        close = difflib.get_close_matches(
            unknown[0], ["create_completion", "list_models", *hooks.OBSERVER_HOOKS], n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise Rejected(f"@hookimpl {unknown[0]!r} is not a chatplug hook{hint}")
    return sorted(caller.name for caller in callers)


def _argument_problem(manager: pluggy.PluginManager, plugin: object) -> str | None:
    """What pluggy's "declared in the hookimpl but can not be found in the hookspec"
    means for this plugin, in chatplug's terms, or ``None``."""
    for hook in ("create_completion", *hooks.OBSERVER_HOOKS):
        try:
            function = getattr(plugin, hook, None)
            if function is None or manager.parse_hookimpl_opts(plugin, hook) is None:
                continue
            offered = getattr(manager.hook, hook).spec.argnames
            parameters = inspect.signature(function).parameters.values()
        except Exception:
            continue
        extra = [p.name for p in parameters
                 if p.default is p.empty and p.name not in offered and p.name != "self"
                 and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        if not extra:
            continue
        names = ", ".join(repr(name) for name in extra)
        if hook == "create_completion":
            return (f"create_completion's parameter(s) {names} have no default, and chatplug "
                    f"passes only {', '.join(offered)}: give a provider parameter a default "
                    f"(e.g. {extra[0]}: float = 0.7), or remove it")
        return (f"{hook}'s parameter(s) {names} are not arguments of that hook (it passes "
                f"{', '.join(offered)}): remove them, or give them a default")
    return None


def add_provider_hooks(
    manager: pluggy.PluginManager, name: str, plugin: object
) -> Callable[..., Any]:
    """Register a provider under ``name``; its completion function.

    :raises Rejected: pluggy rejects a hook's arguments, a hook is unknown
        (misspelled), there is no ``create_completion``, the plugin or the name
        is already registered, or the name is blocked.
    """
    _register(manager, plugin, name)
    impls = [impl for impl in manager.hook.create_completion.get_hookimpls()
             if impl.plugin is plugin]
    if not impls:
        manager.unregister(plugin)
        raise Rejected("no @hookimpl create_completion(model, messages, stream, ...) found")
    return impls[0].function


def add_observer(
    manager: pluggy.PluginManager,
    name: str,
    plugin: object,
    distribution: str | None,
    version: str | None,
) -> Observer:
    """Register ``plugin`` as the observer ``name``.

    :raises Rejected: pluggy rejects a hook's arguments, a hook is unknown
        (misspelled), it implements ``create_completion`` (that belongs in a
        provider) or no observer hook at all, it is already registered, or the
        name is blocked.
    """
    implemented = _register(manager, plugin, pluggy_name(name))
    observed = tuple(hook for hook in implemented if hook in hooks.OBSERVER_HOOKS)
    problem = None
    if "create_completion" in implemented:
        problem = ("an observer must not implement create_completion; register a provider "
                   "under the chatplug.providers entry-point group instead")
    elif not observed:
        problem = ("implements no observer hook; expected @hookimpl "
                   f"{', '.join(hooks.OBSERVER_HOOKS)}")
    if problem is not None:
        manager.unregister(plugin)
        raise Rejected(problem)
    return Observer(name, plugin, distribution, version, observed)


def plugin_name(plugin: object) -> str:
    """The name a plugin registered without one gets: its module's last part."""
    return str(getattr(plugin, "__name__", type(plugin).__name__)).rsplit(".", 1)[-1]


def distribution_of(entry_point: EntryPoint) -> tuple[str | None, str | None]:
    """The ``(name, version)`` of the distribution an entry point came from, if known."""
    dist: Any = getattr(entry_point, "dist", None)
    if dist is None:
        return None, None
    try:
        return dist.name, dist.version
    except Exception:
        return None, None
