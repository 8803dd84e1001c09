"""The background poll that keeps what an API process knows (accounts, revocations) fresh."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable

log = logging.getLogger(__name__)

#: How far apart the clocks of the processes changing accounts and keys (and their commit
#: delays) may be without a change going unseen. Keep hosts on NTP: it is seconds, not minutes.
CLOCK_MARGIN_MS = 5_000
# A hung poll would freeze what this process knows; the next one starts over.
_POLL_TIMEOUT_S = 5.0


async def poll_forever(
    refresh: Callable[[], Awaitable[None]], interval_s: float, what: str
) -> None:
    """Run ``refresh`` every ``interval_s`` until cancelled, through any failure.

    Requests keep using what is known meanwhile; with the database away they mostly fail on
    their own anyway. A failure is said once per outage, not at every poll.
    """
    failing = False
    while True:
        await asyncio.sleep(interval_s)
        try:
            async with asyncio.timeout(_POLL_TIMEOUT_S):
                await refresh()
        except Exception as exc:
            if not failing:
                log.warning("cannot poll %s (retrying): %r", what, exc)
            failing = True
            continue
        if failing:
            log.warning("polling %s again", what)
            failing = False


def advance(cursor: int, stamps: Iterable[int], now: int) -> int:
    """The next poll's cursor: the newest stamp seen, never past this process's own clock (one
    writer whose clock runs ahead must not make the poll skip the changes of the others)."""
    return min(max([cursor, *stamps]), now)
