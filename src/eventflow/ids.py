"""Event and user identifiers: UUIDv7, time-ordered so the newest event has the highest id."""

from __future__ import annotations

import uuid

import uuid_utils


def new_id() -> str:
    return str(uuid_utils.uuid7())


def uuid7_floor(ms: int) -> str:
    """The smallest UUIDv7 that can be minted at ``ms``: a lower bound for ids created since."""
    return str(uuid.UUID(int=(ms & 0xFFFF_FFFF_FFFF) << 80 | 0x7 << 76 | 0x2 << 62))


def parse_id(text: str) -> str | None:
    """The canonical form of ``text`` if it is a UUID, else None (a malformed id is a 404)."""
    try:
        return str(uuid.UUID(text))
    except ValueError:
        return None
