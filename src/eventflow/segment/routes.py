"""The Segment-compatible routes (``POST /v1/batch``, ``/v1/track``…), served like ingest.

They are the hot path of every team that sends with a Segment or RudderStack library, so they
take the same lean path as ``POST /api/v1/events/batch`` (``api/fast_ingest.py``): real FastAPI
routes for the OpenAPI document, answered by a ``LeanHandler`` that reads the raw body, and
reached by ``DirectIngest`` ahead of the app's middleware.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Body, Security
from fastapi.security import HTTPBasic, HTTPBasicCredentials, OAuth2PasswordBearer
from pydantic import BaseModel
from starlette.responses import Response
from starlette.types import Receive

from eventflow.api import problems
from eventflow.api.body import GZIP, read_limited
from eventflow.api.fast_ingest import Answer, LeanHandler, refusal_error, served_by
from eventflow.auth.principal import Scope
from eventflow.ingest.validation import check_json_content_type
from eventflow.segment.messages import (
    KINDS,
    MAX_BATCH_BYTES,
    MAX_MESSAGE_BYTES,
    BatchIn,
    CallIn,
    Kind,
    parse_batch,
    parse_call,
)
from eventflow.services import Services

PREFIX = "/v1"
_SUCCESS = {"success": True}
_ENCODINGS = (GZIP,)


class SegmentOut(BaseModel):
    """Every message of the request is stored (or was already: a repeated ``messageId``)."""

    success: Literal[True]


class SegmentHandler(LeanHandler):
    """One Segment-compatible route: ``kind`` None for a batch, else the one message's kind."""

    status = 200

    def __init__(self, route: str, kind: Kind | None) -> None:
        self.route = route
        self._kind = kind
        self._limit = MAX_BATCH_BYTES if kind is None else MAX_MESSAGE_BYTES

    async def accept(
        self, services: Services, headers: dict[bytes, str], receive: Receive
    ) -> Answer:
        # Segment's libraries send their write key (an ingest key) as HTTP Basic's user name,
        # which the credentials check reads as it reads a bearer key.
        authorization = headers.get(b"authorization")
        principal = await services.credentials.authenticate(authorization, Scope.INGEST)
        check_json_content_type(headers.get(b"content-type"))
        body = await read_limited(
            receive,
            headers.get(b"content-length"),
            self._limit,
            content_encoding=headers.get(b"content-encoding"),
            encodings=_ENCODINGS,
        )
        acceptor = services.acceptor
        message_limit = min(MAX_MESSAGE_BYTES, acceptor.max_payload_bytes)
        if self._kind is None:
            events = parse_batch(body, principal, message_limit)
        else:
            events = [parse_call(body, self._kind, principal, message_limit)]
        if events:
            # Answered once the writer has committed the rows, as every ingest route is.
            await acceptor.store(principal.user_id, events)
        return Answer(_SUCCESS, self.status)

    def refuse(self, exc: Exception) -> Response:
        error = refusal_error(exc)
        # Segment's libraries read an error's `code` and `message` (RudderStack's fails on a
        # body without them, and then retries what it should not).
        return problems.from_error(error, {"code": error.slug, "message": error.detail})


BATCH = SegmentHandler("segment_batch", None)
IMPORT = SegmentHandler("segment_import", None)
CALLS = {kind: SegmentHandler(f"segment_{kind}", kind) for kind in KINDS}
#: Every route of this module's, by name.
HANDLERS: tuple[SegmentHandler, ...] = (BATCH, IMPORT, *CALLS.values())

router = APIRouter(prefix=PREFIX, tags=["segment"])
_basic = HTTPBasic(
    auto_error=False,
    description="An API key of scope `ingest` as the user name (Segment's write key) and no "
    "password; a user's access token works too",
)
_bearer = OAuth2PasswordBearer(tokenUrl="/api/v1/auth/login", auto_error=False)
_Basic = Annotated[HTTPBasicCredentials | None, Security(_basic)]
_Bearer = Annotated[str | None, Security(_bearer)]
_SERVED_BY_HANDLER = "served by the route's SegmentHandler"
_RESPONSES: dict[int | str, dict[str, object]] = {
    400: {"description": "Malformed JSON or gzip, an invalid message, or one over 32 KB"},
    403: {"description": "An API key whose scope is not `ingest`"},
    413: {
        "description": "The body is over its limit (500 KB a batch, 32 KB a call), as sent "
        "or inflated"
    },
    415: {"description": "Not JSON, or compressed other than with gzip"},
    429: {"description": "Too many events for this account: retry after `Retry-After` seconds"},
    503: {"description": "Not stored (backpressure or a dependency down): retry"},
}


async def segment_batch(
    batch: Annotated[BatchIn, Body()], basic: _Basic, bearer: _Bearer
) -> SegmentOut:
    """Store Segment messages of any kind, all or none: `200 {"success": true}` once committed."""
    raise NotImplementedError(_SERVED_BY_HANDLER)


async def segment_call(
    message: Annotated[CallIn, Body()], basic: _Basic, bearer: _Bearer
) -> SegmentOut:
    raise NotImplementedError(_SERVED_BY_HANDLER)


for handler, path, summary in (
    (BATCH, "/batch", "Store a batch of Segment messages"),
    (IMPORT, "/import", "Store a batch of Segment messages (the same as /v1/batch)"),
):
    router.add_api_route(
        path,
        segment_batch,
        methods=["POST"],
        name=handler.route,
        summary=summary,
        route_class_override=served_by(handler),
        responses=_RESPONSES,
    )
for kind, handler in CALLS.items():
    router.add_api_route(
        f"/{kind}",
        segment_call,
        methods=["POST"],
        name=handler.route,
        summary=f"Store one Segment `{kind}` message",
        description=f"The body is one message; its `type` is `{kind}` whatever it says. "
        '`200 {"success": true}` once committed.',
        route_class_override=served_by(handler),
        responses=_RESPONSES,
    )
