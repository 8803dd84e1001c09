"""The bench's scenario list: ingest with an API key is one of them, beside the token's."""

from __future__ import annotations

import pytest

from bench.runner import SCENARIOS, BenchUsageError, parse_scenarios


def test_the_key_scenario_runs_beside_the_token_one_in_a_fixed_order() -> None:
    chosen = parse_scenarios("ingest-single-key, ceiling,ingest-single")
    assert chosen == ("ceiling", "ingest-single", "ingest-single-key")
    assert "ingest-single-key" in parse_scenarios("all") == SCENARIOS


def test_an_unknown_scenario_is_refused() -> None:
    with pytest.raises(BenchUsageError):
        parse_scenarios("ingest-single-jwt")
