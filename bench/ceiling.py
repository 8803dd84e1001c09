"""The ceiling: a raw ASGI app that answers 202 and does nothing, served like EventFlow's API.

Run as ``python -m bench.ceiling PORT``. It reads the whole body and answers with a
body shaped like EventFlow's, so every other figure reads as a fraction of what uvicorn, the
event loop and the load generator can do on this machine with no work at all.
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import uvicorn

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_BODY = (
    b'{"id":"01890a5d-ac96-774b-bcce-b302099a8057","status":"queued",'
    b'"created_at":"2024-01-01T00:00:00.000+00:00"}'
)
_START = {
    "type": "http.response.start",
    "status": 202,
    "headers": [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(_BODY))],
}
_RESPONSE = {"type": "http.response.body", "body": _BODY}


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    await send(_START)
    await send(_RESPONSE)


def main() -> None:
    port = int(sys.argv[1])
    # The same server settings as `eventflow up` (cli._serve): uvloop, httptools, no access log.
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        access_log=False,
        log_level="warning",
    )
    uvicorn.Server(config).run()


if __name__ == "__main__":
    main()
