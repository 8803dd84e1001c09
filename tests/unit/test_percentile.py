"""The nearest-rank percentile the bench reports latencies with."""

from __future__ import annotations

import pytest

from testkit import nearest_rank_percentile


def test_no_values_have_no_percentile() -> None:
    assert nearest_rank_percentile([], 50) is None


@pytest.mark.parametrize(
    ("pct", "expected"), [(1, 10.0), (10, 10.0), (11, 20.0), (50, 50.0), (99, 100.0), (100, 100.0)]
)
def test_the_smallest_value_that_covers_pct_per_cent(pct: float, expected: float) -> None:
    values = [100, 30, 10, 90, 20, 80, 40, 70, 50, 60]  # unsorted on purpose

    assert nearest_rank_percentile(values, pct) == expected


def test_never_interpolates() -> None:
    assert nearest_rank_percentile([1, 1000], 50) == 1.0
    assert nearest_rank_percentile([1, 1000], 51) == 1000.0
