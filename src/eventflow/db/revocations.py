"""Signed-out sessions: kept until their token would have expired anyway, polled by every API."""

from __future__ import annotations

import sqlalchemy as sa

from eventflow.db.database import Database
from eventflow.db.rows import Revocation
from eventflow.db.tables import revoked_tokens

_COLUMNS = (revoked_tokens.c.jti, revoked_tokens.c.expires_at, revoked_tokens.c.revoked_at)


class RevocationStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def revoke(self, jti: str, user_id: str, expires_at: int, now: int) -> None:
        """Record a sign-out (a repeat is a no-op), and forget revocations that have expired."""
        async with self._db.write() as conn:
            await conn.execute(
                self._db.insert_or_skip(revoked_tokens, ["jti"]).values(
                    jti=jti, user_id=user_id, expires_at=expires_at, revoked_at=now
                )
            )
            # An expired token is refused for its expiry: its revocation has nothing left to do.
            await conn.execute(sa.delete(revoked_tokens).where(revoked_tokens.c.expires_at < now))

    async def since(self, since_ms: int) -> list[Revocation]:
        """Revocations recorded after ``since_ms`` (the ``revoked_at`` index)."""
        return await self._select(revoked_tokens.c.revoked_at > since_ms)

    async def unexpired(self, now: int) -> list[Revocation]:
        """Every revocation still in force: what a process starting up must know."""
        return await self._select(revoked_tokens.c.expires_at > now)

    async def _select(self, where: sa.ColumnElement[bool]) -> list[Revocation]:
        async with self._db.read() as conn:
            rows = await conn.execute(sa.select(*_COLUMNS).where(where))
            return [Revocation(r.jti, r.expires_at, r.revoked_at) for r in rows]
