"""The feed store: per-second throughput and what changed in a user's feed, for the dashboard.

Every query is scoped by ``user_id`` and bounded by an index and a ``LIMIT``, so a tick costs
the same on a history of ten events and of ten million (no query here scans ``updated_at``,
which has no index: changes are found through ids, ``completed_at`` and the primary key).
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from eventflow.db.database import Database
from eventflow.db.rows import FeedQuery, Status
from eventflow.db.tables import events, status_is
from eventflow.db.tallies import COMPLETED, FAILED, FLOW_NAMES, INGESTED, read_tallies

PREVIEW_CHARS = 160
ERROR_CHARS = 300
_FINISHED = (Status.COMPLETED.value, Status.FAILED.value)
_IN_FLIGHT = (Status.SCHEDULED, Status.QUEUED, Status.PROCESSING, Status.RETRYING)

_FEED_COLUMNS = (
    events.c.id,
    events.c.type,
    events.c.status,
    events.c.attempts,
    sa.func.substr(events.c.payload, 1, PREVIEW_CHARS).label("preview"),
    sa.func.length(events.c.payload).label("payload_chars"),
    sa.func.substr(events.c.last_error, 1, ERROR_CHARS).label("last_error"),
    events.c.created_at,
    events.c.updated_at,
    events.c.available_at,
    events.c.completed_at,
    events.c.source,
)


@dataclass(frozen=True, slots=True)
class FeedRow:
    """An event as the live feed shows it: a payload preview instead of the whole payload."""

    id: str
    type: str
    status: Status
    attempts: int
    preview: str
    truncated: bool
    last_error: str | None
    created_at: int
    updated_at: int
    available_at: int
    completed_at: int | None
    #: Who sent it, as stored (``NewEvent.source``).
    source: str | None = None

    @property
    def version(self) -> tuple[str, int, int]:
        # ``release`` puts an event back to queued without touching updated_at, so the status
        # and the attempt count are part of what "changed" means.
        return (self.status.value, self.updated_at, self.attempts)

    @property
    def finished(self) -> bool:
        return self.status.value in _FINISHED


@dataclass(frozen=True, slots=True)
class Series:
    """Events per second for the seconds ``start`` … ``start + len(ingested) - 1`` (epoch s)."""

    start: int
    ingested: list[int]
    completed: list[int]
    failed: list[int]


class FeedStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def series(self, user_id: str, first_second: int, last_second: int) -> Series:
        """Events stored, and events that completed or failed, in each second."""
        width = last_second - first_second + 1
        flows = {name: [0] * width for name in FLOW_NAMES}
        for (name, second), n in (
            await read_tallies(self._db, user_id, (FLOW_NAMES, first_second))
        ).items():
            if second <= last_second:
                flows[name][second - first_second] += n
        return Series(first_second, flows[INGESTED], flows[COMPLETED], flows[FAILED])

    async def changes(self, user_id: str, query: FeedQuery) -> list[FeedRow]:
        """Rows a live feed may need to redraw, newest first, without duplicates.

        Three bounded lookups: events created after ``after_id`` (the newest ``limit``), the
        ``watched`` events by primary key (the caller was told they were in flight), and events
        that finished since ``finished_since_ms`` (replays started elsewhere end up here).
        """
        created = sa.select(*_FEED_COLUMNS).where(events.c.user_id == user_id)
        if query.after_id is not None:
            created = created.where(events.c.id > query.after_id)
        created = created.order_by(events.c.id.desc()).limit(query.limit)
        finished = (
            sa.select(*_FEED_COLUMNS)
            .where(events.c.user_id == user_id, events.c.completed_at >= query.finished_since_ms)
            .order_by(events.c.completed_at.desc())
            .limit(query.limit)
        )
        found: dict[str, FeedRow] = {}
        async with self._db.read() as conn:
            found.update(await _rows(conn, created))
            if query.watched:
                found.update(
                    await _rows(
                        conn,
                        sa.select(*_FEED_COLUMNS).where(
                            events.c.user_id == user_id, events.c.id.in_(list(query.watched))
                        ),
                    )
                )
            found.update(await _rows(conn, finished))
        return sorted(found.values(), key=lambda r: r.id, reverse=True)

    async def in_flight(self, user_id: str, per_status: int) -> list[FeedRow]:
        """The newest ``per_status`` events of each waiting or running status."""
        found: dict[str, FeedRow] = {}
        async with self._db.read() as conn:
            # One query per status: each is a short backward scan of (user_id, status, id), where
            # a single ``status IN (…)`` would sort a possibly huge backlog.
            for status in _IN_FLIGHT:
                found.update(
                    await _rows(
                        conn,
                        sa.select(*_FEED_COLUMNS)
                        .where(events.c.user_id == user_id, status_is(status.value))
                        .order_by(events.c.id.desc())
                        .limit(per_status),
                    )
                )
        return sorted(found.values(), key=lambda r: r.id, reverse=True)

    async def newest_id(self, user_id: str) -> str | None:
        async with self._db.read() as conn:
            # ORDER BY … LIMIT 1, not max(): PostgreSQL has no max() for uuid.
            value = await conn.scalar(
                sa.select(events.c.id)
                .where(events.c.user_id == user_id)
                .order_by(events.c.id.desc())
                .limit(1)
            )
        return str(value) if value is not None else None


async def _rows(conn: AsyncConnection, query: sa.Select[tuple[object, ...]]) -> dict[str, FeedRow]:
    rows = await conn.execute(query)
    return {
        str(r.id): FeedRow(
            id=str(r.id),
            type=r.type,
            status=Status(r.status),
            attempts=r.attempts,
            preview=r.preview,
            truncated=int(r.payload_chars) > PREVIEW_CHARS,
            last_error=r.last_error,
            created_at=r.created_at,
            updated_at=r.updated_at,
            available_at=r.available_at,
            completed_at=r.completed_at,
            source=r.source,
        )
        for r in rows
    }
