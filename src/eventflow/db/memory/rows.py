"""A row of the events table, as the in-memory stores keep it."""

from __future__ import annotations

from dataclasses import dataclass, field

from eventflow.db.rows import AttemptRow, Status


@dataclass(slots=True)
class MemoryRow:
    """One row of the events table."""

    id: str
    user_id: str
    type: str
    payload: str
    status: Status
    available_at: int
    created_at: int
    updated_at: int
    idempotency_key: str | None = None
    attempts: int = 0
    attempt_base: int = 0
    dispatched_at: int | None = None
    lease_owner: str | None = None
    lease_until: int | None = None
    result: str | None = None
    last_error: str | None = None
    started_at: int | None = None
    completed_at: int | None = None
    history: list[AttemptRow] = field(default_factory=list)
