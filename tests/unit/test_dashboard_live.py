"""The live view: metrics every tick, and only the feed events that changed since the last."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

from eventflow.api.schemas import EventSummary
from eventflow.api.statistics import summarize
from eventflow.auth.principal import Principal, Scope, event_source
from eventflow.dashboard.live import BACKFILL_S, LiveView, Snapshots, feed_item
from eventflow.db.feed import FeedRow, Series
from eventflow.db.rows import FeedQuery, LatencyBucket, Status, StatusCounts

USER = "u"
COUNTS = StatusCounts(
    {"completed": 3, "failed": 1, "queued": 2},
    60,
    30,
    [LatencyBucket(3, 5, 1), LatencyBucket(7, 10, 1), LatencyBucket(15, 20, 1)],
)


def row(n: int, status: Status = Status.QUEUED, updated_at: int = 1) -> FeedRow:
    return FeedRow(
        id=f"{n:032x}",
        type="ORDER_CREATED",
        status=status,
        attempts=0,
        preview="{}",
        truncated=False,
        last_error=None,
        created_at=1,
        updated_at=updated_at,
        available_at=1,
        completed_at=updated_at if status is Status.COMPLETED else None,
    )


class FakeFeed:
    def __init__(self) -> None:
        self.rows: list[FeedRow] = []
        self.asked: list[dict[str, Any]] = []
        self.series_seconds: list[int] = []

    async def series(self, user_id: str, first_second: int, last_second: int) -> Series:
        self.series_seconds.append(last_second - first_second + 1)
        return Series(first_second, [1], [2], [3])

    async def changes(self, user_id: str, query: FeedQuery) -> list[FeedRow]:
        self.asked.append({"after_id": query.after_id, "watched": list(query.watched)})
        return self.rows

    async def in_flight(self, user_id: str, per_status: int) -> list[FeedRow]:
        return [r for r in self.rows if not r.finished]

    async def newest_id(self, user_id: str) -> str | None:
        return max((r.id for r in self.rows), default=None)


class FakeCounts:
    async def counts(self, user_id: str) -> StatusCounts:
        return COUNTS


def view(feed: FakeFeed) -> LiveView:
    return LiveView(feed, FakeCounts(), USER)


async def test_the_first_metrics_carry_the_backfill_and_the_stats_numbers() -> None:
    feed = FakeFeed()
    ((event, data),) = await view(feed).start()
    assert event == "metrics"
    assert feed.series_seconds == [BACKFILL_S]
    assert {k: v for k, v in data.items() if k not in ("t", "series")} == (
        summarize(COUNTS).model_dump()
    )
    assert data["series"] == {
        "start": data["series"]["start"],
        "ingested": [1],
        "completed": [2],
        "failed": [3],
    }


async def test_a_tick_sends_only_events_that_changed() -> None:
    feed = FakeFeed()
    feed.rows = [row(1)]
    live = view(feed)
    await live.start()
    # Known from the start (in flight): unchanged, so not sent.
    updates = await live.tick()
    assert [event for event, _ in updates] == ["metrics"]
    feed.rows = [row(2), row(1)]
    updates = await live.tick()
    assert updates[1][0] == "feed"
    assert [e["id"] for e in updates[1][1]["events"]] == [row(2).id]
    feed.rows = [row(2), replace(row(1), status=Status.COMPLETED, updated_at=2)]
    updates = await live.tick()
    (item,) = updates[1][1]["events"]
    assert (item["id"], item["status"]) == (row(1).id, "completed")


async def test_events_in_flight_are_watched_until_they_finish() -> None:
    feed = FakeFeed()
    feed.rows = [row(1), row(2, Status.COMPLETED)]
    live = view(feed)
    await live.start()
    await live.tick()
    assert feed.asked[-1] == {"after_id": row(2).id, "watched": [row(1).id]}
    feed.rows = [replace(row(1), status=Status.FAILED, updated_at=3)]
    await live.tick()
    await live.tick()
    assert feed.asked[-1]["watched"] == []


class CountingCounts:
    """Counts that say how often they were asked, per user, and can be told to fail."""

    def __init__(self) -> None:
        self.asked: list[str] = []
        self.failing = False
        self.gate = asyncio.Event()
        self.gate.set()

    async def counts(self, user_id: str) -> StatusCounts:
        self.asked.append(user_id)
        await self.gate.wait()
        if self.failing:
            raise OSError("database away")
        return COUNTS


class Clock:
    def __init__(self) -> None:
        self.ms = 1_000_000

    def __call__(self) -> int:
        return self.ms


def shared(feed: FakeFeed, counts: CountingCounts, clock: Clock) -> Snapshots:
    return Snapshots(feed, counts, tick_ms=1000, clock=clock)


async def test_one_users_open_dashboards_share_one_computation_a_tick() -> None:
    feed, counts, clock = FakeFeed(), CountingCounts(), Clock()
    snapshots = shared(feed, counts, clock)
    views = [LiveView(feed, counts, USER, snapshots) for _ in range(20)]
    other = LiveView(feed, counts, "another user", snapshots)
    for live in [*views, other]:
        await live.start()
    start_counts = len(counts.asked)  # each stream's own five-minute backfill
    assert start_counts == 21

    # Twenty streams of one user tick together, while the computation is still running.
    counts.gate.clear()
    ticking = [asyncio.ensure_future(live.tick()) for live in [*views, other]]
    await asyncio.sleep(0)
    counts.gate.set()
    answers = await asyncio.gather(*ticking)
    assert sorted(counts.asked[start_counts:]) == ["another user", USER]
    assert all(a[0] == answers[0][0] for a in answers[:20]), "the same numbers on every page"
    assert len(feed.series_seconds) == 21 + 2

    # Later in the same tick: nothing more; in the next tick: once more for each user.
    clock.ms += 400
    await asyncio.gather(*(live.tick() for live in views))
    assert len(counts.asked) == start_counts + 2
    clock.ms += 600
    await asyncio.gather(*(live.tick() for live in [*views, other]))
    assert counts.asked[start_counts + 2 :].count(USER) == 1
    assert counts.asked[start_counts + 2 :].count("another user") == 1


async def test_a_failed_computation_reaches_each_stream_and_the_next_tick_computes_again() -> None:
    feed, counts, clock = FakeFeed(), CountingCounts(), Clock()
    snapshots = shared(feed, counts, clock)
    views = [LiveView(feed, counts, USER, snapshots) for _ in range(3)]
    counts.failing = True
    failures = await asyncio.gather(*(live.tick() for live in views), return_exceptions=True)
    assert all(isinstance(f, OSError) for f in failures)
    assert counts.asked == [USER]
    counts.failing = False
    clock.ms += 1000
    updates = await asyncio.gather(*(live.tick() for live in views))
    assert [u[0][0] for u in updates] == ["metrics"] * 3
    assert counts.asked == [USER, USER]


async def test_a_stream_that_goes_away_leaves_the_computation_to_the_others() -> None:
    feed, counts, clock = FakeFeed(), CountingCounts(), Clock()
    snapshots = shared(feed, counts, clock)
    counts.gate.clear()
    leaving = asyncio.ensure_future(snapshots.recent(USER))
    staying = asyncio.ensure_future(snapshots.recent(USER))
    await asyncio.sleep(0)
    leaving.cancel()
    counts.gate.set()
    event, data = await staying
    assert event == "metrics" and data["counts"]["completed"] == 3
    assert leaving.cancelled() and counts.asked == [USER]


async def test_only_users_seen_in_the_last_two_ticks_are_kept() -> None:
    feed, counts, clock = FakeFeed(), CountingCounts(), Clock()
    snapshots = shared(feed, counts, clock)
    for n in range(100):
        await snapshots.recent(f"user {n}")
    clock.ms += 2000
    await snapshots.recent(USER)
    assert len(snapshots) == 1


def test_a_feed_event_names_its_source_as_the_api_does() -> None:
    by_key = replace(
        row(1), source=event_source(Principal(USER, Scope.INGEST, key_id="k", key_name="ci"))
    )
    with_library = replace(
        row(2),
        source=event_source(
            Principal(USER, Scope.INGEST, key_id="k", key_name="ci"), ("analytics-node", "1.2")
        ),
    )
    assert feed_item(row(3))["source"] == {"kind": "token"}
    assert feed_item(by_key)["source"] == {
        "kind": "key",
        "key_id": "k",
        "key_name": "ci",
        "library": None,
    }
    assert feed_item(with_library)["source"]["library"] == {
        "name": "analytics-node",
        "version": "1.2",
    }
    # The same shape as the API's event models.
    for item in (row(3), by_key, with_library):
        EventSummary.model_validate({**_summary_fields(), "source": feed_item(item)["source"]})


def _summary_fields() -> dict[str, Any]:
    return {
        "id": "x",
        "type": "A",
        "status": "queued",
        "attempt_count": 0,
        "payload": {},
        "last_error": None,
        "created_at": "",
        "updated_at": "",
        "available_at": "",
        "completed_at": None,
    }
