"""The ingest lane: which requests take it, which leave it for the ordinary way, what it answers,
and how the protocol keeps a connection's answers in order around it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest
from fastapi import FastAPI
from starlette.types import Receive, Scope, Send
from uvicorn.server import ServerState

from eventflow.api import fast_ingest
from eventflow.api.ingest_lane import IngestLane, LaneRequest
from eventflow.api.request_log import RequestLog
from eventflow.auth.principal import Principal
from eventflow.auth.principal import Scope as Need
from eventflow.db.rows import Status, StoredEvent
from eventflow.errors import Overloaded, ServiceUnavailable
from eventflow.http_protocol import HttpLimits, LimitedConfig, LimitedHttpProtocol
from eventflow.ingest.validation import ValidEvent
from tests.unit.test_held_writes import LoggedTransport

LIMITS = HttpLimits(request_timeout_s=5, max_headers=20, max_header_bytes=4096, max_connections=9)
EVENT = b'{"type":"ORDER_CREATED"}'
STORED = StoredEvent("01a23b75-d5ee-7091-9a0c-19909a4b38c8", Status.QUEUED, 1764750000000)


class Recorder:
    def __init__(self) -> None:
        self.seen: list[Any] = []
        self.direct = SimpleNamespace(observe=lambda seconds: self.seen.append(202))

    def refused(self, exc: Exception, status: int, seconds: float, *, direct: bool) -> None:
        self.seen.append(status)


class Writer:
    def __init__(self) -> None:
        self.futures: list[asyncio.Future[list[StoredEvent]]] = []
        self.refusal: Exception | None = None

    def enqueue(self, user_id: str, items: list[ValidEvent], key: str | None) -> Any:
        if self.refusal is not None:
            raise self.refusal
        future: asyncio.Future[list[StoredEvent]] = asyncio.get_running_loop().create_future()
        self.futures.append(future)
        return future


class Acceptor:
    limiter = None
    single_body_limit = 1000

    def prepare(self, content_type: str | None, key: str | None, body: bytes, source: Any) -> Any:
        if content_type != "application/json":
            raise ValueError("a 415 of the ordinary way")
        return ValidEvent("ORDER_CREATED", "{}", 0), key


class Credentials:
    def known(self, authorization: str | None, need: Need) -> Principal | None:
        return Principal("u1", Need.USER) if authorization == "Bearer good" else None


def _lane() -> tuple[IngestLane, Writer, Recorder]:
    app = FastAPI()
    writer, recorder = Writer(), Recorder()
    services = SimpleNamespace(acceptor=Acceptor(), credentials=Credentials(), writer=writer)
    app.state.services = services
    app.state.ingest_recorders = {fast_ingest.SINGLE.route: recorder}
    direct = fast_ingest.DirectIngest(app, {"/api/v1/events": fast_ingest.SINGLE})
    lane = IngestLane.of(RequestLog(direct, access=False))
    assert lane is not None
    return lane, writer, recorder


def _request(*extra: str, body: bytes = EVENT, path: str = "/api/v1/events") -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: t", f"Content-Length: {len(body)}", *extra]
    return ("\r\n".join([*lines, "", ""])).encode() + body


def _head(*extra: str) -> list[tuple[bytes, bytes]]:
    fields = ["content-type: application/json", f"content-length: {len(EVENT)}", *extra]
    return [
        (name.encode(), value.strip().encode()) for name, value in (f.split(":", 1) for f in fields)
    ]


async def test_open_takes_only_requests_that_need_nothing_else() -> None:
    lane, _, _ = _lane()
    assert lane.open(b"POST", b"/api/v1/events", _head(), None) is not None
    assert lane.open(b"GET", b"/api/v1/events", _head(), None) is None
    assert lane.open(b"POST", b"/api/v1/events?x=1", _head(), None) is None
    assert lane.open(b"POST", b"/api/v1/events/batch", _head(), None) is None
    for extra in ("origin: https://a.example", "expect: 100-continue", "content-encoding: gzip"):
        assert lane.open(b"POST", b"/api/v1/events", _head(extra), None) is None, extra
    chunked = [(b"transfer-encoding", b"chunked")]
    assert lane.open(b"POST", b"/api/v1/events", chunked, None) is None
    too_long = [(b"content-length", b"1001")]
    assert lane.open(b"POST", b"/api/v1/events", too_long, None) is None


async def test_start_leaves_what_it_cannot_accept_at_once_to_the_ordinary_way() -> None:
    lane, writer, _ = _lane()

    def started(*headers: str) -> bool:
        request = lane.open(b"POST", b"/api/v1/events", _head(*headers), None)
        assert request is not None
        request.body += EVENT
        return lane.start(request, lambda future: None)

    assert started("authorization: Bearer good")
    assert not started("authorization: Bearer unknown")  # not cached, or wrong: looked up there
    assert not started()
    assert not started("authorization: Bearer good", "content-type: text/plain")
    writer.refusal = Overloaded("full", retry_after=1)
    assert not started("authorization: Bearer good")
    assert len(writer.futures) == 1


@pytest.mark.parametrize("keep_alive", [True, False])
async def test_answer_is_the_ordinary_202_with_the_request_id(keep_alive: bool) -> None:
    lane, _, recorder = _lane()
    request = lane.open(b"POST", b"/api/v1/events", _head("x-request-id: r-1"), None)
    assert request is not None
    request.keep_alive = keep_alive
    future: asyncio.Future[list[StoredEvent]] = asyncio.get_running_loop().create_future()
    future.set_result([STORED])
    answer = lane.answer(request, future, [(b"date", b"today")], ("127.0.0.1", 1))
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"HTTP/1.1 202 Accepted"
    assert lines[1] == b"date: today"
    assert b"x-request-id: r-1" in lines and b"cache-control: no-store" in lines
    assert f"content-length: {len(body)}".encode() in lines
    assert (b"connection: close" in lines) is not keep_alive
    assert body.startswith(b'{"id":"01a23b75-d5ee-7091-9a0c-19909a4b38c8","status":"queued"')
    assert recorder.seen == [202]


async def test_answer_of_a_failed_commit_is_the_writers_503() -> None:
    lane, _, recorder = _lane()
    request = lane.open(b"POST", b"/api/v1/events", _head(), None)
    assert request is not None
    future: asyncio.Future[list[StoredEvent]] = asyncio.get_running_loop().create_future()
    future.set_exception(ServiceUnavailable("The database is unreachable", retry_after=1))
    head, _, body = lane.answer(request, future, [], None).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
    assert b"retry-after: 1" in head.split(b"\r\n")
    assert b"application/problem+json" in head and b"unreachable" in body
    assert recorder.seen == [503]


class FakeLane:
    """Takes every POST to /lane, and answers it when the test resolves its future."""

    def __init__(self, accept: bool = True) -> None:
        self.accept = accept
        self.pending: list[tuple[LaneRequest, Callable[[Any], None]]] = []

    def open(self, method: bytes, url: bytes, headers: Any, previous: Any) -> Any:
        return LaneRequest({}, previous) if url == b"/lane" else None

    def start(self, request: LaneRequest, done: Callable[[Any], None]) -> bool:
        if self.accept:
            self.pending.append((request, done))
        return self.accept

    def answer(self, request: LaneRequest, future: Any, headers: Any, client: Any) -> bytes:
        close = b"" if request.keep_alive else b"connection: close\r\n"
        return b"HTTP/1.1 202 Accepted\r\ncontent-length: 4\r\n" + close + b"\r\nlane"

    def commit(self) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        future.set_result(None)
        for _, done in self.pending:
            done(future)
        self.pending.clear()


class App:
    def __init__(self) -> None:
        self.bodies: list[bytes] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        message = await receive()
        self.bodies.append(message.get("body", b""))
        body = b"app:" + scope["path"].encode()
        headers = [(b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def _connect(lane: FakeLane, app: App) -> tuple[LimitedHttpProtocol, list[tuple[str, Any]]]:
    config = LimitedConfig(app, LIMITS, lifespan="off", proxy_headers=False, log_level="warning")
    config.load()
    config.lane = lane  # type: ignore[assignment]
    protocol = LimitedHttpProtocol(config, ServerState(), {})
    log: list[tuple[str, Any]] = []
    protocol.connection_made(LoggedTransport(log, "c"))
    return protocol, log


def _written(log: list[tuple[str, Any]]) -> bytes:
    return b"".join(data for kind, (_, data) in (e for e in log if e[0] == "write"))


async def _rounds(n: int = 5) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


async def test_a_lane_request_is_answered_by_the_lane_and_never_reaches_the_app() -> None:
    lane, app = FakeLane(), App()
    protocol, log = _connect(lane, app)
    protocol.data_received(_request(path="/lane"))
    await _rounds()
    assert len(lane.pending) == 1 and log == []
    lane.commit()
    await _rounds()
    assert _written(log).endswith(b"\r\n\r\nlane") and app.bodies == []
    assert protocol.timeout_keep_alive_task is not None  # kept alive, as after any answer
    assert protocol.server_state.total_requests == 1
    protocol.connection_lost(None)


async def test_a_request_the_lane_cannot_start_reaches_the_app_whole() -> None:
    lane, app = FakeLane(accept=False), App()
    protocol, log = _connect(lane, app)
    request = _request(path="/lane", body=b"x" * 100)
    for start in range(0, len(request), 30):
        protocol.data_received(request[start : start + 30])
    await _rounds()
    assert app.bodies == [b"x" * 100]
    assert _written(log).endswith(b"app:/lane")
    protocol.connection_lost(None)


async def test_a_request_pipelined_behind_a_lane_request_is_answered_after_it() -> None:
    lane, app = FakeLane(), App()
    protocol, log = _connect(lane, app)
    protocol.data_received(_request(path="/lane") + _request(path="/next"))
    await _rounds()
    assert app.bodies == [] and log == []
    lane.commit()
    await _rounds()
    written = _written(log)
    assert written.index(b"lane") < written.index(b"app:/next"), written
    protocol.connection_lost(None)


async def test_connection_close_and_shutdown_end_the_connection_after_the_answer() -> None:
    for ask_close in (True, False):
        lane, app = FakeLane(), App()
        protocol, log = _connect(lane, app)
        protocol.data_received(
            _request(*(["Connection: close"] if ask_close else []), path="/lane")
        )
        await _rounds()
        if not ask_close:
            protocol.shutdown()  # a graceful shutdown waits for the answer
        assert log == []
        lane.commit()
        await _rounds()
        assert [kind for kind, _ in log] == ["write", "close"]
        assert b"connection: close" in _written(log)


async def test_nothing_is_written_for_a_client_gone_before_the_commit() -> None:
    lane, app = FakeLane(), App()
    protocol, log = _connect(lane, app)
    protocol.data_received(_request(path="/lane"))
    await _rounds()
    protocol.connection_lost(None)
    lane.commit()
    await _rounds()
    assert [kind for kind, _ in log] == ["close"]


async def test_a_kept_alive_connection_holds_no_earlier_lane_request() -> None:
    lane, app = FakeLane(), App()
    protocol, log = _connect(lane, app)
    for _ in range(3):
        protocol.data_received(_request(path="/lane"))
        await _rounds()
        lane.commit()
        await _rounds()
    assert _written(log).count(b"lane") == 3
    # Each answered request stays the connection's cycle until the next one: it must not keep
    # the one before it alive (memory that would grow with every request on the connection).
    assert isinstance(protocol.cycle, LaneRequest) and protocol.cycle.previous is None
    protocol.connection_lost(None)
