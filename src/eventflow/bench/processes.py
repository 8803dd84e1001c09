"""The processes under test (``eventflow up|api|worker``, the ceiling app) and what they use."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import psutil  # type: ignore[import-untyped]  # no stubs in the dev extras yet

from eventflow.bench.client import request

_STOP_TIMEOUT_S = 30.0
_MB = 1024 * 1024


def eventflow_command(subcommand: str) -> list[str]:
    """The installed ``eventflow`` script of this interpreter, exactly as a user runs it."""
    script = Path(sys.executable).with_name("eventflow")
    if script.exists():
        return [str(script), subcommand]
    return [sys.executable, "-c", "from eventflow.cli import main; main()", subcommand]


def ceiling_command(port: int) -> list[str]:
    return [sys.executable, "-m", "eventflow.bench.ceiling", str(port)]


class ServerProcess:
    """One child process with its output in a log file."""

    def __init__(
        self, role: str, args: list[str], env: dict[str, str], log_path: Path, port: int = 0
    ) -> None:
        self.role = role
        self.args = args
        self.env = env
        self.log_path = log_path
        self.port = port
        self._proc: asyncio.subprocess.Process | None = None

    @property
    def pid(self) -> int:
        if self._proc is None:
            raise RuntimeError(f"{self.role} is not started")
        return self._proc.pid

    async def start(self) -> None:
        with self.log_path.open("ab") as log:
            self._proc = await asyncio.create_subprocess_exec(
                *self.args,
                env=self.env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
            )

    def _check_alive(self) -> None:
        if self._proc is not None and self._proc.returncode is not None:
            raise RuntimeError(
                f"{self.role} exited with status {self._proc.returncode}:\n{self.log_tail()}"
            )

    async def wait_http(self, path: str = "/health", timeout_s: float = 60.0) -> None:
        """Until ``path`` answers 2xx (the ceiling answers 202 to everything)."""
        deadline = time.monotonic() + timeout_s
        while True:
            self._check_alive()
            with contextlib.suppress(OSError, TimeoutError, RuntimeError):
                reply = await request(self.port, "GET", path, timeout_s=2.0)
                if 200 <= reply.status < 300:
                    return
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"{self.role} not ready in {timeout_s:.0f} s:\n{self.log_tail()}"
                )
            await asyncio.sleep(0.1)

    async def wait_log(self, text: str, timeout_s: float = 60.0) -> None:
        """Until the process has written ``text`` (a worker has no HTTP port to poll)."""
        deadline = time.monotonic() + timeout_s
        while text not in self.log_tail(1_000_000):
            self._check_alive()
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"{self.role} not ready in {timeout_s:.0f} s:\n{self.log_tail()}"
                )
            await asyncio.sleep(0.05)

    async def stop(self) -> None:
        """SIGTERM (a graceful shutdown), then SIGKILL if it takes too long."""
        proc = self._proc
        if proc is None or proc.returncode is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(_STOP_TIMEOUT_S):
                await proc.wait()
        except TimeoutError:
            proc.kill()
            await proc.wait()

    def log_tail(self, limit: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-limit:]
        except OSError:
            return ""


def _machine_busy_s() -> float:
    t = psutil.cpu_times()
    # On Linux guest time is already part of user time; steal is time the host took away.
    return float(t.user + t.nice + t.system + t.irq + t.softirq + t.steal)


@dataclass(frozen=True, slots=True)
class Usage:
    """CPU over the sampled window (100 = one core busy) and the largest resident set seen."""

    cpu_percent: float
    peak_rss_mb: float
    #: Time the processes' main threads were ready to run but had no CPU (a busy machine).
    waiting_percent: float


def _run_queue_wait_s(pid: int) -> float:
    """Seconds the process's main thread has spent runnable but not running (Linux only)."""
    try:
        with open(f"/proc/{pid}/schedstat") as stat:
            return int(stat.read().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return 0.0


class UsageSampler:
    """Samples the CPU time and RSS of each role's processes, children included."""

    def __init__(self, roles: dict[str, list[int]], interval_s: float = 0.2) -> None:
        self._roles = roles
        self._interval_s = interval_s
        self._procs: dict[int, psutil.Process] = {}
        self._first: dict[int, tuple[float, float]] = {}
        self._last: dict[int, tuple[float, float]] = {}
        self._role_of: dict[int, str] = {}
        self._peak_rss: dict[str, int] = dict.fromkeys(roles, 0)
        self._started = 0.0
        self._wall = 0.0
        self._machine_busy = 0.0
        self._own_cpu = 0.0
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> UsageSampler:
        self._started = time.monotonic()
        self._machine_busy = -_machine_busy_s()
        self._own_cpu = -time.process_time()
        self._sample()
        self._task = asyncio.create_task(self._loop())
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._sample()
        self._wall = time.monotonic() - self._started
        self._machine_busy += _machine_busy_s()
        self._own_cpu += time.process_time()

    @property
    def machine_cpu_percent(self) -> float:
        """Every process on the machine, ours and the neighbours' (100 = one core busy)."""
        return round(100 * self._machine_busy / max(self._wall, 1e-9), 1)

    @property
    def bench_cpu_percent(self) -> float:
        """The bench's own process (sampling, database polling)."""
        return round(100 * self._own_cpu / max(self._wall, 1e-9), 1)

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self._interval_s)
            self._sample()

    def _sample(self) -> None:
        for role, roots in self._roles.items():
            rss = 0
            for proc in self._tree(roots):
                try:
                    with proc.oneshot():
                        times = proc.cpu_times()
                        rss += proc.memory_info().rss
                except psutil.Error:
                    continue
                now = (times.user + times.system, _run_queue_wait_s(proc.pid))
                self._first.setdefault(proc.pid, now)
                self._last[proc.pid] = now
                self._role_of[proc.pid] = role
            self._peak_rss[role] = max(self._peak_rss[role], rss)

    def _tree(self, roots: list[int]) -> list[psutil.Process]:
        found: list[psutil.Process] = []
        for pid in roots:
            try:
                root = self._procs.get(pid) or psutil.Process(pid)
                self._procs[pid] = root
                found += [root, *root.children(recursive=True)]
            except psutil.Error:
                continue
        return found

    def result(self) -> dict[str, Usage]:
        wall = max(self._wall, 1e-9)
        cpu: dict[str, float] = dict.fromkeys(self._roles, 0.0)
        waited: dict[str, float] = dict.fromkeys(self._roles, 0.0)
        for pid, role in self._role_of.items():
            cpu[role] += self._last[pid][0] - self._first[pid][0]
            waited[role] += self._last[pid][1] - self._first[pid][1]
        return {
            role: Usage(
                cpu_percent=round(100 * cpu[role] / wall, 1),
                peak_rss_mb=round(self._peak_rss[role] / _MB, 1),
                waiting_percent=round(100 * waited[role] / wall, 1),
            )
            for role in self._roles
        }
