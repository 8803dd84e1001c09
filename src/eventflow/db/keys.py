"""The API keys store: create (within a cap), list, revoke, and what API processes poll."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from eventflow.db.database import Database
from eventflow.db.rows import KeyRow
from eventflow.db.tables import api_keys, users


class TooManyKeys(Exception):
    """The account already has as many active keys as it may."""


_ACTIVE = api_keys.c.revoked_at.is_(None)


class KeyStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def create(self, key: KeyRow, cap: int) -> KeyRow:
        """Store ``key``; raises ``TooManyKeys`` if its account has ``cap`` active keys already."""
        async with self._db.write() as conn:
            # The account's row, locked (PostgreSQL; SQLite has one writer anyway): two
            # concurrent creations cannot both see room for one more.
            await conn.execute(
                sa.select(users.c.id).where(users.c.id == key.user_id).with_for_update()
            )
            active = await conn.scalar(
                sa.select(sa.func.count())
                .select_from(api_keys)
                .where(api_keys.c.user_id == key.user_id, _ACTIVE)
            )
            if int(active or 0) >= cap:
                raise TooManyKeys(key.user_id)
            await conn.execute(
                api_keys.insert().values(
                    id=key.id,
                    user_id=key.user_id,
                    name=key.name,
                    scope=key.scope,
                    prefix=key.prefix,
                    hash=key.hash,
                    created_at=key.created_at,
                )
            )
        return key

    async def active(self, user_id: str) -> list[KeyRow]:
        """The account's keys that are not revoked, newest first."""
        async with self._db.read() as conn:
            rows = await conn.execute(
                sa.select(api_keys)
                .where(api_keys.c.user_id == user_id, _ACTIVE)
                .order_by(api_keys.c.id.desc())
            )
            return [_key(row._mapping) for row in rows]

    async def revoke(self, user_id: str, key_id: str, now: int) -> bool:
        """Revoke one of the account's active keys; False if it has no such key."""
        async with self._db.write() as conn:
            rows = await conn.execute(
                sa.update(api_keys)
                .where(api_keys.c.id == key_id, api_keys.c.user_id == user_id, _ACTIVE)
                .values(revoked_at=now)
                .returning(api_keys.c.id)
            )
            return rows.first() is not None

    # -- what API processes ask --------------------------------------------------------------

    async def by_hash(self, digest: str) -> KeyRow | None:
        """The active key whose SHA-256 is ``digest`` (the unique index), if any."""
        async with self._db.read() as conn:
            row = (
                await conn.execute(sa.select(api_keys).where(api_keys.c.hash == digest, _ACTIVE))
            ).first()
        return _key(row._mapping) if row is not None else None

    async def revoked_since(self, since_ms: int) -> list[tuple[str, int]]:
        """(id, revoked_at) of the keys revoked after ``since_ms`` (the ``revoked_at`` index)."""
        async with self._db.read() as conn:
            rows = await conn.execute(
                sa.select(api_keys.c.id, api_keys.c.revoked_at).where(
                    api_keys.c.revoked_at > since_ms
                )
            )
            return [(str(r.id), int(r.revoked_at)) for r in rows]

    async def mark_used(self, used: Mapping[str, int]) -> None:
        """Record when each key was last used, in one transaction (a batch, never per request)."""
        if not used:
            return
        stmt = (
            sa.update(api_keys)
            .where(api_keys.c.id == sa.bindparam("key_id"))
            .values(last_used_at=sa.bindparam("used_at"))
        )
        async with self._db.write() as conn:
            await conn.execute(stmt, [{"key_id": k, "used_at": t} for k, t in used.items()])


def _key(m: Any) -> KeyRow:
    return KeyRow(
        id=str(m["id"]),
        user_id=str(m["user_id"]),
        name=m["name"],
        scope=m["scope"],
        prefix=m["prefix"],
        hash=m["hash"],
        created_at=m["created_at"],
        last_used_at=m["last_used_at"],
        revoked_at=m["revoked_at"],
    )
