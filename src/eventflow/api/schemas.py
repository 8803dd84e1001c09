"""Response and request shapes of the public API (the OpenAPI contract)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

StatusName = Literal["scheduled", "queued", "processing", "retrying", "completed", "failed"]


# An address: no spaces, no control characters (PostgreSQL cannot store NUL; none belongs in an
# address), one "@", a dot in the domain; spaces around it are ignored. The schema states the
# same rule the route applies after trimming, so nothing it refuses is ever accepted.
EMAIL_SPACE = " \t\r\n"
_EMAIL_CHAR = r"[^@ \t\r\n\x00-\x1f\x7f]"
EMAIL_CORE = rf"{_EMAIL_CHAR}{{1,64}}@{_EMAIL_CHAR}+\.{_EMAIL_CHAR}+"


class RegisterIn(BaseModel):
    email: str = Field(
        max_length=320,
        pattern=rf"^[ \t\r\n]*{EMAIL_CORE}[ \t\r\n]*$",
        examples=["ada@example.com"],
    )
    password: str = Field(min_length=8, max_length=1024, examples=["correct horse battery"])


class LoginIn(BaseModel):
    email: str = Field(max_length=320)
    password: str = Field(max_length=1024)


class UserOut(BaseModel):
    id: str
    email: str
    created_at: str


class TokenOut(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int


class AcceptedOut(BaseModel):
    id: str
    status: StatusName
    created_at: str


class AcceptedItem(BaseModel):
    id: str
    status: StatusName


class BatchAcceptedOut(BaseModel):
    accepted: int
    events: list[AcceptedItem]


class AttemptOut(BaseModel):
    number: int
    outcome: str
    error: str | None
    worker: str
    started_at: str
    finished_at: str
    duration_ms: int


class EventSummary(BaseModel):
    id: str
    type: str
    status: StatusName
    attempt_count: int = Field(description="Attempts made so far, across replays")
    payload: dict[str, Any]
    last_error: str | None
    created_at: str
    updated_at: str
    available_at: str
    completed_at: str | None


class EventOut(EventSummary):
    result: dict[str, Any] | None
    idempotency_key: str | None
    started_at: str | None
    attempts: list[AttemptOut] = Field(description="Every attempt, oldest first")


class EventPage(BaseModel):
    items: list[EventSummary]
    next_cursor: str | None


class ReplayOut(BaseModel):
    replayed: int = Field(description="How many events were queued again")
    ids: list[str] = Field(description="The newest of them, 1,000 at most, newest first")


class Throughput(BaseModel):
    ingested_per_sec: float
    completed_per_sec: float


class Latency(BaseModel):
    p50: int | None
    p95: int | None
    p99: int | None
    samples: int


class StatsOut(BaseModel):
    counts: dict[StatusName, int]
    total: int
    success_rate: float | None = Field(description="completed / (completed + failed)")
    throughput: Throughput = Field(description="Per second, averaged over the last minute")
    latency_ms: Latency = Field(description="Ingest to completed, recent events")
    queue_depth: int = Field(description="Your events waiting to run or running")


class HealthOut(BaseModel):
    status: Literal["ok", "unavailable"]
    checks: dict[str, str]
