"""Serving the API with uvicorn: one process, or several sharing the port."""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import signal
import socket
from typing import Any, cast

import uvicorn
from starlette.types import ASGIApp

from eventflow.api.app import create_asgi_app
from eventflow.config import Settings
from eventflow.http_processes import RUN_WORKER_ENV, Supervisor
from eventflow.http_protocol import HttpLimits, LimitedConfig
from eventflow.metrics.exposition import shared_by_processes
from eventflow.runtime import open_runtime

log = logging.getLogger(__name__)

#: How long uvicorn waits for open requests after SIGTERM before the runtime shuts down.
GRACEFUL_SHUTDOWN_S = 10


class ServingServer(uvicorn.Server):
    """uvicorn's server, telling the app (``Services.stopping``) when a graceful shutdown begins.

    uvicorn waits for open responses before it stops and gives the application no notice
    until they are done; an event stream never finishes by itself, so without ``stopping``
    every open dashboard would hold a SIGTERM for the whole graceful timeout.
    """

    def __init__(self, config: uvicorn.Config, stopping: asyncio.Event) -> None:
        super().__init__(config)
        self.stopping = stopping

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self.stopping.set()
        await super().shutdown(sockets)


def make_server(settings: Settings, *, run_worker: bool) -> ServingServer:
    """A server for this process, its app and its shutdown notice."""
    stopping = asyncio.Event()
    runtime = functools.partial(
        open_runtime, run_worker=run_worker, tune_gc=True, stopping=stopping
    )
    # The app is built when the server loads it, in the process that serves it.
    app = functools.partial(create_asgi_app, settings, runtime)
    # A factory where LimitedConfig's annotation says app: uvicorn takes either (factory=True).
    return ServingServer(_config(cast(ASGIApp, app), settings, factory=True), stopping)


def serve(settings: Settings, *, run_worker: bool) -> bool:
    """Serve until SIGTERM/SIGINT; answers whether the server started."""
    # uvicorn re-raises SIGTERM/SIGINT after its graceful shutdown so that the exit status shows
    # the signal; for EventFlow a requested, clean shutdown is a success (exit 0), so the
    # handlers it restores before re-raising are no-ops.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: None)
    if settings.http_workers == 1:
        server = make_server(settings, run_worker=run_worker)
        server.run()
        return server.started
    # Several processes accept on one socket, each with its own event loop (and, for `up`, its
    # own worker). They rebuild the settings from the environment, so flags are exported to it.
    for name in settings.model_fields_set:
        value = getattr(settings, name)
        if value is not None:
            os.environ[f"EVENTFLOW_{name.upper()}"] = str(value)
    # Decided once here, so that every process writes the one format whatever it inherits.
    os.environ["EVENTFLOW_LOG_FORMAT"] = settings.effective_log_format
    os.environ[RUN_WORKER_ENV] = "1" if run_worker else "0"
    # The supervisor's config only binds the socket and counts processes (its app is never
    # loaded): each process builds its own server and app (``http_processes.py``).
    config = _config("eventflow.serve:make_server", settings, workers=settings.http_workers)
    # The processes' metrics meet in a directory made before any of them starts.
    with shared_by_processes():
        Supervisor(config, sockets=[config.bind_socket()]).run()
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
        # Logging is configured by EventFlow (logs.py), in this process and in each HTTP
        # process: uvicorn's own formatters would give its lines another format. Its access
        # log would show query strings (a stream ticket) and no request id: RequestLog writes
        # EventFlow's instead.
        log_config=None,
        access_log=False,
        # No "server: uvicorn" on every answer: it tells a scanner what to look up, and costs a
        # header on every 202.
        server_header=False,
        log_level=settings.log_level,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
        # uvicorn trusts X-Forwarded-For from loopback unless told otherwise; the client's
        # address keys the rate limits, so only configured proxies may name it (the right-most
        # address that is not one of them, CIDRs allowed).
        proxy_headers=bool(settings.trusted_proxy_list),
        forwarded_allow_ips=settings.trusted_proxy_list,
        **extra,
    )
