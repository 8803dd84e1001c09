"""Stream tickets: signed, short-lived, single-use, and never confused with access tokens."""

from __future__ import annotations

import base64
import string
from collections.abc import Callable

import pytest

from eventflow.api.routes.stream import TICKET_TTL_S, StreamTickets
from eventflow.errors import Unauthorized

SECRET = "a-secret-of-more-than-thirty-two-characters"
USER = "01900000-0000-7000-8000-000000000001"


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def test_a_ticket_names_its_user_and_session() -> None:
    tickets = StreamTickets(SECRET)
    redeemed = tickets.redeem(tickets.issue(USER, session_expires=1_900_000_000))
    assert redeemed.user_id == USER
    assert redeemed.session_expires == 1_900_000_000


def test_a_ticket_is_single_use() -> None:
    tickets = StreamTickets(SECRET)
    ticket = tickets.issue(USER, 0)
    tickets.redeem(ticket)
    with pytest.raises(Unauthorized, match="already used"):
        tickets.redeem(ticket)


def test_a_ticket_expires() -> None:
    clock = Clock()
    tickets = StreamTickets(SECRET, clock=clock)
    ticket = tickets.issue(USER, 0)
    clock.now += TICKET_TTL_S + 0.001
    with pytest.raises(Unauthorized, match="expired"):
        tickets.redeem(ticket)


def test_spent_tickets_are_forgotten_once_expired() -> None:
    clock = Clock()
    tickets = StreamTickets(SECRET, clock=clock)
    for _ in range(100):
        tickets.redeem(tickets.issue(USER, 0))
    clock.now += TICKET_TTL_S + 1
    tickets.redeem(tickets.issue(USER, 0))
    assert len(tickets._spent) == 1


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
def test_a_tampered_ticket_is_refused(tamper: Callable[[str], str]) -> None:
    tickets = StreamTickets(SECRET)
    with pytest.raises(Unauthorized, match="invalid"):
        tickets.redeem(tamper(tickets.issue(USER, 0)))


def test_the_same_ticket_spelled_another_way_is_refused() -> None:
    # A 32-byte signature's last base64url character carries 4 bits and 2 unused ones; setting
    # an unused bit spells the same bytes differently. Only the issued spelling is a ticket.
    alphabet = string.ascii_uppercase + string.ascii_lowercase + string.digits + "-_"
    tickets = StreamTickets(SECRET)
    ticket = tickets.issue(USER, 0)
    variant = ticket[:-1] + alphabet[alphabet.index(ticket[-1]) | 1]
    assert variant != ticket
    signature, other = (t.split(".")[1] + "=" for t in (ticket, variant))
    assert base64.urlsafe_b64decode(signature) == base64.urlsafe_b64decode(other)
    with pytest.raises(Unauthorized, match="invalid"):
        tickets.redeem(variant)


def test_a_ticket_from_another_secret_is_refused() -> None:
    ticket = StreamTickets("another-secret-of-more-than-thirty-two-chars").issue(USER, 0)
    with pytest.raises(Unauthorized, match="invalid"):
        StreamTickets(SECRET).redeem(ticket)
