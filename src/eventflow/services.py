"""The typed state shared by the API for the lifetime of a process."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine

from eventflow.api.ratelimit import Limiter
from eventflow.api.stream_access import StreamAccess
from eventflow.auth.accounts import AccountStates
from eventflow.auth.passwords import Passwords
from eventflow.auth.tokens import TokenService
from eventflow.broker.base import Broker
from eventflow.config import Settings
from eventflow.db.event_queries import EventQueries
from eventflow.db.events import EventRepository
from eventflow.db.revocations import RevocationRepository
from eventflow.db.users import UserRepository
from eventflow.ingest.writer import GroupCommitWriter


@dataclass(frozen=True, slots=True)
class Services:
    settings: Settings
    engine: AsyncEngine
    users: UserRepository
    events: EventRepository
    queries: EventQueries
    broker: Broker
    writer: GroupCommitWriter
    tokens: TokenService
    passwords: Passwords
    limiter: Limiter
    streams: StreamAccess
    accounts: AccountStates
    revocations: RevocationRepository
    #: Set when a graceful shutdown begins, so open event streams end at once (serve.py).
    stopping: asyncio.Event
