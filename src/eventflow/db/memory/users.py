"""Accounts held in memory, with the users store's rules (unique email, tombstones)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from eventflow.clock import now_ms
from eventflow.db.rows import AccountRow, UserRow
from eventflow.db.users import TOMBSTONE_EMAIL, EmailTaken


@dataclasses.dataclass(slots=True)
class _Account:
    user: UserRow
    updated_at: int
    deleted_at: int | None = None


class MemoryUsers:
    def __init__(self, clock: Callable[[], int] = now_ms) -> None:
        self._accounts: dict[str, _Account] = {}
        self._clock = clock

    async def create(self, user: UserRow) -> UserRow:
        if any(a.user.email == user.email for a in self._accounts.values()):
            raise EmailTaken(user.email)
        self._accounts[user.id] = _Account(user, user.created_at)
        return user

    async def by_email(self, email: str) -> UserRow | None:
        return next((a.user for a in self._accounts.values() if a.user.email == email), None)

    async def by_id(self, user_id: str) -> UserRow | None:
        found = self._accounts.get(user_id)
        return found.user if found is not None and found.deleted_at is None else None

    async def all(self) -> list[UserRow]:
        live = [a.user for a in self._accounts.values() if a.deleted_at is None]
        return sorted(live, key=lambda u: u.created_at)

    async def account(self, user_id: str) -> AccountRow | None:
        found = self._accounts.get(user_id)
        return _account(found) if found is not None else None

    async def changed_since(self, since_ms: int) -> list[AccountRow]:
        return [_account(a) for a in self._accounts.values() if a.updated_at > since_ms]

    async def latest_change(self) -> int:
        return max((a.updated_at for a in self._accounts.values()), default=0)

    async def end_sessions(self, user_id: str) -> AccountRow | None:
        return self._change(user_id, lambda u: _next_generation(u))

    async def set_disabled(self, user_id: str, disabled: bool) -> AccountRow | None:
        if not disabled:
            return self._change(user_id, lambda u: dataclasses.replace(u, disabled_at=None))
        return self._change(
            user_id,
            lambda u: _next_generation(
                dataclasses.replace(u, disabled_at=u.disabled_at or self._clock())
            ),
        )

    async def tombstone(self, user_id: str) -> AccountRow | None:
        found = self._change(
            user_id,
            lambda u: _next_generation(
                dataclasses.replace(u, email=TOMBSTONE_EMAIL + user_id, password_hash="")
            ),
        )
        if found is not None:
            self._accounts[user_id].deleted_at = self._clock()
            found = _account(self._accounts[user_id])
        return found

    def _change(self, user_id: str, change: Callable[[UserRow], UserRow]) -> AccountRow | None:
        found = self._accounts.get(user_id)
        if found is None or found.deleted_at is not None:
            return None
        found.user = change(found.user)
        # Never backwards, as in the SQL store: pollers keep a row's newest version only.
        now = self._clock()
        found.updated_at = found.updated_at + 1 if found.updated_at >= now else now
        return _account(found)


def _next_generation(user: UserRow) -> UserRow:
    return dataclasses.replace(user, token_generation=user.token_generation + 1)


def _account(a: _Account) -> AccountRow:
    return AccountRow(
        id=a.user.id,
        token_generation=a.user.token_generation,
        disabled=a.user.disabled_at is not None,
        deleted=a.deleted_at is not None,
        updated_at=a.updated_at,
    )
