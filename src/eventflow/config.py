"""Settings: every option is an ``EVENTFLOW_*`` environment variable, built once at start-up."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from eventflow.config_checks import (
    MIN_SECRET_LENGTH,
    check_header_token,
    check_redis_prefix,
    check_secret_strength,
    database_url,
    kept_secret,
    proxy_networks,
    redis_url,
)
from eventflow.config_checks import (
    parse_rate as parse_rate,
)
from eventflow.errors import ConfigurationError

Mode = Literal["embedded", "postgres"]


class Settings(BaseSettings):
    """All of EventFlow's configuration. See docs/configuration.md for each field."""

    model_config = SettingsConfigDict(env_prefix="EVENTFLOW_", extra="ignore")

    host: str = Field("127.0.0.1", description="Address the HTTP server binds to")
    port: int = Field(3000, ge=0, le=65535, description="Port of the HTTP server")
    http_workers: int = Field(
        1, ge=1, le=64, description="HTTP server processes sharing the port (api and up)"
    )
    request_timeout_ms: int = Field(
        30_000,
        ge=100,
        le=600_000,
        description="Time a client has to send a whole request, head and body (then 408)",
    )
    max_headers: int = Field(
        100, ge=10, le=10_000, description="Most header fields in one request (more: 431)"
    )
    max_header_bytes: int = Field(
        32_768,
        ge=1024,
        le=1_048_576,
        description="Largest request line plus headers, in bytes (larger: 431)",
    )
    max_connections: int = Field(
        800,
        ge=2,
        le=1_000_000,
        description="A connection opened while this many are open (per HTTP process, event "
        "streams included) is answered 503",
    )
    data_dir: Path = Field(
        Path(".eventflow"),
        description="Directory for the embedded SQLite database and the generated JWT secret",
    )
    database_url: str | None = Field(
        None,
        description="postgresql://user:pass@host:port/db; unset: SQLite in the data directory",
    )
    redis_url: str | None = Field(
        None,
        description="redis://host:port/db: use the Redis Streams broker (unset: the sql broker)",
    )
    redis_prefix: str = Field(
        "eventflow", description="Prefix of every Redis key, so deployments can share one Redis"
    )
    db_pool_size: int = Field(
        10,
        ge=1,
        le=1000,
        description="Database connections each process keeps open for reuse (see the sizing "
        "rule in docs/operations.md)",
    )
    db_max_overflow: int = Field(
        10,
        ge=0,
        le=1000,
        description="Further connections each process may open at busy moments, closed when "
        "returned",
    )

    jwt_secret: str | None = Field(
        None, description="HS256 signing secret (32+ characters; required with PostgreSQL)"
    )
    jwt_ttl_seconds: int = Field(
        3600, ge=60, le=30 * 24 * 3600, description="Lifetime of access tokens"
    )
    registration: Literal["open", "closed"] = Field(
        "open",
        description="open: anyone may create an account; closed: only operators can "
        "(eventflow user create)",
    )
    account_poll_ms: int = Field(
        500,
        ge=50,
        le=10_000,
        description="How often each API process polls for sign-outs and account changes made "
        "elsewhere",
    )
    key_poll_ms: int = Field(
        250,
        ge=50,
        # The promise of docs/api-keys.md: a revoked key stops working everywhere within a second.
        le=1000,
        description="How often each API process polls for API keys revoked elsewhere (and "
        "writes when its keys were last used)",
    )

    max_attempts: int = Field(
        5, ge=1, le=100, description="Attempts before an event is dead-lettered (failed)"
    )
    retry_base_ms: int = Field(1000, ge=1, description="First retry delay; doubles per attempt")
    retry_max_ms: int = Field(300_000, ge=1, description="Upper bound of the retry delay")
    worker_concurrency: int = Field(
        512, ge=1, le=10_000, description="Handlers running at once per worker process"
    )
    worker_batch_size: int = Field(
        512,
        ge=1,
        le=5000,
        description="Events claimed at a time (on PostgreSQL, in two claims of half as many)",
    )
    lease_ms: int = Field(
        30_000,
        ge=500,
        description="How long a claim lasts without renewal before another worker may take it",
    )
    handlers: str = Field(
        "", description="Comma-separated modules whose register(registry) adds handlers"
    )
    handler_timeout_ms: int = Field(
        30_000,
        ge=1,
        le=24 * 3600 * 1000,
        description="Time one attempt of a handler may take; then it fails as timed out (and is "
        "retried). A handler may set its own",
    )
    handler_threads: int = Field(
        32,
        ge=1,
        le=1024,
        description="Threads per worker process for synchronous (plain def) handlers",
    )
    unhandled: Literal["complete", "fail"] = Field(
        "complete",
        description="Events of a type no handler takes: complete (the default handler) or fail "
        "(dead-lettered at once)",
    )
    simulate_latency_ms: int = Field(
        0, ge=0, le=60_000, description="Sleep this long in the built-in handlers (demos)"
    )

    max_payload_bytes: int = Field(65_536, ge=64, description="Largest encoded payload accepted")
    max_batch_bytes: int = Field(
        16 * 1024 * 1024, ge=1024, description="Largest batch request body accepted"
    )
    max_queue_depth: int = Field(
        1_000_000, ge=1, description="Answer 503 to new events while more than this many wait"
    )

    group_commit_ms: float | None = Field(
        None,
        ge=0.0,
        le=100.0,
        description="How long the writer gathers concurrent requests into one transaction "
        "(unset: 2 on SQLite, 0.5 on PostgreSQL)",
    )
    group_commit_max: int = Field(2000, ge=1, description="Most events written in one group commit")
    group_commits_in_flight: int | None = Field(
        None,
        ge=1,
        le=64,
        description="Group commits the writer runs at once, so the next group forms while one "
        "commits (unset: 1 on SQLite, 3 on PostgreSQL)",
    )
    commit_timeout_ms: int = Field(
        1000, ge=10, description="Budget for a group commit before the requests get 503"
    )
    dispatch_interval_ms: int = Field(
        250, ge=10, description="How often the dispatcher looks for due and stranded events"
    )
    redispatch_after_ms: int = Field(
        30_000, ge=100, description="Re-publish a ready event whose hint is older than this"
    )
    retention_days: int = Field(
        0,
        ge=0,
        le=36_500,
        description="Delete completed events, with their attempts, this many days after they "
        "finished (0: keep them forever)",
    )
    failed_retention_days: int | None = Field(
        None,
        ge=0,
        le=36_500,
        description="The same for failed events (unset: EVENTFLOW_RETENTION_DAYS; 0: forever)",
    )
    retention_batch: int | None = Field(
        None,
        ge=1,
        le=10_000,
        description="Events retention deletes per transaction (unset: 200 on SQLite, 1000 on "
        "PostgreSQL)",
    )
    retention_pause_ms: int = Field(
        100, ge=0, le=60_000, description="Pause between two of retention's batches"
    )
    retention_interval_ms: int = Field(
        60_000,
        ge=100,
        description="How often the dispatcher looks for events past retention",
    )

    cors_origins: str = Field(
        "", description="Comma-separated origins allowed to call the API from a browser"
    )
    trusted_proxies: str = Field(
        "",
        description="Comma-separated IPs or CIDRs of reverse proxies whose X-Forwarded-For "
        "names the client (unset: the client is the socket's peer)",
    )

    login_rate_per_email: str = Field(
        "10/minute", description="Logins tried for one email address (empty: no limit)"
    )
    login_rate_per_address: str = Field(
        "30/minute", description="Logins tried from one client address (empty: no limit)"
    )
    register_rate_per_email: str = Field(
        "10/minute", description="Registrations tried for one email address (empty: no limit)"
    )
    register_rate_per_address: str = Field(
        "20/minute", description="Registrations tried from one client address (empty: no limit)"
    )
    ingest_rate_per_user: str = Field(
        "",
        description="Events one account may send, a batch counting its events, e.g. "
        "5000/second (empty: no limit)",
    )
    password_hash_concurrency: int | None = Field(
        None,
        ge=1,
        le=1024,
        description="Argon2id hashes (logins, registrations) run at once per API process "
        "(unset: the CPUs available)",
    )
    metrics_token: str | None = Field(
        None,
        description="Bearer token that GET /metrics requires (unset: /metrics is open to anyone "
        "who reaches the port)",
    )
    metrics_port: int | None = Field(
        None,
        ge=1,
        le=65535,
        description="Port on EVENTFLOW_HOST where `eventflow worker` serves GET /metrics (unset: "
        "none); up and api serve /metrics on their HTTP port",
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        "info", description="debug, info, warning or error"
    )
    log_format: Literal["json", "text"] | None = Field(
        None,
        description="json: one JSON object a line; text: for people (unset: text when stderr "
        "is a terminal, else json)",
    )
    access_log: bool = Field(
        True, description="One log line per HTTP request (method, path, status, duration)"
    )

    @field_validator("log_level", "log_format", mode="before")
    @classmethod
    def _lower_case(cls, value: object) -> object:
        if isinstance(value, str):
            return value.strip().lower() or None
        return value

    @field_validator("database_url")
    @classmethod
    def _normalise_database_url(cls, value: str | None) -> str | None:
        return database_url(value)

    @field_validator("redis_url")
    @classmethod
    def _check_redis_url(cls, value: str | None) -> str | None:
        return redis_url(value)

    @field_validator("redis_prefix")
    @classmethod
    def _check_redis_prefix(cls, value: str) -> str:
        check_redis_prefix(value)
        return value

    @field_validator(
        "login_rate_per_email",
        "login_rate_per_address",
        "register_rate_per_email",
        "register_rate_per_address",
        "ingest_rate_per_user",
    )
    @classmethod
    def _check_rate(cls, value: str, info: ValidationInfo) -> str:
        parse_rate(f"EVENTFLOW_{(info.field_name or '').upper()}", value)
        return value.strip()

    @field_validator("metrics_token")
    @classmethod
    def _check_metrics_token(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        check_header_token("EVENTFLOW_METRICS_TOKEN", value)
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _check_proxies(cls, value: str) -> str:
        return ",".join(proxy_networks(value))

    @field_validator("jwt_secret")
    @classmethod
    def _check_secret(cls, value: str | None) -> str | None:
        # Refused wherever it is given; only what signs tokens requires one (resolve_jwt_secret).
        if value is not None:
            check_secret_strength(value)
        return value

    @property
    def mode(self) -> Mode:
        url = self.database_url
        return "postgres" if url is not None and url.startswith("postgresql") else "embedded"

    @property
    def effective_database_url(self) -> str:
        if self.database_url is not None:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'eventflow.db').resolve()}"

    @property
    def effective_password_hash_concurrency(self) -> int:
        if self.password_hash_concurrency is not None:
            return self.password_hash_concurrency
        # The CPUs this process may run on (a cpuset or taskset), not all of the host's.
        if hasattr(os, "sched_getaffinity"):
            return len(os.sched_getaffinity(0))
        return os.cpu_count() or 1

    @property
    def effective_failed_retention_days(self) -> int:
        if self.failed_retention_days is not None:
            return self.failed_retention_days
        return self.retention_days

    @property
    def trusted_proxy_list(self) -> list[str]:
        return [entry for entry in self.trusted_proxies.split(",") if entry]

    @property
    def cors_origin_list(self) -> list[str]:
        return [origin.strip() for origin in self.cors_origins.split(",") if origin.strip()]

    @property
    def handler_modules(self) -> list[str]:
        return [name.strip() for name in self.handlers.split(",") if name.strip()]

    @property
    def effective_log_format(self) -> Literal["json", "text"]:
        if self.log_format is not None:
            return self.log_format
        return "text" if sys.stderr is not None and sys.stderr.isatty() else "json"

    def resolve_jwt_secret(self) -> str:
        """The signing secret; in embedded mode one is generated once and kept on disk.

        Only the processes that sign or check tokens (``up``, ``api``) ask for it: a worker or
        an operator's command needs none, even with PostgreSQL.
        """
        if self.jwt_secret is not None:
            return self.jwt_secret
        if self.mode == "postgres":
            raise ConfigurationError(
                "EVENTFLOW_JWT_SECRET is required with PostgreSQL: set it to a random string "
                f"of at least {MIN_SECRET_LENGTH} characters "
                "(for example `python -c 'import secrets; print(secrets.token_urlsafe(48))'`)"
            )
        return kept_secret(self.data_dir / "jwt_secret")
