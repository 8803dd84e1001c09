"""Workers: handlers, retries with backoff, dead-lettering, replay, delayed delivery."""

from __future__ import annotations

import itertools
import time

import httpx

from eventflow.worker.retry import RetryPolicy
from tests.apiclient import Json, event_status, running_app, send, signup, wait_for
from tests.conftest import SettingsFactory

EVENTS = "/api/v1/events"


async def _event(client: httpx.AsyncClient, headers: dict[str, str], event_id: str) -> Json:
    response = await client.get(f"{EVENTS}/{event_id}", headers=headers)
    assert response.status_code == 200
    body: Json = response.json()
    return body


async def _reaches(
    client: httpx.AsyncClient, headers: dict[str, str], event_id: str, status: str, within: float
) -> float:
    async def probe() -> bool:
        return await event_status(client, headers, event_id) == status

    return await wait_for(probe, within=within)


async def test_event_is_processed_by_the_default_handler(make_settings: SettingsFactory) -> None:
    async with running_app(make_settings()) as client:
        headers = await signup(client)
        accepted = await send(client, headers, "ORDER_CREATED", payload={"order": 1})
        await _reaches(client, headers, accepted["id"], "completed", within=15)
        event = await _event(client, headers, accepted["id"])
        assert event["result"]["handled_by"] == "default"
        assert event["attempt_count"] == 1
        assert [a["outcome"] for a in event["attempts"]] == ["completed"]
        assert event["completed_at"] is not None


async def test_fail_test_is_dead_lettered_after_max_attempts(
    make_settings: SettingsFactory,
) -> None:
    # The cap (60 ms, at most 72 with jitter) is below the second retry's uncapped delay (100 ms,
    # at least 80): a policy that ignored it could not pass.
    policy = RetryPolicy(max_attempts=3, base_ms=50, max_ms=60)
    settings = make_settings(
        max_attempts=policy.max_attempts,
        retry_base_ms=policy.base_ms,
        retry_max_ms=policy.max_ms,
    )
    async with running_app(settings) as client:
        headers = await signup(client)
        accepted = await send(client, headers, "FAIL_TEST")
        await _reaches(client, headers, accepted["id"], "failed", within=20)
        event = await _event(client, headers, accepted["id"])
        assert event["last_error"] == "Simulated failure"
        assert event["attempt_count"] == 3
        attempts = event["attempts"]
        assert [a["outcome"] for a in attempts] == ["retrying", "retrying", "failed"]
        assert all(a["error"] == "Simulated failure" for a in attempts)
        # Backoff: retry n waited at least min(cap, base * 2^(n-1)) less the jitter.
        for n, (earlier, later) in enumerate(itertools.pairwise(attempts), start=1):
            lowest, _ = _backoff_bounds(policy, n)
            assert _ms(later["started_at"]) - _ms(earlier["finished_at"]) >= lowest, attempts
        # A dead letter keeps the time its last retry was due: the capped delay, not 2 * base.
        lowest, highest = _backoff_bounds(policy, 2)
        scheduled = _ms(event["available_at"]) - _ms(attempts[1]["finished_at"])
        assert lowest <= scheduled <= highest, event

        replay = await client.post(f"{EVENTS}/{accepted['id']}/retry", headers=headers)
        assert replay.status_code == 202
        assert replay.json()["status"] == "queued"
        await _reaches(client, headers, accepted["id"], "failed", within=20)
        replayed = await _event(client, headers, accepted["id"])
        # A replay gets a fresh budget; the history keeps every attempt.
        assert replayed["attempt_count"] == 6
        assert [a["number"] for a in replayed["attempts"]] == [1, 2, 3, 4, 5, 6]


async def test_backoff_spaces_the_attempts(make_settings: SettingsFactory) -> None:
    settings = make_settings(max_attempts=3, retry_base_ms=400, retry_max_ms=10_000)
    async with running_app(settings) as client:
        headers = await signup(client)
        accepted = await send(client, headers, "FAIL_TEST")
        await _reaches(client, headers, accepted["id"], "failed", within=20)
        attempts = (await _event(client, headers, accepted["id"]))["attempts"]
        gaps = [
            _ms(later["started_at"]) - _ms(earlier["finished_at"])
            for earlier, later in itertools.pairwise(attempts)
        ]
        # base 400 ms, then 800 ms, each with ±20 % jitter: never earlier than the lower bound.
        assert gaps[0] >= 320
        assert gaps[1] >= 640


def _backoff_bounds(policy: RetryPolicy, attempt: int) -> tuple[float, float]:
    """The least and most milliseconds the policy may wait after failed ``attempt``."""
    delay = min(policy.max_ms, policy.base_ms * 2 ** (attempt - 1))
    return delay * (1 - policy.jitter), delay * (1 + policy.jitter)


def _ms(iso_text: str) -> int:
    from datetime import datetime

    return round(datetime.fromisoformat(iso_text).timestamp() * 1000)


async def test_replay_completed_event_runs_again(make_settings: SettingsFactory) -> None:
    async with running_app(make_settings()) as client:
        headers = await signup(client)
        accepted = await send(client, headers, "USER_SIGNUP")
        await _reaches(client, headers, accepted["id"], "completed", within=15)
        replay = await client.post(f"{EVENTS}/{accepted['id']}/retry", headers=headers)
        assert replay.status_code == 202

        async def ran_twice() -> bool:
            event = await _event(client, headers, accepted["id"])
            return bool(event["status"] == "completed" and event["attempt_count"] == 2)

        await wait_for(ran_twice, within=15)


async def test_replay_of_waiting_event_is_409(make_settings: SettingsFactory) -> None:
    async with running_app(make_settings(), run_worker=False) as client:
        headers = await signup(client)
        accepted = await send(client, headers, "A")
        response = await client.post(f"{EVENTS}/{accepted['id']}/retry", headers=headers)
        assert response.status_code == 409
        assert "queued" in response.json()["detail"]


async def test_retry_all_failed(make_settings: SettingsFactory) -> None:
    async with running_app(make_settings(max_attempts=1)) as client:
        headers = await signup(client)
        ids = [(await send(client, headers, "FAIL_TEST"))["id"] for _ in range(3)]
        for event_id in ids:
            await _reaches(client, headers, event_id, "failed", within=15)
        response = await client.post(f"{EVENTS}/retry-failed", headers=headers)
        assert response.status_code == 202
        assert sorted(response.json()["ids"]) == sorted(ids)

        async def all_ran_twice() -> bool:
            events = [await _event(client, headers, i) for i in ids]
            return all(e["status"] == "failed" and e["attempt_count"] == 2 for e in events)

        await wait_for(all_ran_twice, within=15)


async def test_delayed_event_waits(make_settings: SettingsFactory) -> None:
    async with running_app(make_settings()) as client:
        headers = await signup(client)
        sent_at = time.monotonic()
        accepted = await send(client, headers, "ORDER_CREATED", delay_ms=1500)
        assert accepted["status"] == "scheduled"

        async def completed() -> bool:
            status = await event_status(client, headers, accepted["id"])
            if time.monotonic() - sent_at < 1.45:
                assert status == "scheduled", "processed before its delay"
            return status == "completed"

        await wait_for(completed, within=10, interval=0.02)
        elapsed = time.monotonic() - sent_at
        assert elapsed >= 1.5
        assert elapsed < 6.0, "a delayed event must run soon after it is due"
        event = await _event(client, headers, accepted["id"])
        started = _ms(event["attempts"][0]["started_at"])
        assert started - _ms(event["created_at"]) >= 1500


async def test_custom_handlers_from_settings(make_settings: SettingsFactory) -> None:
    settings = make_settings(handlers="tests.handlers_fixture")
    async with running_app(settings) as client:
        headers = await signup(client)
        echo = await send(client, headers, "ECHO", payload={"hello": "world"})
        permanent = await send(client, headers, "PERMANENT", payload={"why": "bad data"})
        await _reaches(client, headers, echo["id"], "completed", within=15)
        await _reaches(client, headers, permanent["id"], "failed", within=15)
        result = (await _event(client, headers, echo["id"]))["result"]
        assert result == {"echo": {"hello": "world"}, "attempt": 1, "idempotency_key": echo["id"]}
        failed = await _event(client, headers, permanent["id"])
        # A PermanentError is dead-lettered at once, without retries.
        assert failed["attempt_count"] == 1
        assert failed["last_error"] == "cannot handle bad data"


async def test_many_events_all_complete(make_settings: SettingsFactory) -> None:
    async with running_app(make_settings()) as client:
        headers = await signup(client)
        batch = [{"type": "ORDER_CREATED", "payload": {"n": i}} for i in range(500)]
        response = await client.post(f"{EVENTS}/batch", json={"events": batch}, headers=headers)
        assert response.status_code == 202

        async def done() -> bool:
            stats = (await client.get("/api/v1/stats", headers=headers)).json()
            return bool(stats["counts"]["completed"] == 500)

        await wait_for(done, within=30)
