"""Every HTTP request's id (``X-Request-ID``, on its answer and its log lines) and access line."""

from __future__ import annotations

import logging
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from eventflow.logs import IN_MESSAGE, REQUEST_ID, direct_handler, request_id

access_log = logging.getLogger("eventflow.access")

HEADER = b"x-request-id"
# Longer paths are cut in the access line: a client chooses them, and one line stays a line.
_MAX_PATH_CHARS = 256
_IN_MESSAGE = ("method", "path", "status", "duration_ms")


class RequestLog:
    """The outermost layer of the application, around ``DirectIngest`` and the whole app.

    It gives each request an id (the client's ``X-Request-ID`` when sane, else a new one), keeps
    it in ``REQUEST_ID`` for every line logged while the request runs, adds it to the answer,
    and writes one access line when the request ends. It never reads the body, the query
    string or any other header. It runs inside uvicorn's handling of ``X-Forwarded-For``, so
    the client it logs is the one the trusted-proxy rule resolved.
    """

    def __init__(self, app: ASGIApp, *, access: bool = True) -> None:
        self.app = app
        self._access = access

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        sent = None
        for name, value in scope["headers"]:
            if name == HEADER:
                sent = value
                break
        rid = request_id(sent)
        token = REQUEST_ID.set(rid)
        answer = _WithId(send, rid)
        try:
            await self.app(scope, receive, answer)
        finally:
            if self.writes_access_lines():
                # No answer started: the app failed, and the server answers 500.
                access_line(scope, answer.status or 500, started, rid)
            REQUEST_ID.reset(token)

    def writes_access_lines(self) -> bool:
        # Asked per request, not at start-up: the level may be changed while serving.
        return self._access and access_log.isEnabledFor(logging.INFO)


class _WithId:
    """The server's ``send``, adding the request's id to the answer's head and noting its
    status (a slotted object: cheaper per request than a closure over two cells)."""

    __slots__ = ("_header", "_send", "status")

    def __init__(self, send: Send, rid: str) -> None:
        self._send = send
        self._header = (HEADER, rid.encode())
        self.status = 0

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
            message["headers"] = [*message.get("headers", ()), self._header]
        await self._send(message)


def access_line(scope: Scope, status: int, started: float, rid: str) -> None:
    """The access line of a request (``started`` by ``time.perf_counter``)."""
    duration_ms = (time.perf_counter() - started) * 1000
    path: str = scope["path"]
    if len(path) > _MAX_PATH_CHARS:
        path = path[:_MAX_PATH_CHARS] + "…"
    client = scope.get("client")
    method: str = scope["method"]
    # By name, as the fields of a record are written.
    fields = (
        ("client", client[0] if client else None),
        ("duration_ms", round(duration_ms, 2)),
        ("method", method),
        ("path", path),
        ("status", status),
    )
    message = f"{method} {path} {status} {duration_ms:.1f} ms"
    # Written straight to EventFlow's handler when that is where the line would go: the same
    # line for a fraction of a record's cost, once per request.
    handler = direct_handler(access_log, logging.INFO)
    if handler is not None:
        context = (("request_id", rid),)
        handler.write_line(access_log.name, "INFO", message, context, fields, _IN_MESSAGE)
    elif access_log.isEnabledFor(logging.INFO):
        extra = {"request_id": rid, **dict(fields), IN_MESSAGE: _IN_MESSAGE}
        access_log.info(message, extra=extra)
