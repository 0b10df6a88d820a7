"""The gateway on a real socket on 127.0.0.1, served by uvicorn in a thread, for tests.

``with GatewayServer(create_app(registry, settings)) as gateway: gateway.url``.
It stops by itself when the block ends (and after ``lifetime`` at most).
"""

from __future__ import annotations

import socket
import threading
import time
from types import TracebackType
from typing import Any

import uvicorn

from chatplug.server.protocol import protocol_for


class GatewayServer:
    def __init__(self, app: Any, *, lifetime: float = 120.0) -> None:
        # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY only on sockets that say so.
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        # The gateway's own HTTP protocol, with the limits of the app's settings, as
        # `chatplug serve` runs it.
        gateway = getattr(getattr(app, "state", None), "gateway", None)
        http: Any = "auto" if gateway is None else protocol_for(gateway.settings)
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on",
                                timeout_graceful_shutdown=2, http=http)
        self.server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self._sock]},
                                        daemon=True, name=f"gateway-{self.port}")
        self._timer = threading.Timer(lifetime, self.stop)
        self._timer.daemon = True

    def __enter__(self) -> GatewayServer:
        self._thread.start()
        self._timer.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the gateway did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        if threading.current_thread() is not self._thread:
            self._thread.join(10)
        self._sock.close()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._timer.cancel()
        self.stop()
