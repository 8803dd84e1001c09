"""A handler that leaves a trace of every run, loaded by worker processes via EVENTFLOW_HANDLERS.

Each run appends ``start`` and ``end`` lines (event id, pid, CLOCK_MONOTONIC ns) to the file
named by ``EVENTFLOW_TEST_TRACE``. Lines are shorter than PIPE_BUF and written with O_APPEND, so
lines from concurrent processes never interleave, and the monotonic clock is shared by every
process on the machine, so runs in different workers can be compared for overlap.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import time
from collections import defaultdict
from pathlib import Path

from eventflow.worker.handlers import EventContext, HandlerRegistry, HandlerResult

TRACED = "TRACED"
TRACE_ENV = "EVENTFLOW_TEST_TRACE"


def _append(path: str, line: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


async def _traced(event: EventContext) -> HandlerResult:
    path = os.environ[TRACE_ENV]
    pid = os.getpid()
    _append(path, f"start {event.id} {pid} {time.monotonic_ns()}\n")
    # Long enough that two runs of one event in different workers would overlap.
    await asyncio.sleep(0.005)
    _append(path, f"end {event.id} {pid} {time.monotonic_ns()}\n")
    return {"pid": pid}


def register(registry: HandlerRegistry) -> None:
    registry.add(TRACED, _traced)


Run = tuple[int, int]  # (start ns, end ns)


def read_runs(path: Path) -> dict[str, list[Run]]:
    """Every completed run per event id, in start order; fails on a run that never ended."""
    open_runs: dict[tuple[str, str], int] = {}
    runs: dict[str, list[Run]] = defaultdict(list)
    for line in path.read_text().splitlines():
        kind, event_id, pid, ns = line.split()
        if kind == "start":
            assert (event_id, pid) not in open_runs, f"{event_id} started twice in pid {pid}"
            open_runs[(event_id, pid)] = int(ns)
        else:
            runs[event_id].append((open_runs.pop((event_id, pid)), int(ns)))
    assert not open_runs, f"{len(open_runs)} runs never finished"
    for event_runs in runs.values():
        event_runs.sort()
    return dict(runs)


def overlapping(runs: dict[str, list[Run]]) -> list[str]:
    """Events whose handler ran twice at the same time."""
    return [
        event_id
        for event_id, event_runs in runs.items()
        if any(later[0] < earlier[1] for earlier, later in itertools.pairwise(event_runs))
    ]
