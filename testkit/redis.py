"""A throwaway redis-server without persistence on a free port, for the tests and the bench."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile

from testkit.binaries import require_service
from testkit.ports import free_port
from testkit.server import ThrowawayServer, url_or_server

REDIS_URL_ENV = "EVENTFLOW_TEST_REDIS_URL"


def _redis_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer(ThrowawayServer):
    """A disposable redis-server that can be stopped and restarted on the same port."""

    def __init__(self, port: int | None = None) -> None:
        self.binary: str = require_service("redis-server", "redis-server")
        self.port: int = port if port is not None else free_port()
        self.base_dir: str = tempfile.mkdtemp(prefix="eventflow-redis-")
        self.log_path = os.path.join(self.base_dir, "redis.log")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start redis-server and wait until it answers PING."""
        if self.running:
            return
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        args = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        args += ["--appendonly", "no", "--daemonize", "no", "--dir", self.base_dir]
        self._proc = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._wait_started("redis-server", lambda: _redis_ping(self.port), interval_s=0.05)

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
        self._close_log()

    def _abort(self) -> None:
        self.stop()

    def close(self) -> None:
        """Stop redis-server and delete its temp directory."""
        try:
            self.stop()
        finally:
            shutil.rmtree(self.base_dir, ignore_errors=True)


def redis_server() -> contextlib.AbstractContextManager[str]:
    """A Redis URL: ``$EVENTFLOW_TEST_REDIS_URL`` or a throwaway redis-server's."""
    return url_or_server(REDIS_URL_ENV, RedisServer)
