"""Credentials: reading Bearer and Basic headers, the scopes, and the cache of verified keys."""

from __future__ import annotations

from base64 import b64encode
from collections.abc import Mapping

import pytest

from eventflow.auth.accounts import AccountStates
from eventflow.auth.credentials import Authenticator, basic_key, split_authorization
from eventflow.auth.keys import MARK_USED_EVERY_MS, KeyRing, is_key, key_hash, new_key
from eventflow.auth.principal import Principal, Scope
from eventflow.auth.tokens import TokenService
from eventflow.db.memory import MemoryKeys, MemoryUsers
from eventflow.db.rows import KeyRow, Revocation, UserRow
from eventflow.errors import Forbidden, Unauthorized

ADA = "01900000-0000-7000-8000-00000000000a"
SECRET = "unit-secret-0123456789-abcdefghijklmnopqrstuvwxyz"


class Clock:
    def __init__(self, now: int = 1_000_000_000) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


class CountingKeys(MemoryKeys):
    """The memory store, counting what the ring asks of it."""

    def __init__(self) -> None:
        super().__init__()
        self.lookups = 0
        self.marks: list[dict[str, int]] = []

    async def by_hash(self, digest: str) -> KeyRow | None:
        self.lookups += 1
        return await super().by_hash(digest)

    async def mark_used(self, used: Mapping[str, int]) -> None:
        self.marks.append(dict(used))
        await super().mark_used(used)


class NoRevocations:
    async def since(self, since_ms: int) -> list[Revocation]:
        return []

    async def unexpired(self, now: int) -> list[Revocation]:
        return []


def basic(text: str) -> str:
    return "Basic " + b64encode(text.encode()).decode()


async def stored_key(store: MemoryKeys, scope: str, name: str = "ci") -> tuple[str, KeyRow]:
    made = new_key()
    row = KeyRow(
        f"01900000-0000-7000-8000-{len(await store.active(ADA)):012x}",
        ADA,
        name,
        scope,
        made.prefix,
        made.hash,
        1,
    )
    await store.create(row, 100)
    return made.key, row


def test_a_new_key_carries_256_random_bits_and_only_its_hash_is_kept() -> None:
    made = new_key()
    assert made.key.startswith("efk_") and len(made.key) == 4 + 43
    assert "=" not in made.key and is_key(made.key)
    assert made.prefix == made.key[:12]
    assert made.hash == key_hash(made.key) and len(made.hash) == 64
    assert made.key not in made.hash
    assert new_key().key != made.key


def test_basic_credentials_carry_a_key_as_user_name_and_no_password() -> None:
    key = new_key().key
    assert basic_key(basic(f"{key}:")[6:]) == key
    for wrong in (f"{key}:secret", key, "ada@example.com:pw", ":", ""):
        with pytest.raises(Unauthorized):
            basic_key(basic(wrong)[6:])
    for not_base64 in ("***", "efk_abc", "ZWZr\x00"):
        with pytest.raises(Unauthorized):
            basic_key(not_base64)


def test_a_header_splits_into_its_scheme_and_credentials() -> None:
    assert split_authorization("Bearer  abc ") == ("bearer", "abc")
    assert split_authorization("BASIC xyz") == ("basic", "xyz")
    for bad in (None, "", "Bearer", "Bearer   "):
        with pytest.raises(Unauthorized):
            split_authorization(bad)


class Setup:
    def __init__(self, keys: MemoryKeys) -> None:
        self.users = MemoryUsers()
        self.tokens = TokenService(SECRET, 3600)
        self.accounts = AccountStates(self.users, NoRevocations())
        self.check = Authenticator(self.tokens, self.accounts, KeyRing(keys))


async def _authenticator(keys: MemoryKeys) -> tuple[Authenticator, TokenService, Setup]:
    setup = Setup(keys)
    await setup.users.create(UserRow(ADA, "ada@example.com", "", 1))
    return setup.check, setup.tokens, setup


async def test_a_token_covers_every_scope_and_a_key_only_its_own() -> None:
    store = MemoryKeys()
    check, tokens, _ = await _authenticator(store)
    token = "Bearer " + tokens.issue(ADA).access_token
    for need in Scope:
        principal = await check.authenticate(token, need)
        assert (principal.user_id, principal.scope, principal.key_id) == (ADA, Scope.USER, None)
    ingest, ingest_row = await stored_key(store, "ingest", "sender")
    read, _ = await stored_key(store, "read")
    for header in (f"Bearer {ingest}", basic(f"{ingest}:")):
        principal = await check.authenticate(header, Scope.INGEST)
        assert principal == Principal(ADA, Scope.INGEST, key_id=ingest_row.id, key_name="sender")
        for other in (Scope.READ, Scope.USER):
            with pytest.raises(Forbidden):
                await check.authenticate(header, other)
    assert (await check.authenticate(f"Bearer {read}", Scope.READ)).scope is Scope.READ
    with pytest.raises(Forbidden):
        await check.authenticate(basic(f"{read}:"), Scope.INGEST)


async def test_unknown_malformed_and_foreign_credentials_are_401() -> None:
    store = MemoryKeys()
    check, _, _ = await _authenticator(store)
    key, _ = await stored_key(store, "ingest")
    for header in (
        None,
        "",
        f"Token {key}",
        "Bearer not-a-jwt",
        f"Bearer {new_key().key}",  # well formed, never issued
        f"Bearer {key[:-1]}",
        basic(f"{key}:password"),
        "Basic !!!",
    ):
        with pytest.raises(Unauthorized):
            await check.authenticate(header, Scope.INGEST)


async def test_known_answers_from_the_caches_alone_and_only_what_authenticate_admits() -> None:
    store = CountingKeys()
    check, tokens, setup = await _authenticator(store)
    token = "Bearer " + tokens.issue(ADA).access_token
    ingest, _ = await stored_key(store, "ingest")
    read, _ = await stored_key(store, "read")
    headers = (token, f"Bearer {ingest}", basic(f"{ingest}:"), f"Bearer {read}")
    # Nothing cached yet: neither the account nor the keys.
    assert [check.known(h, Scope.INGEST) for h in headers] == [None] * 4
    for header in headers[:3]:
        await check.authenticate(header, Scope.INGEST)
    await check.authenticate(f"Bearer {read}", Scope.READ)
    lookups = store.lookups
    for header in headers[:3]:
        known = check.known(header, Scope.INGEST)
        assert known == await check.authenticate(header, Scope.INGEST)
    assert store.lookups == lookups  # no lookup by known()
    assert check.known(f"Bearer {read}", Scope.INGEST) is None  # a 403 to give: not known
    for bad in (None, "", "Token x", "Bearer not-a-jwt", f"Bearer {new_key().key}", "Basic !!!"):
        assert check.known(bad, Scope.INGEST) is None
    changed = await setup.users.set_disabled(ADA, True)
    assert changed is not None
    setup.accounts.apply(changed)  # as the account poll does
    assert [check.known(h, Scope.INGEST) for h in headers] == [None] * 4


async def test_a_verified_key_is_a_dict_lookup_until_revoked() -> None:
    store = CountingKeys()
    ring = KeyRing(store, clock=Clock())
    key, row = await stored_key(store, "ingest")
    for _ in range(100):
        assert (await ring.principal(key)).key_id == row.id
    assert store.lookups == 1
    assert len(ring) == 1
    ring.revoke(row.id)
    assert len(ring) == 0
    with pytest.raises(Unauthorized):
        await ring.principal(key)


async def test_a_revocation_made_elsewhere_reaches_the_cache_with_the_next_poll() -> None:
    clock = Clock()
    store = CountingKeys()
    ring = KeyRing(store, clock=clock)
    await ring.start()
    try:
        key, row = await stored_key(store, "read")
        kept, _ = await stored_key(store, "read")
        await ring.principal(key)
        await ring.principal(kept)
        clock.now += 100
        # Another process revokes it: only the database knows.
        assert await store.revoke(ADA, row.id, clock.now)
        assert (await ring.principal(key)).key_id == row.id
        clock.now += 100
        await ring.refresh()
        with pytest.raises(Unauthorized):
            await ring.principal(key)
        assert (await ring.principal(kept)).scope is Scope.READ
    finally:
        await ring.close()


async def test_a_lookup_that_read_the_key_before_its_revocation_does_not_cache_it() -> None:
    store = MemoryKeys()
    ring = KeyRing(store, clock=Clock())
    key, row = await stored_key(store, "ingest")
    ring.revoke(row.id)  # seen by the poll while the lookup was in flight
    with pytest.raises(Unauthorized):
        await ring.principal(key)


async def test_last_use_is_written_in_batches_at_most_once_a_minute_per_key() -> None:
    clock = Clock()
    store = CountingKeys()
    ring = KeyRing(store, clock=clock)
    first, first_row = await stored_key(store, "ingest")
    second, second_row = await stored_key(store, "read")
    for _ in range(50):
        await ring.principal(first)
        await ring.principal(second)
        clock.now += 100
    await ring.refresh()
    used_at = clock.now - 5_000
    assert store.marks == [{first_row.id: used_at, second_row.id: used_at}]
    for _ in range(10):
        await ring.principal(first)
        await ring.refresh()
    assert store.marks[1:] == [{}] * 10
    clock.now += MARK_USED_EVERY_MS
    await ring.principal(first)
    await ring.refresh()
    assert store.marks[-1] == {first_row.id: clock.now}
    assert [k.last_used_at for k in await store.active(ADA)] == [used_at, clock.now]


async def test_a_key_of_a_disabled_account_is_refused() -> None:
    store = MemoryKeys()
    check, _, setup = await _authenticator(store)
    key, _ = await stored_key(store, "ingest")
    await check.authenticate(f"Bearer {key}", Scope.INGEST)
    changed = await setup.users.set_disabled(ADA, True)
    assert changed is not None
    setup.accounts.apply(changed)  # as the account poll does
    with pytest.raises(Unauthorized, match="disabled"):
        await check.authenticate(f"Bearer {key}", Scope.INGEST)
