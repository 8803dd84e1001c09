"""Writes held to the end of the event loop's round: one send per response, a group's answers
back to back, nothing lost on close and nothing written after the peer is gone."""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.types import Receive, Scope, Send
from uvicorn.server import ServerState

from eventflow.held_writes import HeldWrites
from eventflow.http_protocol import HttpLimits, LimitedConfig, LimitedHttpProtocol

LIMITS = HttpLimits(request_timeout_s=5, max_headers=20, max_header_bytes=4096, max_connections=9)


class LoggedTransport(asyncio.Transport):
    """Each write and close, in order, in a log that the application writes to as well."""

    def __init__(self, log: list[tuple[str, Any]], name: str) -> None:
        super().__init__()
        self.log = log
        self.name = name
        self.closing = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.log.append(("write", (self.name, bytes(data))))

    def close(self) -> None:
        self.log.append(("close", self.name))
        self.closing = True

    def write_eof(self) -> None:
        self.log.append(("eof", self.name))

    def can_write_eof(self) -> bool:
        return True

    def is_closing(self) -> bool:
        return self.closing

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 40000), "sockname": ("127.0.0.1", 3000)}.get(
            name, default
        )


class GroupApp:
    """Every request waits for one shared commit, then answers 202 as the ingest route does."""

    def __init__(self, log: list[tuple[str, Any]]) -> None:
        self.log = log
        self.commit: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        await self.commit
        body = b'{"status":"queued"}'
        headers = [(b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 202, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        self.log.append(("answered", scope["client"]))


def _connect(app: Any, log: list[tuple[str, Any]], name: str) -> LimitedHttpProtocol:
    config = LimitedConfig(app, LIMITS, lifespan="off", proxy_headers=False, log_level="warning")
    protocol = LimitedHttpProtocol(config, ServerState(), {})
    protocol.connection_made(LoggedTransport(log, name))
    return protocol


def _request(*extra: str) -> bytes:
    return "\r\n".join(
        ["POST /x HTTP/1.1", "Host: t", "Content-Length: 2", *extra, "", "{}"]
    ).encode()


async def _rounds(n: int = 5) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


async def test_head_and_body_of_a_response_leave_in_one_write() -> None:
    log: list[tuple[str, Any]] = []
    app = GroupApp(log)
    protocol = _connect(app, log, "a")
    protocol.data_received(_request())
    await _rounds()
    app.commit.set_result(None)
    await _rounds()
    writes = [data for kind, data in log if kind == "write"]
    assert len(writes) == 1, writes
    head, _, body = writes[0][1].partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 202 ")
    assert body == b'{"status":"queued"}'
    protocol.connection_lost(None)


async def test_a_groups_answers_leave_back_to_back_after_all_of_them_ran() -> None:
    log: list[tuple[str, Any]] = []
    app = GroupApp(log)
    protocols = [_connect(app, log, f"c{n}") for n in range(8)]
    for protocol in protocols:
        protocol.data_received(_request())
    await _rounds()
    assert not log
    app.commit.set_result(None)
    await _rounds()
    kinds = [kind for kind, _ in log]
    # Every request answered in the round the commit woke them, and only then the 8 sends.
    assert kinds == ["answered"] * 8 + ["write"] * 8, kinds
    assert sorted(data[0] for kind, data in log if kind == "write") == [f"c{n}" for n in range(8)]
    for protocol in protocols:
        protocol.connection_lost(None)


async def test_what_is_held_is_written_before_the_connection_closes() -> None:
    log: list[tuple[str, Any]] = []
    app = GroupApp(log)
    app.commit.set_result(None)
    protocol = _connect(app, log, "a")
    protocol.data_received(_request("Connection: close"))
    await _rounds()
    kinds = [kind for kind, _ in log]
    # Closed as the body is sent (uvicorn ends a "close" response there): the close sends the
    # whole response first.
    assert kinds == ["write", "close", "answered"], kinds
    assert log[0][1][1].endswith(b'\r\n\r\n{"status":"queued"}')
    protocol.connection_lost(None)


async def test_a_refusal_is_written_before_the_end_of_writing() -> None:
    log: list[tuple[str, Any]] = []
    protocol = _connect(GroupApp(log), log, "a")
    protocol.data_received(_request(*(f"X-F{n}: v" for n in range(21))))
    kinds = [kind for kind, _ in log]
    assert kinds == ["write", "eof"], kinds
    assert log[0][1][1].startswith(b"HTTP/1.1 431 ")
    protocol.connection_lost(None)


async def test_nothing_is_written_once_the_peer_is_gone() -> None:
    log: list[tuple[str, Any]] = []
    transport = LoggedTransport(log, "a")
    held = HeldWrites(transport, asyncio.get_running_loop())
    held.write(b"head")
    held.write(b"body")
    assert held.get_write_buffer_size() == 8
    transport.closing = True  # the connection was lost before the round ended
    await _rounds()
    assert log == []
    held.write(b"more")
    held.close()
    assert log == [("close", "a")]
