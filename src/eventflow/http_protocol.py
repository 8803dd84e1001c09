"""uvicorn's httptools protocol with a request deadline, header and connection limits."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from functools import partial
from typing import Any

import uvicorn
from starlette.types import ASGIApp
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from eventflow.api.ingest_lane import IngestLane, LaneRequest, raw_answer
from eventflow.api.problems import problem_response
from eventflow.api.request_log import HEADER as REQUEST_ID_HEADER
from eventflow.config import Settings
from eventflow.held_writes import HeldWrites
from eventflow.logs import request_id

log = logging.getLogger(__name__)

# Where a connection is in its current request. A request's deadline runs from its first byte
# (from the opening of the connection, for the first request) until its body is complete. One
# timer per connection enforces it lazily: arming and cancelling a timer per request would cost
# more (about 2.5 µs with uvloop) than all the rest of this protocol's work.
_HEAD = 0  # the request line and headers, if any yet
_BODY = 1  # the head is complete and the application runs; the body may still arrive
_REFUSED = 2  # answered by the protocol itself; input is dropped until the connection closes
_FULL = 3  # opened beyond the connection limit: its first request gets 503

# Closing a socket with unread input makes the kernel send RST, which can destroy a response
# before the client has read it: after a refusal, writing is shut down and input dropped for
# this long before the connection closes.
_LINGER_S = 2.0


@dataclass(frozen=True, slots=True)
class HttpLimits:
    """What a client may take before the server answers in the application's place."""

    request_timeout_s: float
    max_headers: int
    max_header_bytes: int
    #: A connection opened while this many are open gets 503. uvicorn's ``limit_concurrency``
    #: would check on every request instead, and answer in plain text.
    max_connections: int

    @classmethod
    def from_settings(cls, settings: Settings) -> HttpLimits:
        return cls(
            settings.request_timeout_ms / 1000,
            settings.max_headers,
            settings.max_header_bytes,
            settings.max_connections,
        )


class LimitedConfig(uvicorn.Config):
    """uvicorn's configuration, serving ``LimitedHttpProtocol`` under ``limits``: uvicorn builds
    each connection's protocol from its configuration, which it also pickles to its workers."""

    def __init__(self, app: ASGIApp | str, limits: HttpLimits, **kwargs: Any) -> None:
        super().__init__(app, http=LimitedHttpProtocol, **kwargs)
        self.limits = limits
        self.lane: IngestLane | None = None

    def load(self) -> None:
        super().load()
        self.lane = IngestLane.of(self.loaded_app)


class LimitedHttpProtocol(HttpToolsProtocol):
    """One HTTP/1.1 connection as uvicorn serves it, under ``LimitedConfig.limits``.

    Relies on uvicorn's parser callbacks and on ``headers``, ``cycle`` (``response_started``,
    ``response_complete``, ``disconnected``, ``message_event``), ``pipeline``, ``flow``,
    ``connections`` and the keep-alive timer; tests/unit/test_http_protocol.py checks them.
    """

    # Slots, not the instance dict: uvicorn's protocol has nearly 30 attributes, and past 30 an
    # instance dict stops sharing its keys, which slows every attribute access, uvicorn's too.
    __slots__ = (
        "_deadline",
        "_head_bytes",
        "_lane",
        "_lane_request",
        "_limits",
        "_linger",
        "_started",
        "_state",
    )

    def __init__(
        self,
        config: uvicorn.Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        if not isinstance(config, LimitedConfig):
            raise TypeError("LimitedHttpProtocol is served with a LimitedConfig")
        self._limits = config.limits
        self._lane = config.lane
        # The request on the ingest lane whose body is being read (api/ingest_lane.py).
        self._lane_request: LaneRequest | None = None
        self._state = _HEAD
        self._head_bytes = 0  # received while the current head was incomplete
        self._started: float | None = None  # when the current request began
        self._deadline: asyncio.TimerHandle | None = None
        self._linger: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        # Every write of the connection, uvicorn's and the refusals below, leaves at the end of
        # the event loop's round (held_writes.py): one send per response.
        super().connection_made(HeldWrites(transport, self.loop))
        if len(self.connections) > self._limits.max_connections:
            self._state = _FULL
        self._begin()

    def connection_lost(self, exc: Exception | None) -> None:
        for timer in (self._deadline, self._linger):
            if timer is not None:
                timer.cancel()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        state = self._state
        if state != _BODY:
            if state == _REFUSED:
                return
            if self._started is None:  # the first bytes of a request on a kept-alive connection
                self._begin()
            # Counted before the parser sees them: httptools buffers a header until it is
            # complete, so a limit checked in its callbacks would come too late.
            size = self._head_bytes + len(data)
            if size > self._limits.max_header_bytes and not self._head_ends_within(data):
                self._refuse_head(f"The request head exceeds {self._limits.max_header_bytes} bytes")
                return
            self._head_bytes = size
        HttpToolsProtocol.data_received(self, data)

    def _begin(self) -> None:
        self._started = self.loop.time()
        if self._deadline is None:
            self._deadline = self.loop.call_later(self._limits.request_timeout_s, self._on_deadline)

    def _head_ends_within(self, data: bytes) -> bool:
        """Whether the head ends in ``data`` within the limit, the rest of ``data`` being body."""
        # The blank line ending the head may be split between two reads: "\r\n\r" + "\n".
        end = 0 if data[:1] == b"\n" else data.find(b"\n\r\n")
        return end != -1 and self._head_bytes + end < self._limits.max_header_bytes

    def on_headers_complete(self) -> None:
        if self._state != _HEAD or len(self.headers) > self._limits.max_headers:
            self._refuse_request()
            return
        self._state = _BODY
        self._head_bytes = 0
        if self._started is None:  # pipelined: it began in the read that ended the last one
            self._begin()
        lane = self._lane
        cycle = self.cycle
        if lane is not None and not self.pipeline and (cycle is None or cycle.response_complete):
            parser = self.parser
            request = lane.open(parser.get_method(), self.url, self.headers, cycle)
            if request is not None:
                # As uvicorn decides it for its cycle.
                request.keep_alive = (
                    parser.get_http_version() != "1.0" and parser.should_keep_alive()
                )
                self._lane_request = self.cycle = request  # type: ignore[assignment]
                return
        HttpToolsProtocol.on_headers_complete(self)

    def on_body(self, body: bytes) -> None:
        if self._state == _BODY:
            if self._lane_request is not None:
                self._lane_request.body += body
            else:
                HttpToolsProtocol.on_body(self, body)

    def on_message_complete(self) -> None:
        if self._state == _REFUSED:
            return
        self._state = _HEAD
        self._head_bytes = 0
        self._started = None
        request = self._lane_request
        if request is not None:
            self._lane_request = None
            assert self._lane is not None
            if self._lane.start(request, partial(self._answer_lane, request)):
                # Only a request leaving the lane needs it; kept, each request would hold the
                # one before it for as long as the connection lives.
                request.previous = None
                return
            # Not for the lane after all: the ordinary way takes the request from here.
            self.cycle = request.previous
            HttpToolsProtocol.on_headers_complete(self)
            if request.body:
                HttpToolsProtocol.on_body(self, bytes(request.body))
        HttpToolsProtocol.on_message_complete(self)
        # uvicorn arms its keep-alive timer when a response completes and disarms it on input:
        # after an early answer (a 401 before the body was read) nothing would arm it again.
        cycle = self.cycle
        if cycle is not None and cycle.response_complete and self.timeout_keep_alive_task is None:
            self.timeout_keep_alive_task = self.loop.call_later(
                self.timeout_keep_alive, self.timeout_keep_alive_handler
            )

    def _answer_lane(self, request: LaneRequest, future: asyncio.Future[Any]) -> None:
        assert self._lane is not None
        answer = self._lane.answer(request, future, self.server_state.default_headers, self.client)
        request.response_started = request.response_complete = True
        if self.transport.is_closing():
            return  # the client is gone
        self.transport.write(answer)
        if not request.keep_alive:
            self.transport.close()
        # As uvicorn's cycle ends: count it, start a pipelined request or arm the keep-alive.
        self.on_response_complete()

    def _on_deadline(self) -> None:
        self._deadline = None
        if self._started is None or self.transport.is_closing():
            return  # no request in progress: the next one arms the timer again
        if self.flow.read_paused:
            # uvicorn stopped reading (a pipelined request waits, or the application has not
            # taken the body yet): the server is the slow side, so the client gets more time.
            self._started = self.loop.time()
        remaining = self._started + self._limits.request_timeout_s - self.loop.time()
        if remaining > 0:
            self._deadline = self.loop.call_later(remaining, self._on_deadline)
            return
        cycle = self.cycle
        if self._state == _BODY:
            answerable = not cycle.response_started and not self.pipeline
        else:
            # Not one byte yet: a 408 could be taken for the answer to a request being sent
            # at this very moment, so the connection just closes.
            answerable = self._head_bytes > 0 and (cycle is None or cycle.response_complete)
        if not answerable:
            self.transport.close()
            return
        ms = round(self._limits.request_timeout_s * 1000)
        detail = f"The request was not complete within {ms} ms"
        sent_id = self._sent_request_id() if self._state == _BODY else None
        self._refuse(
            408, "Request timeout", detail, "request-timeout", sent_id=sent_id, level=logging.INFO
        )

    def _refuse_request(self) -> None:
        """Answer a complete head that the application must not see."""
        sent_id = self._sent_request_id()
        if self._state == _FULL:
            limit = self._limits.max_connections
            detail = f"The server is at its connection limit ({limit}); retry shortly"
            retry = b"retry-after: 1\r\n"
            self._refuse(503, "Service unavailable", detail, "unavailable", retry, sent_id=sent_id)
        elif self._state == _HEAD:
            detail = f"The request has more than {self._limits.max_headers} header fields"
            self._refuse_head(detail, sent_id)
        # Else it was pipelined behind a refused request, and the connection is closing.

    def _refuse_head(self, detail: str, sent_id: bytes | None = None) -> None:
        title = "Request header fields too large"
        self._refuse(431, title, detail, "headers-too-large", sent_id=sent_id)

    def _refuse(
        self,
        status: int,
        title: str,
        detail: str,
        slug: str,
        *extra: bytes,
        sent_id: bytes | None = None,
        level: int = logging.WARNING,
    ) -> None:
        """Answer with a problem and close, whatever else the request holds.

        The answer carries a request id as the application's do (``sent_id``, the request's
        ``X-Request-ID`` if its head was read, when sane), and so does the line logged.
        """
        rid = request_id(sent_id)
        log.log(
            level, "%s: %s; answering %d", self._peer, detail, status, extra={"request_id": rid}
        )
        if self._state == _BODY:
            # The application may be reading the body: it now sees the client gone, as after
            # connection_lost, so it writes nothing after this response.
            self.cycle.disconnected = True
            self.cycle.message_event.set()
        self._state = _REFUSED
        if self._deadline is not None:
            self._deadline.cancel()
        transport = self.transport
        if transport.is_closing():
            return
        problem = problem_response(status, title, detail, slug=slug)
        default_headers = self.server_state.default_headers
        transport.write(raw_answer(problem, default_headers, rid, *extra, close=True))
        if not transport.can_write_eof():
            transport.close()
            return
        transport.write_eof()
        self.flow.resume_reading()
        self._linger = self.loop.call_later(_LINGER_S, transport.close)

    def _sent_request_id(self) -> bytes | None:
        """The current request's ``X-Request-ID``, once its head is complete."""
        # uvicorn collects the request's headers, their names lower-cased.
        for name, value in self.headers:
            if name == REQUEST_ID_HEADER:
                return value
        return None

    @property
    def _peer(self) -> str:
        return f"{self.client[0]}:{self.client[1]}" if self.client else "a client"
