"""A scripted chat-completions server on 127.0.0.1, for tests, demos and benchmarks.

It speaks two protocols, following the request's ``"stream"``:

- OpenAI chat completions on any path ending in ``/chat/completions`` (so both
  ``/v1/chat/completions`` and Next-Web's ``/api/openai/v1/chat/completions``):
  one JSON reply or server-sent events;
- Ollama's native ``POST /api/chat``: one JSON object or newline-delimited JSON
  (streaming unless the request says ``"stream": false``, as Ollama does);
- Anthropic's Messages API, ``POST /v1/messages`` (``x-api-key`` checked when the
  server has a key), one ``message`` or its event stream; ``GET /v1/models`` with
  an ``anthropic-version`` header pages :attr:`ScriptedServer.models` as Anthropic does;
- Gemini's ``POST /v1beta/models/{model}:generateContent`` and
  ``:streamGenerateContent?alt=sse`` (``x-goog-api-key`` checked when the server has
  a key); ``GET /v1beta/models`` pages :attr:`ScriptedServer.models` as Gemini does.

``GET`` answers ``.../models``, Ollama's ``/api/tags`` and ``/`` (for probes).
With nothing scripted it echoes the last user message, piece by piece.  Queue
:class:`Script` replies to control delays, chunking, line endings, split
bytes, error objects, echoed keys and dropped connections.  It binds to
loopback only and, given ``lifetime``, stops by itself.

Run it for a demo: ``python -m chatplug.testing.server --port 8765``; ``--call-tools``
makes the echo call the first tool a request offers (a tool round trip offline), and
``--script replies.json`` queues replies (a JSON list of :class:`Script` fields: tool
calls, usage with details, several choices, logprobs, refusals, error bodies...).
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import socket
import threading
import time
from collections import deque
from http.server import ThreadingHTTPServer
from typing import Any

from . import anthropic, gemini
from .protocols import ProtocolHandler, ollama_tags
from .script import RecordedRequest, Script, echo_text, echo_tool_call, script_from, split_words

__all__ = ["RecordedRequest", "Script", "ScriptedServer", "split_words"]

LOOPBACK = "127.0.0.1"
#: Where Ollama's native API answers chats.
OLLAMA_CHAT = "/api/chat"
#: Where Anthropic's Messages API answers.
MESSAGES = "/v1/messages"
#: Gemini's methods: ``/v1beta/models/{model}:generateContent`` and the stream.
GEMINI_METHODS = (":generateContent", ":streamGenerateContent")


class _Handler(ProtocolHandler):
    server: _Server
    timeout = 30  # an idle keep-alive connection ends by itself

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.owner.verbose:
            super().log_message(format, *args)

    def setup(self) -> None:
        super().setup()
        # Headers and body go in separate writes: with Nagle's algorithm the body would
        # wait for the client's delayed ACK, ~40 ms per call on a reused connection.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.owner._track(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.owner._untrack(self.connection)

    def do_GET(self) -> None:
        owner = self.server.owner
        owner._record(RecordedRequest("GET", self.path, dict(self.headers.items()), b""))
        script = owner._next_script({}, "GET")
        if script is not None:
            self._answer_get(script)
            return
        path, _, query = self.path.partition("?")
        path = path.rstrip("/")
        if path.endswith("/v1beta/models"):
            from urllib.parse import parse_qs

            fields = parse_qs(query)
            size = int(fields.get("pageSize", ["50"])[0])
            self.send_json(200, gemini.model_page(owner.models, size,
                                                  fields.get("pageToken", [None])[0]))
        elif path.endswith("/models") and "anthropic-version" in self.headers:
            from urllib.parse import parse_qs

            fields = parse_qs(query)
            limit = int(fields.get("limit", ["20"])[0])
            after = fields.get("after_id", [None])[0]
            self.send_json(200, anthropic.model_page(owner.models, limit, after))
        elif path.endswith("/models"):
            self.send_json(200, {"object": "list", "data": [
                {"id": "gpt-3.5-turbo-16k", "object": "model"},
            ]})
        elif path == "/api/tags":
            self.send_json(200, ollama_tags())
        elif path == "":
            # What a server's root answers ("Ollama is running"): the host is up.
            self.send_bytes(200, b"chatplug test server is running", "text/plain")
        else:
            self.send_json(404, {"error": {"message": f"no route {self.path}"}})

    def _answer_get(self, script: Script) -> None:
        """A scripted answer to a probe: its delay, then its body or an error object."""
        if script.delay:
            time.sleep(script.delay)
        if script.body is not None:
            self.send_raw(script)
            return
        payload: dict[str, Any] = {}
        if script.status >= 400:
            payload = {"error": {"message": self.error_text(script.text, script.echo_key)}}
        self.send_json(script.status, payload, script.headers)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        owner = self.server.owner
        owner._record(RecordedRequest("POST", self.path, dict(self.headers.items()), body))
        path = self.path.split("?", 1)[0]
        ollama = path.rstrip("/") == OLLAMA_CHAT
        messages = path.rstrip("/").endswith(MESSAGES)
        if messages:
            self._messages(body)
            return
        if "/models/" in path and path.endswith(GEMINI_METHODS):
            self._generate(path, body)
            return
        if not (ollama or path.endswith("/chat/completions")):
            self.send_json(404, {"error": {"message": f"no route {self.path}",
                                           "type": "invalid_request_error"}})
            return
        if owner.api_key is not None and (
            self.headers.get("Authorization") != f"Bearer {owner.api_key}"
        ):
            self.send_json(401, {"error": "unauthorized"} if ollama else {"error": {
                "message": "Incorrect API key provided.", "type": "invalid_request_error",
                "code": "invalid_api_key"}})
            return
        request, script = self._scripted(body, {"error": {"message": "body is not a JSON object"}})
        if script is None:
            return
        if script.delay:
            time.sleep(script.delay)
        if ollama:
            self.send_ollama(script, request)
        else:
            self.send_openai(script, request)


    def _scripted(self, body: bytes, refusal: dict[str, Any]
                  ) -> tuple[dict[str, Any], Script | None]:
        """The request (a JSON object) and the script that answers it; ``None`` after
        answering ``refusal`` (400) to a body that is not one."""
        try:
            request = json.loads(body)
        except ValueError:
            request = None
        if not isinstance(request, dict):
            self.send_json(400, refusal)
            return {}, None
        return request, self.server.owner._next_script(request, "POST")

    def _messages(self, body: bytes) -> None:
        owner = self.server.owner
        if owner.api_key is not None and self.headers.get("x-api-key") != owner.api_key:
            self.send_json(401, {"type": "error", "error": {
                "type": "authentication_error", "message": "invalid x-api-key"}})
            return
        request, script = self._scripted(body, {"type": "error", "error": {
            "type": "invalid_request_error", "message": "body is not a JSON object"}})
        if script is None:
            return
        if script.delay:
            time.sleep(script.delay)
        self.send_anthropic(script, request)


    def _generate(self, path: str, body: bytes) -> None:
        owner = self.server.owner
        if owner.api_key is not None and self.headers.get("x-goog-api-key") != owner.api_key:
            self.send_json(400, {"error": {
                "code": 400, "message": "API key not valid. Please pass a valid API key.",
                "status": "INVALID_ARGUMENT", "details": [{
                    "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                    "reason": "API_KEY_INVALID", "domain": "googleapis.com"}]}})
            return
        _, script = self._scripted(body, {"error": {
            "code": 400, "message": "body is not JSON", "status": "INVALID_ARGUMENT"}})
        if script is None:
            return
        model, _, method = path.rsplit("/", 1)[-1].partition(":")
        if script.delay:
            time.sleep(script.delay)
        self.send_gemini(script, model, method == "streamGenerateContent")


class _Server(ThreadingHTTPServer):
    # Many clients connect at once in the concurrency tests; the default backlog is 5.
    request_queue_size = 128
    daemon_threads = True
    allow_reuse_address = True
    owner: ScriptedServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hangs up (tests close streams early on purpose) is not an error.
        import sys

        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)


class ScriptedServer:
    """The scripted server.  Use as a context manager, or ``start()``/``stop()``.

    :param port: 0 picks a free port.
    :param lifetime: seconds after which the server stops by itself (None: never).
    :param api_key: when set, requests must carry ``Authorization: Bearer <api_key>``.
    :param pace: seconds between the pieces of the default echo (scripts set their own).
    :param call_tools: the echo answers a request that offers tools, and whose last message
        is the user's, with a call of its first tool (arguments ``{}``), and a tool's
        result with ``The tool said: <result>``: a tool round trip, offline.
    """

    def __init__(
        self,
        port: int = 0,
        *,
        lifetime: float | None = None,
        api_key: str | None = None,
        verbose: bool = False,
        pace: float = 0.0,
        call_tools: bool = False,
    ) -> None:
        self.api_key = api_key
        self.call_tools = call_tools
        #: What ``GET /v1/models`` lists in Anthropic's format.
        self.models: list[str] = ["claude-test-1", "claude-test-2"]
        self.pace = pace
        self.verbose = verbose
        self.requests: list[RecordedRequest] = []
        self._scripts: deque[Script] = deque()
        self._lock = threading.Lock()
        self._connections: set[socket.socket] = set()
        self._httpd = _Server((LOOPBACK, port), _Handler)
        self._httpd.owner = self
        self._thread: threading.Thread | None = None
        self._timer: threading.Timer | None = None
        self._lifetime = lifetime
        self.port: int = self._httpd.server_address[1]
        self.url = f"http://{LOOPBACK}:{self.port}"

    # -- scripting -------------------------------------------------------------------

    def add(self, script: Script | None = None, /, **fields: Any) -> Script:
        """Queue a reply for the next request (``Script`` fields as keywords)."""
        script = script or Script(**fields)
        with self._lock:
            self._scripts.append(script)
        return script

    def _next_script(self, request: dict[str, Any], method: str) -> Script | None:
        """The first queued script for ``method``; else the echo (POST) or ``None`` (GET)."""
        with self._lock:
            for script in self._scripts:
                if script.method.upper() == method:
                    self._scripts.remove(script)
                    return script
        if method != "POST":
            return None
        calls = echo_tool_call(request) if self.call_tools else None
        return Script(text="" if calls else echo_text(request), piece_delay=self.pace,
                      tool_calls=calls)

    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self.requests.append(request)

    def _track(self, connection: socket.socket) -> None:
        with self._lock:
            self._connections.add(connection)

    def _untrack(self, connection: socket.socket) -> None:
        with self._lock:
            self._connections.discard(connection)

    # -- life cycle ------------------------------------------------------------------

    def start(self) -> ScriptedServer:
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
            name=f"chatplug-test-server-{self.port}", daemon=True,
        )
        self._thread.start()
        if self._lifetime is not None:
            self._timer = threading.Timer(self._lifetime, self.stop)
            self._timer.daemon = True
            self._timer.start()
        return self

    def stop(self) -> None:
        """Stop serving and close every open connection."""
        if self._timer is not None and self._timer is not threading.current_thread():
            self._timer.cancel()
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        self._httpd.server_close()

    def __enter__(self) -> ScriptedServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _pace(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 <= value <= 10:
        raise argparse.ArgumentTypeError(f"expected seconds from 0 to 10, got {text!r}")
    return value


def _serve(argv: list[str] | None = None) -> int:
    import sys

    parser = argparse.ArgumentParser(
        prog="python -m chatplug.testing.server",
        description="Serve scripted chat completions on 127.0.0.1 (echoes the last user message).",
    )
    parser.add_argument("--port", type=int, default=8765, help="port (default 8765; 0: any)")
    parser.add_argument("--lifetime", type=float, default=None,
                        help="stop by itself after this many seconds")
    parser.add_argument("--pace", type=_pace, default=0.0, metavar="SECONDS",
                        help="seconds between the pieces of the echo, to watch it stream "
                             "(default 0)")
    parser.add_argument("--call-tools", action="store_true",
                        help="answer a request offering tools with a call of the first one, "
                             "and the tool's result with 'The tool said: ...'")
    parser.add_argument("--script", metavar="FILE",
                        help="a JSON list of replies to give in order (each an object of "
                             "Script fields: text, choices, tool_calls, usage, logprobs, "
                             "refusal, status, error, ...), then the echo")
    parser.add_argument("--verbose", action="store_true", help="log each request")
    args = parser.parse_args(argv)
    scripts: list[Script] = []
    if args.script:
        try:
            with open(args.script, encoding="utf-8") as file:
                entries = json.load(file)
            if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
                raise ValueError("expected a JSON list of objects")
            scripts = [script_from(entry) for entry in entries]
        except (OSError, ValueError, TypeError) as exc:
            print(f"chatplug test server: --script {args.script}: {exc}; give a JSON list "
                  'of reply objects, e.g. [{"text": "Hi", "usage": {...}}].', file=sys.stderr)
            return 2
    try:
        server = ScriptedServer(args.port, lifetime=args.lifetime, verbose=args.verbose,
                                pace=args.pace, call_tools=args.call_tools)
    except OSError as exc:
        reason = ("is in use" if exc.errno == errno.EADDRINUSE
                  else f"cannot be used ({exc.strerror or exc})")
        print(f"chatplug test server: port {args.port} on {LOOPBACK} {reason}; stop what "
              "uses it, or choose another with --port (0: any free port).", file=sys.stderr)
        return 1
    for script in scripts:
        server.add(script)
    print(f"chatplug test server on {server.url} (Ctrl-C stops it)", flush=True)
    server.start()
    try:
        while server._thread is not None and server._thread.is_alive():
            server._thread.join(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(_serve())
