"""The users store: accounts, their token generation, and their state for operators."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from eventflow.clock import now_ms
from eventflow.db.database import Database
from eventflow.db.rows import AccountRow, UserRow
from eventflow.db.tables import api_keys, users


class EmailTaken(Exception):
    """Another account already has this email address."""


# What a tombstone's email becomes: registration refuses any address without "@", so the
# freed address can be registered again and the tombstone never collides with anyone.
TOMBSTONE_EMAIL = "deleted:"
_ACCOUNT_COLUMNS = (
    users.c.id,
    users.c.token_generation,
    users.c.disabled_at,
    users.c.deleted_at,
    users.c.updated_at,
)


def _touched(now: int) -> sa.ColumnElement[Any]:
    """The new ``updated_at`` of a changed row: ``now``, and never less than before.

    Processes poll changes by ``updated_at`` and keep a row's newest version only; a writer whose
    clock runs behind the last one must still move the row forward.
    """
    return sa.case((users.c.updated_at >= now, users.c.updated_at + 1), else_=now)


class UserStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def create(self, user: UserRow) -> UserRow:
        """Insert ``user``; the unique index decides between concurrent registrations."""
        try:
            async with self._db.write() as conn:
                await conn.execute(
                    users.insert().values(
                        id=user.id,
                        email=user.email,
                        password_hash=user.password_hash,
                        created_at=user.created_at,
                        updated_at=user.created_at,
                    )
                )
        except IntegrityError as exc:
            raise EmailTaken(user.email) from exc
        return user

    async def by_email(self, email: str) -> UserRow | None:
        return await self._one(users.c.email == email)

    async def by_id(self, user_id: str) -> UserRow | None:
        return await self._one(sa.and_(users.c.id == user_id, users.c.deleted_at.is_(None)))

    async def all(self) -> list[UserRow]:
        """Every account that is not deleted, oldest first."""
        async with self._db.read() as conn:
            rows = await conn.execute(
                sa.select(users).where(users.c.deleted_at.is_(None)).order_by(users.c.created_at)
            )
            return [_user(row) for row in rows]

    # -- what API processes poll ----------------------------------------------------------

    async def account(self, user_id: str) -> AccountRow | None:
        async with self._db.read() as conn:
            row = (
                await conn.execute(sa.select(*_ACCOUNT_COLUMNS).where(users.c.id == user_id))
            ).first()
        return _account(row) if row is not None else None

    async def changed_since(self, since_ms: int) -> list[AccountRow]:
        """Accounts whose state changed after ``since_ms`` (the ``updated_at`` index)."""
        async with self._db.read() as conn:
            rows = await conn.execute(
                sa.select(*_ACCOUNT_COLUMNS).where(users.c.updated_at > since_ms)
            )
            return [_account(row) for row in rows]

    async def latest_change(self) -> int:
        async with self._db.read() as conn:
            value = await conn.scalar(sa.select(sa.func.max(users.c.updated_at)))
        return int(value or 0)

    # -- changes --------------------------------------------------------------------------

    async def end_sessions(self, user_id: str) -> AccountRow | None:
        """Sign out everywhere: a new token generation ends every token issued before."""
        return await self._change(
            users.c.id == user_id, {"token_generation": users.c.token_generation + 1}
        )

    async def set_disabled(self, user_id: str, disabled: bool) -> AccountRow | None:
        """Disable (ending every session) or enable an account; None if there is none."""
        values: dict[str, Any] = {"disabled_at": None}
        if disabled:
            values = {
                "disabled_at": sa.func.coalesce(users.c.disabled_at, now_ms()),
                "token_generation": users.c.token_generation + 1,
            }
        return await self._change(users.c.id == user_id, values)

    async def tombstone(self, user_id: str) -> AccountRow | None:
        """Delete an account, keeping its row: email freed, password gone, sessions ended, and
        its API keys revoked (every API process also refuses them for the account's state)."""
        now = now_ms()
        async with self._db.write() as conn:
            account = await _update(
                conn,
                users.c.id == user_id,
                {
                    "email": TOMBSTONE_EMAIL + user_id,
                    "password_hash": "",
                    "deleted_at": now,
                    "token_generation": users.c.token_generation + 1,
                },
            )
            if account is not None:
                await conn.execute(
                    sa.update(api_keys)
                    .where(api_keys.c.user_id == user_id, api_keys.c.revoked_at.is_(None))
                    .values(revoked_at=now)
                )
        return account

    async def _change(
        self, where: sa.ColumnElement[bool], values: dict[str, Any]
    ) -> AccountRow | None:
        async with self._db.write() as conn:
            return await _update(conn, where, values)

    async def _one(self, where: sa.ColumnElement[bool]) -> UserRow | None:
        async with self._db.read() as conn:
            row = (await conn.execute(sa.select(users).where(where))).first()
        return _user(row) if row is not None else None


async def _update(
    conn: AsyncConnection, where: sa.ColumnElement[bool], values: dict[str, Any]
) -> AccountRow | None:
    # Deleted accounts stay deleted: nothing changes a tombstone.
    stmt = (
        sa.update(users)
        .where(where, users.c.deleted_at.is_(None))
        .values(**values, updated_at=_touched(now_ms()))
        .returning(*_ACCOUNT_COLUMNS)
    )
    row = (await conn.execute(stmt)).first()
    return _account(row) if row is not None else None


def _user(row: sa.Row[*tuple[Any, ...]]) -> UserRow:
    return UserRow(
        id=str(row.id),
        email=row.email,
        password_hash=row.password_hash,
        created_at=row.created_at,
        token_generation=row.token_generation,
        disabled_at=row.disabled_at,
    )


def _account(row: sa.Row[*tuple[Any, ...]]) -> AccountRow:
    return AccountRow(
        id=str(row.id),
        token_generation=row.token_generation,
        disabled=row.disabled_at is not None,
        deleted=row.deleted_at is not None,
        updated_at=row.updated_at,
    )
