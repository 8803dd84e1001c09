"""``python -m bench`` (``make bench``): the benchmark's command line."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Annotated, Optional

import typer

from bench.runner import BenchUsageError, main
from bench.scenarios import BenchOptions

app = typer.Typer(add_completion=False, rich_markup_mode=None)


@app.command()
def bench(
    ctx: typer.Context,
    mode: Annotated[
        str, typer.Option(help="embedded (SQLite), postgres, distributed (PostgreSQL + Redis), all")
    ] = "all",
    scenarios: Annotated[
        str,
        typer.Option(
            help="all, or a comma-separated subset of: ceiling, ingest-single, "
            "ingest-single-key, ingest-batch, end-to-end, worker-drain, history"
        ),
    ] = "all",
    runs: Annotated[int, typer.Option(min=1, help="Runs per scenario; the median is reported")] = 3,
    duration_s: Annotated[
        int, typer.Option("--duration", min=1, help="Seconds of load per run")
    ] = 10,
    warmup_s: Annotated[
        int, typer.Option("--warmup", min=0, help="Seconds of unmeasured load first")
    ] = 1,
    connections: Annotated[int, typer.Option(min=1, help="wrk connections, single events")] = 64,
    batch_connections: Annotated[int, typer.Option(min=1, help="wrk connections, batches")] = 8,
    batch_size: Annotated[int, typer.Option(min=1, max=1000, help="Events per batch")] = 500,
    workers: Annotated[
        int, typer.Option(min=1, help="Worker processes in end-to-end and history")
    ] = 1,
    drain_events: Annotated[
        int, typer.Option(min=1, help="Events queued before worker-drain starts its worker")
    ] = 100_000,
    wrk_threads: Annotated[int, typer.Option(min=1, help="wrk threads")] = 1,
    history_events: Annotated[
        int,
        typer.Option(min=100, help="history: events per account first, then ten times as many"),
    ] = 100_000,
    history_dashboards: Annotated[
        int, typer.Option(min=1, help="history: live dashboards opened at each size")
    ] = 20,
    history_rate: Annotated[
        float, typer.Option(min=1, help="history: events/s sent meanwhile, one at a time")
    ] = 20.0,
    json_path: Annotated[
        Optional[Path],  # noqa: UP045 (Typer reads it)
        typer.Option("--json", help="Also write the results, every run included, to this file"),
    ] = None,
    keep_logs: Annotated[bool, typer.Option(help="Keep the processes' logs")] = False,
) -> None:
    """Benchmark EventFlow on throwaway services with wrk; prints a table (see docs/performance.md).

    Each run starts its own deployment (a fresh SQLite file or PostgreSQL database, a fresh Redis
    keyspace, real `eventflow up|api|worker` processes). EVENTFLOW_* variables in the environment
    reach the processes under test, except where to listen and what to connect to.
    """
    # Every BenchOptions field is a parameter of this command, by the same name.
    options = BenchOptions(**{f.name: ctx.params[f.name] for f in fields(BenchOptions)})
    try:
        status = main(mode, scenarios, options, json_path, keep_logs)
    except BenchUsageError as exc:
        typer.echo(f"bench: {exc}", err=True)
        raise typer.Exit(2) from exc
    raise typer.Exit(status)


if __name__ == "__main__":
    app(prog_name="python -m bench")
