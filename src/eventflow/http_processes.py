"""Several HTTP processes on one port: uvicorn's supervisor, starting EventFlow's servers."""

from __future__ import annotations

import logging
import os
import socket
import threading

import uvicorn
from uvicorn.config import STARTUP_FAILURE
from uvicorn.supervisors.multiprocess import Multiprocess, Process

from eventflow.config import Settings
from eventflow.logs import configure_logging
from eventflow.metrics.exposition import process_exited

log = logging.getLogger(__name__)

#: Tells the processes whether they also run a worker (`up`) or not (`api`).
RUN_WORKER_ENV = "EVENTFLOW_INTERNAL_RUN_WORKER"


class ServingProcess(Process):
    """One of several HTTP processes: a ``ServingServer`` with settings from the environment."""

    def __init__(self, config: uvicorn.Config, sockets: list[socket.socket]) -> None:
        self._serving: uvicorn.Server | None = None
        super().__init__(config, sockets)

    def target(self, sockets: list[socket.socket] | None = None) -> None:
        # As uvicorn's, but the health check answers before anything heavy runs: the app's
        # imports take seconds on a busy machine, longer than the supervisor waits before it
        # kills a silent process (so they are imported here, not at the top).
        threading.Thread(target=self.always_pong, daemon=True).start()
        from eventflow.serve import make_server

        settings = Settings()
        configure_logging(settings)
        self._serving = make_server(settings, run_worker=os.environ.get(RUN_WORKER_ENV) == "1")
        self._serving.run(sockets)

    def pong(self) -> None:
        self.child_conn.recv()
        self.child_conn.send(self._serving is not None and self._serving.started)

    @property
    def server(self) -> uvicorn.Server:
        assert self._serving is not None, "not serving yet"
        return self._serving


class Supervisor(Multiprocess):
    """uvicorn's supervisor, starting ``ServingProcess``es.

    uvicorn names its ``Process`` class in the four places that start one and offers no hook,
    so each is repeated here with the subclass; ``tests/unit/test_serve.py`` fails if uvicorn
    starts processes anywhere else (it is pinned below its next minor version).
    """

    def _start(self) -> Process:
        process = ServingProcess(self.config, self.sockets)
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
            process_exited(process.pid)
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
            process_exited(old.pid)
            self.processes[idx] = new

    def handle_ttou(self) -> None:
        retired = self.processes[-1] if self.processes_num > 1 else None
        super().handle_ttou()
        if retired is not None:
            process_exited(retired.pid)

    def handle_ttin(self) -> None:
        self.processes_num += 1
        self.processes.append(self._start())
