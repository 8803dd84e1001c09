"""Reading request bodies with a size limit, before any parsing, and validating them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from fastapi import Request
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails
from starlette.types import Message, Receive

from eventflow.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType, ValidationFailed

_Model = TypeVar("_Model", bound=BaseModel)

# The rest of an oversized body is never read: the connection closes after the 413.
_CLOSE = {"Connection": "close"}


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
    receive: Receive, content_length: str | None, limit: int, *, content_encoding: str | None
) -> bytes:
    """The raw body; 415 when compressed, 413 as soon as it is known to exceed ``limit`` bytes,
    400 when empty."""
    if content_encoding is not None and content_encoding.strip().lower() not in ("", "identity"):
        raise UnsupportedMediaType(
            f"Content-Encoding {content_encoding.strip()[:40]} is not supported; "
            "send the body uncompressed",
            headers={"Accept-Encoding": "identity"},
        )
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
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    body = b"".join(chunks)
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
