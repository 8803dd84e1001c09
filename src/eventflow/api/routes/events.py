"""Events: ingest (single and batch), list, detail, replay."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Body, Header, Query

from eventflow.api.deps import ReaderId, Sender, ServicesDep, UserId
from eventflow.api.fast_ingest import BatchIngestRoute, IngestRoute
from eventflow.api.openapi import errors
from eventflow.api.schemas import (
    AcceptedOut,
    AttemptOut,
    BatchAcceptedOut,
    EventOut,
    EventPage,
    EventSummary,
    ReplayOut,
    StatusName,
    source_view,
)
from eventflow.api.stores import EventReading
from eventflow.clock import iso
from eventflow.db.rows import REPLAYABLE, AttemptRow, EventRow, PageQuery, Status
from eventflow.errors import BadRequest, Conflict, NotFound
from eventflow.ids import parse_id
from eventflow.ingest.validation import IDEMPOTENCY_KEY_PATTERN, TYPE_PATTERN, BatchIn, EventIn

router = APIRouter(prefix="/events", tags=["events"])
# The ingest endpoints declare their requests for the OpenAPI document; their routes'
# handler serves them (api/fast_ingest.py), so FastAPI never calls them.
_SERVED_BY_HANDLER = "served by the ingest route's handler"
#: Failed events replayed per transaction by ``POST /events/retry-failed``.
REPLAY_BATCH = 1_000
#: The most ids its answer lists: the newest, the ones a dashboard's feed shows.
REPLAY_IDS_LISTED = 1_000


def _links_to_the_event(expression: str) -> dict[str, Any]:
    # The events a client created are what the event routes act on: these links let a reader
    # (and schemathesis's stateful phase) follow one from creation to detail and replay.
    targets = {"GetEvent": "get_event", "RetryEvent": "retry_event"}
    return {
        name: {"operationId": target, "parameters": {"event_id": expression}}
        for name, target in targets.items()
    }


async def ingest_one(
    event: Annotated[EventIn, Body()],
    sender: Sender,
    idempotency_key: Annotated[
        str | None,
        Header(
            pattern=IDEMPOTENCY_KEY_PATTERN,
            description="A repeat with the same key returns the first event; nothing new "
            "(1 to 255 visible ASCII characters)",
        ),
    ] = None,
) -> AcceptedOut:
    """Accept one event: 202 once it is durably stored; processing happens asynchronously."""
    raise NotImplementedError(_SERVED_BY_HANDLER)


async def ingest_batch(batch: Annotated[BatchIn, Body()], sender: Sender) -> BatchAcceptedOut:
    """Accept 1 to 1,000 events all-or-nothing, in one transaction."""
    raise NotImplementedError(_SERVED_BY_HANDLER)


router.add_api_route(
    "",
    ingest_one,
    methods=["POST"],
    route_class_override=IngestRoute,
    status_code=202,
    responses={
        202: {"links": _links_to_the_event("$response.body#/id")},
        400: {"description": "Malformed JSON"},
        413: {"description": "Body or payload too large"},
        415: {"description": "Not JSON"},
        422: {"description": "Invalid event"},
        **errors(429),
        503: {"description": "Not stored (backpressure or database down): retry"},
    },
)
router.add_api_route(
    "/batch",
    ingest_batch,
    methods=["POST"],
    route_class_override=BatchIngestRoute,
    status_code=202,
    responses={
        202: {"links": _links_to_the_event("$response.body#/events/0/id")},
        413: {"description": "Body or a payload too large, or more events than the rate limit"},
        422: {"description": "An invalid item (named by index); nothing was stored"},
        **errors(429),
        503: {"description": "Not stored: retry"},
    },
)


@router.get("", response_model=EventPage, responses=errors(400, 422))
async def list_events(
    services: ServicesDep,
    user_id: ReaderId,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
    status: StatusName | None = None,
    type: Annotated[str | None, Query(pattern=TYPE_PATTERN, description="An event type")] = None,
) -> EventPage:
    """Your events, newest first."""
    before = None
    if cursor is not None:
        before = parse_id(cursor)
        if before is None:
            raise BadRequest("cursor: not a cursor this API returned")
    query = PageQuery(limit, before, Status(status) if status else None, type)
    rows, more = await services.reading.page(user_id, query)
    return EventPage(
        items=[_summary(r) for r in rows], next_cursor=rows[-1].id if more and rows else None
    )


@router.post("/retry-failed", status_code=202, response_model=ReplayOut)
async def retry_failed(services: ServicesDep, user_id: UserId) -> ReplayOut:
    """Replay every one of your failed events, newest first, each with a fresh attempt budget.

    They are queued again 1,000 at a time, so ingestion goes on meanwhile; `replayed` counts them
    all, and `ids` lists the newest 1,000 of them."""
    replayed, ids = await replay_all_failed(services.reading, services.writer.publish, user_id)
    return ReplayOut(replayed=replayed, ids=ids)


async def replay_all_failed(
    reading: EventReading,
    publish: Callable[[list[str]], Awaitable[None]],
    user_id: str,
    batch: int = REPLAY_BATCH,
    listed: int = REPLAY_IDS_LISTED,
) -> tuple[int, list[str]]:
    """Replay the user's failed events ``batch`` at a time, publishing each batch's hints once
    it is committed; answers how many, and the ids of the newest ``listed`` of them."""
    replayed, ids = 0, list[str]()
    before: str | None = None
    while True:
        # Each batch commits before the next begins: a transaction holds its locks (SQLite's
        # single write lock, for one) for one batch, never for all of a long history's failures.
        taken = await reading.replay_failed(user_id, before, batch)
        await publish(taken)
        replayed += len(taken)
        ids += taken[: listed - len(ids)]
        # A short batch took the last of them (rows another replay holds are skipped, not
        # counted in the limit). The cursor only descends, so an event that fails again
        # meanwhile is not replayed twice.
        if len(taken) < batch:
            return replayed, ids
        before = taken[-1]


@router.get("/{event_id}", response_model=EventOut, responses={404: {"description": "Not yours"}})
async def get_event(event_id: str, services: ServicesDep, user_id: ReaderId) -> EventOut:
    """One event with its attempts, last error and result."""
    row = await _owned(services, user_id, event_id)
    history = await services.reading.attempts(row.id)
    return EventOut(
        **_summary(row).model_dump(),
        result=orjson.loads(row.result) if row.result else None,
        idempotency_key=row.idempotency_key,
        started_at=iso(row.started_at),
        attempts=[_attempt(a) for a in history],
    )


@router.post(
    "/{event_id}/retry",
    status_code=202,
    response_model=AcceptedOut,
    responses={404: {"description": "Not yours"}, 409: {"description": "Not failed/completed"}},
)
async def retry_event(event_id: str, services: ServicesDep, user_id: UserId) -> AcceptedOut:
    """Replay a failed or completed event: queued again with a fresh attempt budget."""
    row = await _owned(services, user_id, event_id)
    replayed = await services.reading.replay(user_id, [row.id])
    if not replayed:
        current = await _owned(services, user_id, event_id)
        allowed = " or ".join(s.value for s in REPLAYABLE)
        raise Conflict(f"Only {allowed} events can be replayed; this one is {current.status}")
    await services.writer.publish(replayed)
    return AcceptedOut(id=row.id, status="queued", created_at=iso(row.created_at) or "")


async def _owned(services: ServicesDep, user_id: str, event_id: str) -> EventRow:
    canonical = parse_id(event_id)
    row = await services.reading.get(user_id, canonical) if canonical else None
    if row is None:
        raise NotFound(f"No event {event_id!r} exists for this account")
    return row


def _summary(row: EventRow) -> EventSummary:
    return EventSummary(
        id=row.id,
        type=row.type,
        status=row.status.value,
        attempt_count=row.attempts,
        payload=orjson.loads(row.payload),
        last_error=row.last_error,
        created_at=iso(row.created_at) or "",
        updated_at=iso(row.updated_at) or "",
        available_at=iso(row.available_at) or "",
        completed_at=iso(row.completed_at),
        source=source_view(row.source),
    )


def _attempt(a: AttemptRow) -> AttemptOut:
    return AttemptOut(
        number=a.number,
        outcome=a.outcome,
        error=a.error,
        worker=a.worker,
        started_at=iso(a.started_at) or "",
        finished_at=iso(a.finished_at) or "",
        duration_ms=a.finished_at - a.started_at,
    )
