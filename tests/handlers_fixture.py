"""Custom handlers loaded by tests through EVENTFLOW_HANDLERS."""

from __future__ import annotations

from eventflow.worker.handlers import EventContext, HandlerRegistry, HandlerResult, PermanentError


async def _permanent(event: EventContext) -> HandlerResult:
    raise PermanentError(f"cannot handle {event.payload.get('why', 'this')}")


async def _echo(event: EventContext) -> HandlerResult:
    return {"echo": event.payload, "attempt": event.attempt, "idempotency_key": event.id}


def register(registry: HandlerRegistry) -> None:
    registry.add("PERMANENT", _permanent)
    registry.add("ECHO", _echo)
