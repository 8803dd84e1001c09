"""Reading request bodies with a size limit, before any parsing (gzip inflated within that
limit), and validating them."""

from __future__ import annotations

import zlib
from collections.abc import Callable, Collection
from typing import Any, TypeVar

from fastapi import Request
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails
from starlette.types import Message, Receive

from eventflow.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType, ValidationFailed

_Model = TypeVar("_Model", bound=BaseModel)

# The rest of an oversized body is never read: the connection closes after the 413.
_CLOSE = {"Connection": "close"}
_IDENTITY = ("", "identity")
GZIP = "gzip"
# zlib's wbits for a gzip header and trailer (not raw deflate, not zlib's own format).
_GZIP_WBITS = 16 + zlib.MAX_WBITS


async def read_body(request: Request, limit: int) -> bytes:
    """The raw body of a FastAPI route's request (see ``read_limited``)."""
    headers = request.headers
    return await read_limited(
        request.receive,
        headers.get("content-length"),
        limit,
        content_encoding=headers.get("content-encoding"),
    )


async def read_limited(
    receive: Receive,
    content_length: str | None,
    limit: int,
    *,
    content_encoding: str | None,
    encodings: Collection[str] = (),
) -> bytes:
    """The raw body (inflated when its ``Content-Encoding`` is one of ``encodings``, only gzip
    is known); 415 for any other encoding, 413 as soon as the body, as sent or inflated, is
    known to exceed ``limit`` bytes, 400 when empty or not valid gzip."""
    inflater = _decoder(content_encoding, encodings, limit)
    if content_length is not None:
        if not content_length.isdigit():
            raise BadRequest("Content-Length is not a number")
        if int(content_length) > limit:
            raise PayloadTooLarge(
                f"The body is {content_length} bytes; the limit is {limit}", headers=_CLOSE
            )
    chunks: list[bytes] = []
    size = 0
    while True:
        message: Message = await receive()
        if message["type"] == "http.disconnect":
            raise BadRequest("The client disconnected before sending the whole body")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"The body exceeds the limit of {limit} bytes", headers=_CLOSE)
        if inflater is None:
            chunks.append(chunk)
        else:
            # Inflated as it arrives: a bomb is refused at its first chunk past the limit,
            # holding no more than the limit in memory.
            inflater.feed(chunk)
        if not message.get("more_body", False):
            break
    body = b"".join(chunks) if inflater is None else inflater.finish()
    if not body:
        raise BadRequest("The request body is empty; send a JSON object")
    return body


def error_item(error: ErrorDetails) -> dict[str, Any]:
    """One invalid part of a body, as a problem's ``errors`` lists it."""
    return {"loc": list(error["loc"]), "msg": error["msg"], "type": error["type"]}


def validated(
    model: type[_Model],
    data: dict[str, Any],
    describe: Callable[[ErrorDetails], dict[str, Any]] = error_item,
) -> _Model:
    """``data`` as ``model``; a 422 naming each invalid part (``describe`` words them)."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = [describe(e) for e in exc.errors()]
        first = errors[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        raise ValidationFailed(f"{where}: {first['msg']}", errors=errors) from exc


def _decoder(
    content_encoding: str | None, encodings: Collection[str], limit: int
) -> BoundedInflater | None:
    if content_encoding is None:
        return None
    name = content_encoding.strip().lower()
    if name in _IDENTITY:
        return None
    if name == GZIP and GZIP in encodings:
        return BoundedInflater(limit)
    accepted = ", ".join((*encodings, "identity"))
    how = "gzip or uncompressed" if GZIP in encodings else "uncompressed"
    raise UnsupportedMediaType(
        f"Content-Encoding {content_encoding.strip()[:40]} is not supported; send the body {how}",
        headers={"Accept-Encoding": accepted},
    )


class BoundedInflater:
    """Inflates a gzip stream fed in pieces, and never holds more than ``limit`` + 1 bytes of
    output: each step may produce only what is left of the limit, plus the one byte that
    proves the stream goes past it (413)."""

    __slots__ = ("_inflate", "_limit", "_size", "chunks")

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._size = 0
        self._inflate = zlib.decompressobj(_GZIP_WBITS)
        self.chunks: list[bytes] = []

    @property
    def size(self) -> int:
        """Bytes inflated so far."""
        return self._size

    def feed(self, data: bytes) -> None:
        while data:
            if self._inflate.eof:
                # RFC 1952 allows several members one after the other: each is inflated in turn.
                self._inflate = zlib.decompressobj(_GZIP_WBITS)
            try:
                # max_length is never 0 here (0 would mean "no limit" to zlib).
                out = self._inflate.decompress(data, self._limit - self._size + 1)
            except zlib.error as exc:
                raise BadRequest(f"The body is not a valid gzip stream ({exc})") from exc
            self._size += len(out)
            if self._size > self._limit:
                raise PayloadTooLarge(
                    f"The body inflates to more than the limit of {self._limit} bytes",
                    headers=_CLOSE,
                )
            self.chunks.append(out)
            data = self._inflate.unconsumed_tail or (
                self._inflate.unused_data if self._inflate.eof else b""
            )

    def finish(self) -> bytes:
        """The whole inflated body; 400 if the stream stopped before its end."""
        if not self._inflate.eof:
            raise BadRequest("The gzip stream ends before its end marker; send it whole")
        return b"".join(self.chunks)
