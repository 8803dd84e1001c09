"""What this process knows of accounts and signed-out sessions, kept fresh by one poll.

Every authenticated request asks whether its (cached, verified) token still counts: two dict
lookups in ``admits``, no database work. Changes made anywhere — a sign-out handled by another
API replica, ``eventflow user disable`` — reach every process through a single background poll
every ``EVENTFLOW_ACCOUNT_POLL_MS``: the accounts and the revocations changed since it last
looked. Each poll reads again what changed within ``CLOCK_MARGIN_MS`` before that point, since
the processes writing changes stamp them with their own clocks and commit in their own time.
An account is loaded once, the first time this process sees one of its tokens; after that only
the poll changes what is known of it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Protocol

from eventflow.auth.polling import CLOCK_MARGIN_MS, advance, poll_forever
from eventflow.auth.tokens import TokenClaims
from eventflow.clock import now_ms
from eventflow.db.rows import AccountRow, Revocation
from eventflow.errors import Unauthorized

_PRUNE_EVERY_MS = 30_000

NO_ACCOUNT = "The account behind this token no longer exists; register again"
DELETED = "The account behind this token was deleted"
DISABLED = "This account is disabled; ask an operator to enable it"
SIGNED_OUT = "This session was signed out; log in again"


class AccountReader(Protocol):
    async def account(self, user_id: str) -> AccountRow | None: ...

    async def changed_since(self, since_ms: int) -> list[AccountRow]: ...


class RevocationReader(Protocol):
    async def since(self, since_ms: int) -> list[Revocation]: ...

    async def unexpired(self, now: int) -> list[Revocation]: ...


class AccountStates:
    """The state of the accounts this process has seen, and the sessions signed out."""

    def __init__(
        self,
        accounts: AccountReader,
        revocations: RevocationReader,
        *,
        poll_ms: int = 500,
        clock: Callable[[], int] = now_ms,
    ) -> None:
        self._accounts = accounts
        self._revocations = revocations
        self._poll_s = poll_ms / 1000
        self._clock = clock
        #: Active accounts: the oldest token generation still valid.
        self._generations: dict[str, int] = {}
        #: Accounts refused whatever the token (disabled, deleted, missing): why.
        self._refusals: dict[str, str] = {}
        #: The ``updated_at`` of the row each account's state was taken from.
        self._versions: dict[str, int] = {}
        #: Signed-out sessions: token id → when the token expires (ms).
        self._revoked: dict[str, int] = {}
        self._accounts_seen = 0
        self._revocations_seen = 0
        self._next_prune = 0
        self._poller: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Load the sessions signed out so far, then keep up with changes in the background."""
        now = self._clock()
        for revocation in await self._revocations.unexpired(now):
            self._revoked[revocation.jti] = revocation.expires_at
        # No account is known yet: each is loaded in its current state when first seen.
        self._accounts_seen = self._revocations_seen = now
        self._next_prune = now + _PRUNE_EVERY_MS
        self._poller = asyncio.create_task(
            poll_forever(self.refresh, self._poll_s, "account changes"), name="account-states"
        )

    async def close(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller

    def admits(self, claims: TokenClaims) -> bool:
        """Whether this token counts, from what is known here; False means "ask ``check``".

        A generation above the known one is a token issued after a sign-out everywhere that
        this process has not polled yet: it is newer than what is known, so it counts.
        """
        generation = self._generations.get(claims.user_id)
        return (
            generation is not None
            and claims.generation >= generation
            and claims.jti not in self._revoked
        )

    def settled(self, user_id: str, session: TokenClaims | None) -> bool:
        """The two dict lookups that settle nearly every request: True if they admit it."""
        if session is not None:
            return self.admits(session)
        return user_id in self._generations

    async def ensure(self, user_id: str, session: TokenClaims | None) -> None:
        """``check``, unless ``settled`` admits the request."""
        if not self.settled(user_id, session):
            await self.check(user_id, session)

    async def check(self, user_id: str, session: TokenClaims | None) -> None:
        """``Unauthorized`` unless the account is active and ``session`` was not signed out.

        Loads an account seen here for the first time. ``session`` is None for credentials that
        are no token of their own (a stream ticket): only the account is checked then.
        """
        if user_id not in self._versions and user_id not in self._refusals:
            row = await self._accounts.account(user_id)
            if row is None:
                self._refusals[user_id] = NO_ACCOUNT
            else:
                self.apply(row)
        refusal = self._refusals.get(user_id)
        if refusal is not None:
            raise Unauthorized(refusal)
        if session is not None and not self.admits(session):
            raise Unauthorized(SIGNED_OUT)

    def apply(self, row: AccountRow) -> None:
        """Take an account's state as read from the database, unless a newer one is known."""
        if row.updated_at < self._versions.get(row.id, -1):
            return
        self._versions[row.id] = row.updated_at
        if row.deleted or row.disabled:
            self._generations.pop(row.id, None)
            self._refusals[row.id] = DELETED if row.deleted else DISABLED
            return
        self._refusals.pop(row.id, None)
        self._generations[row.id] = row.token_generation

    def revoke(self, jti: str, expires_at_ms: int) -> None:
        """A session signed out by this process: refused here at once, elsewhere by their poll."""
        self._revoked[jti] = expires_at_ms

    async def refresh(self) -> None:
        """One poll: apply what changed since the last one (and a margin before it)."""
        now = self._clock()
        changed = await self._accounts.changed_since(self._accounts_seen - CLOCK_MARGIN_MS)
        for row in changed:
            # Accounts never seen here are loaded in their current state when first seen.
            if row.id in self._versions:
                self.apply(row)
        self._accounts_seen = advance(self._accounts_seen, (r.updated_at for r in changed), now)
        revoked = await self._revocations.since(self._revocations_seen - CLOCK_MARGIN_MS)
        for revocation in revoked:
            if revocation.expires_at > now:
                self._revoked[revocation.jti] = revocation.expires_at
        self._revocations_seen = advance(
            self._revocations_seen, (r.revoked_at for r in revoked), now
        )
        if now >= self._next_prune:
            self._next_prune = now + _PRUNE_EVERY_MS
            # An expired token is refused for its expiry; its revocation can be forgotten.
            for jti in [j for j, expires in self._revoked.items() if expires <= now]:
                del self._revoked[jti]
