"""EventflowError and its narrow subclasses; the API turns each into RFC 9457 problem details."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar


class EventflowError(Exception):
    """Base of every error EventFlow raises on purpose."""

    status: ClassVar[int] = 500
    title: ClassVar[str] = "Internal error"
    slug: ClassVar[str] = "internal"

    def __init__(
        self,
        detail: str,
        *,
        errors: Sequence[Mapping[str, Any]] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = list(errors) if errors is not None else None
        self.headers = dict(headers) if headers is not None else {}


class ConfigurationError(EventflowError):
    """Settings that cannot work; raised at start-up, never per request."""

    title = "Configuration error"
    slug = "configuration"


class BadRequest(EventflowError):
    status = 400
    title = "Bad request"
    slug = "bad-request"


class MalformedJson(BadRequest):
    title = "Malformed JSON"
    slug = "malformed-json"


class InvalidMessage(BadRequest):
    """A Segment-compatible request whose body or a message in it cannot be taken (400: the
    status Segment's libraries treat as final, so they do not send it again)."""

    title = "Invalid message"
    slug = "invalid-message"


class MessageTooLarge(BadRequest):
    """A message of a Segment-compatible batch over the per-message limit (32 KB)."""

    title = "Message too large"
    slug = "message-too-large"


class Unauthorized(EventflowError):
    status = 401
    title = "Unauthorized"
    slug = "unauthorized"

    def __init__(self, detail: str) -> None:
        super().__init__(detail, headers={"WWW-Authenticate": "Bearer"})


class Forbidden(EventflowError):
    """A valid credential that does not cover the route (an API key of another scope)."""

    status = 403
    title = "Forbidden"
    slug = "forbidden"


class RegistrationClosed(EventflowError):
    """``EVENTFLOW_REGISTRATION=closed``: accounts are made by operators only."""

    status = 403
    title = "Forbidden"
    slug = "registration-closed"


class NotFound(EventflowError):
    status = 404
    title = "Not found"
    slug = "not-found"


class Conflict(EventflowError):
    status = 409
    title = "Conflict"
    slug = "conflict"


class PayloadTooLarge(EventflowError):
    status = 413
    title = "Payload too large"
    slug = "payload-too-large"


class UnsupportedMediaType(EventflowError):
    status = 415
    title = "Unsupported media type"
    slug = "unsupported-media-type"


class ValidationFailed(EventflowError):
    status = 422
    title = "Validation failed"
    slug = "validation"


class TooManyRequests(EventflowError):
    """A rate limit refused the request; it may be sent again after ``retry_after`` seconds.

    The ``RateLimit-*`` headers are the IETF draft's (limit, what is left, seconds to reset).
    """

    status = 429
    title = "Too many requests"
    slug = "rate-limited"

    def __init__(self, detail: str, *, retry_after: int, limit: int, remaining: int) -> None:
        super().__init__(
            detail,
            headers={
                "Retry-After": str(retry_after),
                "RateLimit-Limit": str(limit),
                "RateLimit-Remaining": str(remaining),
                "RateLimit-Reset": str(retry_after),
            },
        )


class ServiceUnavailable(EventflowError):
    """The request was not stored; the client should retry after ``retry_after`` seconds."""

    status = 503
    title = "Service unavailable"
    slug = "unavailable"

    def __init__(self, detail: str, *, retry_after: int = 1) -> None:
        super().__init__(detail, headers={"Retry-After": str(retry_after)})


class Overloaded(ServiceUnavailable):
    """More events wait than EventFlow takes on (backpressure): the same answer as any 503,
    counted apart in the metrics (``overloaded``, not ``unavailable``)."""
