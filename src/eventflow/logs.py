"""Logs: one format (JSON lines or text) in every process, with each line's request or event."""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import re
import sys
import time
from collections.abc import Collection, Iterable
from contextvars import ContextVar
from typing import Any, TextIO

import orjson
from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.orjson import OrjsonFormatter

from eventflow.config import Settings
from eventflow.ids import new_id

#: The HTTP request being answered: its ``X-Request-ID``.
REQUEST_ID: ContextVar[str | None] = ContextVar("request_id", default=None)
#: The event a worker's handler is running, and which attempt this is.
EVENT_ID: ContextVar[str | None] = ContextVar("event_id", default=None)
ATTEMPT: ContextVar[int | None] = ContextVar("attempt", default=None)
_CONTEXT = (("request_id", REQUEST_ID), ("event_id", EVENT_ID), ("attempt", ATTEMPT))
_CONTEXT_NAMES = frozenset(name for name, _ in _CONTEXT)

MAX_REQUEST_ID_LENGTH = 128
# What a request id sent by a client (or its proxy) may hold: the characters of UUIDs, hex and
# base64 ids and of most tracing headers, nothing that could break a text line or a shell.
_SANE_REQUEST_ID = re.compile(rb"[A-Za-z0-9._~+/=:-]{1,%d}" % MAX_REQUEST_ID_LENGTH)

#: Record attributes that are not fields of a line: the standard ones (``taskName`` since
#: Python 3.12), and the coloured copy of its message that uvicorn attaches.
_NOT_FIELDS = frozenset({*RESERVED_ATTRS, "taskName", "color_message"})
_QUIET = {"alembic.runtime.plugins": logging.WARNING}
#: A process's start and stop notices ("worker running"), written whatever the log level: process
#: managers and the test harness wait for them.
LIFECYCLE = "eventflow.lifecycle"


def request_id(sent: bytes | None) -> str:
    """The id of a request: the one its ``X-Request-ID`` header sent when that is sane (1 to 128
    letters, digits or ``-._~+/=:``), else a new UUIDv7."""
    if sent is not None and _SANE_REQUEST_ID.fullmatch(sent) is not None:
        return sent.decode("ascii")
    return new_id()


class ContextFilter(logging.Filter):
    """Adds the request id, or the event id and attempt, of the code that logs to its record.

    On the handler, not on a logger: a logger's filters see only its own records, not those
    its children (a handler module's logger, uvicorn's) pass up to the root.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        fields = record.__dict__
        for name, var in _CONTEXT:
            value = var.get()
            # A value given with ``extra=`` wins: the HTTP protocol names a request it refuses.
            if value is not None and name not in fields:
                fields[name] = value
        return True


def rfc3339(created: float) -> str:
    """``created`` (seconds since the epoch) as RFC 3339 in UTC, to the millisecond."""
    seconds = int(created)
    return f"{_utc_second(seconds)}.{int((created - seconds) * 1000):03d}Z"


@functools.lru_cache(maxsize=4)
def _utc_second(seconds: int) -> str:
    # Lines come many a second (an access line per request): each second is written once.
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))


#: An extra naming the fields its message already shows (an access line's): the text format
#: leaves them out. Its leading "_" keeps it out of JSON lines.
IN_MESSAGE = "_in_message"


Fields = Iterable[tuple[str, Any]]


def _record_fields(record: logging.LogRecord) -> tuple[Fields, Fields]:
    """What a record carries beyond the standard attributes: its context (in ``_CONTEXT``'s
    order), and its other fields by name."""
    fields = record.__dict__
    # By set difference: a record has some 25 attributes and few fields of its own.
    own = fields.keys() - _NOT_FIELDS
    context = [(name, fields[name]) for name, _ in _CONTEXT if name in own]
    rest = [(name, fields[name]) for name in sorted(own - _CONTEXT_NAMES) if name[:1] != "_"]
    return context, rest


class JsonFormatter(OrjsonFormatter):
    """One JSON object a line: ``time``, ``level``, ``logger``, ``message``, the context
    (``request_id``, or ``event_id`` and ``attempt``), ``pid``, then the record's other fields
    and ``exc_info`` with a traceback.

    The library formats the message, the traceback and any value JSON cannot hold, and encodes
    with orjson; the fields are chosen here, more cheaply than its general rules would (the
    access log writes a line per request).
    """

    def __init__(self) -> None:
        super().__init__()
        self._pid = os.getpid()

    def add_fields(
        self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]
    ) -> None:
        context, rest = _record_fields(record)
        log_data.update(
            self._data(record.created, record.levelname, record.name, record.message, context, rest)
        )
        log_data.update(message_dict)

    def line(
        self, created: float, level: str, logger: str, message: str, context: Fields, rest: Fields
    ) -> str:
        """The line of a record with these attributes and fields, without making the record."""
        return self.jsonify_log_record(self._data(created, level, logger, message, context, rest))

    def _data(
        self, created: float, level: str, logger: str, message: str, context: Fields, rest: Fields
    ) -> dict[str, Any]:
        data: dict[str, Any] = {"time": rfc3339(created), "level": level, "logger": logger}
        data["message"] = message
        data.update(context)
        data["pid"] = self._pid
        data.update(rest)
        return data


class TextFormatter(logging.Formatter):
    """For people: ``time level logger: message key=value …``, a traceback below."""

    def format(self, record: logging.LogRecord) -> str:
        record.message = record.getMessage()
        context, rest = _record_fields(record)
        shown = record.__dict__.get(IN_MESSAGE, ())
        text = self.line(
            record.created, record.levelname, record.name, record.message, context, rest, shown
        )
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            text += "\n" + record.exc_text
        if record.stack_info:
            text += "\n" + self.formatStack(record.stack_info)
        return text

    def line(
        self,
        created: float,
        level: str,
        logger: str,
        message: str,
        context: Fields,
        rest: Fields,
        shown: Collection[str] = (),
    ) -> str:
        """The line of a record with these attributes and fields, leaving out ``shown``."""
        parts = [rfc3339(created), f"{level:<7}", f"{logger}:", _printable(message)]
        parts += [f"{name}={_value(str(value))}" for name, value in context]
        parts += [f"{name}={_value(str(value))}" for name, value in rest if name not in shown]
        return " ".join(parts)


def _printable(text: str) -> str:
    """``text``, quoted with its escapes if it holds a line break or another control character
    (a path sent as ``/%0A…`` must not forge a line)."""
    return text if text.isprintable() else orjson.dumps(text).decode()


def _value(text: str) -> str:
    if text and text.isprintable() and " " not in text and '"' not in text:
        return text
    return orjson.dumps(text).decode()


class StderrHandler(logging.StreamHandler[TextIO]):
    """The one handler of a process: every record to stderr, in the one format."""

    def __init__(self, log_format: str) -> None:
        super().__init__(sys.stderr)
        self.line_format: JsonFormatter | TextFormatter = (
            JsonFormatter() if log_format == "json" else TextFormatter()
        )
        self.setFormatter(self.line_format)
        self.addFilter(ContextFilter())

    def write_line(
        self,
        logger: str,
        level: str,
        message: str,
        context: Fields,
        rest: Fields,
        shown: Collection[str] = (),
    ) -> None:
        """The line a record of ``logger`` would give, written without making the record: for
        the access log, whose line per request would otherwise cost more than the rest of an
        ingest request. ``rest`` comes in name order, as a record's fields are written."""
        line_format = self.line_format
        if isinstance(line_format, JsonFormatter):
            text = line_format.line(time.time(), level, logger, message, context, rest)
        else:
            text = line_format.line(time.time(), level, logger, message, context, rest, shown)
        # As a handler's emit: a log that cannot be written (stderr closed) fails no request.
        with contextlib.suppress(OSError, ValueError), self.lock:  # type: ignore[union-attr]
            self.stream.write(text + self.terminator)
            self.stream.flush()


def direct_handler(logger: logging.Logger, level: int) -> StderrHandler | None:
    """The ``StderrHandler`` where ``logger``'s records at ``level`` end, when it is the only
    handler they reach and nothing on the way filters them: a line can then be written
    straight to it. None otherwise (logging configured elsewhere, a test capturing records)."""
    if not logger.isEnabledFor(level):
        return None
    found: StderrHandler | None = None
    current: logging.Logger | None = logger
    while current is not None:
        if current.filters:
            return None
        for handler in current.handlers:
            if found is not None or not isinstance(handler, StderrHandler):
                return None
            found = handler
        if not current.propagate:
            break
        current = current.parent
    return found if found is not None and level >= found.level else None


def configure_logging(settings: Settings) -> None:
    """Every record of this process, uvicorn's included, to stderr in the one format."""
    handler = StderrHandler(settings.effective_log_format)
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(settings.log_level.upper())
    # uvicorn is given no logging configuration of its own (serve.py): its loggers pass their
    # records up to this handler. Its access log stays off; EventFlow writes its own.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.asgi"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    for name, level in _QUIET.items():
        logging.getLogger(name).setLevel(level)
    logging.getLogger(LIFECYCLE).setLevel(logging.INFO)
    # The logging HOWTO's "Optimization": no line shows the caller's source line, thread or
    # process name, so records need not look them up (the access log writes one per request).
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
