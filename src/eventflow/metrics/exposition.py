"""Scrapes: the text Prometheus reads, behind an optional bearer token, from one process or many.

With several HTTP processes on one port (``EVENTFLOW_HTTP_WORKERS``), the parent makes a private
directory and names it in ``PROMETHEUS_MULTIPROC_DIR`` before it starts them: prometheus-client
then keeps each process's values in files there, and whichever process answers a scrape sums
them all. A process that exits is marked dead, so live-only gauges forget it (its counters
still count); the directory goes when the parent exits.
"""

from __future__ import annotations

import asyncio
import hmac
import os
import shutil
import tempfile
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest, multiprocess

from eventflow.metrics.catalog import Metrics

#: Where prometheus-client's multiprocess mode keeps the processes' values.
MULTIPROCESS_DIR = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = CONTENT_TYPE_LATEST

Refresh = Callable[[], Awaitable[None]]


class Scrape:
    """Answers scrapes of one process: checks the token, reads the scrape-time gauges
    (``refresh``), moves the lean recorders' observations in and renders the text."""

    def __init__(self, metrics: Metrics, token: str | None, refresh: Refresh | None = None) -> None:
        self._metrics = metrics
        self._token = token.encode() if token else None
        self._refresh = refresh
        directory = os.environ.get(MULTIPROCESS_DIR)
        if directory:
            self._registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(self._registry, directory)  # type: ignore[no-untyped-call]
        else:
            self._registry = metrics.registry

    def authorized(self, authorization: str | None) -> bool:
        """Whether a request with this ``Authorization`` header may read the metrics."""
        if self._token is None:
            return True
        scheme, _, credentials = (authorization or "").partition(" ")
        if scheme.lower() != "bearer":
            return False
        # Constant time: a wrong token's answer must not tell how much of it was right.
        return hmac.compare_digest(credentials.strip().encode("latin-1", "replace"), self._token)

    async def render(self) -> bytes:
        if self._refresh is not None:
            await self._refresh()
        self._metrics.flush()
        return generate_latest(self._registry)


@contextmanager
def shared_by_processes() -> Iterator[str]:
    """A private directory for the metrics of the processes started meanwhile (they inherit the
    environment), removed at the end."""
    directory = tempfile.mkdtemp(prefix="eventflow-metrics-")  # 0700
    previous = os.environ.get(MULTIPROCESS_DIR)
    os.environ[MULTIPROCESS_DIR] = directory
    try:
        yield directory
    finally:
        if previous is None:
            os.environ.pop(MULTIPROCESS_DIR, None)
        else:
            os.environ[MULTIPROCESS_DIR] = previous
        shutil.rmtree(directory, ignore_errors=True)


def process_exited(pid: int | None) -> None:
    """Forget the live-only gauges of a process that exited (its counters keep counting)."""
    directory = os.environ.get(MULTIPROCESS_DIR)
    if directory and pid is not None:
        multiprocess.mark_process_dead(pid, directory)  # type: ignore[no-untyped-call]


def keep_flushed(metrics: Metrics, interval_s: float = 1.0) -> Callable[[], Awaitable[None]]:
    """Flush ``metrics``'s lean recorders every ``interval_s`` from a task of the running loop,
    so that every process's files stay current; answers what stops it (after a last flush)."""

    async def flushing() -> None:
        while True:
            await asyncio.sleep(interval_s)
            metrics.flush()

    task = asyncio.create_task(flushing(), name="metrics-flush")

    async def stop() -> None:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        metrics.flush()

    return stop
