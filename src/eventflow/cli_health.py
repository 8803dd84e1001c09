"""``eventflow health``: the health check of containers and process managers, one line and 0/1."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from typing import Annotated

import typer

from eventflow.cli_options import with_settings
from eventflow.config import Settings

#: Each check's budget: well inside the usual health-check timeout of container engines.
CHECK_TIMEOUT_S = 3.0
_WILDCARDS = {"", "0.0.0.0", "::"}


def _reason(exc: BaseException) -> str:
    detail = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__


def health_url(settings: Settings) -> str:
    """This host's own HTTP server, as ``EVENTFLOW_HOST`` and ``EVENTFLOW_PORT`` have it bound."""
    host = "127.0.0.1" if settings.host in _WILDCARDS else settings.host
    host = f"[{host}]" if ":" in host else host
    return f"http://{host}:{settings.port}/health"


def _check_http(url: str) -> str | None:
    """None when ``url`` answers 200, else why not."""
    try:
        with urllib.request.urlopen(url, timeout=CHECK_TIMEOUT_S) as response:
            response.read()
        return None
    except urllib.error.HTTPError as exc:
        try:
            checks = json.loads(exc.read()).get("checks", {})
        except (ValueError, AttributeError):
            checks = {}
        failing = ", ".join(f"{k}: {v}" for k, v in checks.items() if v != "ok")
        return f"{url} answered {exc.code}" + (f" ({failing})" if failing else "")
    except urllib.error.URLError as exc:
        return f"{url}: {exc.reason}"
    except OSError as exc:
        return f"{url}: {_reason(exc)}"


async def _check_database(settings: Settings) -> str | None:
    import sqlalchemy as sa

    from eventflow.db.engine import create_engine

    if settings.database_url is None:
        path = settings.data_dir / "eventflow.db"
        # Opening a missing SQLite file would create an empty database: report it instead.
        if not path.is_file():
            return f"database: no database at {path}"
    engine = create_engine(settings.effective_database_url, pool_size=1, max_overflow=0)
    try:
        async with asyncio.timeout(CHECK_TIMEOUT_S), engine.connect() as conn:
            await conn.execute(sa.text("SELECT 1"))
        return None
    except TimeoutError:
        return f"database: no answer within {CHECK_TIMEOUT_S:.0f} s"
    except Exception as exc:
        return f"database: {_reason(exc)}"
    finally:
        await engine.dispose()


async def _check_redis(url: str) -> str | None:
    from redis.asyncio import Redis

    client: Redis = Redis.from_url(
        url, socket_connect_timeout=CHECK_TIMEOUT_S, socket_timeout=CHECK_TIMEOUT_S
    )
    try:
        async with asyncio.timeout(CHECK_TIMEOUT_S):
            await client.ping()
        return None
    except TimeoutError:
        return f"redis: no answer within {CHECK_TIMEOUT_S:.0f} s"
    except Exception as exc:
        return f"redis: {_reason(exc)}"
    finally:
        await client.aclose()


async def _check_services(settings: Settings) -> tuple[list[str], list[str]]:
    """The names of the services checked, and what is wrong with them."""
    checks = {"database": _check_database(settings)}
    if settings.redis_url:
        checks["redis"] = _check_redis(settings.redis_url)
    results = await asyncio.gather(*checks.values())
    return list(checks), [problem for problem in results if problem is not None]


@with_settings
def health(
    settings: Settings,
    http: Annotated[
        bool,
        typer.Option(
            "--http",
            help="Ask this host's HTTP server (GET /health on EVENTFLOW_HOST:EVENTFLOW_PORT, "
            "which checks the database and the broker) instead of the services directly",
        ),
    ] = False,
) -> None:
    """Check that EventFlow's services answer: exit 0 and `ok: …`, or 1 and what is wrong.

    Without --http: the database, and Redis when EVENTFLOW_REDIS_URL is set (for workers and
    one-off checks; no server needs to run). Each check gets 3 seconds.
    """
    if http:
        url = health_url(settings)
        checked, problems = [url], [p for p in [_check_http(url)] if p is not None]
    else:
        checked, problems = asyncio.run(_check_services(settings))
    if problems:
        typer.echo("unhealthy: " + "; ".join(problems))
        raise typer.Exit(1)
    typer.echo("ok: " + ", ".join(checked))
