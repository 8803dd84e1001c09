"""Every Redis key EventFlow uses, derived from one configurable prefix.

Each key carries a hash tag (``{prefix}:…``): Redis Cluster places keys by the text between the
braces only, so all keys of one partition share a slot and may appear together in one MULTI or
script. A partitioned layout gives each partition its own tag (``{prefix:3}:…``), which spreads
partitions over the cluster's shards while keeping each partition's keys together.
"""

from __future__ import annotations

from dataclasses import dataclass

from eventflow.config_checks import check_redis_prefix

#: The consumer group every worker joins; a group name lives inside the stream, it is not a key.
GROUP = "workers"
#: The stream field that holds the event ids of a hint entry, comma-separated: one entry carries
#: every ready event of one group commit (up to ``IDS_PER_ENTRY``), not one entry per event.
IDS_FIELD = "ids"
IDS_PER_ENTRY = 500


@dataclass(frozen=True, slots=True)
class RedisKeys:
    """The key names of one deployment (``prefix``) and one stream partition."""

    prefix: str
    partition: int = 0

    def __post_init__(self) -> None:
        check_redis_prefix(self.prefix)
        if self.partition < 0:
            raise ValueError(f"partition must be >= 0, not {self.partition}")

    @property
    def tag(self) -> str:
        # Partition 0 keeps the plain tag, so today's single stream stays where it is when
        # more partitions are added next to it.
        inner = self.prefix if self.partition == 0 else f"{self.prefix}:{self.partition}"
        return "{" + inner + "}"

    @property
    def stream(self) -> str:
        """The stream of "event is ready" hints that the consumer group reads."""
        return f"{self.tag}:ready"

    @property
    def hinted(self) -> str:
        """A counter of event ids published but not yet read by a worker (the queue depth)."""
        return f"{self.tag}:hinted"

    # The dashboard's stream keys belong to the deployment, not to a partition: callers use
    # partition 0's (``RedisKeys(prefix)``), so every replica agrees on one name.

    def spent_ticket(self, nonce: str) -> str:
        """Set once a stream ticket is redeemed (``SET NX PX``); expires soon after the ticket."""
        return f"{self.tag}:ticket:{nonce}"

    def open_streams(self, user_id: str) -> str:
        """A sorted set of one user's open streams, each scored by when its lease runs out."""
        return f"{self.tag}:streams:{user_id}"

    def for_partition(self, partition: int) -> RedisKeys:
        return RedisKeys(self.prefix, partition)


def rate_limit_prefix(prefix: str) -> str:
    """What the ``limits`` library puts before each of its keys: ``<prefix>:ratelimit:…``.

    Without the deployment's hash tag on purpose: a limit's keys are used alone (the library
    tags the two keys of one sliding window itself), so on a cluster they spread over the shards
    instead of crowding the stream's. A prefix holds no ``:``, so no two deployments share them.
    """
    check_redis_prefix(prefix)
    return f"{prefix}:ratelimit"
