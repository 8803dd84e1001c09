"""What the processes under test use: CPU time, time waiting for a CPU, resident memory."""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from types import TracebackType

import psutil

_MB = 1024 * 1024


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
