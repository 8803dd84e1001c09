"""Throwaway PostgreSQL and Redis servers for the benchmark, on free ports in temp directories."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

PG_BIN_DIR = Path("/usr/lib/postgresql/15/bin")
PG_USER = "postgres"
_START_TIMEOUT_S = 30.0

# Durable like a production server (fsync and synchronous_commit stay on: a 202 must mean a
# flushed commit), sized so 2 API processes' pools and the workers' fit comfortably.
_PG_SETTINGS = {
    "listen_addresses": "'127.0.0.1'",
    "max_connections": "200",
    "shared_buffers": "256MB",
    "logging_collector": "off",
    "autovacuum": "on",
}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _as_postgres(args: list[str]) -> list[str]:
    # PostgreSQL refuses to run as root.
    return ["runuser", "-u", PG_USER, "--", *args] if os.geteuid() == 0 else args


def _tail(path: Path, limit: int = 4000) -> str:
    try:
        return path.read_text(errors="replace")[-limit:]
    except OSError as exc:
        return f"<{path}: {exc}>"


class PostgresServer:
    """A PostgreSQL 15 cluster in a temp directory; ``close`` stops it and deletes everything."""

    def __init__(self) -> None:
        self.port = free_port()
        # As root the postgres user must be able to reach the directory: keep it under /tmp.
        self.base = Path(tempfile.mkdtemp(prefix="eventflow-bench-pg-", dir="/tmp"))
        self.data = self.base / "data"
        self.log_path = self.base / "postgres.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{PG_USER}@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        initdb = PG_BIN_DIR / "initdb"
        if not initdb.exists():
            raise RuntimeError(f"{initdb} not found: apt-get install postgresql-15")
        (self.base / "sock").mkdir()
        if os.geteuid() == 0:
            entry = pwd.getpwnam(PG_USER)
            for path in (self.base, self.base / "sock"):
                os.chown(path, entry.pw_uid, entry.pw_gid)
        self._run(
            [
                str(initdb),
                "-D",
                str(self.data),
                "-U",
                PG_USER,
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ]
        )
        settings = {
            **_PG_SETTINGS,
            "port": str(self.port),
            "unix_socket_directories": f"'{self.base / 'sock'}'",
        }
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.writelines(f"{key} = {value}\n" for key, value in settings.items())
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                _as_postgres([str(PG_BIN_DIR / "postgres"), "-D", str(self.data)]),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + _START_TIMEOUT_S
        while not self._ready():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"PostgreSQL did not start:\n{_tail(self.log_path)}")
            time.sleep(0.1)

    def _ready(self) -> bool:
        probe = [str(PG_BIN_DIR / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(self.port)]
        return subprocess.run(_as_postgres(probe), check=False, timeout=10).returncode == 0

    def _run(self, args: list[str]) -> None:
        done = subprocess.run(
            _as_postgres(args),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=120,
            check=False,
        )
        if done.returncode != 0:
            output = (done.stdout + done.stderr).decode(errors="replace")
            raise RuntimeError(f"{Path(args[0]).name} failed:\n{output}")

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
                pg_ctl = str(PG_BIN_DIR / "pg_ctl")
                self._run([pg_ctl, "stop", "-D", str(self.data), "-m", "immediate", "-w"])
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=30)
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(timeout=30)
        shutil.rmtree(self.base, ignore_errors=True)


class RedisServer:
    """A redis-server without persistence in a temp directory."""

    def __init__(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server not found: apt-get install redis-server")
        self.binary = binary
        self.port = free_port()
        self.base = Path(tempfile.mkdtemp(prefix="eventflow-bench-redis-"))
        self.log_path = self.base / "redis.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def start(self) -> None:
        args = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        args += ["--appendonly", "no", "--dir", str(self.base)]
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + _START_TIMEOUT_S
        while not self._pong():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start:\n{_tail(self.log_path)}")
            time.sleep(0.05)

    def _pong(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1.0) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        shutil.rmtree(self.base, ignore_errors=True)
