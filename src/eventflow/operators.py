"""What ``eventflow user`` does: accounts managed by operators, straight in the database.

No API process is involved: a change reaches every running API through its poll of the
``users`` table within ``EVENTFLOW_ACCOUNT_POLL_MS`` (``auth/accounts.py``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Protocol

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncEngine

from eventflow.api.schemas import EMAIL_SPACE, RegisterIn
from eventflow.auth.passwords import Passwords
from eventflow.clock import now_ms
from eventflow.db.rows import AccountRow, UserRow
from eventflow.db.stores import build_stores
from eventflow.db.users import EmailTaken
from eventflow.errors import Conflict, NotFound, ValidationFailed
from eventflow.ids import new_id, parse_id

_SWEEP_INTERVAL_S = 1.0


class AccountAdmin(Protocol):
    """What operators do to accounts, straight in the database."""

    async def create(self, user: UserRow) -> UserRow: ...

    async def all(self) -> list[UserRow]: ...

    async def by_email(self, email: str) -> UserRow | None: ...

    async def account(self, user_id: str) -> AccountRow | None: ...

    async def set_disabled(self, user_id: str, disabled: bool) -> AccountRow | None: ...

    async def tombstone(self, user_id: str) -> AccountRow | None: ...


class Operators:
    def __init__(self, engine: AsyncEngine) -> None:
        stores = build_stores(engine)
        self._users: AccountAdmin = stores.users
        self._erasure = stores.erasure

    async def create(self, email: str, password: str) -> UserRow:
        """An account, under the same rules as registration (``Conflict`` if the email is taken)."""
        try:
            form = RegisterIn.model_validate({"email": email, "password": password})
        except ValidationError as exc:
            first = exc.errors()[0]
            raise ValidationFailed(f"{first['loc'][0]}: {first['msg']}") from exc
        passwords = Passwords()
        try:
            password_hash = await passwords.hash(form.password)
        finally:
            passwords.close()
        user = UserRow(
            id=new_id(),
            email=form.email.strip(EMAIL_SPACE).lower(),
            password_hash=password_hash,
            created_at=now_ms(),
        )
        try:
            return await self._users.create(user)
        except EmailTaken as exc:
            raise Conflict("An account with this email already exists") from exc

    async def accounts(self) -> list[UserRow]:
        return await self._users.all()

    async def find(self, account: str) -> AccountRow:
        """An account by email, or by id (a deleted account is found by its id only)."""
        user_id = parse_id(account)
        if user_id is None:
            user = await self._users.by_email(account.strip(EMAIL_SPACE).lower())
            user_id = user.id if user is not None else None
        row = await self._users.account(user_id) if user_id is not None else None
        if row is None:
            raise NotFound(f"no account {account!r}")
        return row

    async def set_disabled(self, user_id: str, disabled: bool) -> AccountRow | None:
        return await self._users.set_disabled(user_id, disabled)

    async def delete(
        self, user_id: str, settle_s: float, hold_s: float, say: Callable[[str], None]
    ) -> int:
        """Delete an account and its events; answers how many events are left (held by a worker).

        The account becomes a tombstone first, so API processes refuse its tokens within a poll
        while events they already accepted for it still find their account row. The events
        are erased at once, and again until requests that passed the account check before the
        deletion was known have had ``settle_s`` to be stored; events a worker holds are waited
        for up to ``hold_s`` more (a dead worker's lease must expire first).
        """
        await self._users.tombstone(user_id)
        erased = await self._erasure.erase(user_id)
        say(f"erased {erased} events; sweeping again for {settle_s:.0f} s for requests in flight")
        started = time.monotonic()
        while True:
            await asyncio.sleep(_SWEEP_INTERVAL_S)
            erased += await self._erasure.erase(user_id)
            waited = time.monotonic() - started
            if waited < settle_s:
                continue
            left = await self._erasure.remaining(user_id)
            if left == 0 or waited >= settle_s + hold_s:
                say(f"erased {erased} events in all")
                return left
