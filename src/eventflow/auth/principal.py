"""Who is calling: a signed-in user (any route of their own) or one of their API keys (a scope).

Every credential EventFlow takes resolves to a ``Principal``: a user's access token to scope
``user``, a key to the scope it was made with. Routes ask ``Credentials.authenticate`` for the
scope they need; a key is never enough to manage keys or the account.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

import orjson

from eventflow.auth.tokens import TokenClaims


class Scope(StrEnum):
    #: A signed-in user's access token: everything the account may do.
    USER = "user"
    #: A key that sends events: the v1 ingest routes and the Segment-compatible routes.
    INGEST = "ingest"
    #: A key that reads: listings, one event, stats.
    READ = "read"


@dataclass(frozen=True, slots=True)
class Principal:
    user_id: str
    scope: Scope
    #: The verified token's claims when the credential is a user's token, else None.
    session: TokenClaims | None = None
    #: The key's id and name when the credential is an API key, else None.
    key_id: str | None = None
    key_name: str | None = None


class Credentials(Protocol):
    """Checks an ``Authorization`` header for a route that needs ``need``.

    Raises ``Unauthorized`` (401) for a missing, malformed, unknown, revoked or expired
    credential, and ``Forbidden`` (403) for a valid one whose scope does not cover ``need``.
    A user's token covers every scope; ``need=Scope.USER`` admits user tokens only.
    """

    async def authenticate(self, authorization: str | None, need: Scope) -> Principal: ...


def event_source(principal: Principal, library: tuple[str, str] | None = None) -> str | None:
    """What an event stores as its source: None for a user's token, else compact JSON.

    ``library`` is the sending SDK's (name, version), as Segment's ``context.library`` says.
    The API shows it as ``{"kind": "key", "key_id", "key_name", "library": {"name",
    "version"} | null}``, and a None as ``{"kind": "token"}``.
    """
    if principal.key_id is None:
        return None
    source: dict[str, object] = {"key_id": principal.key_id, "key_name": principal.key_name}
    if library is not None:
        source["library"] = {"name": library[0], "version": library[1]}
    return orjson.dumps(source).decode()
