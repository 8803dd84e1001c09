"""Wall-clock time in integer milliseconds, the unit of every stored timestamp."""

from __future__ import annotations

import functools
import time
from datetime import UTC, datetime


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def iso(ms: int | None) -> str | None:
    """RFC 3339 text for a stored timestamp (UTC, millisecond precision)."""
    if ms is None:
        return None
    return _iso(ms)


@functools.lru_cache(maxsize=256)
def _iso(ms: int) -> str:
    # Every event of a group commit shares its millisecond: formatting once per ms is enough.
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds")
