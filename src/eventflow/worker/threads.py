"""A bounded pool of daemon threads for synchronous handlers."""

from __future__ import annotations

import asyncio
import contextvars
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

_A = TypeVar("_A")
_R = TypeVar("_R")

_Job = tuple[Future[Any], Callable[[Any], Any], Any]


class HandlerThreads:
    """Runs plain functions off the event loop, at most ``size`` at once; the rest wait in line.

    Not ``concurrent.futures.ThreadPoolExecutor``: the interpreter joins that pool's threads at
    exit, so one handler blocked for good would keep a stopped worker from ever exiting. These
    are daemon threads: a handler still running at exit dies with the process, and its event
    runs again (at-least-once, as after a crash). A thread is started only when a job finds no
    idle one, so a worker without synchronous handlers starts none.
    """

    def __init__(self, size: int) -> None:
        self._size = size
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        # One token per idle thread: a job takes one, or starts a thread if none is left.
        self._idle = threading.Semaphore(0)
        self._started = 0
        self._closed = False

    def run(self, func: Callable[[_A], _R], arg: _A) -> asyncio.Future[_R]:
        """``func(arg)`` in a thread. Cancelling the answer drops a job still in line; one
        already running cannot be stopped: its thread stays busy until it returns, and what it
        returns is ignored."""
        if self._closed:
            raise RuntimeError("the handler threads are closed")
        job: Future[_R] = Future()
        # In the caller's context, so that the handler's log lines name its event (logs.py).
        context = contextvars.copy_context()
        self._jobs.put((job, lambda value: context.run(func, value), arg))
        if not self._idle.acquire(blocking=False) and self._started < self._size:
            self._started += 1
            threading.Thread(
                target=_serve,
                args=(self._jobs, self._idle),
                name=f"eventflow-handler-{self._started}",
                daemon=True,
            ).start()
        return asyncio.wrap_future(job)

    def close(self) -> None:
        """Let idle threads end; busy ones end after their job. No job is taken after this."""
        self._closed = True
        for _ in range(self._started):
            self._jobs.put(None)


def _serve(jobs: queue.SimpleQueue[_Job | None], idle: threading.Semaphore) -> None:
    while (job := jobs.get()) is not None:
        future, func, arg = job
        # False for a job cancelled while it waited in line (its attempt already timed out).
        if future.set_running_or_notify_cancel():
            try:
                result = func(arg)
            except BaseException as exc:
                future.set_exception(exc)
            else:
                future.set_result(result)
        del job, future, func, arg
        idle.release()
