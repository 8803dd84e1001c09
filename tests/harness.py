"""Start throwaway real PostgreSQL and Redis servers for tests."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from types import TracebackType
from typing import IO

from tests.services_policy import require_service

PG_BIN_DIR = "/usr/lib/postgresql/15/bin"
PG_USER = "postgres"
PG_DATABASE = "eventflow_test"
STARTUP_TIMEOUT = 30.0
STOP_TIMEOUT = 30.0

PG_SETTINGS: dict[str, str] = {
    "listen_addresses": "'127.0.0.1'",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "200",
    "shared_buffers": "128MB",
    "logging_collector": "off",
}


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is currently free."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def pg_bin(name: str) -> str:
    """Return the absolute path of a PostgreSQL 15 server binary such as ``pg_ctl``."""
    return require_service(os.path.join(PG_BIN_DIR, name), "postgresql-15")


def _is_root() -> bool:
    return os.geteuid() == 0


def run_as_postgres(args: list[str]) -> list[str]:
    """Prefix ``args`` with ``runuser -u postgres --`` when running as root."""
    if _is_root():
        return ["runuser", "-u", PG_USER, "--", *args]
    return list(args)


def _tail(path: str, limit: int = 8000) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return fh.read()[-limit:]
    except OSError as exc:
        return f"<could not read {path}: {exc}>"


def _chown_tree(path: str, uid: int, gid: int) -> None:
    os.chown(path, uid, gid)
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            os.chown(os.path.join(root, name), uid, gid, follow_symlinks=False)


class PostgresServer:
    """A disposable PostgreSQL 15 cluster that can be stopped and restarted in place."""

    def __init__(self, port: int | None = None, database: str = PG_DATABASE) -> None:
        self.port: int = port if port is not None else free_port()
        self.database = database
        # As root the postgres user must be able to traverse the parent: use /tmp.
        self.base_dir: str = tempfile.mkdtemp(
            prefix="eventflow-pg-", dir="/tmp" if _is_root() else None
        )
        self.data_dir = os.path.join(self.base_dir, "data")
        self.socket_dir = os.path.join(self.base_dir, "sock")
        self.log_path = os.path.join(self.base_dir, "postgres.log")
        self._initialized = False
        self._database_created = False
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        os.mkdir(self.socket_dir)
        if _is_root():
            entry = pwd.getpwnam(PG_USER)
            _chown_tree(self.base_dir, entry.pw_uid, entry.pw_gid)

    @property
    def url(self) -> str:
        return f"postgresql://{PG_USER}@127.0.0.1:{self.port}/{self.database}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def _run(self, args: list[str], what: str) -> None:
        result = subprocess.run(
            run_as_postgres(args),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            timeout=STARTUP_TIMEOUT * 2,
            check=False,
        )
        if result.returncode != 0:
            output = result.stdout.decode("utf-8", "replace")
            raise RuntimeError(f"{what} failed (exit {result.returncode}):\n{output}")

    def _initdb(self) -> None:
        self._run(
            [
                pg_bin("initdb"),
                "-D",
                self.data_dir,
                "-U",
                PG_USER,
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ],
            "initdb",
        )
        settings = {
            **PG_SETTINGS,
            "port": str(self.port),
            "unix_socket_directories": f"'{self.socket_dir}'",
        }
        lines = "".join(f"{key} = {value}\n" for key, value in settings.items())
        with open(os.path.join(self.data_dir, "postgresql.conf"), "a", encoding="utf-8") as fh:
            fh.write("\n# eventflow test harness\n" + lines)
        self._initialized = True

    def _is_ready(self) -> bool:
        result = subprocess.run(
            run_as_postgres(
                [
                    pg_bin("pg_isready"),
                    "-q",
                    "-h",
                    "127.0.0.1",
                    "-p",
                    str(self.port),
                    "-U",
                    PG_USER,
                    "-d",
                    "postgres",
                    "-t",
                    "2",
                ]
            ),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=10,
            check=False,
        )
        return result.returncode == 0

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while True:
            if self._proc is not None and self._proc.poll() is not None:
                code = self._proc.returncode
                self._proc = None
                self._close_log()
                raise RuntimeError(
                    f"PostgreSQL exited with status {code} during startup; "
                    f"server log:\n{_tail(self.log_path)}"
                )
            if self._is_ready():
                return
            if time.monotonic() > deadline:
                self._kill()
                raise RuntimeError(
                    f"PostgreSQL on port {self.port} did not accept connections within "
                    f"{STARTUP_TIMEOUT:.0f}s; server log:\n{_tail(self.log_path)}"
                )
            time.sleep(0.1)

    def start(self) -> None:
        """Start the server (running initdb on first use) and wait until it is ready."""
        if self.running:
            return
        if not self._initialized:
            self._initdb()
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self._proc = subprocess.Popen(
            run_as_postgres([pg_bin("postgres"), "-D", self.data_dir]),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._wait_ready()
        if not self._database_created:
            self._run(
                [
                    pg_bin("createdb"),
                    "-h",
                    "127.0.0.1",
                    "-p",
                    str(self.port),
                    "-U",
                    PG_USER,
                    self.database,
                ],
                "createdb",
            )
            self._database_created = True

    def _postmaster_pid(self) -> int | None:
        try:
            with open(os.path.join(self.data_dir, "postmaster.pid"), encoding="utf-8") as fh:
                return int(fh.readline().strip())
        except (OSError, ValueError):
            return None

    def _kill(self) -> None:
        # Only trust postmaster.pid while our own server process is still alive.
        pid = self._postmaster_pid() if self.running else None
        if pid is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        if self._proc is not None:
            if self._proc.poll() is None:
                self._proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(timeout=STOP_TIMEOUT)
        self._proc = None
        self._close_log()

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def stop(self, mode: str = "fast") -> None:
        """Stop the server with ``pg_ctl stop -m MODE`` (fast, immediate or smart)."""
        if self._proc is None:
            return
        if self._proc.poll() is None:
            try:
                self._run(
                    [
                        pg_bin("pg_ctl"),
                        "stop",
                        "-D",
                        self.data_dir,
                        "-m",
                        mode,
                        "-w",
                        "-t",
                        str(int(STOP_TIMEOUT)),
                    ],
                    "pg_ctl stop",
                )
                self._proc.wait(timeout=STOP_TIMEOUT)
            except (RuntimeError, subprocess.TimeoutExpired):
                self._kill()
                return
        self._proc = None
        self._close_log()

    def close(self) -> None:
        """Stop the server immediately and delete its temp directory."""
        try:
            self.stop(mode="immediate")
        finally:
            shutil.rmtree(self.base_dir, ignore_errors=True)

    def __enter__(self) -> PostgresServer:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


@contextlib.contextmanager
def postgres_server() -> Iterator[str]:
    """Yield a PostgreSQL URL: ``$EVENTFLOW_TEST_DATABASE_URL`` or a throwaway server."""
    external = os.environ.get("EVENTFLOW_TEST_DATABASE_URL")
    if external:
        yield external
        return
    with PostgresServer() as server:
        yield server.url


def _redis_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """A disposable redis-server that can be stopped and restarted on the same port."""

    def __init__(self, port: int | None = None) -> None:
        self.binary: str = require_service("redis-server", "redis-server")
        self.port: int = port if port is not None else free_port()
        self.base_dir: str = tempfile.mkdtemp(prefix="eventflow-redis-")
        self.log_path = os.path.join(self.base_dir, "redis.log")
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> None:
        """Start redis-server and wait until it answers PING."""
        if self.running:
            return
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self._proc = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "no",
                "--dir",
                self.base_dir,
            ],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while not _redis_ping(self.port):
            if self._proc.poll() is not None:
                code = self._proc.returncode
                self.stop()
                raise RuntimeError(
                    f"redis-server exited with status {code} during startup; "
                    f"server log:\n{_tail(self.log_path)}"
                )
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(
                    f"redis-server on port {self.port} did not answer PING within "
                    f"{STARTUP_TIMEOUT:.0f}s; server log:\n{_tail(self.log_path)}"
                )
            time.sleep(0.05)

    def stop(self) -> None:
        """Terminate redis-server (SIGTERM, then SIGKILL after 10 s)."""
        if self._proc is not None:
            if self._proc.poll() is None:
                self._proc.terminate()
                try:
                    self._proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self._proc.kill()
                    self._proc.wait(timeout=10)
            self._proc = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def close(self) -> None:
        """Stop redis-server and delete its temp directory."""
        try:
            self.stop()
        finally:
            shutil.rmtree(self.base_dir, ignore_errors=True)

    def __enter__(self) -> RedisServer:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


@contextlib.contextmanager
def redis_server() -> Iterator[str]:
    """Yield a Redis URL: ``$EVENTFLOW_TEST_REDIS_URL`` or a throwaway redis-server."""
    external = os.environ.get("EVENTFLOW_TEST_REDIS_URL")
    if external:
        yield external
        return
    with RedisServer() as server:
        yield server.url
