"""The data directory of a real ``eventflow up``: 0700, its files 0600, the JWT secret checked
at start and created once however many processes start together."""

from __future__ import annotations

import multiprocessing
import os
import stat
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier
from pathlib import Path

import httpx
import pytest

from eventflow.config import Settings
from testkit import EVENTFLOW, EventflowProcess

pytestmark = pytest.mark.slow

# A umask that lets everyone read what a process creates: the usual default on Linux.
OPEN_UMASK = 0o022
START_TIMEOUT_S = 30
PROCESSES = 6
ROUNDS = 12


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _env(data_dir: Path) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("EVENTFLOW_")}
    return env | {"EVENTFLOW_DATA_DIR": str(data_dir), "EVENTFLOW_LOG_LEVEL": "warning"}


@contextmanager
def _umask(mask: int) -> Iterator[None]:
    """Processes started inside inherit ``mask``: modes are then EventFlow's doing."""
    previous = os.umask(mask)
    try:
        yield
    finally:
        os.umask(previous)


@contextmanager
def _running_up(data_dir: Path, log: Path) -> Iterator[EventflowProcess]:
    proc = EventflowProcess("up", _env(data_dir), log)
    with _umask(OPEN_UMASK):
        proc.start()
    try:
        proc.wait_ready()
        yield proc
    finally:
        proc.kill()


def test_up_keeps_its_data_to_its_user(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with _running_up(data, tmp_path / "up.log") as proc:
        # An account and an event: the database has written through its WAL.
        account = {"email": "modes@example.com", "password": "12345678"}
        with httpx.Client(base_url=proc.url, timeout=10) as client:
            assert client.post("/api/v1/auth/register", json=account).status_code == 201
        files = {path.name: _mode(path) for path in data.iterdir() if path.is_file()}
        assert _mode(data) == 0o700
    for name in ("eventflow.db", "eventflow.db-wal", "eventflow.db-shm", "jwt_secret"):
        assert files.get(name) == 0o600, (name, files)
    assert not [name for name in files if name.endswith(".tmp")], files


def test_files_an_older_version_left_open_are_tightened(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir(mode=0o755)
    os.chmod(data, 0o755)
    secret = "s" * 48
    (data / "jwt_secret").write_text(secret)
    for name in ("jwt_secret", "eventflow.db"):
        (data / name).touch()
        os.chmod(data / name, 0o644)
    log = tmp_path / "up.log"
    with _running_up(data, log) as proc:
        for name in ("jwt_secret", "eventflow.db", "eventflow.db-wal"):
            assert _mode(data / name) == 0o600, name
        # The directory may be shared on purpose: left as it is, with a warning.
        assert _mode(data) == 0o755
        assert "other users can list it" in proc.log()
        assert (data / "jwt_secret").read_text() == secret
    assert "jwt_secret was mode 0644" in log.read_text()


@pytest.mark.parametrize(
    ("content", "complaint"),
    [
        (b"0123456789", "holds 10 bytes"),
        (b"\xff" * 40, "is not UTF-8 text"),
        (b"", "holds 0 bytes"),
    ],
)
def test_a_secret_file_that_is_no_secret_stops_start_up(
    tmp_path: Path, content: bytes, complaint: str
) -> None:
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    (data / "jwt_secret").write_bytes(content)
    env = _env(data) | {"EVENTFLOW_PORT": "1"}  # never bound: start-up stops before
    finished = subprocess.run(
        [EVENTFLOW, "up"], env=env, capture_output=True, timeout=START_TIMEOUT_S, check=False
    )
    errors = finished.stderr.decode()
    assert finished.returncode == 2, errors
    assert f"eventflow: the JWT secret file {data / 'jwt_secret'} {complaint}" in errors
    assert "at least 32 bytes" in errors
    assert "Traceback" not in errors
    assert (data / "jwt_secret").read_bytes() == content  # never replaced behind the user's back


def _resolve_rounds(barrier: Barrier, root: str, rounds: int, results: Queue[str]) -> None:
    """In each of several processes: all resolve the secret of a new directory at once."""
    for round_ in range(rounds):
        settings = Settings(data_dir=Path(root) / str(round_), database_url=None, jwt_secret=None)
        barrier.wait()
        results.put(f"{round_} {settings.resolve_jwt_secret()}")


def test_processes_starting_together_agree_on_one_secret(tmp_path: Path) -> None:
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(PROCESSES)
    results: Queue[str] = context.Queue()
    processes = [
        context.Process(target=_resolve_rounds, args=(barrier, str(tmp_path), ROUNDS, results))
        for _ in range(PROCESSES)
    ]
    for process in processes:
        process.start()
    answers = [results.get(timeout=START_TIMEOUT_S) for _ in range(PROCESSES * ROUNDS)]
    for process in processes:
        process.join(START_TIMEOUT_S)
        assert process.exitcode == 0
    for round_ in range(ROUNDS):
        secrets = {a.split(" ", 1)[1] for a in answers if a.split(" ", 1)[0] == str(round_)}
        directory = tmp_path / str(round_)
        assert secrets == {(directory / "jwt_secret").read_text()}, round_
        assert [p.name for p in directory.iterdir()] == ["jwt_secret"]  # no temporary left
