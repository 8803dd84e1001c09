"""What the throwaway PostgreSQL and Redis servers share: start, close, context manager."""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import IO, Self

from testkit.logs import tail

STARTUP_TIMEOUT_S = 30.0


class ThrowawayServer(ABC):
    """A server in a temp directory of its own; ``close`` stops it and deletes the directory."""

    port: int
    log_path: str
    _proc: subprocess.Popen[bytes] | None = None
    _log: IO[bytes] | None = None

    @property
    @abstractmethod
    def url(self) -> str: ...

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        """The server's process id while it runs."""
        return self._proc.pid if self._proc is not None and self.running else None

    def _wait_started(self, name: str, ready: Callable[[], bool], interval_s: float) -> None:
        """Until ``ready()``; if the server exits or takes too long, it is stopped (``_abort``)
        and the error shows the end of its log."""
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while not ready():
            if self._proc is None or self._proc.poll() is not None:
                code = self._proc.returncode if self._proc is not None else None
                problem = f"exited with status {code} during startup"
            elif time.monotonic() > deadline:
                problem = f"was not ready within {STARTUP_TIMEOUT_S:.0f} s"
            else:
                time.sleep(interval_s)
                continue
            self._abort()
            raise RuntimeError(
                f"{name} on port {self.port} {problem}; server log:\n{tail(self.log_path)}"
            )

    @abstractmethod
    def _abort(self) -> None:
        """Stop a server that failed to start, whatever state it is in."""

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    @abstractmethod
    def start(self) -> None: ...

    @abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


@contextlib.contextmanager
def url_or_server(variable: str, server: Callable[[], ThrowawayServer]) -> Iterator[str]:
    """The URL in ``$variable`` if set (an existing server), else a throwaway server's."""
    external = os.environ.get(variable)
    if external:
        yield external
        return
    with server() as started:
        yield started.url
