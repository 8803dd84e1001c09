"""``POST /events/retry-failed`` over thousands of failed events: each replayed once, in bounded
transactions committed one after the other, while ingestion goes on between them. No worker
runs: replayed events stay queued."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import sqlalchemy as sa

from eventflow.api.routes.events import REPLAY_BATCH, REPLAY_IDS_LISTED
from eventflow.clock import now_ms
from eventflow.db.tables import events
from eventflow.ids import new_id
from eventflow.services import Services
from tests.apiclient import running_services, send, signup
from tests.conftest import SettingsFactory, each_database

EVENTS = "/api/v1/events"
FAILED = 3 * REPLAY_BATCH + REPLAY_BATCH // 2


async def _store_failed(services: Services, user_id: str, count: int) -> list[str]:
    """``count`` events that failed their one attempt, written straight to the table."""
    now = now_ms()
    ids = [new_id() for _ in range(count)]
    rows = [
        {"id": i, "user_id": user_id, "type": "A", "payload": "{}", "status": "failed"}
        | {"attempts": 1, "available_at": now, "created_at": now, "updated_at": now}
        | {"completed_at": now, "last_error": "boom"}
        for i in ids
    ]
    async with services.engine.begin() as conn:
        await conn.execute(sa.insert(events), rows)
    return ids


@each_database
async def test_retry_all_failed_works_in_bounded_batches_while_ingest_goes_on(
    make_settings: SettingsFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with running_services(make_settings(), run_worker=False) as (client, services):
        email = f"{new_id()}@example.com"
        headers = await signup(client, email)
        account = await services.users.by_email(email)
        assert account is not None
        failed = await _store_failed(services, account.id, FAILED)

        # The replay's statements and the commits, in the order the database got them.
        sent: list[str] = []

        def statement(_conn: Any, _cursor: Any, sql: str, *_: Any) -> None:
            if sql.lstrip().startswith("UPDATE events") and "attempt_base" in sql:
                sent.append("replay")

        engine = services.engine.sync_engine
        sa.event.listen(engine, "before_cursor_execute", statement)

        def commit(_conn: Any) -> None:
            sent.append("commit")

        sa.event.listen(engine, "commit", commit)

        # After the first batch, the retry waits until an event sent meanwhile is accepted:
        # with the write lock (SQLite's single writer) still held, that would never happen.
        batches: list[list[str]] = []
        between_batches, ingested = asyncio.Event(), asyncio.Event()
        replay_failed = services.reading.replay_failed

        async def replay_then_let_ingest_in(
            user_id: str, before_id: str | None, limit: int
        ) -> list[str]:
            batch = await replay_failed(user_id, before_id, limit)
            batches.append(batch)
            if len(batches) == 1:
                between_batches.set()
                await asyncio.wait_for(ingested.wait(), 10)
            return batch

        monkeypatch.setattr(services.reading, "replay_failed", replay_then_let_ingest_in)
        retry = asyncio.create_task(client.post(f"{EVENTS}/retry-failed", headers=headers))
        await asyncio.wait_for(between_batches.wait(), 30)
        accepted = await send(client, headers, "ORDER_CREATED")
        ingested.set()
        response = await retry
        sa.event.remove(engine, "before_cursor_execute", statement)
        sa.event.remove(engine, "commit", commit)

        assert response.status_code == 202, response.text
        body = response.json()
        newest_first = sorted(failed, reverse=True)
        assert body["replayed"] == FAILED
        assert body["ids"] == newest_first[:REPLAY_IDS_LISTED]
        assert [len(b) for b in batches] == [REPLAY_BATCH] * 3 + [REPLAY_BATCH // 2]
        assert [i for b in batches for i in b] == newest_first, "each once, newest first"
        # Each batch its own transaction: committed before the next one's statement.
        replays = [i for i, what in enumerate(sent) if what == "replay"]
        assert len(replays) == len(batches)
        assert all(
            "commit" in sent[i:j] for i, j in zip(replays, [*replays[1:], None], strict=True)
        )

        by_status = sa.select(events.c.status, sa.func.count()).group_by(events.c.status)
        async with services.engine.connect() as conn:
            statuses = {str(status): int(n) for status, n in await conn.execute(by_status)}
        assert statuses == {"queued": FAILED + 1}, "every failed event, and the one sent meanwhile"
        detail = await client.get(f"{EVENTS}/{accepted['id']}", headers=headers)
        assert detail.json()["status"] == "queued"
