"""The handler registry: event types mapped to async functions.

A module named in ``EVENTFLOW_HANDLERS`` defines ``register(registry)`` and adds its handlers::

    from eventflow.worker.handlers import EventContext, HandlerRegistry, PermanentError

    async def on_order(event: EventContext) -> dict[str, object]:
        if "order_id" not in event.payload:
            raise PermanentError("order_id is missing")  # dead-lettered at once, no retries
        return {"charged": True}  # stored as the event's result

    def register(registry: HandlerRegistry) -> None:
        registry.add("ORDER_CREATED", on_order)

Any other exception is retried with backoff. Delivery is at-least-once: use ``event.id`` as
the idempotency key for side effects.
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from eventflow.clock import now_ms
from eventflow.errors import ConfigurationError

FAIL_TEST = "FAIL_TEST"


@dataclass(frozen=True, slots=True)
class EventContext:
    id: str
    type: str
    payload: dict[str, Any]
    attempt: int
    user_id: str
    created_at: int


HandlerResult = Mapping[str, Any] | None
Handler = Callable[[EventContext], Awaitable[HandlerResult]]


class PermanentError(Exception):
    """Raised by a handler for an event that can never succeed: no retries, straight to failed."""


class SimulatedFailure(Exception):
    pass


class HandlerRegistry:
    def __init__(self, default: Handler) -> None:
        self._handlers: dict[str, Handler] = {}
        self._default = default

    def add(self, event_type: str, handler: Handler) -> None:
        self._handlers[event_type] = handler

    def resolve(self, event_type: str) -> Handler:
        return self._handlers.get(event_type, self._default)

    @property
    def types(self) -> list[str]:
        return sorted(self._handlers)


def builtin_registry(simulate_latency_ms: int = 0) -> HandlerRegistry:
    async def default_handler(event: EventContext) -> HandlerResult:
        if simulate_latency_ms:
            await asyncio.sleep(simulate_latency_ms / 1000)
        return {"handled_by": "default", "type": event.type, "processed_at": now_ms()}

    async def fail_test(event: EventContext) -> HandlerResult:
        if simulate_latency_ms:
            await asyncio.sleep(simulate_latency_ms / 1000)
        raise SimulatedFailure("Simulated failure")

    registry = HandlerRegistry(default_handler)
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
