"""``chatplug providers [NAME] [--json] [--check [--timeout S]]``: the installed providers,
one in detail (with where each setting came from), or a probe of their endpoints.

``--check`` exits 1 when any provider it probed is failing ("auth needed" is a
setting to make, not a failure).
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from .output import EXIT_FAILURE, Output, UsageError, print_json, seconds, table

if TYPE_CHECKING:
    from ..calls.provider import Provider
    from ..plugins.registry import Registry
    from ..routes import Route

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", nargs="?", metavar="NAME", help="show this provider in detail")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--check", action="store_true",
                        help="probe each provider's endpoint (no key is sent); exit 1 if any "
                             "is failing")
    parser.add_argument("--timeout", type=seconds(60), default=None, metavar="SECONDS",
                        help="with --check: seconds to connect and to get an answer "
                             "(default 5)")


def run(args: argparse.Namespace) -> int:
    from .. import registry

    out = Output()
    if args.check:
        return _check(registry, args.name, args.json, args.timeout, out)
    if args.timeout is not None:
        raise UsageError("--timeout goes with --check")
    if args.name is not None:
        from ..routes import Route

        target, _ = registry.resolve(args.name)  # a model's name shows its provider
        if isinstance(target, Route):
            if args.json:
                print_json(target.as_dict(), out)
            else:
                _show_route(target, out)
            return 0
        if args.json:
            print_json({**target.as_dict(), "sources": _sources(registry, target)}, out)
        else:
            _show(registry, target, out)
        return 0
    return _list(registry, args.json, out)


def providers_of(registry: Registry, name: str | None) -> list[Provider]:
    """The providers ``name`` stands for (a route: its entries' providers); all without it."""
    if name is None:
        return registry.providers()
    from ..routes import Route

    target, _ = registry.resolve(name)  # a model's name stands for its provider
    if isinstance(target, Route):
        return list(dict.fromkeys(target.providers))
    return [target]


def _routes(registry: Registry) -> tuple[list[Route], str | None]:
    """The named routes, or why they could not be read (a bad CHATPLUG_ROUTES must not
    hide the providers)."""
    from ..errors import ConfigurationError

    try:
        return registry.routes(), None
    except ConfigurationError as exc:
        return [], exc.message


def _show_route(route: Route, out: Output) -> None:
    lines = [
        f"{route.name}  (route)",
        f"  strategy: {route.strategy}",
        f"  cooldown: {route.cooldown:g} s after {route.allowed_fails} failure(s) in a row",
        f"  client errors fail over: {'yes' if route.fallback_on_client_errors else 'no'}",
        "",
    ]
    rows = [("ENTRY", "PROVIDER", "MODEL")]
    for entry in route.entries:
        rows.append((str(entry), entry.provider, entry.model or "(the call's, else default)"))
    out.write("\n".join(lines) + "\n" + table(rows))


def _auth_state(provider: Provider) -> str:
    if not provider.needs_auth:
        return "no"
    return "key set" if provider.api_key_configured else f"set {provider.api_key_variable}"


def _origin(provider: Provider) -> str:
    if provider.distribution:
        return f"{provider.distribution} {provider.version or ''}".strip()
    return provider.module_name


def _list(registry: Registry, as_json: bool, out: Output) -> int:
    providers = registry.providers()
    routes, routes_error = _routes(registry)
    errors = registry.errors
    if routes_error is not None:
        errors["CHATPLUG_ROUTES"] = routes_error
    if as_json:
        print_json({
            "providers": [p.as_dict() for p in providers],
            "routes": [r.as_dict() for r in routes],
            "observers": [o.as_dict() for o in registry.observers()],
            "errors": errors,
            "disabled": sorted(registry.disabled),
            "not_allowed": registry.not_allowed,
        }, out)
        return 0
    rows = [("NAME", "MODELS", "STREAM", "AUTH", "URL", "FROM")]
    for p in providers:
        rows.append((p.name, ", ".join(p.models) if p.models else "(any)",
                     "yes" if p.supports_stream else "no", _auth_state(p), p.url, _origin(p)))
    out.write(table(rows))
    if not providers:
        out.write("No providers are installed.\n")
    if routes:
        out.write("\nRoutes (CHATPLUG_ROUTES):\n")
        for route in routes:
            out.write(f"  {route.name}: {', '.join(map(str, route.entries))}"
                      f" ({route.strategy})\n")
    _plugin_sections(registry, out)
    if errors:
        out.write("\nFailed to load:\n")
        for entry, reason in sorted(errors.items()):
            out.write(f"  {entry}: {reason}\n")
    return 0


def _named(name: str, distribution: str | None, version: str | None = None) -> str:
    origin = " ".join(part for part in (distribution, version) if part)
    return f"{name} ({origin})" if origin else name


def _plugin_sections(registry: Registry, out: Output) -> None:
    """Observers, and the plugins the controls kept out (reported, not errors)."""
    sections = [
        ("Observers", [_named(o.name, o.distribution, o.version)
                       for o in registry.observers()]),
        ("Disabled (CHATPLUG_DISABLED_PROVIDERS)",
         [_named(n, d) for n, d in sorted(registry.disabled.items())]),
        ("Not in CHATPLUG_PLUGINS",
         [_named(n, d) for n, d in sorted(registry.not_allowed.items())]),
    ]
    for title, names in sections:
        if names:
            out.write(f"\n{title}: {', '.join(names)}\n")


def _check(registry: Registry, name: str | None, as_json: bool, timeout: float | None,
           out: Output) -> int:
    from ..calls.probe import DEFAULT_TIMEOUT, FAILING, probe_all

    providers = providers_of(registry, name)
    results = probe_all(providers, registry.transport,
                        timeout=timeout if timeout is not None else DEFAULT_TIMEOUT)
    if as_json:
        print_json({"checks": [r.as_dict() for r in results]}, out)
    else:
        rows = [("NAME", "STATUS", "LATENCY", "URL", "DETAIL")]
        for r in results:
            latency = f"{r.latency_ms:.0f} ms" if r.latency_ms is not None else "-"
            rows.append((r.provider, r.status, latency, r.url, r.detail))
        out.write(table(rows))
    return EXIT_FAILURE if any(r.status == FAILING for r in results) else 0


def _sources(registry: Registry, provider: Provider) -> dict[str, Any]:
    """Where the URL and the key came from (never the key)."""
    from ..settings import value_origin

    settings = registry.settings
    return {"url": value_origin(settings, provider.name, "url"),
            "api_key": value_origin(settings, provider.name, "api_key")}


def _show(registry: Registry, provider: Provider, out: Output) -> None:
    sources = _sources(registry, provider)
    url = f"  url:     {provider.url}  "
    if sources["url"] is None:
        url += "(the provider's default"
    else:
        url += f"(from {sources['url']}; default {provider.default_url}"
    if sources["api_key"] is not None:
        key = f"set (from {sources['api_key']})"
    elif provider.needs_auth:
        key = (f"not set: set {provider.api_key_variable}, or run "
               f"`chatplug keys set {provider.name}`")
    else:
        key = "not needed"
    models = ", ".join(provider.models) if provider.models else "(any; -m is required)"
    if provider.lists_models:
        models += f"  (the server's list: chatplug models {provider.name})"
    lines = [
        f"{provider.name}  ({_origin(provider)}, module {provider.module_name})",
        url + ")",
        f"  key:     {key}",
        f"  models:  {models}",
        f"  stream:  {'yes' if provider.supports_stream else 'no'}",
        f"  params:  {provider.params}",
        "",
    ]
    rows = [("PARAMETER", "TYPE", "DEFAULT")]
    for parameter in provider.parameters:
        default = "(required)" if parameter.required else repr(parameter.default)
        rows.append((parameter.name, parameter.type or "-", default))
    out.write("\n".join(lines) + "\n" + table(rows))
