"""``POST /api/v1/events`` answered by the HTTP protocol itself: the ingest lane.

The ordinary way of a request is uvicorn's ASGI cycle (a scope, a task, ``receive`` and two
``send`` messages, each header checked) and then ``RequestLog``, ``DirectIngest`` and the lean
handler. For the one request that matters most for throughput, one event from a server, that
machinery costs more CPU than the work it carries: on a 2-vCPU KVM guest about as much as
uvicorn's whole answer to a request. The lane takes such a request from the protocol's parser
callbacks, accepts it with the same code (``Authenticator.known``, ``Acceptor.prepare``,
``GroupCommitWriter.enqueue``), and writes the answer when the group commits: the same status,
headers, body, request id, access line and metrics as the ordinary way would.

Only a request that needs nothing else takes the lane: a POST to exactly the path, framed by
Content-Length (no chunked body, ``Expect``, ``Content-Encoding``, ``Origin`` or ``Upgrade``),
its credentials already verified by this process, no per-account ingest limit, and no earlier
request of the connection still unanswered. Whatever the lane cannot accept at once (a 4xx to
give, credentials to look up, the writer refusing) goes the ordinary way from where it is, and
the same validation gives the same answer there. docs/architecture.md says more.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from http import HTTPStatus
from time import perf_counter
from typing import Any

from starlette.responses import Response

from eventflow.api.fast_ingest import SINGLE, Answer, DirectIngest
from eventflow.api.ingest_metrics import RouteRecorder
from eventflow.api.request_log import RequestLog, access_line
from eventflow.auth.principal import Scope as Need
from eventflow.auth.principal import event_source
from eventflow.db.rows import StoredEvent
from eventflow.ingest.accept import accepted
from eventflow.logs import request_id
from eventflow.services import Services

Headers = Sequence[tuple[bytes, bytes]]

# The request headers the lane reads; a request with any of the others below goes the
# ordinary way, which knows what to do with them.
_READ = frozenset(
    {b"authorization", b"content-type", b"content-length", b"idempotency-key", b"x-request-id"}
)
_ORDINARY = frozenset({b"origin", b"expect", b"transfer-encoding", b"content-encoding", b"upgrade"})
_STATUS_LINES = {s.value: b"HTTP/1.1 %d %s\r\n" % (s.value, s.phrase.encode()) for s in HTTPStatus}


class _NoEvent:
    """uvicorn sets its cycle's ``message_event`` on a disconnect; nothing waits on a lane's."""

    __slots__ = ()

    def set(self) -> None:
        pass


class LaneRequest:
    """A request on the lane. Until it is answered it stands for the connection's ASGI cycle in
    uvicorn's state (the attributes uvicorn and the protocol read of one), so that uvicorn
    queues a pipelined request behind it and a shutdown asks it to close the connection."""

    __slots__ = (
        "body",
        "disconnected",
        "headers",
        "keep_alive",
        "previous",
        "response_complete",
        "response_started",
        "started",
    )
    message_event = _NoEvent()

    def __init__(self, headers: dict[bytes, bytes], previous: Any) -> None:
        self.headers = headers
        #: Set by the protocol once the lane takes the request; a shutdown clears it.
        self.keep_alive = True
        #: The connection's cycle before this request (None or answered): restored if the
        #: request leaves the lane for the ordinary way.
        self.previous = previous
        self.body = bytearray()
        self.response_started = self.response_complete = self.disconnected = False
        self.started = perf_counter()


class IngestLane:
    """The lane of one app: ``open`` a request at its head, ``start`` it at its end, and
    ``answer`` it once its future is done."""

    def __init__(self, log: RequestLog, direct: DirectIngest, path: str) -> None:
        self._log = log
        self._app = direct.app
        self._path = path
        self._url = path.encode()
        # The app's services and the route's recorder, read from its state once they are there
        # (its lifespan puts them there after the lane is built).
        self._services: Services | None = None
        self._recorder: RouteRecorder | None = None

    @classmethod
    def of(cls, app: object) -> IngestLane | None:
        """The lane of the app that the server loaded, if it is EventFlow's own (not wrapped by
        uvicorn's proxy-headers or trace layers, whose work the lane would skip)."""
        if isinstance(app, RequestLog) and isinstance(app.app, DirectIngest):
            for path, handler in app.app.handlers.items():
                if handler is SINGLE:
                    return cls(app, app.app, path)
        return None

    def open(
        self, method: bytes, url: bytes, headers: Headers, previous: Any
    ) -> LaneRequest | None:
        """A lane request for a head that may take the lane, else None."""
        if url != self._url or method != b"POST":
            return None
        services = self._services
        if services is None:
            services = self._services = getattr(self._app.state, "services", None)
            if services is None:
                return None  # not started yet
            self._recorder = self._app.state.ingest_recorders[SINGLE.route]
        if services.acceptor.limiter is not None:
            return None
        read: dict[bytes, bytes] = {}
        for name, value in headers:
            if name in _READ:
                read[name] = value
            elif name in _ORDINARY:
                return None
        length = read.get(b"content-length")
        if length is None or not length.isdigit():
            return None
        if int(length) > services.acceptor.single_body_limit:
            return None
        return LaneRequest(read, previous)

    def start(
        self, request: LaneRequest, done: Callable[[asyncio.Future[list[StoredEvent]]], None]
    ) -> bool:
        """Hand the request's event to the writer, ``done`` called once committed; False if
        the lane cannot accept it at once (the ordinary way then answers it)."""
        services = self._services
        assert services is not None  # open() found them
        headers = request.headers
        principal = services.credentials.known(_text(headers.get(b"authorization")), Need.INGEST)
        if principal is None:
            return False
        try:
            event, key = services.acceptor.prepare(
                _text(headers.get(b"content-type")),
                _text(headers.get(b"idempotency-key")),
                bytes(request.body),
                event_source(principal),
            )
            future = services.writer.enqueue(principal.user_id, [event], key)
        except Exception:
            return False
        future.add_done_callback(done)
        return True

    def answer(
        self,
        request: LaneRequest,
        future: asyncio.Future[list[StoredEvent]],
        default_headers: Headers,
        client: tuple[str, int] | None,
    ) -> bytes:
        """The whole answer to ``request``: 202, or the writer's refusal; its metrics and
        access line are written as the ordinary way writes them."""
        recorder = self._recorder
        assert recorder is not None  # open() found it
        response: Response
        try:
            (stored,) = future.result()
        except Exception as exc:
            response = SINGLE.refuse(exc)
            seconds = perf_counter() - request.started
            recorder.refused(exc, response.status_code, seconds, direct=True)
        else:
            response = Answer(accepted(stored), SINGLE.status)
            recorder.direct.observe(perf_counter() - request.started)
        rid = request_id(request.headers.get(b"x-request-id"))
        if self._log.writes_access_lines():
            scope = {"method": "POST", "path": self._path, "client": client}
            access_line(scope, response.status_code, request.started, rid)
        return raw_answer(response, default_headers, rid, close=not request.keep_alive)


def raw_answer(
    response: Response, default_headers: Headers, rid: str, *extra: bytes, close: bool
) -> bytes:
    """``response`` as the bytes of an HTTP/1.1 answer, written as uvicorn writes one: the
    server's default headers, the response's, any ``extra`` header lines, its request id, and
    ``connection: close`` if the connection ends with it. The protocol's own refusals are
    written with it too."""
    head = [_STATUS_LINES[response.status_code]]
    head += [name + b": " + value + b"\r\n" for name, value in default_headers]
    head += [name + b": " + value + b"\r\n" for name, value in response.raw_headers]
    head += [*extra, b"x-request-id: " + rid.encode() + b"\r\n"]
    if close:
        head.append(b"connection: close\r\n")
    head += [b"\r\n", bytes(response.body)]
    return b"".join(head)


def _text(value: bytes | None) -> str | None:
    # As the ordinary way reads them (fast_ingest.request_headers).
    return None if value is None else value.decode("latin-1")
