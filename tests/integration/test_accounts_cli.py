"""Accounts for operators: closed registration, and ``eventflow user`` (the real CLI, as a
subprocess without a JWT secret) changing accounts under a running ``eventflow up``."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from eventflow.config import Settings
from eventflow.db.engine import create_engine
from eventflow.db.tables import events, users
from testkit import EVENTFLOW, REPO_ROOT, EventflowProcess
from tests.apiclient import wait_for
from tests.conftest import TEST_SECRET

PASSWORD = "correct horse battery"
Headers = dict[str, str]

pytestmark = pytest.mark.parametrize("backend", ["sqlite", "postgres"])


@dataclass
class Deployment:
    """A running ``eventflow up`` and what the operator's CLI needs to reach its database."""

    server: EventflowProcess
    cli_env: dict[str, str]
    database_url: str

    def user(self, *args: str, password: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [EVENTFLOW, "user", *args],
            env=self.cli_env,
            input=password,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    async def user_async(self, *args: str) -> subprocess.CompletedProcess[str]:
        return await asyncio.to_thread(self.user, *args)

    def create(self, email: str) -> None:
        result = self.user("create", "--email", email, "--password-stdin", password=PASSWORD)
        assert result.returncode == 0, result.stderr
        assert f"created {email.lower()}" in result.stdout


@pytest.fixture
def deployment(database_url: str | None, tmp_path: Path) -> Iterator[Deployment]:
    common = {
        "EVENTFLOW_DATA_DIR": str(tmp_path / "data"),
        "EVENTFLOW_LOG_LEVEL": "warning",
        # The CLI waits these out before its last sweep of a deleted account's events: short
        # requests, and commits given time enough on a busy test machine (a commit that times
        # out would refuse everyone for reasons of its own).
        "EVENTFLOW_REQUEST_TIMEOUT_MS": "1000",
        "EVENTFLOW_COMMIT_TIMEOUT_MS": "3000",
        "PYTHONPATH": str(REPO_ROOT),
    }
    if database_url:
        common["EVENTFLOW_DATABASE_URL"] = database_url
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("EVENTFLOW_")}
    server_env = {
        **inherited,
        **common,
        "EVENTFLOW_JWT_SECRET": TEST_SECRET,
        "EVENTFLOW_REGISTRATION": "closed",
        # Polled twice as often as by default: "within a second" keeps its margin on a busy
        # test machine.
        "EVENTFLOW_ACCOUNT_POLL_MS": "250",
    }
    server = EventflowProcess("up", server_env, tmp_path / "server.log")
    server.start()
    try:
        server.wait_ready()
        url = Settings(
            data_dir=tmp_path / "data", database_url=database_url, jwt_secret=TEST_SECRET
        ).effective_database_url
        # No JWT secret for the operator: the CLI signs nothing.
        yield Deployment(server, {**inherited, **common}, url)
    finally:
        if server.alive:
            server.terminate()


@asynccontextmanager
async def database(url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(url)
    try:
        yield engine
    finally:
        await engine.dispose()


async def _login(client: httpx.AsyncClient, email: str) -> httpx.Response:
    return await client.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})


async def _token(client: httpx.AsyncClient, email: str) -> Headers:
    response = await _login(client, email)
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


async def _ingest(client: httpx.AsyncClient, headers: Headers) -> int:
    response = await client.post(
        "/api/v1/events", json={"type": "A", "payload": {}}, headers=headers
    )
    return response.status_code


async def test_closed_registration_and_operator_made_accounts(deployment: Deployment) -> None:
    async with httpx.AsyncClient(base_url=deployment.server.url, timeout=10) as client:
        refused = await client.post(
            "/api/v1/auth/register", json={"email": "ada@example.com", "password": PASSWORD}
        )
        assert refused.status_code == 403
        assert refused.headers["content-type"] == "application/problem+json"
        problem = refused.json()
        assert problem["type"].endswith("/problems/registration-closed")
        assert problem["status"] == 403
        assert "operator" in problem["detail"]
        assert (await _login(client, "ada@example.com")).status_code == 401

        deployment.create("Ada@Example.com")
        deployment.create("bob@example.com")
        again = deployment.user(
            "create", "--email", "ada@example.com", "--password-stdin", password=PASSWORD
        )
        assert again.returncode == 1
        assert "already exists" in again.stderr
        short = deployment.user(
            "create", "--email", "eve@example.com", "--password-stdin", password="short"
        )
        assert short.returncode == 1
        assert "password" in short.stderr

        listing = deployment.user("list")
        assert listing.returncode == 0, listing.stderr
        lines = listing.stdout.splitlines()
        assert lines[0].split() == ["ID", "EMAIL", "STATUS", "CREATED"]
        assert [line.split()[1:3] for line in lines[1:]] == [
            ["ada@example.com", "active"],
            ["bob@example.com", "active"],
        ]

        ada, bob = await _token(client, "ada@example.com"), await _token(client, "bob@example.com")
        assert (await _ingest(client, ada), await _ingest(client, bob)) == (202, 202)


async def test_disable_and_enable_reach_a_running_server_within_a_second(
    deployment: Deployment,
) -> None:
    deployment.create("ada@example.com")
    deployment.create("bob@example.com")
    async with httpx.AsyncClient(base_url=deployment.server.url, timeout=10) as client:
        ada, bob = await _token(client, "ada@example.com"), await _token(client, "bob@example.com")
        assert await _ingest(client, ada) == 202

        result = await deployment.user_async("disable", "ada@example.com")
        assert result.returncode == 0, result.stderr

        async def ada_refused() -> bool:
            return await _ingest(client, ada) == 401

        assert await wait_for(ada_refused, within=5, interval=0.02) < 1.0
        me = await client.get("/api/v1/auth/me", headers=ada)
        assert me.status_code == 401
        assert "disabled" in me.json()["detail"]
        login = await _login(client, "ada@example.com")
        assert login.status_code == 401
        assert "disabled" in login.json()["detail"]
        assert await _ingest(client, bob) == 202
        assert "disabled" in deployment.user("list").stdout

        result = await deployment.user_async("enable", "ada@example.com")
        assert result.returncode == 0, result.stderr
        # Disabling ended the sessions; enabling lets the account sign in again.
        fresh = await _token(client, "ada@example.com")

        async def fresh_admitted() -> bool:
            return await _ingest(client, fresh) == 202

        assert await wait_for(fresh_admitted, within=5, interval=0.02) < 1.0
        assert await _ingest(client, ada) == 401


@dataclass
class Sender:
    """Posts events for one account without pause; records (start time, status) of each."""

    client: httpx.AsyncClient
    headers: Headers
    sent: list[tuple[float, int]] = field(default_factory=list)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            started = time.time()
            status = await _ingest(self.client, self.headers)
            self.sent.append((started, status))
            if status != 202:
                await asyncio.sleep(0.01)


async def test_deleting_an_account_under_load_fails_no_one_else(
    deployment: Deployment,
) -> None:
    deployment.create("ada@example.com")
    deployment.create("bob@example.com")
    async with httpx.AsyncClient(
        base_url=deployment.server.url, timeout=10, limits=httpx.Limits(max_connections=32)
    ) as client:
        ada, bob = await _token(client, "ada@example.com"), await _token(client, "bob@example.com")
        ada_id = (await client.get("/api/v1/auth/me", headers=ada)).json()["id"]
        senders = {
            name: [Sender(client, h) for _ in range(6)] for name, h in (("ada", ada), ("bob", bob))
        }
        stop = asyncio.Event()
        tasks = [asyncio.create_task(s.run(stop)) for group in senders.values() for s in group]
        try:
            await asyncio.sleep(1.0)
            # Events of both accounts are in flight, in the same group commits, throughout.
            result = await deployment.user_async("delete", "ada@example.com")
            await asyncio.sleep(0.5)
        finally:
            stop.set()
            await asyncio.gather(*tasks)
        assert result.returncode == 0, result.stderr + deployment.server.log()

        bob_sent = [status for s in senders["bob"] for _, status in s.sent]
        ada_sent = sorted(item for s in senders["ada"] for item in s.sent)
        assert set(bob_sent) == {202}, (
            f"bob was refused: {Counter(bob_sent)}\n{deployment.server.log()}"
        )
        assert {status for _, status in ada_sent} == {202, 401}

        async with database(deployment.database_url) as engine, engine.connect() as conn:
            deleted_at = await conn.scalar(
                sa.select(users.c.deleted_at).where(users.c.id == ada_id)
            )
            left = await conn.scalar(
                sa.select(sa.func.count()).select_from(events).where(events.c.user_id == ada_id)
            )
            stored_for_others = await conn.scalar(
                sa.select(sa.func.count()).select_from(events).where(events.c.user_id != ada_id)
            )
        assert deleted_at is not None
        late = [status for started, status in ada_sent if started > deleted_at / 1000 + 1.0]
        assert late and set(late) == {401}, "refused everywhere within a second"
        assert left == 0, "every event of the account is gone, those accepted in flight too"
        assert stored_for_others == len(bob_sent)

        assert (await client.get("/health")).status_code == 200
        assert (await _login(client, "ada@example.com")).status_code == 401
        assert "Traceback" not in deployment.server.log()
        assert "group commit" not in deployment.server.log()
    # The address is free again.
    deployment.create("ada@example.com")
