"""Response and request shapes of the public API (the OpenAPI contract)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import orjson
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


class LibraryOut(BaseModel):
    name: str
    version: str


class TokenSource(BaseModel):
    """Sent with a user's access token."""

    kind: Literal["token"] = "token"


class KeySource(BaseModel):
    """Sent with an API key: the key's id and its name when it sent the event."""

    kind: Literal["key"] = "key"
    key_id: str
    key_name: str
    library: LibraryOut | None = Field(description="The sending library, when it said")


EventSource = Annotated[TokenSource | KeySource, Field(discriminator="kind")]


def source_view(stored: str | None) -> dict[str, Any]:
    """An event's stored source (``auth.principal.event_source``) as the API shows it."""
    if stored is None:
        return {"kind": "token"}
    raw = orjson.loads(stored)
    library = raw.get("library")
    return {
        "kind": "key",
        "key_id": raw["key_id"],
        "key_name": raw["key_name"],
        "library": {"name": library["name"], "version": library["version"]} if library else None,
    }


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
    source: EventSource = Field(description="Who sent it: a user's token, or which API key")


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


KeyScope = Literal["ingest", "read"]
# No control characters (PostgreSQL cannot store NUL, and a name is shown in the dashboard).
KEY_NAME_PATTERN = r"^[^\x00-\x1f\x7f]+$"


class KeyIn(BaseModel):
    name: str = Field(
        min_length=1, max_length=100, pattern=KEY_NAME_PATTERN, examples=["checkout service"]
    )
    scope: KeyScope = Field(description="ingest: send events only; read: read events and stats")


class KeyOut(BaseModel):
    id: str
    name: str
    scope: KeyScope
    prefix: str = Field(description="`efk_` and the key's first 8 random characters")
    created_at: str
    last_used_at: str | None = Field(
        description="When it was last used, to within a minute or so; null: never"
    )


class NewKeyOut(BaseModel):
    id: str
    name: str
    scope: KeyScope
    prefix: str
    key: str = Field(description="The key itself: shown this once, never stored")
    created_at: str


class KeyList(BaseModel):
    items: list[KeyOut] = Field(description="The account's active keys, newest first")


class HealthOut(BaseModel):
    status: Literal["ok", "unavailable"]
    checks: dict[str, str]
