"""Logs: one format (JSON lines or text) in every process, with each line's request or event."""

from __future__ import annotations

import logging
import os
import re
import sys
import time
from contextvars import ContextVar
from typing import Any

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
_FIRST_FIELDS = ("time", "level", "logger", "message", *(name for name, _ in _CONTEXT))
_QUIET = {"alembic.runtime.plugins": logging.WARNING}


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
    millis = int((created - seconds) * 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{millis:03d}Z"


#: An extra naming the fields its message already shows (an access line's): the text format
#: leaves them out. Its leading "_" keeps it out of JSON lines.
IN_MESSAGE = "_in_message"


def _text_fields(record: logging.LogRecord) -> list[tuple[str, Any]]:
    """The record's own fields for a text line: the context first, none its message shows."""
    fields = record.__dict__
    shown = fields.get(IN_MESSAGE, ())
    first = [(name, fields[name]) for name, _ in _CONTEXT if name in fields]
    rest = [
        (name, value)
        for name, value in fields.items()
        if name not in _NOT_FIELDS and name[:1] != "_" and name not in shown
    ]
    return first + [(name, value) for name, value in rest if name not in _CONTEXT_NAMES]


class JsonFormatter(OrjsonFormatter):
    """One JSON object a line: ``time``, ``level``, ``logger``, ``message``, ``pid``, then the
    record's own fields (the request id, the event id and attempt, an access line's fields) and
    ``exc_info`` with a traceback."""

    def __init__(self) -> None:
        super().__init__(
            ["levelname", "name", "message"],
            rename_fields={"levelname": "level", "name": "logger"},
            reserved_attrs=sorted(_NOT_FIELDS),
            static_fields={"pid": os.getpid()},
        )

    def add_fields(
        self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]
    ) -> None:
        log_data["time"] = rfc3339(record.created)
        super().add_fields(log_data, record, message_dict)

    def process_log_record(self, log_data: dict[str, Any]) -> dict[str, Any]:
        # The context next to the message, where a reader looks first.
        front = {name: log_data[name] for name in _FIRST_FIELDS if name in log_data}
        return {**front, **log_data}


class TextFormatter(logging.Formatter):
    """For people: ``time level logger: message key=value …``, a traceback below."""

    def format(self, record: logging.LogRecord) -> str:
        record.message = record.getMessage()
        parts = [rfc3339(record.created), f"{record.levelname:<7}", f"{record.name}:"]
        parts.append(_printable(record.message))
        parts += [f"{name}={_value(str(value))}" for name, value in _text_fields(record)]
        line = " ".join(parts)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line += "\n" + record.exc_text
        if record.stack_info:
            line += "\n" + self.formatStack(record.stack_info)
        return line


def _printable(text: str) -> str:
    """``text``, quoted with its escapes if it holds a line break or another control character
    (a path sent as ``/%0A…`` must not forge a line)."""
    return text if text.isprintable() else orjson.dumps(text).decode()


def _value(text: str) -> str:
    if text and text.isprintable() and " " not in text and '"' not in text:
        return text
    return orjson.dumps(text).decode()


def formatter(log_format: str) -> logging.Formatter:
    return JsonFormatter() if log_format == "json" else TextFormatter()


def configure_logging(settings: Settings) -> None:
    """Every record of this process, uvicorn's included, to stderr in the one format."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter(settings.effective_log_format))
    handler.addFilter(ContextFilter())
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
    # The logging HOWTO's "Optimization": no line shows the caller's source line, thread or
    # process name, so records need not look them up (the access log writes one per request).
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
