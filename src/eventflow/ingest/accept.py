"""Accepting events: validate, store through the group-commit writer, shape the 202 body.

Shared by the lean ASGI path and the documented FastAPI routes, so there is one behaviour. The
per-user rate limit is charged here too, after validation (only events that would be stored
count, a batch counting each of its events) and before the writer; when no limit is set it
costs one attribute test.
"""

from __future__ import annotations

from typing import Any

from eventflow.clock import iso
from eventflow.ingest.validation import (
    check_idempotency_key,
    check_json_content_type,
    parse_batch,
    parse_event,
)
from eventflow.services import Services

_ENVELOPE_SLACK = 16 * 1024


async def accept_event(
    services: Services, user_id: str, content_type: str | None, key: str | None, body: bytes
) -> dict[str, Any]:
    check_json_content_type(content_type)
    idempotency_key = check_idempotency_key(key)
    event = parse_event(body, services.settings.max_payload_bytes)
    if services.limiter.ingest_rule is not None:
        await services.limiter.ingest(user_id, 1)
    (stored,) = await services.writer.submit(user_id, [event], idempotency_key)
    # Status is a StrEnum: the member is its text (orjson writes it as such), no .value needed.
    return {"id": stored.id, "status": stored.status, "created_at": iso(stored.created_at)}


async def accept_batch(
    services: Services, user_id: str, content_type: str | None, body: bytes
) -> dict[str, Any]:
    check_json_content_type(content_type)
    events = parse_batch(body, services.settings.max_payload_bytes)
    if services.limiter.ingest_rule is not None:
        await services.limiter.ingest(user_id, len(events))
    stored = await services.writer.submit(user_id, events)
    return {
        "accepted": len(stored),
        "events": [{"id": s.id, "status": s.status} for s in stored],
    }


def single_body_limit(services: Services) -> int:
    return services.settings.max_payload_bytes + _ENVELOPE_SLACK
