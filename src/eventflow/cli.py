"""The ``eventflow`` command: up, api, worker, migrate, user."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

import typer
import uvloop

from eventflow import __version__
from eventflow.cli_health import health
from eventflow.cli_options import fail, with_settings
from eventflow.cli_users import user_app
from eventflow.config import Settings
from eventflow.errors import ConfigurationError
from eventflow.logs import LIFECYCLE
from eventflow.worker.handlers import builtin_registry, load_modules

log = logging.getLogger(__name__)
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


def _serve(settings: Settings, *, run_worker: bool) -> None:
    try:
        # Before serving: a missing secret, a bad secret file or a handler module that does
        # not import is then a one-line error rather than a traceback from the lifespan, and
        # HTTP processes started after this all find the same secret.
        settings.resolve_jwt_secret()
        if run_worker:
            load_modules(builtin_registry(), settings.handler_modules)
    except ConfigurationError as exc:
        fail(str(exc))
    from eventflow.serve import serve

    mode = f"{settings.mode}, broker {'redis' if settings.redis_url else 'sql'}"
    processes = f", {settings.http_workers} HTTP processes" if settings.http_workers > 1 else ""
    logging.getLogger(LIFECYCLE).info(
        "EventFlow %s (%s%s) on http://%s:%d  dashboard: /   API docs: /docs",
        __version__,
        mode,
        processes,
        settings.host,
        settings.port,
    )
    try:
        started = serve(settings, run_worker=run_worker)
    except ConfigurationError as exc:
        fail(str(exc))
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
        fail(str(exc))


async def _run_worker(settings: Settings) -> None:
    from eventflow.runtime import open_worker_runtime

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with open_worker_runtime(settings, tune_gc=True):
        lifecycle = logging.getLogger(LIFECYCLE)
        lifecycle.info("EventFlow worker running; Ctrl-C to stop")
        await stop.wait()
        lifecycle.info("EventFlow worker stopping: finishing in-flight events")


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
    log.info("database is up to date")


@app.command()
def version() -> None:
    """Print the version."""
    typer.echo(__version__)


def main() -> None:
    """The ``eventflow`` command; a mistake on its command line is one line, exit code 2."""
    try:
        code = app(standalone_mode=False)
    except typer.TyperException as exc:
        message = exc.format_message()
        ctx = getattr(exc, "ctx", None)
        if ctx is not None and message == ctx.get_help():
            typer.echo(message, err=True)  # a command given nothing to do: its help
        else:
            where = ctx.command_path if ctx is not None else "eventflow"
            typer.echo(f"eventflow: {' '.join(message.split())} (see {where} --help)", err=True)
        sys.exit(getattr(exc, "exit_code", 2))
    except typer.Abort:
        typer.echo("eventflow: aborted", err=True)
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)


app.command()(health)
app.add_typer(user_app, name="user")
