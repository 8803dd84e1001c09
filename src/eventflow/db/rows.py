"""Plain records passed between the stores and the rest of the service."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum


class Status(StrEnum):
    SCHEDULED = "scheduled"
    QUEUED = "queued"
    PROCESSING = "processing"
    RETRYING = "retrying"
    COMPLETED = "completed"
    FAILED = "failed"


REPLAYABLE = (Status.COMPLETED, Status.FAILED)


# Not frozen: these two are made once per event on the ingest path, and a frozen dataclass's
# __init__ costs several times more (object.__setattr__ per field).
@dataclass(slots=True)
class NewEvent:
    id: str
    user_id: str
    type: str
    payload: str
    status: Status
    available_at: int
    created_at: int
    idempotency_key: str | None = None
    #: Who sent it: None for a user's token, else ``auth.principal.event_source``'s JSON text.
    source: str | None = None


@dataclass(slots=True)
class StoredEvent:
    """What the writer answers for one accepted event (new, or the idempotent original)."""

    id: str
    status: Status
    created_at: int
    duplicate: bool = False


@dataclass(frozen=True, slots=True)
class Backlog:
    """Events ready to run and not claimed: how many (counted up to a bound), and when the one
    that has waited longest became ready (None: nothing waits)."""

    depth: int
    oldest_ready_at: int | None


@dataclass(frozen=True, slots=True)
class UserRow:
    id: str
    email: str
    password_hash: str
    created_at: int
    token_generation: int = 0
    disabled_at: int | None = None


@dataclass(frozen=True, slots=True)
class AccountRow:
    """What every API process must know of an account to admit its tokens."""

    id: str
    token_generation: int
    disabled: bool
    deleted: bool
    updated_at: int


@dataclass(frozen=True, slots=True)
class Revocation:
    """A signed-out session: its token id, and when the token would have expired anyway."""

    jti: str
    expires_at: int
    revoked_at: int


@dataclass(frozen=True, slots=True)
class KeyRow:
    """An API key as stored: never the key itself, only its SHA-256."""

    id: str
    user_id: str
    name: str
    scope: str
    prefix: str
    hash: str
    created_at: int
    last_used_at: int | None = None
    revoked_at: int | None = None


@dataclass(frozen=True, slots=True)
class AttemptRow:
    number: int
    outcome: str
    error: str | None
    worker: str
    started_at: int
    finished_at: int


@dataclass(frozen=True, slots=True)
class EventRow:
    id: str
    user_id: str
    type: str
    payload: str
    status: Status
    attempts: int
    available_at: int
    idempotency_key: str | None
    result: str | None
    last_error: str | None
    created_at: int
    updated_at: int
    started_at: int | None
    completed_at: int | None
    source: str | None = None


@dataclass(frozen=True, slots=True)
class ClaimedEvent:
    """An event this worker now owns (status ``processing``, lease held by ``lease_owner``)."""

    id: str
    user_id: str
    type: str
    payload: str
    attempt: int
    attempt_base: int
    created_at: int

    @property
    def attempt_in_round(self) -> int:
        """Attempts since the event was stored or last replayed (what the budget counts)."""
        return self.attempt - self.attempt_base


@dataclass(frozen=True, slots=True)
class Outcome:
    """The result of one attempt, written back in the worker's batch update."""

    event_id: str
    attempt: int
    status: Status
    started_at: int
    finished_at: int
    result: str | None = None
    error: str | None = None
    retry_at: int | None = None


@dataclass(frozen=True, slots=True)
class PageQuery:
    """One page of a user's events, newest first: at most ``limit`` older than ``before_id``."""

    limit: int
    before_id: str | None = None
    status: Status | None = None
    type: str | None = None


@dataclass(frozen=True, slots=True)
class FeedQuery:
    """What a live feed may need to redraw since its last look."""

    after_id: str | None
    watched: Sequence[str]
    finished_since_ms: int
    limit: int


@dataclass(frozen=True, slots=True)
class PurgedBatch:
    """What one purge transaction deleted: how many events, and the latest ``completed_at``
    among them, where the next batch of a round starts."""

    deleted: int
    last_finished: int | None


@dataclass(frozen=True, slots=True)
class LatencyBucket:
    """Completions that took more than ``above_ms`` and at most ``upto_ms`` (None: no bound)."""

    above_ms: int
    upto_ms: int | None
    count: int


@dataclass(frozen=True, slots=True)
class StatusCounts:
    by_status: dict[str, int]
    ingested_last_minute: int
    completed_last_minute: int
    #: The recent completions' latency histogram, in bound order (db/tallies.py).
    latency: list[LatencyBucket]
