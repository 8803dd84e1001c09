"""Events held in a dict: ingest, claims, outcomes, dispatcher upkeep and reading, in memory.

Each method makes the same state change as the SQL stores' statement of the same name
(tests/integration/test_store_contract.py runs the same checks against all three).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import fields

from eventflow.clock import now_ms
from eventflow.db.ingest import answers, first_by_key
from eventflow.db.memory.reading import MemoryReading
from eventflow.db.memory.rows import MemoryRow
from eventflow.db.rows import (
    AttemptRow,
    Backlog,
    ClaimedEvent,
    NewEvent,
    Outcome,
    PurgedBatch,
    Status,
    StoredEvent,
)
from eventflow.db.upkeep import FINISHED_STATUSES, LOST_ERROR

_CLAIMABLE = (Status.QUEUED, Status.RETRYING)
_NEW_EVENT_FIELDS = tuple(f.name for f in fields(NewEvent))


class MemoryEvents(MemoryReading):
    """Every events store at once, over one dict of rows; ``clock`` stands in for ``now_ms``."""

    def __init__(self, clock: Callable[[], int] = now_ms) -> None:
        super().__init__({}, clock)

    # -- ingest ------------------------------------------------------------------------------

    async def insert_many(
        self, new: Sequence[NewEvent], written: Callable[[], None] | None = None
    ) -> list[StoredEvent]:
        first = first_by_key(new)
        existing = {
            (r.user_id, r.idempotency_key): StoredEvent(r.id, r.status, r.created_at, True)
            for r in self._rows.values()
            if r.idempotency_key is not None
        }
        for e in new:
            key = (e.user_id, e.idempotency_key or "")
            if e.idempotency_key is not None and (key in existing or first[key] is not e):
                continue
            self._rows[e.id] = MemoryRow(
                **{name: getattr(e, name) for name in _NEW_EVENT_FIELDS},
                updated_at=e.created_at,
                dispatched_at=e.created_at if e.status is Status.QUEUED else None,
            )
        if written is not None:
            written()
        return answers(new, first, {k: v for k, v in existing.items() if k in first})

    async def forget_dispatch(self, ids: Sequence[str]) -> None:
        for row in self._these(ids):
            if row.status in _CLAIMABLE:
                row.dispatched_at = None

    async def queue_depth(self) -> int:
        now = self._clock()
        return sum(
            1 for r in self._rows.values() if r.status in _CLAIMABLE and r.available_at <= now
        )

    async def backlog(self, count_limit: int) -> Backlog:
        due = self._due(_CLAIMABLE, self._clock())
        return Backlog(min(len(due), count_limit), due[0].available_at if due else None)

    # -- claims ------------------------------------------------------------------------------

    async def claim_due(self, limit: int, owner: str, lease_ms: int) -> list[ClaimedEvent]:
        now = self._clock()
        due = self._due(_CLAIMABLE, now)[:limit]
        return self._claim(due, now, owner, lease_ms)

    async def claim_ids(self, ids: Sequence[str], owner: str, lease_ms: int) -> list[ClaimedEvent]:
        now = self._clock()
        due = [r for r in self._these(ids) if r.status in _CLAIMABLE and r.available_at <= now]
        return self._claim(due, now, owner, lease_ms)

    def _claim(
        self, rows: Iterable[MemoryRow], now: int, owner: str, lease_ms: int
    ) -> list[ClaimedEvent]:
        claimed = []
        for r in rows:
            r.status, r.attempts, r.updated_at = Status.PROCESSING, r.attempts + 1, now
            r.lease_owner, r.lease_until = owner, now + lease_ms
            r.started_at = now if r.started_at is None else r.started_at
            claimed.append(
                ClaimedEvent(
                    r.id, r.user_id, r.type, r.payload, r.attempts, r.attempt_base, r.created_at
                )
            )
        return claimed

    async def renew_leases(self, owner: str, ids: Sequence[str], lease_ms: int) -> None:
        for r in self._held(owner, ids):
            r.lease_until = self._clock() + lease_ms

    async def release(self, owner: str) -> int:
        held = self._held(owner, list(self._rows))
        for r in held:
            r.status, r.attempts, r.available_at = Status.QUEUED, r.attempts - 1, self._clock()
            r.dispatched_at = r.lease_owner = r.lease_until = None
        return len(held)

    # -- outcomes ----------------------------------------------------------------------------

    async def record_outcomes(self, owner: str, outcomes: Sequence[Outcome]) -> None:
        now = self._clock()
        for o in outcomes:
            r = self._rows.get(o.event_id)
            if r is None:
                continue
            r.history.append(
                AttemptRow(o.attempt, o.status.value, o.error, owner, o.started_at, o.finished_at)
            )
            if r.status is not Status.PROCESSING or r.lease_owner != owner:
                continue
            if r.attempts != o.attempt:
                continue
            r.status, r.updated_at = o.status, now
            r.lease_owner = r.lease_until = None
            if o.status is Status.COMPLETED:
                r.result, r.completed_at = o.result, o.finished_at
            elif o.status is Status.RETRYING:
                r.last_error, r.dispatched_at = o.error, None
                r.available_at = o.retry_at if o.retry_at is not None else r.available_at
            else:
                r.last_error, r.completed_at = o.error, o.finished_at

    # -- dispatcher upkeep -------------------------------------------------------------------

    async def reclaim_expired(
        self,
        max_attempts: int,
        limit: int = 1000,
        max_attempts_by_type: Mapping[str, int] | None = None,
    ) -> int:
        budgets = max_attempts_by_type or {}
        now = self._clock()
        expired = sorted(
            (
                r
                for r in self._rows.values()
                if r.status is Status.PROCESSING and (r.lease_until or 0) < now
            ),
            key=lambda r: r.lease_until or 0,
        )[:limit]
        for r in expired:
            exhausted = r.attempts - r.attempt_base >= budgets.get(r.type, max_attempts)
            r.status = Status.FAILED if exhausted else Status.RETRYING
            r.completed_at = now if exhausted else None
            r.last_error, r.available_at, r.updated_at = LOST_ERROR, now, now
            r.dispatched_at = r.lease_owner = r.lease_until = None
            r.history.append(AttemptRow(r.attempts, "lost", LOST_ERROR, "unknown", now, now))
        return len(expired)

    async def promote_scheduled(self, limit: int = 5000) -> int:
        now = self._clock()
        due = self._due((Status.SCHEDULED,), now)[:limit]
        for r in due:
            r.status, r.dispatched_at, r.updated_at = Status.QUEUED, None, now
        return len(due)

    async def take_unhinted(self, limit: int = 5000) -> list[str]:
        now = self._clock()
        unhinted = [r for r in self._due(_CLAIMABLE, now) if r.dispatched_at is None]
        return self._stamp(unhinted, limit)

    async def take_overdue(self, redispatch_after_ms: int, limit: int = 5000) -> list[str]:
        stale = self._clock() - redispatch_after_ms
        due = self._due(_CLAIMABLE, stale)
        overdue = [r for r in due if r.dispatched_at is not None and r.dispatched_at <= stale]
        return self._stamp(overdue, limit)

    def _stamp(self, rows: list[MemoryRow], limit: int) -> list[str]:
        now = self._clock()
        for r in rows[:limit]:
            r.dispatched_at = now
        return [r.id for r in rows[:limit]]

    async def purge_finished(
        self, status: Status, finished_before: int, limit: int, finished_from: int = 0
    ) -> PurgedBatch:
        if status not in FINISHED_STATUSES:
            raise ValueError(f"only finished events are purged, not {status.value!r} ones")
        old = sorted(
            (
                r
                for r in self._rows.values()
                if r.status is status and r.completed_at is not None
                if finished_from <= r.completed_at < finished_before
            ),
            key=lambda r: r.completed_at or 0,
        )[:limit]
        for r in old:
            del self._rows[r.id]
        return PurgedBatch(len(old), max((r.completed_at or 0 for r in old), default=None))

    # -- helpers -----------------------------------------------------------------------------

    async def fold_tallies(self, limit: int = 20_000) -> int:
        """Nothing to fold: the memory store counts its rows when asked."""
        return 0

    async def prune_tallies(self, before_s: int) -> int:
        return 0

    def _due(self, statuses: tuple[Status, ...], now: int) -> list[MemoryRow]:
        due = [r for r in self._rows.values() if r.status in statuses and r.available_at <= now]
        return sorted(due, key=lambda r: r.available_at)

    def _these(self, ids: Iterable[str]) -> list[MemoryRow]:
        return [self._rows[i] for i in dict.fromkeys(ids) if i in self._rows]

    def _held(self, owner: str, ids: Sequence[str]) -> list[MemoryRow]:
        return [
            r for r in self._these(ids) if r.status is Status.PROCESSING and r.lease_owner == owner
        ]
