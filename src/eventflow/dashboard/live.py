"""What the dashboard's live stream shows: metrics each tick and the feed's changed events.

One ``LiveView`` per open stream remembers what its client was told, so each tick sends only
what changed. It speaks in ``(event, data)`` pairs; framing them for the wire is the route's.
A user's metrics are the same for all of that user's streams: ``Snapshots`` computes them once
a tick in this process, however many of them are open.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Protocol

from eventflow.api.schemas import source_view
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


class Snapshots:
    """Each user's latest metrics, computed at most once a tick in this process.

    Every open dashboard of a user shows the same numbers each tick. The first of that user's
    streams to ask in a tick (ticks are ``tick_ms`` of the clock) starts the computation, and
    the others in the same tick share it, also while it runs; a failure reaches each of them,
    and the next tick computes afresh. Only the users whose streams asked in the last two
    ticks are kept.
    """

    def __init__(
        self,
        feed: FeedReading,
        counts: Counts,
        tick_ms: int = 1000,
        clock: Callable[[], int] = now_ms,
    ) -> None:
        self._feed = feed
        self._counts = counts
        self._tick_ms = tick_ms
        self._clock = clock
        #: user id → (tick, its computation); oldest first, each user where it last asked.
        self._latest: OrderedDict[str, tuple[int, asyncio.Future[Update]]] = OrderedDict()

    def __len__(self) -> int:
        """How many users' snapshots are kept."""
        return len(self._latest)

    async def recent(self, user_id: str) -> Update:
        """The user's metrics of this tick, with the last few seconds of its series."""
        tick = self._clock() // self._tick_ms
        found = self._latest.get(user_id)
        if found is None or found[0] != tick:
            computing = asyncio.ensure_future(
                metrics_update(self._feed, self._counts, user_id, _RECENT_S)
            )
            computing.add_done_callback(_observed)
            found = (tick, computing)
            self._latest.pop(user_id, None)
            self._latest[user_id] = found
            while next(iter(self._latest.values()))[0] < tick - 1:
                self._latest.popitem(last=False)
        # One stream cancelled (its client gone) leaves the computation to the others.
        return await asyncio.shield(found[1])


def _observed(computing: asyncio.Future[Update]) -> None:
    """A failure is each waiter's to report; this only marks it seen, waiters or none."""
    if not computing.cancelled():
        computing.exception()


async def metrics_update(feed: FeedReading, counts: Counts, user_id: str, seconds: int) -> Update:
    """The metrics event: the same numbers as ``GET /stats`` (so the page and the API can never
    disagree), and the per-second series of the last ``seconds``."""
    snapshot = summarize(await counts.counts(user_id))
    now_s = now_ms() // 1000
    series = await feed.series(user_id, now_s - seconds + 1, now_s)
    body: dict[str, Any] = snapshot.model_dump()
    body["t"] = now_ms()
    body["series"] = {
        "start": series.start,
        "ingested": series.ingested,
        "completed": series.completed,
        "failed": series.failed,
    }
    return ("metrics", body)


class LiveView:
    """What one stream has told its client, so each tick sends only what changed."""

    def __init__(
        self,
        feed: FeedReading,
        counts: Counts,
        user_id: str,
        snapshots: Snapshots | None = None,
    ) -> None:
        self._feed = feed
        self._counts = counts
        self._user_id = user_id
        self._snapshots = snapshots if snapshots is not None else Snapshots(feed, counts)
        self._cursor: str | None = None
        self._last_tick_ms = 0
        self._watched: OrderedDict[str, None] = OrderedDict()
        self._sent: OrderedDict[str, tuple[str, int, int]] = OrderedDict()

    async def start(self) -> list[Update]:
        """Five minutes of history; the feed itself the client loads from ``GET /events``."""
        self._last_tick_ms = now_ms()
        self._cursor = await self._feed.newest_id(self._user_id)
        self._remember(await self._feed.in_flight(self._user_id, _SEED_PER_STATUS))
        return [await metrics_update(self._feed, self._counts, self._user_id, BACKFILL_S)]

    async def tick(self) -> list[Update]:
        """This second's metrics, and the feed's events that changed since the last tick."""
        started = now_ms()
        since = self._last_tick_ms - _FINISHED_OVERLAP_MS
        query = FeedQuery(self._cursor, list(self._watched), since, _FEED_LIMIT)
        rows = await self._feed.changes(self._user_id, query)
        self._last_tick_ms = started
        changed = [r for r in rows if self._sent.get(r.id) != r.version]
        self._remember(rows)
        updates = [await self._snapshots.recent(self._user_id)]
        if changed:
            updates.append(("feed", {"events": [feed_item(r) for r in changed]}))
        return updates

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
        "source": source_view(row.source),
    }
