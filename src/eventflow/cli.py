"""The ``eventflow`` command: up, api, worker, migrate, user."""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, Optional, TypeVar

import typer
import uvloop
from pydantic import ValidationError, model_validator

from eventflow import __version__
from eventflow.clock import iso
from eventflow.config import Settings
from eventflow.db.rows import AccountRow
from eventflow.errors import ConfigurationError, EventflowError

if TYPE_CHECKING:
    from eventflow.operators import Operators

T = TypeVar("T")

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


class OperatorSettings(Settings):
    """The settings of commands that sign and check no token: no JWT secret is needed."""

    # Replaces the validator of the same name, which requires a secret with PostgreSQL.
    @model_validator(mode="after")
    def _check_secret(self) -> OperatorSettings:
        return self


def with_settings(
    func: Callable[..., None], settings_class: type[Settings] = Settings
) -> Callable[..., None]:
    """Give a command every setting as a flag; the command receives a built ``Settings``."""
    # eval_str: annotations are strings in this module (postponed evaluation), and Typer must
    # see the real ``Annotated[…, typer.Option(…)]`` of a command's own parameters.
    signature = inspect.signature(func, eval_str=True)
    own = [p for p in signature.parameters.values() if p.name != "settings"]
    setting_params = _setting_parameters()
    names = {p.name for p in setting_params}

    @functools.wraps(func)
    def command(**kwargs: Any) -> None:
        overrides = {k: kwargs.pop(k) for k in list(kwargs) if k in names}
        settings = build_settings(
            {k: v for k, v in overrides.items() if v is not None}, settings_class
        )
        _configure_logging(settings.log_level)
        func(settings, **kwargs)

    hints = {p.name: p.annotation for p in own + setting_params}
    command.__signature__ = inspect.Signature(own + setting_params)  # type: ignore[attr-defined]
    command.__annotations__ = hints
    return command


def build_settings(
    overrides: dict[str, Any], settings_class: type[Settings] = Settings
) -> Settings:
    try:
        return settings_class(**overrides)
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
        # Before serving: a bad secret file is then a one-line error rather than a traceback
        # from the lifespan, and HTTP processes started after this all find the same secret.
        settings.resolve_jwt_secret()
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


user_app = typer.Typer(
    help=(
        "Operators' account commands: create, list, disable, enable, delete. They work on the "
        "database directly (no server needed, no JWT secret); running API processes see each "
        "change within EVENTFLOW_ACCOUNT_POLL_MS."
    ),
    no_args_is_help=True,
    rich_markup_mode=None,
)
app.add_typer(user_app, name="user")

_ACCOUNT = typer.Argument(help="The account's email, or its id")


def with_operator_settings(func: Callable[..., None]) -> Callable[..., None]:
    return with_settings(func, OperatorSettings)


def _operate(settings: Settings, work: Callable[[Operators], Awaitable[T]]) -> T:
    """Run ``work`` against the database, migrated first (this may be its very first use)."""
    from eventflow.db.engine import create_engine
    from eventflow.db.migrate import migrate as apply
    from eventflow.operators import Operators

    # Each migration is announced at INFO; here that is noise around the command's own output.
    logging.getLogger("alembic").setLevel(logging.WARNING)

    async def run() -> T:
        engine = create_engine(settings.effective_database_url)
        try:
            await apply(engine)
            return await work(Operators(engine))
        finally:
            await engine.dispose()

    try:
        return asyncio.run(run())
    except EventflowError as exc:
        typer.echo(f"eventflow: {exc.detail}", err=True)
        raise typer.Exit(1) from exc


@user_app.command("create")
@with_operator_settings
def user_create(
    settings: Settings,
    email: Annotated[str, typer.Option(help="The new account's email")],
    password_stdin: Annotated[
        bool,
        typer.Option(
            "--password-stdin", help="Read the password from standard input instead of a prompt"
        ),
    ] = False,
) -> None:
    """Create an account (the way in when EVENTFLOW_REGISTRATION=closed)."""
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    user = _operate(settings, lambda operators: operators.create(email, password))
    typer.echo(f"created {user.email} ({user.id})")


@user_app.command("list")
@with_operator_settings
def user_list(settings: Settings) -> None:
    """List the accounts that are not deleted, oldest first."""
    users = _operate(settings, lambda operators: operators.accounts())
    rows = [("ID", "EMAIL", "STATUS", "CREATED")]
    rows += [
        (
            user.id,
            user.email,
            "active" if user.disabled_at is None else "disabled",
            iso(user.created_at) or "",
        )
        for user in users
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    for row in rows:
        typer.echo(
            "  ".join([*(cell.ljust(w) for cell, w in zip(row, widths, strict=False)), row[3]])
        )


@user_app.command("disable")
@with_operator_settings
def user_disable(settings: Settings, account: Annotated[str, _ACCOUNT]) -> None:
    """Disable an account: it cannot log in, and every token it holds stops working."""
    _set_disabled(settings, account, disabled=True)


@user_app.command("enable")
@with_operator_settings
def user_enable(settings: Settings, account: Annotated[str, _ACCOUNT]) -> None:
    """Enable a disabled account again (its old tokens stay ended: log in again)."""
    _set_disabled(settings, account, disabled=False)


def _set_disabled(settings: Settings, account: str, *, disabled: bool) -> None:
    async def work(operators: Operators) -> AccountRow | None:
        row = await operators.find(account)
        return await operators.set_disabled(row.id, disabled)

    row = _operate(settings, work)
    if row is None:
        _fail_account(f"account {account!r} is deleted")
    typer.echo(f"{'disabled' if disabled else 'enabled'} {account} ({row.id})")


@user_app.command("delete")
@with_operator_settings
def user_delete(settings: Settings, account: Annotated[str, _ACCOUNT]) -> None:
    """Delete an account and all its events; its tokens stop working within a second.

    Then waits for requests that were already past the account check to be stored (the
    request and commit timeouts) and removes what they stored too. Running it again with the
    account's id finishes a deletion that was interrupted.
    """
    # Until every API has seen the deletion, plus the longest a request already past its
    # account check may take to arrive whole and be committed.
    settle_s = (
        settings.account_poll_ms + settings.request_timeout_ms + 2 * settings.commit_timeout_ms
    ) / 1000 + 1
    # An event a dead worker held comes back when its lease expires.
    hold_s = settings.lease_ms / 1000 + 5

    def say(message: str) -> None:
        typer.echo(message, err=True)

    async def work(operators: Operators) -> tuple[AccountRow, int]:
        row = await operators.find(account)
        say(f"deleting {account} ({row.id}): its tokens stop working within a second")
        return row, await operators.delete(row.id, settle_s, hold_s, say)

    row, left = _operate(settings, work)
    if left:
        _fail_account(
            f"deleted {row.id}, but {left} of its events are still held by a worker; run "
            f"`eventflow user delete {row.id}` again later to remove them"
        )
    typer.echo(f"deleted {account} ({row.id})")


def _fail_account(message: str) -> NoReturn:
    typer.echo(f"eventflow: {message}", err=True)
    raise typer.Exit(1)
