"""Any cursor text answers 400 or a page of the caller's own events, on SQLite and PostgreSQL.

Two users with interleaved events on a real ``eventflow`` process; the cursors are hypothesis
text (NUL, any Unicode, 2,000 characters), raw query bytes, and every spelling of the users'
own and each other's event ids and of the ids next to them.
"""

from __future__ import annotations

import os
import string
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote_from_bytes

import httpx
import pytest
from hypothesis import event, example, given, settings
from hypothesis import strategies as st

from testkit import EventflowProcess
from tests.conftest import TEST_SECRET

pytestmark = pytest.mark.slow

EVENTS = "/api/v1/events"
PER_USER = 4
DEFAULT_LIMIT = 50
#: Ways a UUID can be written: the API reads the first four kinds (dashes or none, any case).
SPELLINGS: dict[str, Callable[[str], str]] = {
    "canonical": lambda u: u,
    "upper": str.upper,
    "braces": lambda u: "{" + u + "}",
    "urn": lambda u: "urn:uuid:" + u,
    "no dashes": lambda u: u.replace("-", ""),
    "upper no dashes": lambda u: u.replace("-", "").upper(),
    "urn braces": lambda u: "urn:uuid:{" + u + "}",
    "plus sign": lambda u: "+" + u.replace("-", "")[1:],
    "underscore": lambda u: u.replace("-", "")[:8] + "_" + u.replace("-", "")[9:],
    "padded": lambda u: " " + u + " ",
    "truncated": lambda u: u[:-1],
    "doubled": lambda u: u + u,
    "nul inside": lambda u: u[:8] + "\x00" + u[9:],
}


@dataclass
class Account:
    headers: dict[str, str]
    ids: list[str] = field(default_factory=list)  # newest first


@dataclass(frozen=True)
class Server:
    proc: EventflowProcess
    accounts: tuple[Account, Account]

    @property
    def ids(self) -> list[str]:
        return [i for account in self.accounts for i in account.ids]


def _account(client: httpx.Client, name: str) -> Account:
    credentials = {"email": f"{name}-{os.urandom(3).hex()}@example.com", "password": "12345678"}
    assert client.post("/api/v1/auth/register", json=credentials).status_code == 201
    login = client.post("/api/v1/auth/login", json=credentials)
    assert login.status_code == 200, login.text
    return Account({"Authorization": f"Bearer {login.json()['access_token']}"})


@pytest.fixture(params=["sqlite", "postgres"])
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Server]:
    """``eventflow up`` on embedded SQLite, or ``eventflow api`` on a fresh PostgreSQL."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("EVENTFLOW_") or name.startswith("EVENTFLOW_TEST_")
    }
    env |= {"EVENTFLOW_DATA_DIR": str(tmp_path / "data"), "EVENTFLOW_LOG_LEVEL": "info"}
    command = "up"
    if request.param == "postgres":
        command = "api"
        env |= {
            "EVENTFLOW_DATABASE_URL": request.getfixturevalue("fresh_postgres"),
            "EVENTFLOW_JWT_SECRET": TEST_SECRET,
        }
    proc = EventflowProcess(command, env, tmp_path / f"{command}.log")
    proc.start()
    try:
        proc.wait_ready()
        with httpx.Client(base_url=proc.url, timeout=10) as client:
            accounts = (_account(client, "alice"), _account(client, "bob"))
            # Interleaved, so that every id of one user sits between ids of the other.
            for n in range(PER_USER):
                for account in accounts:
                    sent = client.post(
                        EVENTS,
                        json={"type": "ORDER_CREATED", "payload": {"n": n}},
                        headers=account.headers,
                    )
                    assert sent.status_code == 202, sent.text
                    account.ids.insert(0, sent.json()["id"])
        yield Server(proc, accounts)
    finally:
        proc.kill()


def _neighbour(event_id: str, step: int) -> str:
    return str(uuid.UUID(int=(uuid.UUID(event_id).int + step) % 2**128))


def _cursors(server: Server) -> st.SearchStrategy[str]:
    ids = st.sampled_from(server.ids)
    some_id = ids | st.uuids().map(str) | st.builds(_neighbour, ids, st.integers(-(2**80), 2**80))
    return st.one_of(
        st.text(),
        st.text(min_size=500, max_size=2000),
        some_id,
        st.builds(
            lambda spell, u: SPELLINGS[spell](u), st.sampled_from(sorted(SPELLINGS)), some_id
        ),
        st.builds(str.__add__, some_id, st.text(max_size=3)),
    )


def _parsed(cursor: str) -> str | None:
    """The id a cursor names: a UUID with or without its dashes, in either case; nothing else."""
    hex_digits = cursor.replace("-", "") if cursor.count("-") == 4 else cursor
    canonical = cursor.count("-") == 0 or [len(p) for p in cursor.split("-")] == [8, 4, 4, 4, 12]
    if not canonical or len(hex_digits) != 32 or not all(c in string.hexdigits for c in hex_digits):
        return None
    return str(uuid.UUID(hex_digits))


def _check_page(
    server: Server, me: int, cursor: str, limit: int | None, response: httpx.Response
) -> None:
    """400 as problem details, or a page holding only ``me``'s events, the ones before it."""
    assert response.status_code in (200, 400), (response.status_code, response.text)
    # Shown by --hypothesis-show-statistics: how often each outcome was reached.
    event(f"{response.status_code}, cursor {'is' if _parsed(cursor) else 'is not'} a UUID")
    if response.status_code == 400:
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["status"] == 400
        return
    own = server.accounts[me].ids
    page = response.json()
    items = [item["id"] for item in page["items"]]
    assert set(items) <= set(own), (cursor, items)
    assert items == sorted(items, reverse=True)
    before = _parsed(cursor)
    if before is not None:
        older = [i for i in own if uuid.UUID(i) < uuid.UUID(before)]
        size = limit or DEFAULT_LIMIT
        assert items == older[:size], (cursor, before)
        assert page["next_cursor"] == (items[-1] if len(older) > size else None)


def _log_has_no_traceback(proc: EventflowProcess) -> None:
    log = proc.log_path.read_text(errors="replace")
    assert "Traceback" not in log, log[max(0, log.index("Traceback") - 2000) :][:8000]


def test_any_cursor_is_400_or_a_page_of_own_events(server: Server) -> None:
    alice, bob = server.accounts

    with httpx.Client(base_url=server.proc.url, timeout=10) as client:
        # No example database: the ids of this run's events mean nothing to the next run.
        @settings(max_examples=150, deadline=None, database=None)
        @given(
            me=st.sampled_from([0, 1]),
            cursor=_cursors(server),
            limit=st.none() | st.integers(1, 5),
        )
        # The other user's newest and oldest ids: a position among one's own events, no more.
        @example(me=0, cursor=bob.ids[0], limit=None)
        @example(me=1, cursor=alice.ids[-1], limit=1)
        @example(me=0, cursor="{" + bob.ids[1].upper() + "}", limit=None)
        @example(me=0, cursor="\x00", limit=None)
        def property_(me: int, cursor: str, limit: int | None) -> None:
            params: dict[str, str | int] = {"cursor": cursor}
            if limit is not None:
                params["limit"] = limit
            headers = server.accounts[me].headers
            response = client.get(EVENTS, params=params, headers=headers)
            _check_page(server, me, cursor, limit, response)

        property_()

        @settings(max_examples=60, deadline=None, database=None)
        @given(me=st.sampled_from([0, 1]), raw=st.binary(max_size=64))
        @example(me=0, raw=b"\xff\xfe")
        @example(me=1, raw=alice.ids[0].encode() + b"\x00")
        def raw_bytes(me: int, raw: bytes) -> None:
            # Any bytes, percent-encoded: the server reads them as UTF-8 with replacement.
            url = f"{EVENTS}?cursor={quote_from_bytes(raw, safe='')}"
            response = client.get(url, headers=server.accounts[me].headers)
            _check_page(server, me, raw.decode(errors="replace"), None, response)

        raw_bytes()

        # Longer than a request line may be: refused before the route, never a 5xx.
        huge = client.get(EVENTS, params={"cursor": "x" * 40_000}, headers=alice.headers)
        assert 400 <= huge.status_code < 500
    _log_has_no_traceback(server.proc)
