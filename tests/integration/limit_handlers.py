"""Handlers that hang or block, loaded by the processes of test_handler_limits.py through
EVENTFLOW_HANDLERS."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from eventflow.worker.handlers import EventContext, HandlerRegistry, HandlerResult

HANGS = "HANGS"
STUCK = "STUCK"
BLOCKS = "BLOCKS"
QUICK = "QUICK"
HANGS_TIMEOUT_MS = 500


async def _hangs(event: EventContext) -> HandlerResult:
    await asyncio.Event().wait()
    return None


def _stuck(event: EventContext) -> HandlerResult:
    time.sleep(3600)
    return None


def _blocks(event: EventContext) -> HandlerResult:
    """Sleeps a second at a time, its thread blocked, until the file in ``payload["gate"]``
    exists (a minute at most)."""
    gate = Path(event.payload["gate"])
    deadline = time.monotonic() + 60
    while not gate.exists() and time.monotonic() < deadline:
        time.sleep(1)
    return {"gate_opened": gate.exists()}


async def _quick(event: EventContext) -> HandlerResult:
    return {"n": event.payload.get("n")}


def register(registry: HandlerRegistry) -> None:
    registry.add(
        HANGS,
        _hangs,
        timeout_ms=HANGS_TIMEOUT_MS,
        max_attempts=2,
        retry_base_ms=50,
        retry_max_ms=100,
    )
    registry.add(STUCK, _stuck, timeout_ms=HANGS_TIMEOUT_MS, max_attempts=1)
    registry.add(BLOCKS, _blocks, timeout_ms=120_000)
    registry.add(QUICK, _quick)
