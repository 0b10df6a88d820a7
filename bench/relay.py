"""The floor of a Python gateway on this machine: ``python -m bench.relay PORT UPSTREAM``.

What any gateway built on uvicorn (httptools, uvloop) and aiohttp pays at least per
non-stream request, with nothing of chatplug: read the request, parse its JSON, post
the messages to the upstream's chat completions on one kept-alive aiohttp session,
parse the reply, answer it as JSON.  No keys, no validation, no log, no ledger, no
error handling.  ``bench.gateway`` runs it beside ``chatplug serve`` in the same run,
so that a figure can be read against what the machine and the load client allow.
"""

from __future__ import annotations

import json
import sys
from typing import Any

PATH = "/api/openai/v1/chat/completions"  # GravityEngine's, as the gateway calls it


def app_for(upstream: str) -> Any:
    import aiohttp

    session: aiohttp.ClientSession | None = None

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        nonlocal session
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    session = aiohttp.ClientSession()
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    if session is not None:
                        await session.close()
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        assert session is not None
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        request = json.loads(body)
        data = json.dumps({"model": "gpt-3.5-turbo", "messages": request["messages"]}).encode()
        async with session.post(upstream + PATH, data=data,
                                headers={"Content-Type": "application/json"}) as response:
            reply = json.loads(await response.read())
        out = json.dumps(reply).encode()
        await send({"type": "http.response.start", "status": 200, "headers": [
            (b"content-type", b"application/json"), (b"content-length", b"%d" % len(out))]})
        await send({"type": "http.response.body", "body": out})

    return app


def main(argv: list[str]) -> int:
    import uvicorn

    port, upstream = int(argv[0]), argv[1]
    uvicorn.run(app_for(upstream), host="127.0.0.1", port=port, access_log=False,
                log_config=None, http="httptools", loop="uvloop")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
