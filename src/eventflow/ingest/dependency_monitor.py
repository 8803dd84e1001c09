"""Whether the database and the broker answer: down from the first failure, up once a probe
answers again, and the queue depth read while all is well."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from eventflow.broker.base import Broker
from eventflow.errors import ServiceUnavailable
from eventflow.metrics import Metrics

log = logging.getLogger(__name__)

Probe = Callable[[], Awaitable[object]]

_PROBE_TIMEOUT_S = 1.0


class DependencyMonitor:
    """The writer's view of its dependencies, kept by one probe loop.

    A failed commit or publish marks its dependency down at once (``database_failed``,
    ``broker_failed``), so new events get a 503 without waiting on it; every
    ``probe_interval_ms`` the loop probes what is down and lifts the mark when it answers, so
    service resumes by itself. While the broker is up, the loop reads the queue depth every
    ``depth_interval_ms``.
    """

    def __init__(
        self,
        database_probe: Probe,
        broker: Broker,
        *,
        probe_interval_ms: int,
        depth_interval_ms: int,
        metrics: Metrics | None = None,
    ) -> None:
        self._probe_database = database_probe
        self._broker = broker
        self._interval_s = probe_interval_ms / 1000
        self._depth_every = max(1, round(depth_interval_ms / probe_interval_ms))
        #: Why the database or the broker is considered down (None: it is up).
        self.database_down: str | None = None
        self.broker_down: str | None = None
        self.queue_depth = 0
        self._metrics = metrics if metrics is not None else Metrics()
        self._loop: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._loop = asyncio.create_task(self._run(), name="dependency-monitor")

    async def close(self) -> None:
        if self._loop is not None:
            self._loop.cancel()
            await asyncio.gather(self._loop, return_exceptions=True)

    def database_failed(self, exc: BaseException) -> None:
        self.database_down = _reason(exc)
        self._metrics.dependency("database", up=False)

    def broker_failed(self, exc: BaseException) -> None:
        self.broker_down = _reason(exc)
        self._metrics.dependency("broker", up=False)

    def refusal(self) -> ServiceUnavailable | None:
        """The 503 a new event gets while a dependency is down; None while both answer."""
        if self.database_down is not None:
            return self.database_error()
        if self.broker_down is not None:
            return ServiceUnavailable(
                f"The {self._broker.name} broker is unreachable ({self.broker_down}); "
                "nothing was stored, retry",
                retry_after=1,
            )
        return None

    def database_error(self) -> ServiceUnavailable:
        return ServiceUnavailable(
            f"The database could not store the events ({self.database_down}); "
            "nothing was stored, retry",
            retry_after=1,
        )

    async def check(self, *, read_depth: bool) -> None:
        """One round: probe what is down; with ``read_depth``, refresh the queue depth."""
        if self.database_down is not None and await _answers(self._probe_database):
            log.warning("the database answers again; accepting events")
            self.database_down = None
            self._metrics.dependency("database", up=True)
        if self.broker_down is not None and await _answers(self._broker.ping):
            log.warning("the %s broker answers again; accepting events", self._broker.name)
            self.broker_down = None
            self._metrics.dependency("broker", up=True)
        if read_depth and self.broker_down is None:
            await self._refresh_depth()

    async def _run(self) -> None:
        tick = 0
        while True:
            await self.check(read_depth=tick % self._depth_every == 0)
            tick += 1
            await asyncio.sleep(self._interval_s)

    async def _refresh_depth(self) -> None:
        try:
            async with asyncio.timeout(_PROBE_TIMEOUT_S):
                self.queue_depth = await self._broker.depth()
            return
        except Exception as exc:
            log.debug("queue depth unavailable: %r", exc)
        # A broker whose depth lives in the database fails with it; only a failed ping of the
        # broker itself marks the broker down.
        try:
            async with asyncio.timeout(_PROBE_TIMEOUT_S):
                await self._broker.ping()
        except Exception as exc:
            log.warning("the %s broker is unreachable: %r", self._broker.name, exc)
            self.broker_failed(exc)


async def _answers(probe: Probe) -> bool:
    try:
        async with asyncio.timeout(_PROBE_TIMEOUT_S):
            await probe()
    except Exception as exc:
        log.debug("still unreachable: %r", exc)
        return False
    return True


def _reason(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    return type(exc).__name__
