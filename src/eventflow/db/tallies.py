"""Tallies: a user's counts by status, throughput and latency, read in a few dozen rows.

Triggers on ``events`` keep them exact in the very transactions that change the events
(migration 0007 says how, per database); nothing here counts events. A reader sums
``event_tallies`` and the changes not yet folded into it in one statement, so every answer is
the exact state of one moment, however large the history.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from eventflow.db.database import Database
from eventflow.db.rows import LatencyBucket, Status, StatusCounts
from eventflow.db.tables import event_tallies, event_tally_changes

#: The latency histogram's bucket bounds in ms, as migration 0007's triggers name them:
#: ``latency.<bound>`` counts completions that took at most ``bound`` ms (and more than the
#: bound before it), ``latency.more`` those beyond the last.
LATENCY_BOUNDS_MS = (
    *(1, 2, 3, 5, 7, 10, 15, 20, 30, 50, 70, 100, 150, 200, 300, 500, 700),
    *(1_000, 1_500, 2_000, 3_000, 5_000, 7_000, 10_000, 15_000, 20_000, 30_000),
    *(60_000, 120_000, 300_000, 600_000, 1_800_000, 3_600_000),
)
LATENCY_MORE = "latency.more"
LATENCY_NAMES = (*(f"latency.{b}" for b in LATENCY_BOUNDS_MS), LATENCY_MORE)
STATUS_NAMES = tuple(f"status.{s.value}" for s in Status)
#: Per-second flows: events stored, and events that entered ``completed`` / ``failed``.
INGESTED, COMPLETED, FAILED = "ingested", Status.COMPLETED.value, Status.FAILED.value
FLOW_NAMES = (INGESTED, COMPLETED, FAILED)
#: Completions whose latency ``GET /stats`` summarizes: those of the last five whole minutes
#: and of the current one.
LATENCY_WINDOW_S = 300
#: Throughput ``GET /stats`` averages.
THROUGHPUT_WINDOW_S = 60
#: How long per-second and per-minute tallies are kept: longer than any window read.
KEEP_S = 15 * 60

Tallies = dict[tuple[str, int], int]


def latency_name(took_ms: int) -> str:
    """The tally a completion that took ``took_ms`` adds to (as the triggers choose it)."""
    for bound in LATENCY_BOUNDS_MS:
        if took_ms <= bound:
            return f"latency.{bound}"
    return LATENCY_MORE


def latency_buckets(counts: dict[str, int]) -> list[LatencyBucket]:
    """The histogram in bound order from counts by tally name, without empty buckets."""
    buckets, above = [], 0
    for name, bound in zip(LATENCY_NAMES, (*LATENCY_BOUNDS_MS, None), strict=True):
        if counts.get(name):
            buckets.append(LatencyBucket(above, bound, counts[name]))
        above = bound if bound is not None else above
    return buckets


async def read_tallies(db: Database, user_id: str, *ranges: tuple[Sequence[str], int]) -> Tallies:
    """The user's tallies ``names`` at ``since`` or later, for each (names, since) of
    ``ranges``, by (name, at): one statement, each range an index range of both tables."""
    query = _tallies_query(tuple(tuple(names) for names, _ in ranges))
    params: dict[str, object] = {"user_id": user_id}
    params.update({f"since_{i}": since for i, (_, since) in enumerate(ranges)})
    async with db.read() as conn:
        rows = await conn.execute(query, params)
        return {(str(r[0]), int(r[1])): int(r[2]) for r in rows}


@functools.cache
def _tallies_query(names: tuple[tuple[str, ...], ...]) -> sa.Select[Any]:
    """The statement of ``read_tallies`` for these tally names, built once: a fresh tree of a
    dozen selects per call was most of what ``GET /stats`` allocated, and the collections it
    set off were its slowest answers."""

    def part(table: sa.Table, i: int) -> sa.Select[tuple[str, int, int]]:
        return sa.select(table.c.name, table.c.at, table.c.n).where(
            table.c.user_id == sa.bindparam("user_id"),
            table.c.name.in_(names[i]),
            table.c.at >= sa.bindparam(f"since_{i}"),
        )

    parts = [
        part(table, i) for table in (event_tallies, event_tally_changes) for i in range(len(names))
    ]
    both = sa.union_all(*parts).subquery()
    return sa.select(both.c.name, both.c.at, sa.func.sum(both.c.n)).group_by(both.c.name, both.c.at)


async def status_counts(db: Database, user_id: str, now_ms: int) -> StatusCounts:
    """What ``GET /stats`` summarizes, in one round trip: three index ranges of the tallies."""
    now_s = now_ms // 1000
    flows, latency = (INGESTED, COMPLETED), set(LATENCY_NAMES)
    found = await read_tallies(
        db,
        user_id,
        (STATUS_NAMES, 0),
        (flows, now_s - THROUGHPUT_WINDOW_S),
        (LATENCY_NAMES, (now_s - LATENCY_WINDOW_S) // 60 * 60),
    )
    by_status: dict[str, int] = {}
    by_flow = dict.fromkeys(flows, 0)
    by_latency: dict[str, int] = {}
    for (name, _), n in found.items():
        if name in latency:
            by_latency[name] = by_latency.get(name, 0) + n
        elif name in by_flow:
            by_flow[name] += n
        elif n:
            by_status[name.removeprefix("status.")] = n
    return StatusCounts(
        by_status=by_status,
        ingested_last_minute=by_flow[INGESTED],
        completed_last_minute=by_flow[COMPLETED],
        latency=latency_buckets(by_latency),
    )
