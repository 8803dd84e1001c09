"""Reading events held in memory: what the reading and feed stores answer from their tables."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import fields

from eventflow.db.feed import ERROR_CHARS, PREVIEW_CHARS, FeedRow, Series
from eventflow.db.memory.rows import MemoryRow
from eventflow.db.rows import (
    REPLAYABLE,
    AttemptRow,
    EventRow,
    FeedQuery,
    LatencyBucket,
    PageQuery,
    Status,
    StatusCounts,
)
from eventflow.db.tallies import LATENCY_WINDOW_S, latency_buckets, latency_name
from eventflow.ids import uuid7_floor

_IN_FLIGHT = (Status.SCHEDULED, Status.QUEUED, Status.PROCESSING, Status.RETRYING)
_EVENT_ROW_FIELDS = tuple(f.name for f in fields(EventRow))


class MemoryReading:
    def __init__(self, rows: dict[str, MemoryRow], clock: Callable[[], int]) -> None:
        self._rows = rows
        self._clock = clock

    async def get(self, user_id: str, event_id: str) -> EventRow | None:
        r = self._rows.get(event_id)
        return _event_row(r) if r is not None and r.user_id == user_id else None

    async def attempts(self, event_id: str) -> list[AttemptRow]:
        r = self._rows.get(event_id)
        return sorted(r.history, key=lambda a: a.number) if r is not None else []

    async def page(self, user_id: str, query: PageQuery) -> tuple[list[EventRow], bool]:
        rows = [
            r
            for r in self._newest(user_id)
            if (query.before_id is None or r.id < query.before_id)
            and (query.status is None or r.status is query.status)
            and (query.type is None or r.type == query.type)
        ]
        return [_event_row(r) for r in rows[: query.limit]], len(rows) > query.limit

    async def counts(self, user_id: str) -> StatusCounts:
        now = self._clock()
        mine = self._newest(user_id)
        by_status: dict[str, int] = {}
        for r in mine:
            by_status[r.status.value] = by_status.get(r.status.value, 0) + 1
        floor = uuid7_floor(now - 60_000)
        done = sorted(
            (r for r in mine if r.status is Status.COMPLETED and r.completed_at is not None),
            key=lambda r: r.completed_at or 0,
            reverse=True,
        )
        return StatusCounts(
            by_status=by_status,
            ingested_last_minute=sum(1 for r in mine if r.id >= floor),
            completed_last_minute=sum(1 for r in done if (r.completed_at or 0) >= now - 60_000),
            latency=_histogram(
                (r.completed_at or 0) - r.created_at
                for r in done
                if (r.completed_at or 0) // 1000 >= (now // 1000 - LATENCY_WINDOW_S) // 60 * 60
            ),
        )

    async def replay(self, user_id: str, event_ids: Sequence[str]) -> list[str]:
        return self._replay([r for r in self._newest(user_id) if r.id in set(event_ids)])

    async def replay_failed(self, user_id: str, before_id: str | None, limit: int) -> list[str]:
        failed = [
            r
            for r in self._newest(user_id)
            if r.status is Status.FAILED and (before_id is None or r.id < before_id)
        ]
        return self._replay(failed[:limit])

    def _replay(self, rows: list[MemoryRow]) -> list[str]:
        now = self._clock()
        replayed = [r for r in rows if r.status in REPLAYABLE]
        for r in replayed:
            r.status, r.attempt_base, r.available_at = Status.QUEUED, r.attempts, now
            r.dispatched_at, r.completed_at, r.updated_at = now, None, now
        return [r.id for r in replayed]

    # -- the feed ----------------------------------------------------------------------------

    async def series(self, user_id: str, first_second: int, last_second: int) -> Series:
        width = last_second - first_second + 1
        series = Series(first_second, [0] * width, [0] * width, [0] * width)
        for r in self._newest(user_id):
            if first_second <= r.created_at // 1000 <= last_second:
                series.ingested[r.created_at // 1000 - first_second] += 1
            done = r.completed_at // 1000 if r.completed_at is not None else -1
            if first_second <= done <= last_second and r.status is Status.COMPLETED:
                series.completed[done - first_second] += 1
            elif first_second <= done <= last_second and r.status is Status.FAILED:
                series.failed[done - first_second] += 1
        return series

    async def changes(self, user_id: str, query: FeedQuery) -> list[FeedRow]:
        mine = self._newest(user_id)
        after, since, limit = query.after_id, query.finished_since_ms, query.limit
        created = [r for r in mine if after is None or r.id > after][:limit]
        finished = sorted(
            (r for r in mine if r.completed_at is not None and r.completed_at >= since),
            key=lambda r: r.completed_at or 0,
            reverse=True,
        )[:limit]
        found = {
            r.id: r for r in [*created, *(r for r in mine if r.id in query.watched), *finished]
        }
        return [_feed_row(r) for r in sorted(found.values(), key=lambda r: r.id, reverse=True)]

    async def in_flight(self, user_id: str, per_status: int) -> list[FeedRow]:
        mine = self._newest(user_id)
        rows = [r for s in _IN_FLIGHT for r in [r for r in mine if r.status is s][:per_status]]
        return [_feed_row(r) for r in sorted(rows, key=lambda r: r.id, reverse=True)]

    async def newest_id(self, user_id: str) -> str | None:
        mine = self._newest(user_id)
        return mine[0].id if mine else None

    def _newest(self, user_id: str) -> list[MemoryRow]:
        return sorted(
            (r for r in self._rows.values() if r.user_id == user_id),
            key=lambda r: r.id,
            reverse=True,
        )


def _event_row(r: MemoryRow) -> EventRow:
    return EventRow(**{name: getattr(r, name) for name in _EVENT_ROW_FIELDS})


def _feed_row(r: MemoryRow) -> FeedRow:
    return FeedRow(
        id=r.id,
        type=r.type,
        status=r.status,
        attempts=r.attempts,
        preview=r.payload[:PREVIEW_CHARS],
        truncated=len(r.payload) > PREVIEW_CHARS,
        last_error=r.last_error[:ERROR_CHARS] if r.last_error is not None else None,
        created_at=r.created_at,
        updated_at=r.updated_at,
        available_at=r.available_at,
        completed_at=r.completed_at,
        source=r.source,
    )


def _histogram(latencies_ms: Iterable[int]) -> list[LatencyBucket]:
    return latency_buckets(Counter(latency_name(took) for took in latencies_ms))
