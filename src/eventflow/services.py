"""The typed state shared by the API for the lifetime of a process."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine

from eventflow.api.ratelimit import Limiter
from eventflow.api.stores import (
    AccountStore,
    EventReading,
    FeedReading,
    KeyManagement,
    SessionRevocations,
)
from eventflow.api.stream_access import StreamAccess
from eventflow.auth.accounts import AccountStates
from eventflow.auth.credentials import Authenticator
from eventflow.auth.passwords import Passwords
from eventflow.auth.tokens import TokenService
from eventflow.broker.base import Broker
from eventflow.config import Settings
from eventflow.dashboard.live import Snapshots
from eventflow.ingest.accept import Acceptor
from eventflow.ingest.writer import GroupCommitWriter
from eventflow.metrics import Metrics
from eventflow.metrics.exposition import Scrape


@dataclass(frozen=True, slots=True)
class Services:
    settings: Settings
    engine: AsyncEngine
    users: AccountStore
    reading: EventReading
    feed: FeedReading
    broker: Broker
    writer: GroupCommitWriter
    #: Validates and stores ingested events: the one ingest path's core (api/fast_ingest.py).
    acceptor: Acceptor
    tokens: TokenService
    passwords: Passwords
    limiter: Limiter
    streams: StreamAccess
    #: Each user's dashboard metrics, computed once a tick for all of that user's streams.
    snapshots: Snapshots
    accounts: AccountStates
    revocations: SessionRevocations
    #: Checks every ``Authorization`` header: ``authenticate(header, scope) -> Principal``.
    credentials: Authenticator
    #: Each account's API keys: create, list, revoke (``credentials.keys`` caches the verified).
    keys: KeyManagement
    #: Set when a graceful shutdown begins, so open event streams end at once (serve.py).
    stopping: asyncio.Event
    #: This process's metrics, and what answers their scrapes (``GET /metrics``).
    metrics: Metrics
    scrape: Scrape
