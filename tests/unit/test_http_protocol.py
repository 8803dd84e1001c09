"""The limited HTTP protocol on an in-memory transport, and the parts of uvicorn it relies on."""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
from collections.abc import Callable
from typing import Any

from starlette.types import Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from eventflow.http_protocol import HttpLimits, LimitedConfig, LimitedHttpProtocol

LIMITS = HttpLimits(
    request_timeout_s=0.05, max_headers=20, max_header_bytes=4096, max_connections=100
)
# Far above the deadlines above; reached only when the protocol does not act.
SETTLE_S = 0.3


class MemoryTransport(asyncio.Transport):
    """What the server writes, and whether it closed; no socket."""

    def __init__(self) -> None:
        super().__init__()
        self.written = bytearray()
        self.closed = False
        self.eof = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written += data

    def write_eof(self) -> None:
        self.eof = True

    def can_write_eof(self) -> bool:
        return True

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 40000), "sockname": ("127.0.0.1", 3000)}.get(
            name, default
        )

    @property
    def status(self) -> int | None:
        return int(self.written.split()[1]) if self.written else None


class EchoApp:
    """Reads the whole body and answers its length; or answers 401 at once (``early``)."""

    def __init__(self, *, early: bool = False) -> None:
        self.early = early
        self.calls = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.calls += 1
        size = 0
        while not self.early:
            message = await receive()
            size += len(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = str(size).encode()
        status = 401 if self.early else 200
        headers = [(b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def _connect(
    app: EchoApp, limits: HttpLimits = LIMITS, server: ServerState | None = None, **config: Any
) -> tuple[LimitedHttpProtocol, MemoryTransport]:
    settings = {"lifespan": "off", "proxy_headers": False, "log_level": "warning", **config}
    config_ = LimitedConfig(app, limits, **settings)
    protocol = LimitedHttpProtocol(config_, server or ServerState(), {})
    transport = MemoryTransport()
    protocol.connection_made(transport)
    return protocol, transport


def _request(body: bytes = b"", fields: int = 0, field_bytes: int = 0) -> bytes:
    lines = ["POST /x HTTP/1.1", "Host: t", f"Content-Length: {len(body)}"]
    lines += [f"X-F{n}: v" for n in range(fields)]
    if field_bytes:
        lines.append("X-Big: " + "b" * field_bytes)
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def _settle() -> None:
    await asyncio.sleep(SETTLE_S)


def _params(function: Callable[..., Any]) -> list[str]:
    return list(inspect.signature(function).parameters)


def test_uvicorn_still_has_what_the_protocol_relies_on() -> None:
    # If this fails after a uvicorn upgrade, review eventflow/http_protocol.py against
    # uvicorn's httptools_impl.py before widening the version pin.
    callbacks = {
        "__init__": ["self", "config", "server_state", "app_state", "_loop"],
        "connection_made": ["self", "transport"],
        "connection_lost": ["self", "exc"],
        "data_received": ["self", "data"],
        "on_headers_complete": ["self"],
        "on_body": ["self", "body"],
        "on_message_complete": ["self"],
        "timeout_keep_alive_handler": ["self"],
    }
    for name, params in callbacks.items():
        assert _params(getattr(HttpToolsProtocol, name)) == params, name


async def test_uvicorn_state_is_where_the_protocol_reads_it() -> None:
    protocol, transport = _connect(EchoApp())
    protocol.data_received(_request(b"{}"))
    await _settle()
    assert transport.status == 200
    cycle = protocol.cycle
    assert cycle.response_started and cycle.response_complete and not cycle.disconnected
    assert isinstance(cycle.message_event, asyncio.Event)
    assert not protocol.pipeline and protocol.flow.read_paused is False
    assert protocol in protocol.connections
    assert protocol.headers == [(b"host", b"t"), (b"content-length", b"2")]
    assert isinstance(protocol.timeout_keep_alive_task, asyncio.TimerHandle)
    assert isinstance(protocol.timeout_keep_alive, int)
    assert isinstance(protocol.server_state.default_headers, list)
    protocol.connection_lost(None)


async def test_request_in_pieces_reaches_the_application() -> None:
    app = EchoApp()
    protocol, transport = _connect(app)
    data = _request(b"x" * 10)
    for start in range(0, len(data), 7):
        protocol.data_received(data[start : start + 7])
    await _settle()
    assert transport.status == 200
    assert transport.written.endswith(b"10")
    assert not transport.closed  # keep-alive, and no deadline after the request completed
    protocol.connection_lost(None)


async def test_large_body_read_with_the_head_is_not_counted_as_head() -> None:
    protocol, transport = _connect(EchoApp())
    protocol.data_received(_request(b"x" * 100_000))
    await _settle()
    assert transport.status == 200
    protocol.connection_lost(None)


async def test_too_many_header_fields_get_431_without_the_application() -> None:
    app = EchoApp()
    protocol, transport = _connect(app)
    protocol.data_received(_request(b"{}", fields=LIMITS.max_headers + 1))
    await _settle()
    assert transport.status == 431
    assert b"connection: close" in transport.written and transport.eof
    assert app.calls == 0
    written = len(transport.written)
    protocol.data_received(_request(b"{}"))  # dropped while the connection lingers
    await _settle()
    assert len(transport.written) == written
    protocol.connection_lost(None)


async def test_head_is_refused_before_it_is_complete() -> None:
    app = EchoApp()
    protocol, transport = _connect(app)
    head = _request(field_bytes=LIMITS.max_header_bytes * 4)
    for start in range(0, LIMITS.max_header_bytes + 1024, 512):
        protocol.data_received(head[start : start + 512])
    assert transport.status == 431
    assert app.calls == 0
    protocol.connection_lost(None)


async def test_incomplete_request_gets_408_after_the_deadline() -> None:
    protocol, transport = _connect(EchoApp())
    protocol.data_received(_request(b"{}")[:20])
    await _settle()
    assert transport.status == 408
    assert b'"status":408' in transport.written
    protocol.connection_lost(None)


async def test_incomplete_body_gets_408_and_the_application_sees_a_disconnect() -> None:
    app = EchoApp()
    protocol, transport = _connect(app)
    protocol.data_received(_request(b"0123456789")[:-5])
    await _settle()
    assert transport.status == 408
    assert app.calls == 1
    assert protocol.cycle.disconnected
    assert transport.written.count(b"HTTP/1.1") == 1  # the application wrote nothing after it
    protocol.connection_lost(None)


async def test_connection_that_sends_nothing_is_closed_without_an_answer() -> None:
    protocol, transport = _connect(EchoApp())
    await _settle()
    assert transport.closed and not transport.written
    protocol.connection_lost(None)


async def test_connection_beyond_the_limit_gets_503_with_retry_after() -> None:
    app, server = EchoApp(), ServerState()
    limits = dataclasses.replace(LIMITS, max_connections=1)
    first, first_transport = _connect(app, limits, server)
    extra, extra_transport = _connect(app, limits, server)
    extra.data_received(_request(b"{}"))
    first.data_received(_request(b"{}"))  # the connection within the limit is served
    await _settle()
    assert extra_transport.status == 503
    assert b"retry-after: 1\r\n" in extra_transport.written
    assert b"application/problem+json" in extra_transport.written
    assert first_transport.status == 200
    assert app.calls == 1
    extra.connection_lost(None)
    first.connection_lost(None)


async def test_early_answer_still_ends_in_the_keep_alive_timeout() -> None:
    protocol, transport = _connect(EchoApp(early=True), timeout_keep_alive=0.05)
    data = _request(b"0123456789")
    protocol.data_received(data[:-10])
    await asyncio.sleep(0.01)
    assert transport.status == 401
    protocol.data_received(data[-10:])  # the rest of the body, after the answer
    await _settle()
    assert transport.closed
    protocol.connection_lost(None)
