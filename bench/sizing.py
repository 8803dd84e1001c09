"""Sizing figures for docs/operations.md: Redis memory per queued event, disk per stored event.

    .venv/bin/python -m bench.sizing [--events 200000] [--hints 100000]

Redis: INFO memory before and after the product's broker publishes hints (one per commit, as
under light load, and a thousand per commit, as with batches or busy group commits). Disk: events
sent through the batch API to a fresh deployment (embedded SQLite; PostgreSQL), measured once
accepted and again once a worker has completed them (each then has an attempt row too).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sqlite3
import tempfile
import time
from pathlib import Path

import asyncpg
import orjson
from redis.asyncio import Redis

from bench.client import post_json, register_and_login
from bench.stack import Mode, Stack
from eventflow.broker.redis_streams import RedisBroker
from eventflow.db.engine import create_engine
from eventflow.db.stores import build_stores
from eventflow.ids import new_id
from testkit import RedisServer

#: The README's example payload: 33 bytes of JSON.
PAYLOAD = {"order_id": 1001, "total": 42.5}
BATCH = 1000
MIB = 1024 * 1024


async def _used_memory(client: Redis) -> int:
    info = await client.info("memory")
    return int(info["used_memory"])


async def redis_bytes_per_hint(hints: int, per_commit: int, workdir: Path) -> float:
    server = RedisServer()
    await asyncio.to_thread(server.start)
    engine = create_engine(f"sqlite+aiosqlite:///{workdir / f'hints-{per_commit}.db'}")
    broker = RedisBroker(server.url, "sizing", build_stores(engine).queue)
    client: Redis = Redis.from_url(server.url)
    try:
        await broker.start()
        before = await _used_memory(client)
        ids = [str(new_id()) for _ in range(hints)]
        for start in range(0, hints, per_commit):
            await broker.publish(ids[start : start + per_commit])
        return (await _used_memory(client) - before) / hints
    finally:
        await client.aclose()
        await broker.close()
        await engine.dispose()
        await asyncio.to_thread(server.close)


def _sqlite_bytes(path: Path) -> int:
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        free = conn.execute("PRAGMA freelist_count").fetchone()[0]
        size = conn.execute("PRAGMA page_size").fetchone()[0]
    return int((pages - free) * size)


async def _postgres_bytes(url: str) -> int:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("VACUUM ANALYZE")
        return int(await conn.fetchval("SELECT pg_database_size(current_database())"))
    finally:
        await conn.close()


async def disk_bytes_per_event(mode: Mode, events: int, workdir: Path) -> tuple[float, float]:
    """Bytes per event on disk: accepted (no worker yet), then completed."""
    stack = Stack(mode, workdir)
    await stack.start()
    try:
        async with stack.deployment() as deployment:
            api = await deployment.start("api")
            url = deployment.env.get("EVENTFLOW_DATABASE_URL")
            database = Path(deployment.env["EVENTFLOW_DATA_DIR"]) / "eventflow.db"

            async def size() -> int:
                if url is None:
                    return await asyncio.to_thread(_sqlite_bytes, database)
                return await _postgres_bytes(url)

            empty = await size()
            account = await register_and_login(api.port, "sizing@example.com", "x" * 12)
            body = orjson.dumps({"events": [{"type": "ORDER_CREATED", "payload": PAYLOAD}] * BATCH})
            for _ in range(events // BATCH):
                reply = await post_json(api.port, "/api/v1/events/batch", body, account.token, 60)
                if reply.status != 202:
                    raise RuntimeError(f"batch answered {reply.status}: {reply.body[:200]!r}")
            accepted = await size()
            await deployment.start("worker")
            deadline = time.monotonic() + 1800
            while await deployment.db.any_waiting(account.user_id):
                if time.monotonic() > deadline:
                    raise RuntimeError("the worker did not complete the events in 30 minutes")
                await asyncio.sleep(0.5)
            completed = await size()
    finally:
        await stack.close()
    return (accepted - empty) / events, (completed - empty) / events


def _machine() -> str:
    cpu = platform.processor() or "unknown CPU"
    with open("/proc/cpuinfo", encoding="utf-8") as info:
        for line in info:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return f"{cpu}, {os.cpu_count()} CPUs, {platform.system()} {platform.release()}"


async def main(events: int, hints: int) -> None:
    print(f"machine: {_machine()}")
    with tempfile.TemporaryDirectory(prefix="eventflow-sizing-") as tmp:
        workdir = Path(tmp)
        for per_commit in (1, BATCH):
            per_hint = await redis_bytes_per_hint(hints, per_commit, workdir)
            print(f"redis: {per_hint:.0f} bytes per queued event ({per_commit} per commit)")
        for mode in ("embedded", "postgres"):
            accepted, completed = await disk_bytes_per_event(mode, events, workdir / mode)
            print(
                f"{mode}: {accepted:.0f} bytes per accepted event, {completed:.0f} completed "
                f"({completed * 1e6 / MIB:.0f} MiB per million completed events)"
            )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--hints", type=int, default=100_000)
    args = parser.parse_args()
    asyncio.run(main(args.events, args.hints))
