"""``chatplug serve``: the gateway on uvicorn.

``add_arguments(parser)`` declares the options on the CLI's subparser and
``run(args)`` serves until SIGTERM or Ctrl-C, returning the exit status.
This is the terminal side of the gateway: it prints, nothing else in the
package does.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import ipaddress
import json
import logging
import os
import signal
import socket
import sys
from typing import TYPE_CHECKING

from ..configfile import CONFIG_VARIABLE
from ..errors import ChatplugError
from ..gateway_settings import PREFIX, load_server_settings
from .output import whole_number

if TYPE_CHECKING:
    from ..gateway_settings import ServerSettings

__all__ = ["APP", "PROTOCOL", "add_arguments", "run"]

#: The factory every worker process calls (with ``--workers N`` each builds its own app).
APP = "chatplug.server.app:serving_app"
#: The HTTP protocol every worker runs: uvicorn's, with the gateway's connection limits.
PROTOCOL = "chatplug.server.protocol:GatewayProtocol"
EXIT_FAILURE = 1
EXIT_USAGE = 2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``chatplug serve``."""
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to bind (default 127.0.0.1; anything else needs gateway "
                             f"keys in {PREFIX}API_KEYS, or --no-auth)")
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    parser.add_argument("--workers", type=whole_number, default=1,
                        help="worker processes (default 1); each has its own limits and "
                             "route state")
    parser.add_argument("--no-auth", action="store_true",
                        help="serve without gateway keys, even on a public address (anyone "
                             "who can reach it spends your provider keys)")
    parser.add_argument("--cors-origin", action="append", default=[], metavar="ORIGIN",
                        help="let browsers on ORIGIN call the gateway (repeatable; none by "
                             "default)")
    parser.add_argument("--allowed-host", action="append", default=[], metavar="NAME",
                        help="a host name clients call the gateway by (repeatable; localhost "
                             "and IP addresses always work; '*': any)")
    parser.add_argument("--max-concurrency", type=whole_number, default=None, metavar="N",
                        help="completions in flight per worker; beyond it 429 (default 512, "
                             f"or {PREFIX}MAX_CONCURRENCY)")
    parser.add_argument("--max-connections", type=whole_number, default=None, metavar="N",
                        help="open client connections per worker; beyond it 503 (default "
                             f"1000, or {PREFIX}MAX_CONNECTIONS)")
    parser.add_argument("--config", metavar="PATH",
                        help="the config file (model aliases, default model, prices; "
                             f"default {CONFIG_VARIABLE}, else chatplug.toml in chatplug's "
                             "config directory)")


def _address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def _loopback(host: str) -> bool:
    address = _address(host)
    return host == "localhost" or (address is not None and address.is_loopback)


def _error(message: str) -> None:
    print(f"chatplug: error: {message}", file=sys.stderr)


def _listed(name: str, values: list[str]) -> None:
    """Add ``values`` to the comma-separated list in the environment variable ``name``."""
    current = [v for v in os.environ.get(name, "").split(",") if v.strip()]
    if current and current[0].lstrip().startswith("["):
        current = list(json.loads(",".join(current)))
    os.environ[name] = ",".join(current + values)


def _bind_check(host: str, port: int) -> str | None:
    """Why the gateway cannot listen on ``host:port`` (``None``: it can)."""
    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.create_server((host, port), family=family):
            return None
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            return (f"cannot listen on {host}:{port}: the port is in use (another chatplug "
                    "serve?); stop that server or pick another port with --port.")
        reason = exc.strerror or str(exc)
        return f"cannot listen on {host}:{port}: {reason}; check --host and --port."


def _raise_open_file_limit(settings: ServerSettings) -> None:
    """Let the process open what its limits allow: each client connection, and each
    upstream connection of a completion in flight, is a file."""
    try:
        import resource
    except ImportError:  # not on POSIX
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = settings.max_connections + settings.max_concurrency + 64
    if soft != resource.RLIM_INFINITY and soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
    if soft != resource.RLIM_INFINITY and soft < needed:
        print(f"chatplug: WARNING: the open-file limit ({soft}) is below "
              f"{PREFIX}MAX_CONNECTIONS + {PREFIX}MAX_CONCURRENCY + 64 ({needed}): raise it "
              "(ulimit -n) or lower those.", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    """Serve the gateway; 0 after a clean shutdown, 1 on a configuration error or a port
    that cannot be bound, 2 on a refused binding."""
    # Every worker process builds its app from the environment: the options go there.
    if args.no_auth:
        os.environ[f"{PREFIX}AUTH"] = "false"
    if args.cors_origin:
        os.environ[f"{PREFIX}CORS_ORIGINS"] = json.dumps(args.cors_origin)
    hosts = list(args.allowed_host)
    if not _address(args.host) and args.host != "localhost":
        hosts.append(args.host)  # bound to a name: clients call it by that name
    if hosts:
        _listed(f"{PREFIX}ALLOWED_HOSTS", hosts)
    if args.max_concurrency is not None:
        os.environ[f"{PREFIX}MAX_CONCURRENCY"] = str(args.max_concurrency)
    if args.max_connections is not None:
        os.environ[f"{PREFIX}MAX_CONNECTIONS"] = str(args.max_connections)
    if args.config is not None:
        from ..configfile import use_config

        try:
            use_config(args.config)
        except ChatplugError as exc:
            _error(str(exc))
            return EXIT_FAILURE
    try:
        import uvicorn  # the extra is installed

        from ..server import protocol  # noqa: F401  (its import needs httptools)
    except ImportError as exc:
        _error(f"the gateway needs the server extra ({exc.name} is missing): from the "
               'chatplug checkout, pip install ".[server]"')
        return EXIT_FAILURE
    try:
        settings = load_server_settings()
        keys = settings.keys() if settings.auth else ()
        admin = settings.admin() if settings.auth else None  # it turns virtual keys on
    except ChatplugError as exc:
        _error(str(exc))
        return EXIT_FAILURE
    if args.no_auth:
        print(f"chatplug: WARNING: --no-auth: serving on {args.host}:{args.port} WITHOUT "
              "gateway keys; anyone who can reach it uses your providers and their keys.",
              file=sys.stderr)
    elif not keys and admin is None and not _loopback(args.host):
        _error(f"refusing to serve on {args.host} without gateway keys: anyone on the network "
               f"could spend your provider keys. Set {PREFIX}API_KEYS (comma-separated, or a "
               f"file) or {PREFIX}ADMIN_KEY (virtual keys), bind to 127.0.0.1, or pass "
               "--no-auth to do it anyway.")
        return EXIT_USAGE
    problem = _bind_check(args.host, args.port)
    if problem is not None:
        _error(problem)
        return EXIT_FAILURE
    _raise_open_file_limit(settings)
    # Each completion in flight holds one of chatplug's async workers.
    os.environ.setdefault("CHATPLUG_ASYNC_WORKERS", str(settings.max_concurrency))
    from ..server.access import LineFormatter

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(LineFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.INFO, handlers=[handler])
    # No log line names its thread or process: each record skips looking them up.
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False

    # uvicorn raises the signal that stopped it again once it has shut down gracefully;
    # that second SIGTERM must end run() with 0, not kill the process.
    signal.signal(signal.SIGTERM, lambda signum, frame: None)
    try:
        # proxy_headers off: nothing in the gateway reads the client's address or the scheme,
        # and uvicorn's X-Forwarded-* rewriting is a layer per request for nothing.
        uvicorn.run(APP, factory=True, host=args.host, port=args.port, workers=args.workers,
                    proxy_headers=False,
                    http=PROTOCOL, access_log=False, log_config=None, lifespan="on",
                    timeout_graceful_shutdown=int(settings.grace) + 2)
    except SystemExit as exc:  # uvicorn exits on a failed start (port taken meanwhile...)
        return exc.code if isinstance(exc.code, int) else EXIT_FAILURE
    except KeyboardInterrupt:  # Ctrl-C, after the same graceful shutdown
        pass
    return 0
