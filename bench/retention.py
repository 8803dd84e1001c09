"""``python -m bench.retention``: ingest-single with and without a purge of old events running.

One deployment: ``eventflow api`` and ``eventflow worker`` on a throwaway PostgreSQL (or
``eventflow up`` on SQLite), ``--rows`` completed events with their attempts written straight
into the database as finished 30 days ago, then windows of ingest-single (wrk) in turn with a
worker whose retention is off and one whose retention is on (``EVENTFLOW_RETENTION_DAYS=7``),
until the purge is done. The purge's rows/s is counted in the database over each window.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path
from typing import Annotated

import asyncpg
import orjson
import typer

from bench.backfill import PG_UUID7, SQLITE_UUID7
from bench.client import Account, register_and_login
from bench.load import Load, WrkResult, run_wrk, single_body
from bench.scenarios import SINGLE_PATH
from bench.stack import Command, Mode, Stack
from eventflow.clock import now_ms
from eventflow.db.engine import create_engine

_DAY_MS = 86_400_000
_PAYLOAD = '{"order_id":"A-1001","amount":42.5,"currency":"EUR"}'


def _events(id_sql: str, user_sql: str, series: str) -> str:
    """Completed events with one attempt each, finished at ``t`` of ``series``."""
    return (
        "INSERT INTO events (id, user_id, type, payload, status, attempts, available_at, "
        f"created_at, updated_at, started_at, completed_at, result) SELECT {id_sql}, {user_sql}, "
        f"'ORDER_CREATED', '{_PAYLOAD}', 'completed', 1, t, t, t, t, t + 5, '{{}}' FROM {series}"
    )


_ATTEMPTS = (
    "INSERT INTO attempts (event_id, number, outcome, worker, started_at, finished_at) "
    "SELECT id, 1, 'completed', 'w', started_at, completed_at FROM events"
)

app = typer.Typer(add_completion=False, rich_markup_mode=None)


async def _preload_postgres(url: str, user_id: str, rows: int, old: int) -> None:
    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://", 1))
    try:
        series = f"(SELECT g, {old} - g AS t FROM generate_series(1, {rows}) AS g) AS s"
        await conn.execute(_events(PG_UUID7, f"'{user_id}'::uuid", series))
        await conn.execute(_ATTEMPTS)
        await conn.execute("VACUUM ANALYZE events")
        await conn.execute("VACUUM ANALYZE attempts")
    finally:
        await conn.close()


async def _preload_sqlite(url: str, user_id: str, rows: int, old: int) -> None:
    engine = create_engine(url)
    series = (
        f"(WITH RECURSIVE n(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM n WHERE g < {rows}) "
        f"SELECT g, {old} - g AS t FROM n) AS s"
    )
    user = "'" + user_id.replace("-", "") + "'"
    try:
        async with engine.begin() as conn:
            await conn.exec_driver_sql(_events(SQLITE_UUID7, user, series))
            await conn.exec_driver_sql(_ATTEMPTS)
    finally:
        await engine.dispose()


def _row(label: str, result: WrkResult, purged: int, seconds: float) -> dict[str, object]:
    return {
        "window": label,
        "ingest_per_s": round(result.accepted_per_s),
        "p50_ms": round(result.p50_ms, 2),
        "p99_ms": round(result.p99_ms, 2),
        "non_202": sum(result.other_statuses.values()),
        "purged_per_s": round(purged / seconds) if seconds > 0 else 0,
    }


async def _measure(
    mode: Mode, rows: int, window_s: int, pairs: int, workdir: Path
) -> list[dict[str, object]]:
    stack = Stack(mode, workdir)
    await stack.start()
    results: list[dict[str, object]] = []
    try:
        async with stack.deployment() as dep:
            serving: Command = "up" if mode == "embedded" else "api"
            dep.env["EVENTFLOW_RETENTION_DAYS"] = "0"
            # The purge's own figures are logged at info (uvicorn's access log is off).
            dep.env["EVENTFLOW_LOG_LEVEL"] = "info"
            proc = await dep.start(serving)
            account: Account = await register_and_login(
                dep.port, "load@bench.example", "pw-12345678"
            )
            old = now_ms() - 30 * _DAY_MS
            url = dep.database_url
            started = time.monotonic()
            preload = _preload_postgres if mode != "embedded" else _preload_sqlite
            await preload(url, account.user_id, rows, old)
            typer.echo(f"preloaded {rows:,} old events in {time.monotonic() - started:.0f} s")
            cutoff = now_ms() - 7 * _DAY_MS
            load = Load(dep.port, SINGLE_PATH, single_body(), account.token, 64, window_s)
            await run_wrk(Load(dep.port, SINGLE_PATH, single_body(), account.token, 64, 2), workdir)
            for pair in range(pairs):
                for retention in ("0", "7"):
                    dep.env["EVENTFLOW_RETENTION_DAYS"] = retention
                    if mode == "embedded":
                        await dep.stop(proc)
                        proc = await dep.start("up")
                        worker = proc
                    else:
                        worker = await dep.start("worker")
                    before = await dep.db.finished_before(cutoff)
                    began = time.monotonic()
                    result = await run_wrk(load, workdir)
                    seconds = time.monotonic() - began
                    purged = before - await dep.db.finished_before(cutoff)
                    for line in worker.log(limit=None).splitlines():
                        if "retention" in line:
                            typer.echo(line)
                    if mode != "embedded":
                        # Killed: a graceful stop waits for in-flight handlers, and what it
                        # leaves (leases, an unfinished batch) the database rolls back or the
                        # next worker takes over.
                        await asyncio.to_thread(worker.kill)
                        dep.processes.remove(worker)
                    label = f"{pair + 1} {'purge' if retention == '7' else 'no purge'}"
                    results.append(_row(label, result, purged, seconds))
                    typer.echo(orjson.dumps(results[-1]).decode())
                if await dep.db.finished_before(cutoff) == 0:
                    break
    finally:
        await stack.close()
    return results


@app.command()
def main(
    mode: Annotated[str, typer.Option(help="postgres or embedded")] = "postgres",
    rows: Annotated[int, typer.Option(min=1)] = 1_000_000,
    window_s: Annotated[int, typer.Option("--window", min=1)] = 20,
    pairs: Annotated[int, typer.Option(min=1, help="Most windows with and without")] = 12,
    json_path: Annotated[Path | None, typer.Option("--json")] = None,
) -> None:
    """Ingest-single beside a purge of ROWS old events, in alternating windows."""
    if mode not in ("postgres", "embedded"):
        raise typer.BadParameter("--mode is postgres or embedded")
    chosen: Mode = "postgres" if mode == "postgres" else "embedded"
    with tempfile.TemporaryDirectory(prefix="eventflow-retention-") as tmp:
        results = asyncio.run(_measure(chosen, rows, window_s, pairs, Path(tmp)))
    if json_path is not None:
        json_path.write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2))


if __name__ == "__main__":
    app(prog_name="python -m bench.retention")
