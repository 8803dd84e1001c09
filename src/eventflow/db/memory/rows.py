"""A row of the events table, as the in-memory stores keep it."""

from __future__ import annotations

from dataclasses import dataclass, field

from eventflow.db.rows import AttemptRow, NewEvent


@dataclass(slots=True)
class MemoryRow(NewEvent):
    """One row of the events table: the event as stored, and what processing made of it."""

    updated_at: int = 0
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
