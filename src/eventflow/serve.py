"""Serving the API with uvicorn: one process, or several sharing the port."""

from __future__ import annotations

import functools
import logging
import os
import signal
from typing import Any

import uvicorn
from starlette.types import ASGIApp
from uvicorn.supervisors import Multiprocess

from eventflow.api.app import create_asgi_app
from eventflow.config import Settings
from eventflow.http_protocol import HttpLimits, LimitedConfig
from eventflow.runtime import open_runtime

log = logging.getLogger(__name__)

# Tells the processes uvicorn spawns whether they also run a worker (`up`) or not (`api`).
_RUN_WORKER_ENV = "EVENTFLOW_INTERNAL_RUN_WORKER"


def build_app(settings: Settings, *, run_worker: bool) -> ASGIApp:
    factory = functools.partial(open_runtime, serve_api=True, run_worker=run_worker, tune_gc=True)
    return create_asgi_app(settings, factory)


def app_from_environment() -> ASGIApp:
    """The factory each of several HTTP processes calls: settings come from the environment."""
    settings = Settings()
    logging.basicConfig(level=settings.log_level.upper())
    return build_app(settings, run_worker=os.environ.get(_RUN_WORKER_ENV) == "1")


def serve(settings: Settings, *, run_worker: bool) -> bool:
    """Serve until SIGTERM/SIGINT; answers whether the server started."""
    # uvicorn re-raises SIGTERM/SIGINT after its graceful shutdown so that the exit status shows
    # the signal; for EventFlow a requested, clean shutdown is a success (exit 0), so the
    # handlers it restores before re-raising are no-ops.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: None)
    if settings.http_workers == 1:
        server = uvicorn.Server(_config(build_app(settings, run_worker=run_worker), settings))
        server.run()
        return server.started
    # Several processes accept on one socket, each with its own event loop (and, for `up`, its
    # own worker). They rebuild the settings from the environment, so flags are exported to it.
    for name in settings.model_fields_set:
        value = getattr(settings, name)
        if value is not None:
            os.environ[f"EVENTFLOW_{name.upper()}"] = str(value)
    os.environ[_RUN_WORKER_ENV] = "1" if run_worker else "0"
    config = _config(
        "eventflow.serve:app_from_environment",
        settings,
        factory=True,
        workers=settings.http_workers,
    )
    Multiprocess(config, sockets=[config.bind_socket()]).run()
    return True


def _config(app: ASGIApp | str, settings: Settings, **extra: Any) -> uvicorn.Config:
    return LimitedConfig(
        app,
        HttpLimits.from_settings(settings),
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        # EventFlow serves no WebSocket; an upgrade would hand the connection to a protocol
        # without the request deadline.
        ws="none",
        lifespan="on",
        access_log=False,
        log_level=settings.log_level.lower(),
        timeout_graceful_shutdown=10,
        # uvicorn trusts X-Forwarded-For from loopback unless told otherwise; the client's
        # address keys the rate limits, so only configured proxies may name it (the right-most
        # address that is not one of them, CIDRs allowed).
        proxy_headers=bool(settings.trusted_proxy_list),
        forwarded_allow_ips=settings.trusted_proxy_list,
        **extra,
    )
