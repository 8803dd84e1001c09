"""The dependency monitor: down at the first failure, up once a probe answers, depth while up."""

from __future__ import annotations

import asyncio

from eventflow.broker.memory import MemoryBroker
from eventflow.ingest.dependency_monitor import DependencyMonitor


class Database:
    def __init__(self) -> None:
        self.down = False
        self.probes = 0

    async def probe(self) -> None:
        self.probes += 1
        if self.down:
            raise ConnectionRefusedError("database down")


class Broker(MemoryBroker):
    def __init__(self) -> None:
        super().__init__()
        self.down = False
        self.depth_value = 0
        self.depth_down = False

    async def depth(self) -> int:
        if self.down or self.depth_down:
            raise ConnectionError("depth unavailable")
        return self.depth_value

    async def ping(self) -> None:
        if self.down:
            raise ConnectionError("broker down")


def monitor(database: Database, broker: Broker) -> DependencyMonitor:
    return DependencyMonitor(database.probe, broker, probe_interval_ms=10, depth_interval_ms=10)


async def test_both_answer_and_nothing_is_refused() -> None:
    watched = monitor(Database(), Broker())
    assert watched.refusal() is None
    await watched.check(read_depth=True)
    assert watched.refusal() is None


async def test_a_failed_commit_refuses_new_events_until_the_database_answers() -> None:
    database, broker = Database(), Broker()
    watched = monitor(database, broker)
    database.down = True
    watched.database_failed(ConnectionRefusedError())
    refusal = watched.refusal()
    assert refusal is not None
    assert "ConnectionRefusedError" in refusal.detail
    assert refusal.headers == {"Retry-After": "1"}
    await watched.check(read_depth=False)
    assert watched.database_down == "ConnectionRefusedError", "still down: it did not answer"
    database.down = False
    await watched.check(read_depth=False)
    assert watched.database_down is None
    assert watched.refusal() is None


async def test_the_database_is_probed_only_while_it_is_down() -> None:
    database = Database()
    watched = monitor(database, Broker())
    await watched.check(read_depth=True)
    assert database.probes == 0


async def test_a_timeout_is_named_as_such() -> None:
    watched = monitor(Database(), Broker())
    watched.database_failed(TimeoutError())
    assert watched.database_down == "timed out"


async def test_a_failed_publish_refuses_new_events_until_the_broker_answers() -> None:
    broker = Broker()
    watched = monitor(Database(), broker)
    broker.down = True
    watched.broker_failed(ConnectionError())
    refusal = watched.refusal()
    assert refusal is not None
    assert "memory broker is unreachable" in refusal.detail
    await watched.check(read_depth=True)
    assert watched.broker_down is not None
    broker.down = False
    await watched.check(read_depth=True)
    assert watched.refusal() is None


async def test_the_depth_is_read_while_the_broker_is_up() -> None:
    broker = Broker()
    watched = monitor(Database(), broker)
    broker.depth_value = 7
    await watched.check(read_depth=False)
    assert watched.queue_depth == 0
    await watched.check(read_depth=True)
    assert watched.queue_depth == 7


async def test_a_failed_depth_marks_the_broker_down_only_if_its_ping_fails() -> None:
    broker = Broker()
    watched = monitor(Database(), broker)
    # A broker whose depth lives in the database fails with the database, not by itself.
    broker.depth_down = True
    await watched.check(read_depth=True)
    assert watched.broker_down is None
    broker.down = True
    await watched.check(read_depth=True)
    assert watched.broker_down == "ConnectionError"


async def test_the_loop_lifts_a_mark_by_itself_and_stops_on_close() -> None:
    database = Database()
    watched = monitor(database, Broker())
    database.down = True
    watched.database_failed(ConnectionRefusedError())
    await watched.start()
    try:
        async with asyncio.timeout(2):
            while database.probes < 2:  # noqa: ASYNC110 (no event to await)
                await asyncio.sleep(0.01)
            database.down = False
            while watched.database_down is not None:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
    finally:
        await watched.close()
    watched.database_failed(ConnectionRefusedError())
    probes = database.probes
    await asyncio.sleep(0.05)
    assert database.probes == probes, "a closed monitor probes no more"
