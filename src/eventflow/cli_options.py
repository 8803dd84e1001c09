"""Every setting as a command-line flag, and the settings a command receives."""

from __future__ import annotations

import functools
import inspect
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, NoReturn, Optional

import typer
from pydantic import ValidationError

from eventflow.config import Settings
from eventflow.db.sqlite.engine import check_sqlite_version
from eventflow.errors import ConfigurationError
from eventflow.logs import configure_logging

# Typer reads these annotations (hence Optional). Choices and booleans are read as text and
# checked by the settings, as their environment variables are: `--access-log false`, any case.
_FLAG_TYPES: dict[str, Any] = {
    "data_dir": Optional[Path],  # noqa: UP045
    "log_level": Optional[str],  # noqa: UP045
    "log_format": Optional[str],  # noqa: UP045
    "access_log": Optional[str],  # noqa: UP045
}


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
    # eval_str: annotations are strings in this module (postponed evaluation), and Typer must
    # see the real ``Annotated[…, typer.Option(…)]`` of a command's own parameters.
    signature = inspect.signature(func, eval_str=True)
    own = [p for p in signature.parameters.values() if p.name != "settings"]
    setting_params = _setting_parameters()
    names = {p.name for p in setting_params}

    @functools.wraps(func)
    def command(**kwargs: Any) -> None:
        overrides = {k: kwargs.pop(k) for k in list(kwargs) if k in names}
        settings = build_settings({k: v for k, v in overrides.items() if v is not None})
        configure_logging(settings)
        func(settings, **kwargs)

    hints = {p.name: p.annotation for p in own + setting_params}
    command.__signature__ = inspect.Signature(own + setting_params)  # type: ignore[attr-defined]
    command.__annotations__ = hints
    return command


def build_settings(overrides: dict[str, Any]) -> Settings:
    try:
        settings = Settings(**overrides)
        if settings.effective_database_url.startswith("sqlite"):
            # Here, where it is one line, rather than from the lifespan under a traceback.
            check_sqlite_version(sqlite3.sqlite_version_info)
        return settings
    except ConfigurationError as exc:
        fail(str(exc))
    except ValidationError as exc:
        problems = "; ".join(
            f"EVENTFLOW_{'_'.join(str(p) for p in e['loc']).upper()}: {e['msg']}"
            for e in exc.errors()
        )
        fail(f"invalid configuration: {problems}")


def fail(message: str) -> NoReturn:
    typer.echo(f"eventflow: {message}", err=True)
    raise typer.Exit(2)
