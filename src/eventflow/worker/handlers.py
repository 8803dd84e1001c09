"""The handler registry: event types mapped to handlers, each with its time limit and retries.

A module named in ``EVENTFLOW_HANDLERS`` defines ``register(registry)`` and adds its handlers::

    from eventflow.worker.handlers import EventContext, HandlerRegistry, PermanentError

    async def on_order(event: EventContext) -> dict[str, object]:
        if "order_id" not in event.payload:
            raise PermanentError("order_id is missing")  # dead-lettered at once, no retries
        return {"charged": True}  # stored as the event's result

    def on_invoice(event: EventContext) -> None:  # a plain function: runs in a thread
        ...

    def register(registry: HandlerRegistry) -> None:
        registry.add("ORDER_CREATED", on_order, max_attempts=10, timeout_ms=5000)
        registry.add("INVOICE_DUE", on_invoice)

Any other exception, and an attempt that outlives its timeout, is retried with backoff.
Delivery is at-least-once: use ``event.id`` as the idempotency key for side effects. The rules
in full are in README.md ("Writing handlers").
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib
import inspect
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from eventflow.clock import now_ms
from eventflow.errors import ConfigurationError
from eventflow.worker.retry import RetryPolicy

FAIL_TEST = "FAIL_TEST"
DEFAULT_TIMEOUT_MS = 30_000

Unhandled = Literal["complete", "fail"]


@dataclass(frozen=True, slots=True)
class EventContext:
    id: str
    type: str
    payload: dict[str, Any]
    attempt: int
    user_id: str
    created_at: int


HandlerResult = Mapping[str, Any] | None
# An ``async def`` runs on the worker's event loop; a plain function runs in a thread.
Handler = Callable[[EventContext], Awaitable[HandlerResult] | HandlerResult]


class PermanentError(Exception):
    """Raised by a handler for an event that can never succeed: no retries, straight to failed."""


class SimulatedFailure(Exception):
    pass


@dataclass(frozen=True, slots=True)
class Registration:
    """A handler and what applies to its event type."""

    handler: Handler
    policy: RetryPolicy
    timeout_ms: int
    # A plain (synchronous) function: it runs in the worker's handler threads.
    blocking: bool


class HandlerRegistry:
    """Handlers by event type, and the default for types nobody registered (None: such events
    fail at once, ``EVENTFLOW_UNHANDLED=fail``). ``policy`` and ``timeout_ms`` apply to every
    type that does not set its own."""

    def __init__(
        self,
        default: Handler | None,
        policy: RetryPolicy | None = None,
        timeout_ms: int = DEFAULT_TIMEOUT_MS,
    ) -> None:
        self._policy = policy or RetryPolicy()
        self._timeout_ms = timeout_ms
        self._handlers: dict[str, Registration] = {}
        self._default = None if default is None else self._registration(default, self._policy)

    def add(
        self,
        event_type: str,
        handler: Handler,
        *,
        max_attempts: int | None = None,
        retry_base_ms: int | None = None,
        retry_max_ms: int | None = None,
        timeout_ms: int | None = None,
    ) -> None:
        """Run ``handler`` for ``event_type``; each keyword left out takes its global setting
        (``EVENTFLOW_MAX_ATTEMPTS``, ``_RETRY_BASE_MS``, ``_RETRY_MAX_MS``,
        ``_HANDLER_TIMEOUT_MS``)."""
        given = {
            "max_attempts": max_attempts,
            "retry_base_ms": retry_base_ms,
            "retry_max_ms": retry_max_ms,
            "timeout_ms": timeout_ms,
        }
        for name, value in given.items():
            if value is not None and (isinstance(value, bool) or value < 1):
                raise ConfigurationError(
                    f"handler for {event_type!r}: {name} must be a positive integer, not {value!r}"
                )
        changes = {"max_attempts": max_attempts, "base_ms": retry_base_ms, "max_ms": retry_max_ms}
        policy = dataclasses.replace(
            self._policy, **{name: value for name, value in changes.items() if value is not None}
        )
        self._handlers[event_type] = self._registration(handler, policy, timeout_ms)

    def resolve(self, event_type: str) -> Registration | None:
        """What runs events of this type; None when nothing does."""
        return self._handlers.get(event_type, self._default)

    @property
    def types(self) -> list[str]:
        return sorted(self._handlers)

    @property
    def max_attempts_by_type(self) -> dict[str, int]:
        """The types whose attempt budget is not the global one, for the dispatcher: an attempt
        lost with its worker counts against its type's budget."""
        return {
            event_type: registration.policy.max_attempts
            for event_type, registration in self._handlers.items()
            if registration.policy.max_attempts != self._policy.max_attempts
        }

    def _registration(
        self, handler: Handler, policy: RetryPolicy, timeout_ms: int | None = None
    ) -> Registration:
        timeout = self._timeout_ms if timeout_ms is None else timeout_ms
        return Registration(handler, policy, timeout, blocking=not _is_async(handler))


def _is_async(handler: Handler) -> bool:
    # inspect sees through functools.partial; an object with ``async def __call__`` counts too.
    return inspect.iscoroutinefunction(handler) or inspect.iscoroutinefunction(
        type(handler).__call__
    )


def builtin_registry(
    simulate_latency_ms: int = 0,
    *,
    policy: RetryPolicy | None = None,
    timeout_ms: int = DEFAULT_TIMEOUT_MS,
    unhandled: Unhandled = "complete",
) -> HandlerRegistry:
    """The built-in handlers: ``FAIL_TEST`` always fails; with ``unhandled="complete"`` every
    other type completes with ``{"handled_by": "default", …}``."""

    async def default_handler(event: EventContext) -> HandlerResult:
        if simulate_latency_ms:
            await asyncio.sleep(simulate_latency_ms / 1000)
        return {"handled_by": "default", "type": event.type, "processed_at": now_ms()}

    async def fail_test(event: EventContext) -> HandlerResult:
        if simulate_latency_ms:
            await asyncio.sleep(simulate_latency_ms / 1000)
        raise SimulatedFailure("Simulated failure")

    default = default_handler if unhandled == "complete" else None
    registry = HandlerRegistry(default, policy, timeout_ms)
    registry.add(FAIL_TEST, fail_test)
    return registry


def load_modules(registry: HandlerRegistry, modules: list[str]) -> None:
    """Import each module and let it ``register(registry)``; a clear error if it cannot."""
    for name in modules:
        try:
            module = importlib.import_module(name)
        except ImportError as exc:
            raise ConfigurationError(f"EVENTFLOW_HANDLERS: cannot import {name!r}: {exc}") from exc
        register = getattr(module, "register", None)
        if not callable(register):
            raise ConfigurationError(
                f"EVENTFLOW_HANDLERS: module {name!r} has no register(registry) function"
            )
        register(registry)
