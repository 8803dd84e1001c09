"""The typed state shared by the API for the lifetime of a process."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncEngine

from eventflow.auth.passwords import Passwords
from eventflow.auth.tokens import TokenService
from eventflow.broker.base import Broker
from eventflow.config import Settings
from eventflow.db.event_queries import EventQueries
from eventflow.db.events import EventRepository
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
    # Users whose existence was checked once; accounts are never deleted through the API.
    known_users: set[str] = field(default_factory=set)
