"""Every setting as a command-line flag, and the settings a command receives."""

from __future__ import annotations

import functools
import inspect
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, NoReturn, Optional

import typer
from pydantic import ValidationError, model_validator

from eventflow.config import Settings
from eventflow.errors import ConfigurationError

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
        configure_logging(settings.log_level)
        func(settings, **kwargs)

    hints = {p.name: p.annotation for p in own + setting_params}
    command.__signature__ = inspect.Signature(own + setting_params)  # type: ignore[attr-defined]
    command.__annotations__ = hints
    return command


def with_operator_settings(func: Callable[..., None]) -> Callable[..., None]:
    """``with_settings`` for commands that need no JWT secret (``OperatorSettings``)."""
    return with_settings(func, OperatorSettings)


def build_settings(
    overrides: dict[str, Any], settings_class: type[Settings] = Settings
) -> Settings:
    try:
        return settings_class(**overrides)
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


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # Alembic announces every plugin it loads at INFO; only its migrations are worth reading.
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
