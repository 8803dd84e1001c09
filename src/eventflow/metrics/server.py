"""``eventflow worker``'s metrics port (``EVENTFLOW_METRICS_PORT``): ``GET /metrics`` answered on
the worker's own event loop by a minimal HTTP/1.1 server, one request per connection.

A thread (prometheus-client's ``start_http_server``) would read the lean recorders while the
event loop writes them; here a scrape runs between two steps of the loop like any other task.
"""

from __future__ import annotations

import asyncio
import logging

from eventflow.errors import ConfigurationError
from eventflow.metrics.exposition import CONTENT_TYPE, Scrape

log = logging.getLogger(__name__)

_HEAD_LIMIT = 16 * 1024
_READ_TIMEOUT_S = 5.0
_PATH = b"/metrics"


async def serve_metrics(scrape: Scrape, host: str, port: int) -> asyncio.Server:
    """Listen on ``host:port`` until the returned server is closed."""

    async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(_READ_TIMEOUT_S):
                head = await reader.readuntil(b"\r\n\r\n")
            writer.write(await _answer(scrape, head))
            await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, OSError):
            pass  # a client that sends too much, too slowly or nothing: closed unanswered
        finally:
            writer.close()

    try:
        return await asyncio.start_server(connection, host, port, limit=_HEAD_LIMIT)
    except OSError as exc:
        raise ConfigurationError(
            f"EVENTFLOW_METRICS_PORT={port}: cannot listen on {host}:{port} ({exc.strerror})"
        ) from exc


async def _answer(scrape: Scrape, head: bytes) -> bytes:
    request_line, *lines = head.decode("latin-1").split("\r\n")
    method, _, rest = request_line.partition(" ")
    target = rest.partition(" ")[0].partition("?")[0]
    if target.encode() != _PATH:
        return _response(404, b"not found\n")
    if method != "GET":
        return _response(405, b"only GET\n", ("Allow", "GET"))
    authorization = None
    for line in lines:
        name, _, value = line.partition(":")
        if name.strip().lower() == "authorization":
            authorization = value.strip()
    if not scrape.authorized(authorization):
        return _response(401, b"a bearer token is required\n", ("WWW-Authenticate", "Bearer"))
    try:
        body = await scrape.render()
    except Exception:
        log.exception("rendering the metrics failed")
        return _response(500, b"internal error\n")
    return _response(200, body, content_type=CONTENT_TYPE)


def _response(
    status: int,
    body: bytes,
    *header: tuple[str, str],
    content_type: str = "text/plain; charset=utf-8",
) -> bytes:
    reasons = {200: "OK", 401: "Unauthorized", 404: "Not Found", 405: "Method Not Allowed"}
    lines = [
        f"HTTP/1.1 {status} {reasons.get(status, 'Internal Server Error')}",
        f"Content-Type: {content_type}",
        f"Content-Length: {len(body)}",
        "Connection: close",
        "Cache-Control: no-store",
        "X-Content-Type-Options: nosniff",
        *(f"{name}: {value}" for name, value in header),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
