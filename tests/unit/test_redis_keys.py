"""Redis key names: one prefix, hash-tagged so a partition's keys share a Redis Cluster slot."""

from __future__ import annotations

import pytest
from redis.crc import key_slot

from eventflow.broker.keys import RedisKeys
from eventflow.errors import ConfigurationError


def test_keys_live_under_the_prefix_inside_a_hash_tag() -> None:
    keys = RedisKeys("acme")
    assert keys.stream == "{acme}:ready"
    assert key_slot(keys.stream.encode()) == key_slot(b"acme")


def test_partition_zero_is_the_single_stream_of_today() -> None:
    assert RedisKeys("acme").for_partition(0) == RedisKeys("acme")


def test_partitions_get_their_own_tags_and_spread_over_slots() -> None:
    keys = RedisKeys("eventflow")
    streams = [keys.for_partition(n).stream for n in range(16)]
    assert len(set(streams)) == 16
    assert all(s.startswith("{eventflow") for s in streams)
    slots = {key_slot(s.encode()) for s in streams}
    assert len(slots) > 8, "partitions should not pile up on a few slots"


def test_deployments_with_different_prefixes_never_share_a_key() -> None:
    assert RedisKeys("a").stream != RedisKeys("b").stream
    assert RedisKeys("a-1").stream != RedisKeys("a").for_partition(1).stream


@pytest.mark.parametrize("prefix", ["", "a{b", "a}b", "has space", "a:1", "x" * 65])
def test_unusable_prefixes_are_refused(prefix: str) -> None:
    with pytest.raises(ConfigurationError, match="EVENTFLOW_REDIS_PREFIX"):
        RedisKeys(prefix)


def test_negative_partitions_are_refused() -> None:
    with pytest.raises(ValueError, match="partition"):
        RedisKeys("acme", -1)
