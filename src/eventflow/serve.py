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
from uvicorn.config import STARTUP_FAILURE
from uvicorn.supervisors.multiprocess import Multiprocess, Process

from eventflow.api.app import create_asgi_app
from eventflow.config import Settings
from eventflow.http_protocol import HttpLimits, LimitedConfig
from eventflow.runtime import open_runtime

log = logging.getLogger(__name__)

# Tells the processes uvicorn spawns whether they also run a worker (`up`) or not (`api`).
_RUN_WORKER_ENV = "EVENTFLOW_INTERNAL_RUN_WORKER"


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
        open_runtime, serve_api=True, run_worker=run_worker, tune_gc=True, stopping=stopping
    )
    # The app is built when the server loads it: in one of several HTTP processes, only once
    # uvicorn's health-check thread answers the supervisor, which kills a silent process.
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
    os.environ[_RUN_WORKER_ENV] = "1" if run_worker else "0"
    # The supervisor's config only binds the socket and counts processes (its app is never
    # loaded): each process builds its own server and app (``_ServingProcess``).
    config = _config("eventflow.serve:make_server", settings, workers=settings.http_workers)
    _Supervisor(config, sockets=[config.bind_socket()]).run()
    return True


class _ServingProcess(Process):
    """One of several HTTP processes: a ``ServingServer`` with settings from the environment."""

    def __init__(self, config: uvicorn.Config, sockets: list[socket.socket]) -> None:
        self._serving: ServingServer | None = None
        super().__init__(config, sockets)

    def target(self, sockets: list[socket.socket] | None = None) -> None:
        settings = Settings()
        logging.basicConfig(level=settings.log_level.upper())
        # Built before uvicorn's health-check thread starts asking the server whether it started;
        # its app is not (make_server).
        self._serving = make_server(settings, run_worker=os.environ.get(_RUN_WORKER_ENV) == "1")
        super().target(sockets)

    @property
    def server(self) -> uvicorn.Server:
        assert self._serving is not None, "only the child process serves"
        return self._serving


class _Supervisor(Multiprocess):
    """uvicorn's supervisor, starting ``_ServingProcess``es.

    uvicorn names its ``Process`` class in the four places that start one and offers no hook,
    so each is repeated here with the subclass; ``tests/unit/test_serve.py`` fails if uvicorn
    starts processes anywhere else (it is pinned below its next minor version).
    """

    def _start(self) -> Process:
        process = _ServingProcess(self.config, self.sockets)
        process.start()
        return process

    def init_processes(self) -> None:
        self.processes.extend(self._start() for _ in range(self.processes_num))

    def keep_subprocess_alive(self) -> None:
        for idx, process in enumerate(self.processes):
            if self.should_exit.is_set():
                return
            if process.is_alive(timeout=self.config.timeout_worker_healthcheck):
                continue
            process.kill()
            process.join()
            if process.exitcode == STARTUP_FAILURE:
                # Broken before it served (the app, the socket): every restart would fail too.
                log.error("HTTP process [%s] failed to start; stopping", process.pid)
                self.should_exit.set()
                return
            log.info("HTTP process [%s] died; starting another", process.pid)
            self.processes[idx] = self._start()

    def restart_all(self) -> None:
        for idx, old in enumerate(self.processes):
            if self.should_exit.is_set():
                return
            new = self._start()
            if not new.wait_until_ready(self.config.timeout_worker_healthcheck, self.should_exit):
                new.kill()
                new.join()
                log.error("HTTP process [%s] was not ready in time; restart aborted", new.pid)
                return
            old.terminate()
            old.join()
            self.processes[idx] = new

    def handle_ttin(self) -> None:
        self.processes_num += 1
        self.processes.append(self._start())


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
