"""What the dashboard's live stream shows: metrics each tick and the feed's changed events.

One ``LiveView`` per open stream remembers what its client was told, so each tick sends only
what changed. It speaks in ``(event, data)`` pairs; framing them for the wire is the route's.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Protocol

from eventflow.api.statistics import summarize
from eventflow.api.stores import FeedReading
from eventflow.clock import iso, now_ms
from eventflow.db.feed import FeedRow
from eventflow.db.rows import FeedQuery, StatusCounts

#: Seconds of history the first metrics carry; later ticks carry the last few seconds.
BACKFILL_S = 300
_RECENT_S = 5
_FINISHED_OVERLAP_MS = 5_000
_FEED_LIMIT = 200
_SEED_PER_STATUS = 50
_WATCH_MAX = 500
_SENT_MAX = 5_000

Update = tuple[str, dict[str, Any]]


class Counts(Protocol):
    """The counts behind ``GET /stats``."""

    async def counts(self, user_id: str) -> StatusCounts: ...


class LiveView:
    """What one stream has told its client, so each tick sends only what changed."""

    def __init__(self, feed: FeedReading, counts: Counts, user_id: str) -> None:
        self._feed = feed
        self._counts = counts
        self._user_id = user_id
        self._cursor: str | None = None
        self._last_tick_ms = 0
        self._watched: OrderedDict[str, None] = OrderedDict()
        self._sent: OrderedDict[str, tuple[str, int, int]] = OrderedDict()

    async def start(self) -> list[Update]:
        """Five minutes of history; the feed itself the client loads from ``GET /events``."""
        self._last_tick_ms = now_ms()
        self._cursor = await self._feed.newest_id(self._user_id)
        self._remember(await self._feed.in_flight(self._user_id, _SEED_PER_STATUS))
        return [await self._metrics(BACKFILL_S)]

    async def tick(self) -> list[Update]:
        """This second's metrics, and the feed's events that changed since the last tick."""
        started = now_ms()
        since = self._last_tick_ms - _FINISHED_OVERLAP_MS
        query = FeedQuery(self._cursor, list(self._watched), since, _FEED_LIMIT)
        rows = await self._feed.changes(self._user_id, query)
        self._last_tick_ms = started
        changed = [r for r in rows if self._sent.get(r.id) != r.version]
        self._remember(rows)
        updates = [await self._metrics(_RECENT_S)]
        if changed:
            updates.append(("feed", {"events": [feed_item(r) for r in changed]}))
        return updates

    async def _metrics(self, seconds: int) -> Update:
        # The same numbers as GET /stats, so the page and the API can never disagree.
        snapshot = summarize(await self._counts.counts(self._user_id))
        now_s = now_ms() // 1000
        series = await self._feed.series(self._user_id, now_s - seconds + 1, now_s)
        body: dict[str, Any] = snapshot.model_dump()
        body["t"] = now_ms()
        body["series"] = {
            "start": series.start,
            "ingested": series.ingested,
            "completed": series.completed,
            "failed": series.failed,
        }
        return ("metrics", body)

    def _remember(self, rows: list[FeedRow]) -> None:
        for row in rows:
            if self._cursor is None or row.id > self._cursor:
                self._cursor = row.id
            self._sent[row.id] = row.version
            self._sent.move_to_end(row.id)
            if row.finished:
                self._watched.pop(row.id, None)
            else:
                self._watched[row.id] = None
        while len(self._sent) > _SENT_MAX:
            self._sent.popitem(last=False)
        while len(self._watched) > _WATCH_MAX:
            self._watched.popitem(last=False)


def feed_item(row: FeedRow) -> dict[str, Any]:
    """An event as the dashboard's feed draws it (the fields of ``GET /events``' items)."""
    return {
        "id": row.id,
        "type": row.type,
        "status": row.status.value,
        "attempt_count": row.attempts,
        "preview": row.preview,
        "truncated": row.truncated,
        "last_error": row.last_error,
        "created_at": iso(row.created_at),
        "updated_at": iso(row.updated_at),
        "available_at": iso(row.available_at),
        "completed_at": iso(row.completed_at),
    }
