"""Backups taken while EventFlow runs, restored as docs/operations.md says, read back by a new
deployment: SQLite's online backup (the sqlite3 shell, or Python's backup API) with the JWT secret
file, and PostgreSQL's pg_dump / pg_restore."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx
import pytest
from sqlalchemy.engine import make_url

from testkit import EventflowProcess, pg_bin, require_service
from tests.apiclient import wait_for
from tests.conftest import TEST_SECRET

pytestmark = pytest.mark.slow

EVENTS = 30
ACCOUNT = {"email": "backup@example.com", "password": "correct horse battery"}
#: docs/operations.md's commands, with $DATA and $BACKUP for the two folders.
SQLITE_BACKUPS = {
    "sqlite3": 'sqlite3 "$DATA/eventflow.db" ".backup \'$BACKUP/eventflow.db\'"',
    "python": (
        "python3 -c 'import sqlite3, sys; "
        "sqlite3.connect(sys.argv[1]).backup(sqlite3.connect(sys.argv[2]))' "
        '"$DATA/eventflow.db" "$BACKUP/eventflow.db"'
    ),
}
SQLITE_SECRET_BACKUP = 'cp -p "$DATA/jwt_secret" "$BACKUP/"'
SQLITE_RESTORE = 'install -d -m 700 "$DATA" && install -m 600 "$BACKUP"/* "$DATA/"'


async def _execute(url: str, statement: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


def _shell(command: str, **folders: Path) -> None:
    env = {**os.environ, **{name: str(path) for name, path in folders.items()}}
    # python3 in the documented commands: this interpreter, which has what it needs.
    env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"
    done = subprocess.run(
        ["sh", "-c", command], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, f"{command}\n{done.stderr}"


@dataclass
class Running:
    processes: list[EventflowProcess]

    @property
    def url(self) -> str:
        return self.processes[0].url

    def stop(self) -> None:
        for process in self.processes:
            assert process.terminate() == 0, process.log()


@pytest.fixture
def started(tmp_path: Path) -> Iterator[list[Running]]:
    deployments: list[Running] = []
    yield deployments
    for deployment in deployments:
        for process in deployment.processes:
            process.kill()


def _start(started: list[Running], env: dict[str, str], commands: list[str], tmp: Path) -> Running:
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("EVENTFLOW_")}
    processes = []
    for command in commands:
        log = tmp / f"{command}-{len(started)}.log"
        process = EventflowProcess(command, {**inherited, **env}, log)
        processes.append(process)
        process.start()
    deployment = Running(processes)
    started.append(deployment)
    for process in processes:
        process.wait_ready()
    return deployment


async def _send_events(url: str) -> tuple[dict[str, str], list[str]]:
    """An account, and EVENTS of its events, all completed."""
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        assert (await client.post("/api/v1/auth/register", json=ACCOUNT)).status_code == 201
        token = (await client.post("/api/v1/auth/login", json=ACCOUNT)).json()["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        batch = [{"type": "ORDER_CREATED", "payload": {"n": n}} for n in range(EVENTS)]
        sent = await client.post("/api/v1/events/batch", headers=headers, json={"events": batch})
        assert sent.status_code == 202, sent.text
        ids = [event["id"] for event in sent.json()["events"]]

        async def completed() -> bool:
            listed = await client.get("/api/v1/events", headers=headers, params={"limit": 200})
            return all(e["status"] == "completed" for e in listed.json()["items"])

        await wait_for(completed, within=60)
    return headers, ids


async def _events_read_back(url: str, headers: dict[str, str]) -> list[tuple[str, str]]:
    """The account's events as the restored deployment serves them, with the old token."""
    async with httpx.AsyncClient(base_url=url, timeout=30, headers=headers) as client:
        listed = await client.get("/api/v1/events", params={"limit": 200})
        assert listed.status_code == 200, listed.text
        return sorted((e["id"], e["status"]) for e in listed.json()["items"])


async def _events_after_the_backup(url: str, headers: dict[str, str]) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=30, headers=headers) as client:
        late = await client.post("/api/v1/events", json={"type": "LATE", "payload": {}})
        assert late.status_code == 202


@pytest.mark.parametrize("tool", SQLITE_BACKUPS)
async def test_sqlite_backup_of_a_running_deployment_restores(
    tool: str, tmp_path: Path, started: list[Running]
) -> None:
    if tool == "sqlite3":
        require_service("sqlite3", "sqlite3")
    data, backup, restored = tmp_path / "data", tmp_path / "backup", tmp_path / "restored"
    backup.mkdir(mode=0o700)
    original = _start(started, {"EVENTFLOW_DATA_DIR": str(data)}, ["up"], tmp_path)
    headers, ids = await _send_events(original.url)

    _shell(SQLITE_BACKUPS[tool], DATA=data, BACKUP=backup)
    _shell(SQLITE_SECRET_BACKUP, DATA=data, BACKUP=backup)
    await _events_after_the_backup(original.url, headers)
    original.stop()

    _shell(SQLITE_RESTORE, DATA=restored, BACKUP=backup)
    assert (restored.stat().st_mode & 0o777, (restored / "jwt_secret").stat().st_mode & 0o777) == (
        0o700,
        0o600,
    )
    again = _start(started, {"EVENTFLOW_DATA_DIR": str(restored)}, ["up"], tmp_path)
    assert await _events_read_back(again.url, headers) == sorted((i, "completed") for i in ids)


async def test_postgres_dump_of_a_running_deployment_restores(
    fresh_postgres: str, postgres_url: str, tmp_path: Path, started: list[Running]
) -> None:
    env = {"EVENTFLOW_JWT_SECRET": TEST_SECRET, "EVENTFLOW_DATA_DIR": str(tmp_path / "data")}
    original = _start(
        started, {**env, "EVENTFLOW_DATABASE_URL": fresh_postgres}, ["api", "worker"], tmp_path
    )
    headers, ids = await _send_events(original.url)

    dump = tmp_path / "eventflow.dump"
    _shell(f"{pg_bin('pg_dump')} --format=custom --file={dump} {shlex.quote(fresh_postgres)}")
    await _events_after_the_backup(original.url, headers)
    original.stop()

    name = f"restored_{os.urandom(4).hex()}"
    await _execute(postgres_url, f'CREATE DATABASE "{name}"')
    try:
        target = make_url(fresh_postgres).set(database=name).render_as_string(hide_password=False)
        restore = f"{pg_bin('pg_restore')} --no-owner --exit-on-error --dbname={target} {dump}"
        _shell(restore)
        again = _start(started, {**env, "EVENTFLOW_DATABASE_URL": target}, ["api"], tmp_path)
        assert await _events_read_back(again.url, headers) == sorted((i, "completed") for i in ids)
        again.stop()
    finally:
        await _execute(postgres_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
