"""A Segment library's credentials: its write key, sent as HTTP Basic's user name."""

from __future__ import annotations

import base64
import binascii

from eventflow.errors import Unauthorized


def as_bearer(authorization: str | None) -> str | None:
    """The ``Authorization`` header as the credentials check reads it: ``Basic
    base64(<key>:)`` becomes ``Bearer <key>``; anything else is passed on as it is."""
    if authorization is None:
        return None
    scheme, _, value = authorization.strip().partition(" ")
    if scheme.lower() != "basic":
        return authorization
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise Unauthorized("The Basic credentials are not base64 of '<write key>:'") from exc
    user, _, password = decoded.partition(":")
    # Segment's libraries send the key as the user name; some clients put it in the password.
    key = user or password
    if not key:
        raise Unauthorized("The Basic credentials hold no write key; send base64('<key>:')")
    return f"Bearer {key}"
