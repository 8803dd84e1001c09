"""What deployments are told: the health check's own address, pool sizes, shutdown deadlines."""

from __future__ import annotations

import pytest
from sqlalchemy.pool import QueuePool

from eventflow.cli_health import health_url
from eventflow.config import Settings
from eventflow.db.engine import create_engine
from eventflow.runtime import STEP_DEADLINES_S, shutdown_deadline_s


@pytest.mark.parametrize(
    ("host", "url"),
    [
        ("0.0.0.0", "http://127.0.0.1:3100/health"),
        ("::", "http://127.0.0.1:3100/health"),
        ("10.1.2.3", "http://10.1.2.3:3100/health"),
        ("::1", "http://[::1]:3100/health"),
    ],
)
def test_the_health_check_asks_the_address_the_server_binds(host: str, url: str) -> None:
    assert health_url(Settings(host=host, port=3100)) == url


async def test_engines_get_the_pool_they_are_given() -> None:
    engine = create_engine("postgresql+asyncpg://u@db.invalid/ef", pool_size=3, max_overflow=2)
    try:
        pool = engine.pool
        assert isinstance(pool, QueuePool)
        assert (pool.size(), pool._max_overflow) == (3, 2)
    finally:
        await engine.dispose()


def test_the_pool_settings_are_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EVENTFLOW_DB_POOL_SIZE", "4")
    monkeypatch.setenv("EVENTFLOW_DB_MAX_OVERFLOW", "0")
    settings = Settings()
    assert (settings.db_pool_size, settings.db_max_overflow) == (4, 0)


def test_a_process_waits_only_for_the_steps_it_runs() -> None:
    everything = shutdown_deadline_s(serve_api=True, run_worker=True)
    api = shutdown_deadline_s(serve_api=True, run_worker=False)
    worker = shutdown_deadline_s(serve_api=False, run_worker=True)

    assert everything == sum(STEP_DEADLINES_S.values())
    worker_steps = ("worker", "dispatcher", "metrics port")
    assert everything - api == sum(STEP_DEADLINES_S[step] for step in worker_steps)
    assert everything - worker == STEP_DEADLINES_S["writer"] + STEP_DEADLINES_S["account poll"]
