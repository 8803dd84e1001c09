"""One slow durable commit holds up only the requests of its own group commit.

PostgreSQL is made to stall one commit for as long as the test wants: a deferred constraint
trigger, fired at commit time by the rows of one event type, waits on an advisory lock that the
test holds. Meanwhile other requests must be answered on the writer's other commit slots, and
once the stall ends, service goes on as before. Counts and ordering only: no wall-clock bound.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
import httpx
import pytest

from tests.integration.procs import cluster, fetch, login

pytestmark = pytest.mark.slow

LOCK = 4242
STALL = """
CREATE FUNCTION stall_commit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(4242);
    RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER stall_commit AFTER INSERT ON events
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
    WHEN (NEW.type = 'STALLED_COMMIT') EXECUTE FUNCTION stall_commit();
"""
# Sent one after another while the stalled commit waits: each needs a commit of its own.
AFTER_THE_STALL = 20


async def _stalled_commits(conn: asyncpg.Connection) -> int:
    found = await conn.fetchval(
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE wait_event_type = 'Lock' AND wait_event = 'advisory'"
    )
    return int(found)


@pytest.mark.parametrize("broker", ["redis", "sql"])
async def test_a_stalled_commit_holds_up_only_its_own_group(
    fresh_postgres: str, redis_url: str, tmp_path: Path, broker: str
) -> None:
    holder = await asyncpg.connect(fresh_postgres)
    try:
        await holder.execute(STALL)
        await holder.execute("SELECT pg_advisory_lock($1)", LOCK)
        with cluster(fresh_postgres, redis_url, tmp_path) as group:
            # A stall far longer than the default commit timeout must not count as a failure.
            overrides: dict[str, str | int] = {"commit_timeout_ms": 120_000}
            if broker == "sql":
                overrides["redis_url"] = ""
            api = group.api(**overrides)
            async with httpx.AsyncClient(base_url=api.url, timeout=120) as client:
                headers = await login(client)
                stalled = asyncio.create_task(
                    client.post("/api/v1/events", json={"type": "STALLED_COMMIT"}, headers=headers)
                )
                while await _stalled_commits(holder) == 0:
                    assert not stalled.done(), stalled.result().text
                    await asyncio.sleep(0.02)

                answered: list[str] = []
                async with httpx.AsyncClient(base_url=api.url, timeout=120) as other:
                    for n in range(AFTER_THE_STALL):
                        reply = await other.post(
                            "/api/v1/events",
                            json={"type": "AFTER", "payload": {"n": n}},
                            headers=headers,
                        )
                        assert reply.status_code == 202, reply.text
                        answered.append(reply.json()["id"])
                        assert not stalled.done(), "the stall ended before the test ended it"
                # Every later request was answered while the stalled commit still waited.
                assert len(answered) == AFTER_THE_STALL
                assert await _stalled_commits(holder) == 1

                await holder.execute("SELECT pg_advisory_unlock($1)", LOCK)
                first = await stalled
                assert first.status_code == 202, first.text
                after = await client.post("/api/v1/events", json={"type": "AFTER"}, headers=headers)
                assert after.status_code == 202, after.text
            stored = await fetch(
                fresh_postgres,
                "SELECT id FROM events WHERE id = ANY($1::uuid[])",
                [first.json()["id"], after.json()["id"], *answered],
            )
            assert len(stored) == AFTER_THE_STALL + 2, group.logs()
    finally:
        await holder.close()
