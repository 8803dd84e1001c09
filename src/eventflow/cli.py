"""The ``eventflow`` command: up, api, worker, migrate."""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, NoReturn, Optional

import typer
import uvloop
from pydantic import ValidationError

from eventflow import __version__
from eventflow.config import Settings
from eventflow.errors import ConfigurationError

app = typer.Typer(
    help=(
        "EventFlow: durable event ingestion and processing.\n\n"
        "Every option below is also an environment variable: --max-attempts is "
        "EVENTFLOW_MAX_ATTEMPTS, and so on. Flags win over the environment."
    ),
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
)

_FLAG_TYPES: dict[str, Any] = {"data_dir": Optional[Path]}  # noqa: UP045 (Typer reads it)


def _setting_parameters() -> list[inspect.Parameter]:
    params = []
    for name, field in Settings.model_fields.items():
        annotation = _FLAG_TYPES.get(name)
        if annotation is None:
            base = field.annotation
            base = str if base in (str, str | None) else base
            annotation = Optional[base]  # noqa: UP045
        option = typer.Option(
            "--" + name.replace("_", "-"),
            help=f"{field.description} [env: EVENTFLOW_{name.upper()}; default: {field.default}]",
            show_default=False,
            rich_help_panel="Settings",
        )
        params.append(
            inspect.Parameter(
                name,
                inspect.Parameter.KEYWORD_ONLY,
                default=None,
                annotation=Annotated[annotation, option],
            )
        )
    return params


def with_settings(func: Callable[..., None]) -> Callable[..., None]:
    """Give a command every setting as a flag; the command receives a built ``Settings``."""
    own = [p for p in inspect.signature(func).parameters.values() if p.name != "settings"]
    setting_params = _setting_parameters()
    names = {p.name for p in setting_params}

    @functools.wraps(func)
    def command(**kwargs: Any) -> None:
        overrides = {k: kwargs.pop(k) for k in list(kwargs) if k in names}
        settings = build_settings({k: v for k, v in overrides.items() if v is not None})
        _configure_logging(settings.log_level)
        func(settings, **kwargs)

    hints = {p.name: p.annotation for p in own + setting_params}
    command.__signature__ = inspect.Signature(own + setting_params)  # type: ignore[attr-defined]
    command.__annotations__ = hints
    return command


def build_settings(overrides: dict[str, Any]) -> Settings:
    try:
        return Settings(**overrides)
    except ConfigurationError as exc:
        _fail(str(exc))
    except ValidationError as exc:
        problems = "; ".join(
            f"EVENTFLOW_{'_'.join(str(p) for p in e['loc']).upper()}: {e['msg']}"
            for e in exc.errors()
        )
        _fail(f"invalid configuration: {problems}")


def _fail(message: str) -> NoReturn:
    typer.echo(f"eventflow: {message}", err=True)
    raise typer.Exit(2)


def _configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # Alembic announces every plugin it loads at INFO; only its migrations are worth reading.
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)


def _serve(settings: Settings, *, run_worker: bool) -> None:
    from eventflow.serve import serve

    mode = f"{settings.mode}, broker {'redis' if settings.redis_url else 'sql'}"
    processes = f", {settings.http_workers} HTTP processes" if settings.http_workers > 1 else ""
    typer.echo(
        f"EventFlow {__version__} ({mode}{processes}) on http://{settings.host}:{settings.port}"
        f"  dashboard: /   API docs: /docs",
        err=True,
    )
    try:
        started = serve(settings, run_worker=run_worker)
    except ConfigurationError as exc:
        _fail(str(exc))
    if not started:
        raise typer.Exit(1)


@app.command()
@with_settings
def up(settings: Settings) -> None:
    """Run everything in one process: API, dashboard, worker and dispatcher.

    With no configuration this is the embedded mode: SQLite in the data directory and the
    sql broker, nothing else to install.
    """
    _serve(settings, run_worker=True)


@app.command()
@with_settings
def api(settings: Settings) -> None:
    """Run only the HTTP API and dashboard (scale it out; run workers separately)."""
    _serve(settings, run_worker=False)


@app.command()
@with_settings
def worker(settings: Settings) -> None:
    """Run a worker and a dispatcher, no HTTP. SIGTERM finishes the batch in flight, then exits."""
    try:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(_run_worker(settings))
    except ConfigurationError as exc:
        _fail(str(exc))


async def _run_worker(settings: Settings) -> None:
    from eventflow.runtime import open_runtime

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with open_runtime(settings, serve_api=False, run_worker=True, tune_gc=True):
        typer.echo("EventFlow worker running; Ctrl-C to stop", err=True)
        await stop.wait()
        typer.echo("EventFlow worker stopping: finishing in-flight events", err=True)


@app.command()
@with_settings
def migrate(settings: Settings) -> None:
    """Apply database migrations and exit (they also run automatically at start)."""
    from eventflow.db.engine import create_engine
    from eventflow.db.migrate import migrate as apply

    async def run() -> None:
        engine = create_engine(settings.effective_database_url)
        try:
            await apply(engine)
        finally:
            await engine.dispose()

    asyncio.run(run())
    typer.echo("database is up to date", err=True)


@app.command()
def version() -> None:
    """Print the version."""
    typer.echo(__version__)


def main() -> None:
    app()


@app.command()
def bench(
    mode: Annotated[
        str, typer.Option(help="embedded (SQLite), postgres, distributed (PostgreSQL + Redis), all")
    ] = "all",
    scenarios: Annotated[
        str,
        typer.Option(
            help="all, or a comma-separated subset of: ceiling, ingest-single, ingest-batch, "
            "end-to-end, worker-drain"
        ),
    ] = "all",
    runs: Annotated[int, typer.Option(min=1, help="Runs per scenario; the median is reported")] = 3,
    duration: Annotated[int, typer.Option(min=1, help="Seconds of load per run")] = 10,
    warmup: Annotated[int, typer.Option(min=0, help="Seconds of unmeasured load first")] = 1,
    connections: Annotated[int, typer.Option(min=1, help="wrk connections, single events")] = 64,
    batch_connections: Annotated[int, typer.Option(min=1, help="wrk connections, batches")] = 8,
    batch_size: Annotated[int, typer.Option(min=1, max=1000, help="Events per batch")] = 500,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes in end-to-end")] = 1,
    drain_events: Annotated[
        int, typer.Option(min=1, help="Events queued before worker-drain starts its worker")
    ] = 100_000,
    wrk_threads: Annotated[int, typer.Option(min=1, help="wrk threads")] = 1,
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
    from eventflow.bench.runner import BenchUsageError, main
    from eventflow.bench.scenarios import BenchOptions

    options = BenchOptions(
        runs=runs,
        duration_s=duration,
        warmup_s=warmup,
        connections=connections,
        batch_connections=batch_connections,
        batch_size=batch_size,
        workers=workers,
        drain_events=drain_events,
        wrk_threads=wrk_threads,
    )
    try:
        status = main(mode, scenarios, options, json_path, keep_logs)
    except BenchUsageError as exc:
        _fail(str(exc))
    raise typer.Exit(status)
