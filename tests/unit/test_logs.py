"""Log lines: request ids, the JSON and text formats, and the request id and access line of
every HTTP request."""

from __future__ import annotations

import io
import logging
import re
import sys
from collections.abc import Iterator

import orjson
import pytest
from starlette.types import Message, Receive, Scope, Send

from eventflow.api.request_log import RequestLog
from eventflow.config import Settings
from eventflow.ids import parse_id
from eventflow.logs import (
    ATTEMPT,
    EVENT_ID,
    IN_MESSAGE,
    REQUEST_ID,
    ContextFilter,
    JsonFormatter,
    StderrHandler,
    TextFormatter,
    direct_handler,
    request_id,
)

RFC3339_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


@pytest.mark.parametrize(
    "sent",
    [b"abc", b"01a2365a-3ebf-7144-a0d6-2822cfd552e0", b"Root=1-abc:2/x+y~z_.", b"x" * 128],
)
def test_a_sane_request_id_is_kept(sent: bytes) -> None:
    assert request_id(sent) == sent.decode()


@pytest.mark.parametrize(
    "sent",
    [
        None,
        b"",
        b"x" * 129,
        b"two words",
        b"line\nbreak",
        b"tab\t",
        b'"quoted"',
        b"semi;colon",
        b"<script>",
        "caf\u00e9".encode(),
        b"\xff\xfe",
    ],
)
def test_any_other_request_id_is_replaced_by_a_new_one(sent: bytes | None) -> None:
    made = request_id(sent)
    assert parse_id(made) == made  # a UUIDv7, canonical
    assert request_id(sent) != made


def _record(message: str = "hello %s", *args: object, **extra: object) -> logging.LogRecord:
    record = logging.LogRecord("eventflow.test", logging.WARNING, __file__, 1, message, args, None)
    record.__dict__.update(extra)
    return record


@pytest.fixture
def request_context() -> Iterator[None]:
    token = REQUEST_ID.set("req-1")
    yield
    REQUEST_ID.reset(token)


def test_a_json_line_carries_the_time_level_logger_message_and_context(
    request_context: None,
) -> None:
    record = _record("hello %s", "world", path="/x", color_message="\x1b[1mhello\x1b[0m")
    ContextFilter().filter(record)
    line = orjson.loads(JsonFormatter().format(record))
    assert list(line)[:5] == ["time", "level", "logger", "message", "request_id"]
    assert RFC3339_UTC.fullmatch(line["time"])
    assert line["level"] == "WARNING"
    assert line["logger"] == "eventflow.test"
    assert line["message"] == "hello world"
    assert line["request_id"] == "req-1"
    assert line["path"] == "/x"
    assert isinstance(line["pid"], int)
    # Neither uvicorn's coloured copy of the message nor the standard record attributes.
    assert "color_message" not in line
    assert not {"args", "msg", "levelno", "lineno", "thread"} & line.keys()


def test_the_time_is_utc_to_the_millisecond() -> None:
    record = _record()
    record.created = 1_800_000_000.1239
    assert orjson.loads(JsonFormatter().format(record))["time"] == "2027-01-15T08:00:00.123Z"


def test_a_json_line_holds_its_traceback() -> None:
    try:
        raise ValueError("broken")
    except ValueError:
        record = _record("failed", exc_info=None)
        record.exc_info = sys.exc_info()
    line = JsonFormatter().format(record)
    assert "\n" not in line
    parsed = orjson.loads(line)
    assert parsed["exc_info"].startswith("Traceback (most recent call last)")
    assert "ValueError: broken" in parsed["exc_info"]


def test_an_explicit_request_id_wins_over_the_context(request_context: None) -> None:
    record = _record(request_id="refused-1")
    ContextFilter().filter(record)
    assert record.__dict__["request_id"] == "refused-1"


def test_worker_context_is_added_only_when_set() -> None:
    record = _record()
    ContextFilter().filter(record)
    assert not {"request_id", "event_id", "attempt"} & record.__dict__.keys()
    event, attempt = EVENT_ID.set("ev-1"), ATTEMPT.set(2)
    try:
        record = _record()
        ContextFilter().filter(record)
    finally:
        EVENT_ID.reset(event)
        ATTEMPT.reset(attempt)
    assert orjson.loads(JsonFormatter().format(record))["attempt"] == 2
    assert record.__dict__["event_id"] == "ev-1"


def test_a_text_line_is_one_line_for_people(request_context: None) -> None:
    record = _record("GET %s 200", "/a\nforged", path="/a\nforged", client="127.0.0.1")
    record.__dict__[IN_MESSAGE] = ("path",)
    ContextFilter().filter(record)
    line = TextFormatter().format(record)
    assert "\n" not in line
    assert re.fullmatch(
        r'\S+Z WARNING eventflow\.test: "GET /a\\nforged 200" request_id=req-1 client=127\.0\.0\.1',
        line,
    ), line


def test_the_log_format_follows_the_terminal_unless_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    assert Settings().effective_log_format == "text"
    assert Settings(log_format="JSON").effective_log_format == "json"
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False)
    assert Settings().effective_log_format == "json"
    assert Settings(log_format="text").effective_log_format == "text"


def _standalone(name: str, log_format: str) -> tuple[logging.Logger, StderrHandler, io.StringIO]:
    """A logger outside the process's tree, ending at a ``StderrHandler`` writing to memory."""
    logger = logging.Logger(name, logging.INFO)
    handler = StderrHandler(log_format)
    stream = io.StringIO()
    handler.setStream(stream)
    logger.addHandler(handler)
    return logger, handler, stream


@pytest.mark.parametrize("log_format", ["json", "text"])
def test_a_line_written_directly_is_the_line_a_record_gives(log_format: str) -> None:
    logger, handler, stream = _standalone("eventflow.access", log_format)
    fields = (("client", None), ("path", "/a b"), ("status", 202))
    extra = {"request_id": "req-1", **dict(fields), IN_MESSAGE: ("path",)}
    logger.info("GET /a b 202", extra=extra)
    assert direct_handler(logger, logging.INFO) is handler
    context = (("request_id", "req-1"),)
    handler.write_line(logger.name, "INFO", "GET /a b 202", context, fields, ("path",))
    through_record, direct = stream.getvalue().splitlines()
    if log_format == "json":
        first, second = orjson.loads(through_record), orjson.loads(direct)
        assert RFC3339_UTC.fullmatch(second.pop("time"))
        del first["time"]
        assert list(first.items()) == list(second.items())
        assert list(second)[:5] == ["level", "logger", "message", "request_id", "pid"]
    else:
        assert through_record.split(" ", 1)[1] == direct.split(" ", 1)[1]
        assert "path=" not in direct


def test_lines_go_through_logging_when_anything_else_would_see_them() -> None:
    logger, handler, _ = _standalone("eventflow.access", "json")
    assert direct_handler(logger, logging.DEBUG) is None  # below the logger's level
    handler.setLevel(logging.WARNING)
    assert direct_handler(logger, logging.INFO) is None
    handler.setLevel(logging.NOTSET)
    logger.addHandler(logging.NullHandler())  # a second handler, as a test's capture adds
    assert direct_handler(logger, logging.INFO) is None
    plain, _, _ = _standalone("other", "json")
    plain.addFilter(logging.Filter("nothing"))
    assert direct_handler(plain, logging.INFO) is None


class _Answers:
    """A tiny ASGI app answering ``status``, or failing before any answer."""

    def __init__(self, status: int | None) -> None:
        self.status = status
        self.seen_request_id: str | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.seen_request_id = REQUEST_ID.get()
        if self.status is None:
            raise RuntimeError("no answer")
        await send({"type": "http.response.start", "status": self.status, "headers": []})
        await send({"type": "http.response.body", "body": b""})


async def _call(
    app: RequestLog, *, headers: list[tuple[bytes, bytes]], query: bytes = b""
) -> list[Message]:
    scope = {
        "type": "http",
        "method": "GET",
        "path": "/api/v1/stream",
        "query_string": query,
        "headers": headers,
        "client": ("203.0.113.9", 4321),
    }
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent


async def test_every_answer_carries_the_request_id_its_log_lines_carry(
    caplog: pytest.LogCaptureFixture,
) -> None:
    inner = _Answers(401)
    caplog.set_level(logging.INFO, "eventflow.access")
    sent = await _call(
        RequestLog(inner),
        headers=[(b"authorization", b"Bearer tok-secret"), (b"x-request-id", b"given-1")],
        query=b"ticket=ticket-secret",
    )
    assert (b"x-request-id", b"given-1") in sent[0]["headers"]
    assert inner.seen_request_id == "given-1"
    assert REQUEST_ID.get() is None  # nothing leaks past the request
    [record] = caplog.records
    fields = record.__dict__
    assert fields["method"] == "GET"
    assert fields["path"] == "/api/v1/stream"
    assert fields["status"] == 401
    assert fields["client"] == "203.0.113.9"
    assert fields["duration_ms"] >= 0
    line = JsonFormatter().format(record)
    assert "secret" not in line
    assert "ticket" not in line


async def test_a_made_up_id_is_answered_and_a_failure_logged_as_500(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "eventflow.access")
    sent = await _call(RequestLog(_Answers(204)), headers=[(b"x-request-id", b"bad id")])
    made = dict(sent[0]["headers"])[b"x-request-id"].decode()
    assert parse_id(made) == made
    with pytest.raises(RuntimeError):
        await _call(RequestLog(_Answers(None)), headers=[])
    assert [r.__dict__["status"] for r in caplog.records] == [204, 500]


async def test_the_access_log_can_be_turned_off(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "eventflow.access")
    sent = await _call(RequestLog(_Answers(200), access=False), headers=[])
    assert b"x-request-id" in dict(sent[0]["headers"])
    assert caplog.records == []
