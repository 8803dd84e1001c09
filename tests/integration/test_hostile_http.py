"""Hostile HTTP clients against a real ``eventflow up``: slow, oversized, compressed, floods."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import os
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import orjson
import pytest

from testkit import EventflowProcess

pytestmark = pytest.mark.slow

REQUEST_TIMEOUT_S = 1.0
MAX_CONNECTIONS = 20
EVENTS = "/api/v1/events"
EVENT = b'{"type": "ORDER_CREATED", "payload": {"n": 1}}'
PROBLEM_JSON = "application/problem+json"
# Far above what the server needs to act; reached only when it does not.
PATIENCE_S = 6.0


@dataclass(frozen=True, slots=True)
class Server:
    proc: EventflowProcess
    token: str

    @property
    def port(self) -> int:
        return self.proc.port

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    workdir = tmp_path_factory.mktemp("hostile")
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("EVENTFLOW_") or name.startswith("EVENTFLOW_TEST_")
    }
    env.update(
        {
            "EVENTFLOW_DATA_DIR": str(workdir / "data"),
            "EVENTFLOW_REQUEST_TIMEOUT_MS": str(int(REQUEST_TIMEOUT_S * 1000)),
            "EVENTFLOW_MAX_CONNECTIONS": str(MAX_CONNECTIONS),
            "EVENTFLOW_LOG_LEVEL": "info",
        }
    )
    proc = EventflowProcess("up", env, workdir / "up.log")
    proc.start()
    try:
        proc.wait_ready()
        account = {"email": "hostile@example.com", "password": "12345678"}
        with httpx.Client(base_url=proc.url, timeout=5) as client:
            assert client.post("/api/v1/auth/register", json=account).status_code == 201
            token = client.post("/api/v1/auth/login", json=account).json()["access_token"]
        yield Server(proc, token)
    finally:
        proc.kill()


@contextlib.asynccontextmanager
async def _connection(
    port: int,
) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        yield reader, writer
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def _answer(reader: asyncio.StreamReader, within: float = PATIENCE_S) -> Answer | None:
    """The next response on the connection; None when the server closed it without one."""
    try:
        return await asyncio.wait_for(_read_answer(reader), within)
    except (asyncio.IncompleteReadError, ConnectionResetError):
        return None


async def _read_answer(reader: asyncio.StreamReader) -> Answer | None:
    status_line = await reader.readline()
    if not status_line:
        return None
    headers: dict[str, str] = {}
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return Answer(int(status_line.split()[1]), headers, body)


async def _closed(reader: asyncio.StreamReader, within: float = PATIENCE_S) -> bool:
    """Whether the server closes the connection (EOF or reset) within ``within`` seconds."""
    try:
        while await asyncio.wait_for(reader.read(65536), within):
            pass
    except TimeoutError:
        return False
    except ConnectionResetError:
        pass
    return True


def _assert_problem(answer: Answer | None, status: int) -> dict[str, object]:
    assert answer is not None, f"no {status}: the connection closed without a response"
    assert answer.status == status, answer
    assert answer.headers["content-type"] == PROBLEM_JSON
    problem: dict[str, object] = orjson.loads(answer.body)
    assert problem["status"] == status
    assert {"type", "title", "status", "detail"} <= problem.keys()
    return problem


async def _send_until_refused(writer: asyncio.StreamWriter, limit: int, chunk: bytes) -> int:
    """Write ``chunk`` repeatedly up to ``limit`` bytes; answers how many bytes went out
    before the server stopped reading (``limit`` if it never did)."""
    sent = 0
    try:
        while sent < limit:
            writer.write(chunk)
            await writer.drain()
            sent += len(chunk)
    except (ConnectionResetError, BrokenPipeError):
        pass
    return sent


async def _trickle(writer: asyncio.StreamWriter, data: bytes, every: float = 0.2) -> None:
    with contextlib.suppress(ConnectionResetError, BrokenPipeError):
        for byte in data:
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(every)


async def _post_event(server: Server) -> tuple[int, float]:
    async with httpx.AsyncClient(timeout=PATIENCE_S) as client:
        started = time.monotonic()
        response = await client.post(
            f"{server.proc.url}{EVENTS}",
            content=EVENT,
            headers={**server.auth, "Content-Type": "application/json"},
        )
        return response.status_code, time.monotonic() - started


def _head(server: Server, *lines: str, path: str = EVENTS) -> bytes:
    fields = [f"POST {path} HTTP/1.1", "Host: eventflow", f"Authorization: Bearer {server.token}"]
    return ("\r\n".join([*fields, *lines]) + "\r\n\r\n").encode()


@pytest.mark.parametrize("count", [150, 10_000])
async def test_too_many_header_fields_get_431_and_a_close(server: Server, count: int) -> None:
    # 150 short fields stay under the byte limit, so only their number is at fault.
    fields = "".join(f"X-Field-{n}: {n}\r\n" for n in range(count))
    async with _connection(server.port) as (reader, writer):
        writer.write(f"GET /health HTTP/1.1\r\nHost: eventflow\r\n{fields}\r\n".encode())
        problem = _assert_problem(await _answer(reader), 431)
        assert "head" in str(problem["detail"])
        assert await _closed(reader)


async def test_oversized_head_gets_431_and_is_not_buffered(server: Server) -> None:
    before = _rss(server.proc.pid)
    async with _connection(server.port) as (reader, writer):
        writer.write(b"GET /health HTTP/1.1\r\nHost: eventflow\r\nX-Huge: ")
        # One header value of up to 96 MiB: a server that buffered it would grow by as much.
        sending = asyncio.create_task(_send_until_refused(writer, 96 << 20, b"a" * 65536))
        problem = _assert_problem(await _answer(reader), 431)
        assert "bytes" in str(problem["detail"])
        await asyncio.wait_for(sending, PATIENCE_S)
        grown = _rss(server.proc.pid) - before
        assert grown < 32 << 20, f"the server grew by {grown >> 20} MiB"
        assert await _closed(reader)


def _rss(pid: int) -> int:
    """Resident memory of a process, in bytes."""
    resident_pages = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
    return resident_pages * os.sysconf("SC_PAGE_SIZE")


async def test_trickled_head_is_cut_off_while_others_are_served(server: Server) -> None:
    async with _connection(server.port) as (reader, writer):
        started = time.monotonic()
        trickle = asyncio.create_task(_trickle(writer, _head(server, "X-Slow: " + "s" * 100)))
        await asyncio.sleep(0.3)
        status, elapsed = await _post_event(server)
        assert status == 202
        assert elapsed < 2.0, f"a normal request took {elapsed:.2f} s beside a slow client"
        _assert_problem(await _answer(reader), 408)
        assert REQUEST_TIMEOUT_S * 0.8 < time.monotonic() - started < PATIENCE_S
        assert await _closed(reader)
        trickle.cancel()


async def test_trickled_body_is_cut_off(server: Server) -> None:
    async with _connection(server.port) as (reader, writer):
        started = time.monotonic()
        writer.write(_head(server, "Content-Type: application/json", "Content-Length: 100"))
        trickle = asyncio.create_task(_trickle(writer, b" " * 100))
        _assert_problem(await _answer(reader), 408)
        assert REQUEST_TIMEOUT_S * 0.8 < time.monotonic() - started < PATIENCE_S
        assert await _closed(reader)
        trickle.cancel()


async def test_idle_connection_is_closed(server: Server) -> None:
    async with _connection(server.port) as (reader, _):
        started = time.monotonic()
        assert await reader.read(100) == b""  # closed, and with no response to a non-request
        assert REQUEST_TIMEOUT_S * 0.8 < time.monotonic() - started < PATIENCE_S


async def test_deadline_is_per_request_on_a_keep_alive_connection(server: Server) -> None:
    async with _connection(server.port) as (reader, writer):
        for pause in (REQUEST_TIMEOUT_S * 1.5, 0):
            writer.write(
                _head(server, "Content-Type: application/json", f"Content-Length: {len(EVENT)}")
            )
            writer.write(EVENT)
            answer = await _answer(reader)
            assert answer is not None and answer.status == 202, answer
            # Longer than a request may take, shorter than uvicorn's keep-alive (5 s).
            await asyncio.sleep(pause)


def test_declared_oversized_body_gets_413_and_is_not_read(server: Server) -> None:
    declared = 256 << 20
    head = _head(server, "Content-Type: application/json", f"Content-Length: {declared}")
    answer, answered_after, sent = _upload(server.port, head, b" " * 65536, declared)
    _assert_problem(answer, 413)
    assert answer is not None and answer.headers.get("connection") == "close"
    assert answered_after < 2.0
    assert sent < declared, "the server read the whole oversized body"


def test_chunked_oversized_body_gets_413_and_is_not_read(server: Server) -> None:
    limit = 256 << 20
    head = _head(server, "Content-Type: application/json", "Transfer-Encoding: chunked")
    chunk = b"%x\r\n%s\r\n" % (65536, b" " * 65536)
    answer, answered_after, sent = _upload(server.port, head, chunk, limit)
    _assert_problem(answer, 413)
    assert answered_after < 2.0
    assert sent < limit, "the server read the whole oversized chunked body"


def _upload(port: int, head: bytes, chunk: bytes, limit: int) -> tuple[Answer | None, float, int]:
    """Send ``head``, then ``chunk`` again and again up to ``limit`` bytes while reading the
    answer, as a blocking client does; answers the response, the seconds until its first
    byte, and the bytes sent before the server stopped reading (``limit`` if it never did)."""
    sent = 0

    def send() -> None:
        nonlocal sent
        with contextlib.suppress(OSError):  # reset or broken pipe: the server stopped reading
            while sent < limit:
                sock.sendall(chunk)
                sent += len(chunk)

    with socket.create_connection(("127.0.0.1", port), timeout=PATIENCE_S) as sock:
        sock.sendall(head)
        started = time.monotonic()
        sender = threading.Thread(target=send)
        sender.start()
        received = b""
        answered_after = PATIENCE_S
        # Linux hands out what arrived before a reset, so the answer is read even then.
        with contextlib.suppress(OSError):
            while data := sock.recv(65536):
                if not received:
                    answered_after = time.monotonic() - started
                received += data
        sender.join()
    return _parse(received), answered_after, sent


def _parse(raw: bytes) -> Answer | None:
    head, separator, body = raw.partition(b"\r\n\r\n")
    if not separator:
        return None
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return Answer(int(status_line.split()[1]), headers, body)


@pytest.mark.parametrize(
    "body",
    [b'{"type": "ORDER_CREATED", "payload": {"x": "\xff\xfe"}}', b'{"type": "ORDER\xc3\x28"}'],
)
async def test_invalid_utf8_body_gets_400_problem(server: Server, body: bytes) -> None:
    async with httpx.AsyncClient(base_url=server.proc.url, timeout=5) as client:
        response = await client.post(
            EVENTS, content=body, headers={**server.auth, "Content-Type": "application/json"}
        )
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == PROBLEM_JSON


@pytest.mark.parametrize(
    ("path", "extra"),
    [
        (EVENTS, {}),
        ("/api/v1/events/batch", {}),
        (EVENTS, {"Origin": "http://browser.example"}),  # through the app, beneath CORS
        ("/api/v1/auth/register", {}),  # a FastAPI route
    ],
)
async def test_compressed_body_gets_415(server: Server, path: str, extra: dict[str, str]) -> None:
    plain = EVENT if "events" in path else b'{"email": "z@example.com", "password": "12345678"}'
    if path.endswith("batch"):
        plain = b'{"events": [' + EVENT + b"]}"
    async with httpx.AsyncClient(base_url=server.proc.url, timeout=5) as client:
        response = await client.post(
            path,
            content=gzip.compress(plain),
            headers={
                **server.auth,
                **extra,
                "Content-Type": "application/json",
                "Content-Encoding": "gzip",
            },
        )
    assert response.status_code == 415, response.text
    assert response.headers["content-type"] == PROBLEM_JSON
    assert "gzip" in response.json()["detail"]
    assert response.headers["accept-encoding"] == "identity"


async def test_connection_flood_gets_503_then_recovers(server: Server) -> None:
    # Connections from earlier tests are gone once the server notices their close.
    await asyncio.sleep(0.5)
    statuses: list[int] = []
    async with contextlib.AsyncExitStack() as stack:
        for _ in range(MAX_CONNECTIONS + 10):
            reader, writer = await stack.enter_async_context(_connection(server.port))
            writer.write(b"GET /health HTTP/1.1\r\nHost: eventflow\r\n\r\n")
            answer = await _answer(reader)
            assert answer is not None
            statuses.append(answer.status)
            if answer.status == 503:
                _assert_problem(answer, 503)
                assert answer.headers["retry-after"] == "1"
                assert answer.headers["connection"] == "close"
                assert await _closed(reader)
        # The answered connections are kept open (keep-alive) until here.
        assert statuses.count(200) >= MAX_CONNECTIONS // 2, statuses
        assert statuses.count(503) >= 5, statuses
    # Once the server has seen the flood's connections close, it serves new ones again.
    statuses.clear()
    for _ in range(20):
        statuses.append((await _post_event(server))[0])
        if statuses[-1] == 202:
            break
        await asyncio.sleep(0.1)
    assert statuses[-1] == 202, statuses


def test_server_log_has_no_traceback(server: Server) -> None:
    log = server.proc.log_path.read_text(errors="replace")
    assert "Traceback" not in log, log[-4000:]
    assert server.proc.alive
