"""A handler that logs, loaded by worker processes via EVENTFLOW_HANDLERS.

Its first attempt at an event fails with an exception that quotes the payload (which must not
reach the log), its second logs a line of its own with ``logging`` and succeeds: both lines
must carry the event's id and their attempt.
"""

from __future__ import annotations

import logging

from eventflow.worker.handlers import EventContext, HandlerRegistry, HandlerResult

LOGGED = "LOGGED"
HANDLED = "the handler handled it"

log = logging.getLogger(__name__)


async def _logged(event: EventContext) -> HandlerResult:
    if event.attempt == 1:
        raise RuntimeError(f"cannot handle {event.payload!r} yet")
    log.warning(HANDLED)
    return {"attempt": event.attempt}


def register(registry: HandlerRegistry) -> None:
    registry.add(LOGGED, _logged)
