"""Summary statistics of measurements (latencies) taken by the tests and the bench."""

from __future__ import annotations

import math
from collections.abc import Sequence


def nearest_rank_percentile(values: Sequence[float], pct: float) -> float | None:
    """The ``pct``-th percentile (0 < pct <= 100) by the nearest-rank method; None for no values.

    The smallest value that at least ``pct`` per cent of the values are less than or equal to:
    always one of the values, never an interpolation. ``values`` need not be sorted.
    """
    if not values:
        return None
    ordered = sorted(values)
    rank = min(len(ordered), max(1, math.ceil(pct / 100 * len(ordered))))
    return float(ordered[rank - 1])
