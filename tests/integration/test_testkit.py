"""testkit finds the PostgreSQL binaries instead of assuming a version, and starts servers with
the settings it is given."""

from __future__ import annotations

import os
import socket
import stat
from pathlib import Path

import asyncpg
import pytest

from bench.stack import DURABLE_PG_SETTINGS
from testkit import MissingService, PostgresServer, free_port, pg_bin, postgres_bin_dir


def _executable(path: Path, text: str = "#!/bin/sh\n") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def _pg_config(bin_dir: Path, answers: Path) -> None:
    _executable(bin_dir / "pg_config", f"#!/bin/sh\necho {answers}\n")


@pytest.fixture
def no_pg_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Neither EVENTFLOW_PG_BIN nor any pg_config on PATH; answers an empty PATH folder."""
    monkeypatch.delenv("EVENTFLOW_PG_BIN", raising=False)
    path_dir = tmp_path / "path"
    path_dir.mkdir()
    monkeypatch.setenv("PATH", str(path_dir))
    return path_dir


def test_eventflow_pg_bin_wins(
    no_pg_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    chosen = tmp_path / "custom"
    _executable(chosen / "pg_ctl")
    _pg_config(no_pg_env, tmp_path / "elsewhere")
    monkeypatch.setenv("EVENTFLOW_PG_BIN", str(chosen))

    assert postgres_bin_dir(tmp_path / "debian") == chosen


def test_pg_config_bindir_when_it_holds_the_server(no_pg_env: Path, tmp_path: Path) -> None:
    server = tmp_path / "pg" / "bin"
    _executable(server / "pg_ctl")
    _executable(tmp_path / "debian" / "17" / "bin" / "pg_ctl")
    _pg_config(no_pg_env, server)

    assert postgres_bin_dir(tmp_path / "debian") == server


def test_else_the_newest_debian_server(no_pg_env: Path, tmp_path: Path) -> None:
    debian = tmp_path / "debian"
    for version in ("9.6", "15", "16"):
        _executable(debian / version / "bin" / "pg_ctl")
    (debian / "17" / "bin").mkdir(parents=True)  # a client-only install: no pg_ctl
    # A pg_config whose bindir has no server (Debian's libpq-dev from another version).
    _pg_config(no_pg_env, tmp_path / "client-only")

    assert postgres_bin_dir(debian) == debian / "16" / "bin"


def test_a_missing_server_binary_is_a_missing_service(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EVENTFLOW_PG_BIN", str(tmp_path))

    with pytest.raises(MissingService) as caught:
        pg_bin("initdb")
    assert caught.value.binary == os.path.join(tmp_path, "initdb")
    assert caught.value.package == "postgresql-15"


@pytest.mark.slow
async def test_the_bench_gets_a_durable_server() -> None:
    """The bench's figures hold with fsync on: a 202 means a flushed commit."""
    with PostgresServer(settings=DURABLE_PG_SETTINGS) as server:
        conn = await asyncpg.connect(server.url)
        try:
            shown = {name: await conn.fetchval(f"SHOW {name}") for name in DURABLE_PG_SETTINGS}
        finally:
            await conn.close()
    assert shown["fsync"] == "on"
    assert shown["synchronous_commit"] == "on"
    assert shown["shared_buffers"] == "256MB"


def test_free_ports_avoid_the_ephemeral_range_and_each_xdist_worker(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    first_ephemeral = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    seen: dict[str, set[int]] = {}
    for worker in ("gw0", "gw1"):
        monkeypatch.setenv("PYTEST_XDIST_WORKER", worker)
        seen[worker] = {free_port() for _ in range(200)}
    assert len(seen["gw0"]) == len(seen["gw1"]) == 200  # no port handed out twice in a row
    assert max(seen["gw0"] | seen["gw1"]) < first_ephemeral
    assert min(seen["gw1"]) > max(seen["gw0"])  # separate slices


def test_free_port_skips_a_port_in_use(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw3")
    taken = free_port()
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", taken))
        listener.listen()
        found = [free_port() for _ in range(1500)]  # the whole slice, round again
    assert taken not in found
