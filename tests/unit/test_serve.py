"""The server tells the app when a graceful shutdown begins, in every process it starts."""

from __future__ import annotations

import asyncio
import inspect

import uvicorn
from uvicorn.supervisors.multiprocess import Multiprocess, Process

from eventflow.http_processes import Supervisor
from eventflow.serve import ServingServer


async def _app(scope: object, receive: object, send: object) -> None:
    raise AssertionError("never called")


async def test_a_graceful_shutdown_sets_the_apps_stopping_signal() -> None:
    stopping = asyncio.Event()
    server = ServingServer(uvicorn.Config(_app), stopping)
    server.servers = []
    server.force_exit = True  # nothing was started, so nothing is shut down
    assert not stopping.is_set()
    await server.shutdown()
    assert stopping.is_set()


def test_every_place_uvicorn_starts_an_http_process_is_overridden() -> None:
    starting = {
        name
        for name, method in inspect.getmembers(Multiprocess, inspect.isfunction)
        if "Process(self.config, self.sockets)" in inspect.getsource(method)
    }
    assert starting == {"init_processes", "keep_subprocess_alive", "restart_all", "handle_ttin"}
    for name in starting:
        assert getattr(Supervisor, name) is not getattr(Multiprocess, name), name


def test_an_http_process_runs_as_uvicorn_runs_its_own() -> None:
    """``ServingProcess.target`` and ``pong`` repeat uvicorn's with a server of EventFlow's."""
    target = inspect.getsource(Process.target)
    assert "threading.Thread(target=self.always_pong, daemon=True).start()" in target
    assert target.rstrip().endswith("self.server.run(sockets)")
    assert "self.child_conn.send(self.server.started)" in inspect.getsource(Process.pong)
