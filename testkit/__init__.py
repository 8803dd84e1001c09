"""Throwaway PostgreSQL, Redis and EventFlow processes for the tests and the bench."""

from testkit.binaries import MissingService, pg_bin, postgres_bin_dir, require_service
from testkit.ports import free_port
from testkit.postgres import PostgresServer, postgres_server
from testkit.process import EVENTFLOW, REPO_ROOT, EventflowProcess
from testkit.redis import RedisServer, redis_server
from testkit.stats import nearest_rank_percentile

__all__ = [
    "EVENTFLOW",
    "REPO_ROOT",
    "EventflowProcess",
    "MissingService",
    "PostgresServer",
    "RedisServer",
    "free_port",
    "nearest_rank_percentile",
    "pg_bin",
    "postgres_bin_dir",
    "postgres_server",
    "redis_server",
    "require_service",
]
