"""Real ``eventflow`` processes (up, api, worker) for the tests and the bench, with their logs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import httpx

from testkit.logs import tail
from testkit.ports import free_port

REPO_ROOT = Path(__file__).resolve().parents[1]
#: The installed ``eventflow`` script of this interpreter, exactly as a user runs it.
EVENTFLOW = str(Path(sys.executable).with_name("eventflow"))
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 30.0
#: What ``eventflow worker`` logs once its claim loop runs (it has no HTTP port to poll).
WORKER_READY = "worker running"


class EventflowProcess:
    """``eventflow COMMAND`` (or, given ``argv``, another server started the same way) with its
    output in ``log_path``, ``EVENTFLOW_PORT`` set to ``port`` and the repository as its working
    directory, so that handler modules under tests/ import.

    Ready means: a worker has logged WORKER_READY; anything else answers ``ready_path`` with 2xx.
    """

    def __init__(
        self,
        command: str,
        env: Mapping[str, str],
        log_path: Path,
        *,
        port: int | None = None,
        argv: Sequence[str] | None = None,
        ready_path: str = "/health",
    ) -> None:
        self.command = command
        self.env = dict(env)
        self.log_path = log_path
        self.port: int = port if port is not None else free_port()
        self.argv = list(argv) if argv is not None else [EVENTFLOW, command]
        self.ready_path = ready_path
        self.popen: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        if self.popen is None:
            raise RuntimeError(f"eventflow {self.command} is not started")
        return self.popen.pid

    @property
    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.popen = subprocess.Popen(
                self.argv,
                env={**self.env, "EVENTFLOW_PORT": str(self.port)},
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=REPO_ROOT,
                # Its own process group, so that a kill reaches the HTTP processes it spawns.
                start_new_session=True,
            )

    def wait_ready(self, timeout_s: float = START_TIMEOUT_S) -> None:
        """Until the process is ready; raises with its log if it exits or takes too long."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.alive:
                raise RuntimeError(f"eventflow {self.command} exited early:\n{self.log()}")
            if self._ready():
                return
            time.sleep(0.05)
        raise RuntimeError(
            f"eventflow {self.command} not ready in {timeout_s:.0f} s:\n{self.log()}"
        )

    def _ready(self) -> bool:
        if self.command == "worker":
            return WORKER_READY in self.log(limit=None)
        try:
            return httpx.get(self.url + self.ready_path, timeout=1).is_success
        except httpx.HTTPError:
            return False

    def send_signal(self, sig: signal.Signals) -> None:
        if self.popen is None:
            raise RuntimeError(f"eventflow {self.command} is not started")
        self.popen.send_signal(sig)

    def wait(self, timeout_s: float) -> int:
        """The exit status; raises subprocess.TimeoutExpired if it is still running."""
        if self.popen is None:
            raise RuntimeError(f"eventflow {self.command} is not started")
        return self.popen.wait(timeout_s)

    def kill(self) -> None:
        """SIGKILL to the process and every process it started: no shutdown code runs."""
        if self.alive:
            os.killpg(self.pid, signal.SIGKILL)
            self.wait(10)

    def terminate(self, timeout: float = STOP_TIMEOUT_S) -> int:
        """SIGTERM (a graceful shutdown) and its exit status; raises if it takes too long."""
        self.send_signal(signal.SIGTERM)
        return self.wait(timeout)

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """SIGTERM, then SIGKILL if the shutdown takes longer than ``timeout``."""
        if not self.alive:
            return
        try:
            self.terminate(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def log(self, limit: int | None = 8000) -> str:
        """The end of the process's output ("" before it wrote any); all of it for None."""
        if not self.log_path.exists():
            return ""
        return tail(self.log_path, limit)
