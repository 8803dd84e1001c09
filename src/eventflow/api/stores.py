"""What the API's routes ask of the database: one protocol per concern, met by the db stores."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from eventflow.db.feed import FeedRow, Series
from eventflow.db.rows import (
    AccountRow,
    AttemptRow,
    EventRow,
    FeedQuery,
    KeyRow,
    PageQuery,
    StatusCounts,
    UserRow,
)


class EventReading(Protocol):
    """A user's events: listing, detail, stats, and replays (the one write)."""

    async def get(self, user_id: str, event_id: str) -> EventRow | None: ...

    async def attempts(self, event_id: str) -> list[AttemptRow]: ...

    async def page(self, user_id: str, query: PageQuery) -> tuple[list[EventRow], bool]: ...

    async def counts(self, user_id: str) -> StatusCounts: ...

    async def replay(self, user_id: str, event_ids: Sequence[str]) -> list[str]: ...

    async def replay_failed(self, user_id: str, before_id: str | None, limit: int) -> list[str]:
        """Replay, in one transaction, the newest ``limit`` failed events older than
        ``before_id``; answers their ids, newest first."""


class FeedReading(Protocol):
    """What the dashboard's live stream redraws."""

    async def series(self, user_id: str, first_second: int, last_second: int) -> Series: ...

    async def changes(self, user_id: str, query: FeedQuery) -> list[FeedRow]: ...

    async def in_flight(self, user_id: str, per_status: int) -> list[FeedRow]: ...

    async def newest_id(self, user_id: str) -> str | None: ...


class AccountStore(Protocol):
    """Registration, log-in and signing out everywhere."""

    async def create(self, user: UserRow) -> UserRow:
        """``user``, stored; raises ``EmailTaken`` if another account has its email."""

    async def by_email(self, email: str) -> UserRow | None: ...

    async def by_id(self, user_id: str) -> UserRow | None: ...

    async def end_sessions(self, user_id: str) -> AccountRow | None: ...


class SessionRevocations(Protocol):
    async def revoke(self, jti: str, user_id: str, expires_at: int, now: int) -> None: ...


class KeyManagement(Protocol):
    """An account's API keys, as its owner manages them."""

    async def create(self, key: KeyRow, cap: int) -> KeyRow:
        """``key``, stored; raises ``TooManyKeys`` if the account has ``cap`` active keys."""

    async def active(self, user_id: str) -> list[KeyRow]: ...

    async def revoke(self, user_id: str, key_id: str, now: int) -> bool: ...
