"""Event and user identifiers: UUIDv7, time-ordered so the newest event has the highest id."""

from __future__ import annotations

import re
import uuid

import uuid_utils


def new_id() -> str:
    return str(uuid_utils.uuid7())


def uuid7_floor(ms: int) -> str:
    """The smallest UUIDv7 that can be minted at ``ms``: a lower bound for ids created since."""
    return str(uuid.UUID(int=(ms & 0xFFFF_FFFF_FFFF) << 80 | 0x7 << 76 | 0x2 << 62))


# Written with or without its dashes, in either case; nothing else (``uuid.UUID`` alone would
# also read braces, "urn:uuid:", "+", "_" and surrounding spaces).
_ID_RE = re.compile(
    r"[0-9a-fA-F]{8}(-?)[0-9a-fA-F]{4}\1[0-9a-fA-F]{4}\1[0-9a-fA-F]{4}\1[0-9a-fA-F]{12}"
)


def parse_id(text: str) -> str | None:
    """The canonical form of ``text`` if it is a UUID, else None (a malformed id is a 404)."""
    if _ID_RE.fullmatch(text) is None:
        return None
    return str(uuid.UUID(text))
