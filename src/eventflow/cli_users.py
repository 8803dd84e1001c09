"""``eventflow user``: operators' account commands, on the database directly."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, NoReturn, TypeVar

import typer

from eventflow.cli_options import with_settings
from eventflow.clock import iso
from eventflow.config import Settings
from eventflow.db.rows import AccountRow
from eventflow.errors import EventflowError

if TYPE_CHECKING:
    from eventflow.operators import Operators

T = TypeVar("T")

user_app = typer.Typer(
    help=(
        "Operators' account commands: create, list, disable, enable, delete. They work on the "
        "database directly (no server needed, no JWT secret); running API processes see each "
        "change within EVENTFLOW_ACCOUNT_POLL_MS."
    ),
    no_args_is_help=True,
    rich_markup_mode=None,
)
_ACCOUNT = typer.Argument(help="The account's email, or its id")


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
@with_settings
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
@with_settings
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
@with_settings
def user_disable(settings: Settings, account: Annotated[str, _ACCOUNT]) -> None:
    """Disable an account: it cannot log in, and every token it holds stops working."""
    _set_disabled(settings, account, disabled=True)


@user_app.command("enable")
@with_settings
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
@with_settings
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
