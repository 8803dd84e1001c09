"""Accepting events: validate, store through the group-commit writer, shape the 202 body.

The per-account rate limit is charged here, after validation (only events that would be stored
count, a batch counting each of its events) and before the writer; with no limit set it costs
one ``is None`` test.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from eventflow.clock import iso
from eventflow.db.rows import StoredEvent
from eventflow.ingest.validation import (
    ValidEvent,
    check_idempotency_key,
    check_json_content_type,
    parse_batch,
    parse_event,
)


def accepted(stored: StoredEvent) -> dict[str, Any]:
    """The 202 body of one stored event."""
    # Status is a StrEnum: the member is its text (orjson writes it as such).
    return {"id": stored.id, "status": stored.status, "created_at": iso(stored.created_at)}


# Room for the envelope (type, delay, whitespace) around a payload of the largest size.
_ENVELOPE_SLACK = 16 * 1024


class EventSink(Protocol):
    """Where accepted events go: the group-commit writer."""

    async def submit(
        self, user_id: str, items: Sequence[ValidEvent], idempotency_key: str | None = None
    ) -> Sequence[StoredEvent]: ...


class IngestLimiter(Protocol):
    """The per-account ingest limit; raises when ``events`` more would exceed it."""

    async def ingest(self, user_id: str, events: int) -> None: ...


@dataclass(frozen=True, slots=True)
class Acceptor:
    """Validates and stores events for an account; ``limiter`` is None when there is no limit."""

    sink: EventSink
    max_payload_bytes: int
    limiter: IngestLimiter | None = None

    @property
    def single_body_limit(self) -> int:
        """The largest body of one event: its payload at the limit, plus the envelope."""
        return self.max_payload_bytes + _ENVELOPE_SLACK

    async def event(
        self,
        user_id: str,
        content_type: str | None,
        key: str | None,
        body: bytes,
        source: str | None = None,
    ) -> dict[str, Any]:
        """Accept one event; ``source`` is who sent it (``auth.principal.event_source``)."""
        event, idempotency_key = self.prepare(content_type, key, body, source)
        if self.limiter is not None:
            await self.limiter.ingest(user_id, 1)
        (stored,) = await self.sink.submit(user_id, [event], idempotency_key)
        return accepted(stored)

    def prepare(
        self, content_type: str | None, key: str | None, body: bytes, source: str | None
    ) -> tuple[ValidEvent, str | None]:
        """One event's request checked: the event and its idempotency key, or a 4xx raised."""
        check_json_content_type(content_type)
        idempotency_key = check_idempotency_key(key)
        return parse_event(body, self.max_payload_bytes, source), idempotency_key

    async def store(self, user_id: str, events: Sequence[ValidEvent]) -> Sequence[StoredEvent]:
        """Store validated events together, the limit charged for each (batches, and the
        Segment-compatible routes, which validate their own messages)."""
        if self.limiter is not None:
            await self.limiter.ingest(user_id, len(events))
        return await self.sink.submit(user_id, events)

    async def batch(
        self, user_id: str, content_type: str | None, body: bytes, source: str | None = None
    ) -> dict[str, Any]:
        check_json_content_type(content_type)
        events = parse_batch(body, self.max_payload_bytes, source)
        stored = await self.store(user_id, events)
        return {
            "accepted": len(stored),
            "events": [{"id": s.id, "status": s.status} for s in stored],
        }
