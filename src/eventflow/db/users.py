"""The users repository."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from eventflow.db.engine import begin_write
from eventflow.db.rows import UserRow
from eventflow.db.tables import users
from eventflow.errors import Conflict


class UserRepository:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def create(self, user: UserRow) -> UserRow:
        """Insert ``user``; the unique index decides between concurrent registrations."""
        try:
            async with begin_write(self._engine) as conn:
                await conn.execute(
                    users.insert().values(
                        id=user.id,
                        email=user.email,
                        password_hash=user.password_hash,
                        created_at=user.created_at,
                    )
                )
        except IntegrityError as exc:
            raise Conflict("An account with this email already exists") from exc
        return user

    async def by_email(self, email: str) -> UserRow | None:
        return await self._one(users.c.email == email)

    async def by_id(self, user_id: str) -> UserRow | None:
        return await self._one(users.c.id == user_id)

    async def _one(self, where: sa.ColumnElement[bool]) -> UserRow | None:
        async with self._engine.connect() as conn:
            row = (await conn.execute(sa.select(users).where(where))).first()
        if row is None:
            return None
        return UserRow(
            id=str(row.id),
            email=row.email,
            password_hash=row.password_hash,
            created_at=row.created_at,
        )
