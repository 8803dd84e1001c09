"""AccountStates: what a process knows of accounts and sessions, and how a poll keeps it fresh."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field, replace

import pytest

from eventflow.auth.accounts import (
    DELETED,
    DISABLED,
    NO_ACCOUNT,
    SIGNED_OUT,
    AccountStates,
)
from eventflow.auth.polling import CLOCK_MARGIN_MS
from eventflow.auth.tokens import TokenClaims
from eventflow.db.rows import AccountRow, Revocation
from eventflow.errors import Unauthorized

ADA = "01900000-0000-7000-8000-00000000000a"
BOB = "01900000-0000-7000-8000-00000000000b"
HOUR_MS = 3_600_000


class Clock:
    def __init__(self, now: int = 1_000_000_000) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


@dataclass
class Database:
    """The two tables AccountStates reads, in memory, stamped by a clock of its own."""

    clock: Clock
    accounts: dict[str, AccountRow] = field(default_factory=dict)
    revocations: list[Revocation] = field(default_factory=list)
    loads: list[str] = field(default_factory=list)

    def add(self, user_id: str, generation: int = 0) -> None:
        self.accounts[user_id] = AccountRow(user_id, generation, False, False, self.clock())

    def change(self, user_id: str, *, at: int | None = None, **values: object) -> AccountRow:
        row = replace(self.accounts[user_id], **values, updated_at=at or self.clock())  # type: ignore[arg-type]
        self.accounts[user_id] = row
        return row

    def revoke(self, jti: str, expires_at: int, *, at: int | None = None) -> None:
        self.revocations.append(Revocation(jti, expires_at, at or self.clock()))

    # The AccountReader and RevocationReader protocols:

    async def account(self, user_id: str) -> AccountRow | None:
        self.loads.append(user_id)
        return self.accounts.get(user_id)

    async def changed_since(self, since_ms: int) -> list[AccountRow]:
        return [row for row in self.accounts.values() if row.updated_at > since_ms]

    async def since(self, since_ms: int) -> list[Revocation]:
        return [r for r in self.revocations if r.revoked_at > since_ms]

    async def unexpired(self, now: int) -> list[Revocation]:
        return [r for r in self.revocations if r.expires_at > now]


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def db(clock: Clock) -> Database:
    database = Database(clock)
    database.add(ADA)
    database.add(BOB)
    return database


def states(db: Database, clock: Clock, poll_ms: int = 500) -> AccountStates:
    return AccountStates(db, db, poll_ms=poll_ms, clock=clock)


def token(user_id: str = ADA, jti: str = "s1", generation: int = 0) -> TokenClaims:
    return TokenClaims(user_id, jti, 2_000_000_000, generation)


async def refused(accounts: AccountStates, claims: TokenClaims) -> str:
    with pytest.raises(Unauthorized) as caught:
        await accounts.check(claims.user_id, claims)
    return caught.value.detail


async def test_an_account_is_loaded_once_then_admitted_without_the_database(
    db: Database, clock: Clock
) -> None:
    accounts = states(db, clock)
    assert not accounts.admits(token())
    await accounts.check(ADA, token())
    assert accounts.admits(token())
    assert accounts.admits(token(jti="another session"))
    await accounts.check(ADA, token())
    assert db.loads == [ADA]


async def test_an_unknown_account_is_refused_and_remembered(db: Database, clock: Clock) -> None:
    accounts = states(db, clock)
    ghost = "01900000-0000-7000-8000-0000000000ff"
    assert await refused(accounts, token(ghost)) == NO_ACCOUNT
    assert await refused(accounts, token(ghost)) == NO_ACCOUNT
    assert db.loads == [ghost]


async def test_a_session_signed_out_here_is_refused_at_once(db: Database, clock: Clock) -> None:
    accounts = states(db, clock)
    await accounts.check(ADA, token())
    accounts.revoke("s1", clock() + HOUR_MS)
    assert not accounts.admits(token())
    assert await refused(accounts, token()) == SIGNED_OUT
    assert accounts.admits(token(jti="s2"))


async def test_a_poll_brings_sign_outs_and_changes_made_elsewhere(
    db: Database, clock: Clock
) -> None:
    accounts = states(db, clock)
    await accounts.start()
    try:
        await accounts.check(ADA, token())
        await accounts.check(BOB, token(BOB, "b1"))
        clock.now += 1000
        db.revoke("s1", clock() + HOUR_MS)
        db.change(BOB, token_generation=1)
        assert accounts.admits(token()), "nothing is known before the poll"
        await accounts.refresh()
        assert await refused(accounts, token()) == SIGNED_OUT
        assert await refused(accounts, token(BOB, "b1")) == SIGNED_OUT
        assert accounts.admits(token(BOB, "b2", generation=1))
    finally:
        await accounts.close()


async def test_a_newer_generation_counts_before_the_poll_has_seen_it(
    db: Database, clock: Clock
) -> None:
    # Signed out everywhere and logged in again on another replica: the new token must work
    # here at once, even though this process still knows the old generation.
    accounts = states(db, clock)
    await accounts.check(ADA, token())
    db.change(ADA, token_generation=1)
    assert accounts.admits(token(jti="fresh", generation=1))


async def test_disable_enable_and_delete(db: Database, clock: Clock) -> None:
    accounts = states(db, clock)
    await accounts.start()
    try:
        await accounts.check(ADA, token())
        clock.now += 10
        db.change(ADA, disabled=True, token_generation=1)
        await accounts.refresh()
        assert await refused(accounts, token()) == DISABLED
        assert await refused(accounts, token(generation=1)) == DISABLED
        clock.now += 10
        db.change(ADA, disabled=False)
        await accounts.refresh()
        # Disabling ended the sessions: enabling again does not bring them back.
        assert await refused(accounts, token()) == SIGNED_OUT
        assert accounts.admits(token(generation=1))
        clock.now += 10
        db.change(ADA, deleted=True, token_generation=2)
        await accounts.refresh()
        assert await refused(accounts, token(generation=2)) == DELETED
        # Accounts only ever seen elsewhere are not loaded by the poll.
        assert db.loads == [ADA]
    finally:
        await accounts.close()


async def test_changes_stamped_by_a_clock_behind_ours_are_still_seen(
    db: Database, clock: Clock
) -> None:
    accounts = states(db, clock)
    await accounts.start()
    try:
        await accounts.check(ADA, token())
        clock.now += 1000
        await accounts.refresh()
        behind = clock() - CLOCK_MARGIN_MS + 100
        db.revoke("s1", clock() + HOUR_MS, at=behind)
        db.change(BOB, token_generation=1)  # moves nothing: BOB is unknown here
        await accounts.refresh()
        assert await refused(accounts, token()) == SIGNED_OUT
    finally:
        await accounts.close()


async def test_a_writer_clock_ahead_does_not_hide_later_changes(db: Database, clock: Clock) -> None:
    accounts = states(db, clock)
    await accounts.start()
    try:
        await accounts.check(ADA, token())
        await accounts.check(BOB, token(BOB, "b1"))
        db.change(BOB, token_generation=1, at=clock() + HOUR_MS)
        db.revoke("b1", clock() + 2 * HOUR_MS, at=clock() + HOUR_MS)
        await accounts.refresh()
        clock.now += 1000
        db.change(ADA, disabled=True)
        db.revoke("s2", clock() + HOUR_MS)
        await accounts.refresh()
        assert await refused(accounts, token()) == DISABLED
        db.change(ADA, disabled=False, token_generation=1)
        await accounts.refresh()
        assert await refused(accounts, token(jti="s2", generation=1)) == SIGNED_OUT
    finally:
        await accounts.close()


async def test_an_older_version_of_an_account_never_replaces_a_newer_one(
    db: Database, clock: Clock
) -> None:
    accounts = states(db, clock)
    await accounts.check(ADA, token())
    newer = db.change(ADA, disabled=True, at=clock() + 20)
    accounts.apply(newer)
    accounts.apply(replace(newer, disabled=False, updated_at=clock() + 10))
    assert await refused(accounts, token()) == DISABLED


async def test_expired_revocations_are_forgotten(db: Database, clock: Clock) -> None:
    accounts = states(db, clock)
    db.revoke("old", clock() + 1000)
    db.revoke("long", clock() + HOUR_MS)
    await accounts.start()
    try:
        await accounts.check(ADA, token())
        assert not accounts.admits(token(jti="old"))
        clock.now += 60_000
        await accounts.refresh()
        # The token itself has expired by now: TokenService refuses it for that.
        assert accounts.admits(token(jti="old"))
        assert not accounts.admits(token(jti="long"))
    finally:
        await accounts.close()


async def test_the_background_poll_applies_changes_on_its_own(db: Database, clock: Clock) -> None:
    accounts = states(db, clock, poll_ms=50)
    await accounts.start()
    try:
        await accounts.check(ADA, token())
        db.revoke("s1", clock() + HOUR_MS)
        for _ in range(40):
            if not accounts.admits(token()):
                break
            await asyncio.sleep(0.025)
        assert await refused(accounts, token()) == SIGNED_OUT
    finally:
        await accounts.close()


async def test_a_stream_ticket_checks_the_account_only(db: Database, clock: Clock) -> None:
    accounts = states(db, clock)
    await accounts.check(ADA, None)
    db.change(ADA, disabled=True, at=clock() + 1)
    accounts.apply(db.accounts[ADA])
    with pytest.raises(Unauthorized, match="disabled"):
        await accounts.check(ADA, None)
