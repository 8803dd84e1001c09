"""Stream tickets (signed, short-lived, single-use, never access tokens), stream places, keys."""

from __future__ import annotations

import base64
import hashlib
import hmac
import string
from collections.abc import Callable

import pytest
from redis.crc import key_slot

from eventflow.api.stream_access import MAX_STREAMS_PER_USER, LocalStreamSlots
from eventflow.auth.tickets import (
    SPENT_MARGIN_MS,
    TICKET_TTL_S,
    MemorySpentTickets,
    StreamTickets,
)
from eventflow.auth.tokens import TokenClaims
from eventflow.broker.keys import RedisKeys
from eventflow.errors import Unauthorized

SECRET = "a-secret-of-more-than-thirty-two-characters"
USER = "01900000-0000-7000-8000-000000000001"
SESSION = TokenClaims(USER, "01900000-0000-7000-8000-0000000000ff", 0, 0)


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def tickets_for(secret: str = SECRET, clock: Clock | None = None) -> StreamTickets:
    clock = clock or Clock()
    return StreamTickets(secret, MemorySpentTickets(clock), clock=clock)


async def test_a_ticket_names_its_user_and_session() -> None:
    tickets = tickets_for()
    session = TokenClaims(USER, "01900000-0000-7000-8000-0000000000aa", 1_900_000_000, 3)
    assert await tickets.redeem(tickets.issue(session)) == session


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _ticket_key(secret: str) -> bytes:
    return hmac.new(secret.encode(), b"eventflow/stream-ticket/v1", hashlib.sha256).digest()


async def test_a_ticket_of_the_previous_format_is_refused_not_a_crash() -> None:
    # Five fields, before tickets named their session: signed with the same key.
    clock = Clock()
    tickets = tickets_for(clock=clock)
    raw = f"stream.v1|{USER}|{int((clock() + 30) * 1000)}|0|nonce".encode()
    old = f"{_b64(raw)}.{_b64(hmac.new(_ticket_key(SECRET), raw, hashlib.sha256).digest())}"
    with pytest.raises(Unauthorized, match="invalid"):
        await tickets.redeem(old)


async def test_a_ticket_is_single_use() -> None:
    tickets = tickets_for()
    ticket = tickets.issue(SESSION)
    await tickets.redeem(ticket)
    with pytest.raises(Unauthorized, match="already used"):
        await tickets.redeem(ticket)


async def test_tickets_sharing_one_record_are_single_use_across_them() -> None:
    # What two API processes on one Redis or one database amount to.
    clock = Clock()
    spent = MemorySpentTickets(clock)
    first, second = (StreamTickets(SECRET, spent, clock=clock) for _ in range(2))
    ticket = first.issue(SESSION)
    await second.redeem(ticket)
    with pytest.raises(Unauthorized, match="already used"):
        await first.redeem(ticket)


async def test_a_ticket_expires() -> None:
    clock = Clock()
    tickets = tickets_for(clock=clock)
    ticket = tickets.issue(SESSION)
    clock.now += TICKET_TTL_S + 0.001
    with pytest.raises(Unauthorized, match="expired"):
        await tickets.redeem(ticket)


async def test_a_spent_nonce_outlives_its_ticket_by_the_clock_skew_margin() -> None:
    clock = Clock()
    spent = MemorySpentTickets(clock)
    tickets = StreamTickets(SECRET, spent, clock=clock)
    await tickets.redeem(tickets.issue(SESSION))
    # A replica whose clock runs behind would still take the ticket: it must find it spent.
    clock.now += TICKET_TTL_S + SPENT_MARGIN_MS / 1000 - 1
    assert await spent.spend("another", 0)
    assert len(spent) == 2
    clock.now += 2
    assert await spent.spend("a third", 0)
    assert len(spent) == 1


async def test_spent_tickets_are_forgotten_once_expired() -> None:
    clock = Clock()
    spent = MemorySpentTickets(clock)
    tickets = StreamTickets(SECRET, spent, clock=clock)
    for _ in range(100):
        await tickets.redeem(tickets.issue(SESSION))
    clock.now += TICKET_TTL_S + SPENT_MARGIN_MS / 1000 + 1
    await tickets.redeem(tickets.issue(SESSION))
    assert len(spent) == 1


@pytest.mark.parametrize(
    "tamper",
    [
        lambda t: t[:-1] + ("A" if t[-1] != "A" else "B"),
        lambda t: "x" + t,
        lambda t: t.split(".")[0],
        lambda t: "",
        lambda t: "not base64!.at all?",
    ],
)
async def test_a_tampered_ticket_is_refused(tamper: Callable[[str], str]) -> None:
    tickets = tickets_for()
    with pytest.raises(Unauthorized, match="invalid"):
        await tickets.redeem(tamper(tickets.issue(SESSION)))


async def test_a_refused_ticket_spends_nothing() -> None:
    clock = Clock()
    spent = MemorySpentTickets(clock)
    tickets = StreamTickets(SECRET, spent, clock=clock)
    ticket = tickets.issue(SESSION)
    with pytest.raises(Unauthorized, match="invalid"):
        await tickets.redeem("x" + ticket)
    assert len(spent) == 0
    await tickets.redeem(ticket)


async def test_the_same_ticket_spelled_another_way_is_refused() -> None:
    # A 32-byte signature's last base64url character carries 4 bits and 2 unused ones; setting
    # an unused bit spells the same bytes differently. Only the issued spelling is a ticket.
    alphabet = string.ascii_uppercase + string.ascii_lowercase + string.digits + "-_"
    tickets = tickets_for()
    ticket = tickets.issue(SESSION)
    variant = ticket[:-1] + alphabet[alphabet.index(ticket[-1]) | 1]
    assert variant != ticket
    signature, other = (t.split(".")[1] + "=" for t in (ticket, variant))
    assert base64.urlsafe_b64decode(signature) == base64.urlsafe_b64decode(other)
    with pytest.raises(Unauthorized, match="invalid"):
        await tickets.redeem(variant)


async def test_a_ticket_from_another_secret_is_refused() -> None:
    ticket = tickets_for("another-secret-of-more-than-thirty-two-chars").issue(SESSION)
    with pytest.raises(Unauthorized, match="invalid"):
        await tickets_for().redeem(ticket)


async def test_local_slots_cap_each_user_and_free_on_release() -> None:
    slots = LocalStreamSlots()
    held = [await slots.acquire(USER) for _ in range(MAX_STREAMS_PER_USER)]
    assert None not in held
    assert len(set(held)) == MAX_STREAMS_PER_USER
    assert await slots.acquire(USER) is None
    assert await slots.acquire("another user") is not None
    first = held[0]
    assert first is not None
    await slots.release(USER, first)
    await slots.release(USER, first)  # twice: still only one place freed
    assert await slots.acquire(USER) is not None
    assert await slots.acquire(USER) is None


def test_stream_keys_live_under_the_deployments_tag() -> None:
    keys = RedisKeys("acme")
    assert keys.spent_ticket("n0nce") == "{acme}:ticket:n0nce"
    assert keys.open_streams(USER) == "{acme}:streams:" + USER
    slots = {
        key_slot(k.encode()) for k in (keys.stream, keys.spent_ticket("n"), keys.open_streams(USER))
    }
    assert slots == {key_slot(b"acme")}
    assert RedisKeys("other").spent_ticket("n") != keys.spent_ticket("n")
