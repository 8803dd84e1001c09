"""A throwaway PostgreSQL cluster on a free port, for the tests and the bench."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Mapping

from testkit.binaries import pg_bin
from testkit.ports import free_port
from testkit.server import ThrowawayServer, url_or_server

PG_USER = "postgres"
PG_DATABASE = "eventflow_test"
DATABASE_URL_ENV = "EVENTFLOW_TEST_DATABASE_URL"
STOP_TIMEOUT = 30.0

#: Fast and not durable: a test's data need not survive a power cut.
PG_SETTINGS: dict[str, str] = {
    "listen_addresses": "'127.0.0.1'",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "200",
    "shared_buffers": "128MB",
    "logging_collector": "off",
}


def _is_root() -> bool:
    return os.geteuid() == 0


def run_as_postgres(args: list[str]) -> list[str]:
    """Prefix ``args`` with ``runuser -u postgres --`` when running as root (PostgreSQL
    refuses to run as root)."""
    if _is_root():
        return ["runuser", "-u", PG_USER, "--", *args]
    return list(args)


def _chown_tree(path: str, uid: int, gid: int) -> None:
    os.chown(path, uid, gid)
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            os.chown(os.path.join(root, name), uid, gid, follow_symlinks=False)


class PostgresServer(ThrowawayServer):
    """A disposable PostgreSQL cluster that can be stopped and restarted in place.

    ``settings`` are added to (or replace) PG_SETTINGS in postgresql.conf.
    """

    def __init__(
        self,
        port: int | None = None,
        database: str = PG_DATABASE,
        settings: Mapping[str, str] | None = None,
    ) -> None:
        self.port: int = port if port is not None else free_port()
        self.database = database
        self.settings = {**PG_SETTINGS, **(settings or {})}
        # As root the postgres user must be able to traverse the parent: use /tmp.
        self.base_dir: str = tempfile.mkdtemp(
            prefix="eventflow-pg-", dir="/tmp" if _is_root() else None
        )
        self.data_dir = os.path.join(self.base_dir, "data")
        self.socket_dir = os.path.join(self.base_dir, "sock")
        self.log_path = os.path.join(self.base_dir, "postgres.log")
        self._initialized = False
        self._database_created = False
        os.mkdir(self.socket_dir)
        if _is_root():
            entry = pwd.getpwnam(PG_USER)
            _chown_tree(self.base_dir, entry.pw_uid, entry.pw_gid)

    @property
    def url(self) -> str:
        return self.database_url(self.database)

    def database_url(self, database: str) -> str:
        """The URL of another database on this server (``postgres`` for administration)."""
        return f"postgresql://{PG_USER}@127.0.0.1:{self.port}/{database}"

    def _run(self, args: list[str], what: str) -> None:
        result = subprocess.run(
            run_as_postgres(args),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            timeout=60,
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
            **self.settings,
            "port": str(self.port),
            "unix_socket_directories": f"'{self.socket_dir}'",
        }
        lines = "".join(f"{key} = {value}\n" for key, value in settings.items())
        with open(os.path.join(self.data_dir, "postgresql.conf"), "a", encoding="utf-8") as fh:
            fh.write("\n# eventflow testkit\n" + lines)
        self._initialized = True

    def _is_ready(self) -> bool:
        probe = [pg_bin("pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(self.port)]
        result = subprocess.run(
            run_as_postgres([*probe, "-U", PG_USER, "-d", "postgres", "-t", "2"]),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=10,
            check=False,
        )
        return result.returncode == 0

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
        self._wait_started("PostgreSQL", self._is_ready, interval_s=0.1)
        if not self._database_created:
            address = ["-h", "127.0.0.1", "-p", str(self.port), "-U", PG_USER]
            self._run([pg_bin("createdb"), *address, self.database], "createdb")
            self._database_created = True

    def _postmaster_pid(self) -> int | None:
        try:
            with open(os.path.join(self.data_dir, "postmaster.pid"), encoding="utf-8") as fh:
                return int(fh.readline().strip())
        except (OSError, ValueError):
            return None

    def _abort(self) -> None:
        self._kill()

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


def postgres_server() -> contextlib.AbstractContextManager[str]:
    """A PostgreSQL URL: ``$EVENTFLOW_TEST_DATABASE_URL`` or a throwaway server's."""
    return url_or_server(DATABASE_URL_ENV, PostgresServer)
