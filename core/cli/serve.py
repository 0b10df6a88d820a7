"""``chatplug serve``: the gateway on uvicorn.

``add_arguments(parser)`` declares the options on the CLI's subparser and
``run(args)`` serves until SIGTERM or Ctrl-C, returning the exit status.
This is the terminal side of the gateway: it prints, nothing else in the
package does.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import logging
import os
import signal
import sys

from ..errors import ChatplugError
from ..server import PREFIX

__all__ = ["APP", "add_arguments", "run"]

#: The factory every worker process calls (with ``--workers N`` each builds its own app).
APP = "chatplug.server.app:create_app"
EXIT_FAILURE = 1
EXIT_USAGE = 2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``chatplug serve``."""
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to bind (default 127.0.0.1; anything else needs gateway "
                             f"keys in {PREFIX}API_KEYS, or --no-auth)")
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    parser.add_argument("--workers", type=_positive, default=1,
                        help="worker processes (default 1); each has its own limits and "
                             "route state")
    parser.add_argument("--no-auth", action="store_true",
                        help="serve without gateway keys, even on a public address (anyone "
                             "who can reach it spends your provider keys)")
    parser.add_argument("--cors-origin", action="append", default=[], metavar="ORIGIN",
                        help="let browsers on ORIGIN call the gateway (repeatable; none by "
                             "default)")
    parser.add_argument("--max-concurrency", type=_positive, default=None, metavar="N",
                        help="completions in flight per worker; beyond it 429 (default 512, "
                             f"or {PREFIX}MAX_CONCURRENCY)")


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return value


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _error(message: str) -> None:
    print(f"chatplug: error: {message}", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    """Serve the gateway; 0 after a clean shutdown, 1 on a configuration error, 2 on a
    refused binding."""
    # Every worker process builds its app from the environment: the options go there.
    if args.no_auth:
        os.environ[f"{PREFIX}AUTH"] = "false"
    if args.cors_origin:
        os.environ[f"{PREFIX}CORS_ORIGINS"] = json.dumps(args.cors_origin)
    if args.max_concurrency is not None:
        os.environ[f"{PREFIX}MAX_CONCURRENCY"] = str(args.max_concurrency)
    try:
        import uvicorn  # the extra is installed

        from ..server.settings import load_server_settings
    except ImportError as exc:
        _error(f"the gateway needs the server extra ({exc.name} is missing): "
               'pip install ".[server]" in the chatplug checkout')
        return EXIT_FAILURE
    try:
        settings = load_server_settings()
        keys = settings.keys() if settings.auth else ()
    except ChatplugError as exc:
        _error(str(exc))
        return EXIT_FAILURE
    if args.no_auth:
        print(f"chatplug: WARNING: --no-auth: serving on {args.host}:{args.port} WITHOUT "
              "gateway keys; anyone who can reach it uses your providers and their keys.",
              file=sys.stderr)
    elif not keys and not _loopback(args.host):
        _error(f"refusing to serve on {args.host} without gateway keys: anyone on the network "
               f"could spend your provider keys. Set {PREFIX}API_KEYS (comma-separated, or a "
               "file), bind to 127.0.0.1, or pass --no-auth to do it anyway.")
        return EXIT_USAGE
    # Each completion in flight holds one of chatplug's async workers.
    os.environ.setdefault("CHATPLUG_ASYNC_WORKERS", str(settings.max_concurrency))
    logging.basicConfig(stream=sys.stderr, level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    import uvicorn

    # uvicorn raises the signal that stopped it again once it has shut down gracefully;
    # that second SIGTERM must end run() with 0, not kill the process.
    signal.signal(signal.SIGTERM, lambda signum, frame: None)
    try:
        uvicorn.run(APP, factory=True, host=args.host, port=args.port, workers=args.workers,
                    access_log=False, log_config=None, lifespan="on",
                    timeout_graceful_shutdown=int(settings.grace) + 2)
    except SystemExit as exc:  # uvicorn exits on a failed start (port in use...)
        return exc.code if isinstance(exc.code, int) else EXIT_FAILURE
    except KeyboardInterrupt:  # Ctrl-C, after the same graceful shutdown
        pass
    return 0
