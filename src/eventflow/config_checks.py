"""Checks of setting values, shared by ``config.py`` and the modules that use the settings."""

from __future__ import annotations

import ipaddress
import re
import secrets
from pathlib import Path

from limits import RateLimitItem, parse_many
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from eventflow.errors import ConfigurationError
from eventflow.private_files import create_once, private_dir, tighten

_WEAK_SECRETS = frozenset(
    {"secret", "changeme", "change-me", "changethis", "password", "jwt-secret", "eventflow"}
)
MIN_SECRET_LENGTH = 32
#: What EVENTFLOW_DATABASE_URL may start with, and the SQLAlchemy dialect+driver it means.
_DATABASE_DRIVERS = {
    "postgresql": "postgresql+asyncpg",
    "postgres": "postgresql+asyncpg",
    "postgresql+asyncpg": "postgresql+asyncpg",
    "sqlite": "sqlite+aiosqlite",
    "sqlite+aiosqlite": "sqlite+aiosqlite",
}
_REDIS_SCHEMES = frozenset({"redis", "rediss", "unix"})
# ":" is reserved as the separator inside Redis keys and hash tags, so "{a:1}" (partition 1 of
# "a") can never be the tag of a deployment named "a:1"; braces would break the hash tag.
_REDIS_PREFIX = re.compile(r"[A-Za-z0-9_.-]{1,64}")


def check_redis_prefix(prefix: str) -> None:
    """Refuse prefixes that would break the hash tag or collide with another's partitions."""
    if not _REDIS_PREFIX.fullmatch(prefix):
        raise ConfigurationError(
            f"EVENTFLOW_REDIS_PREFIX={prefix!r} is not usable: use 1 to 64 letters, digits, "
            "'_', '.' or '-'"
        )


_HEADER_TOKEN = re.compile(r"[\x21-\x7e]{16,512}")


def check_header_token(name: str, token: str) -> None:
    """A token that clients send in an ``Authorization`` header: visible ASCII, 16+ characters."""
    if not _HEADER_TOKEN.fullmatch(token):
        raise ConfigurationError(
            f"{name} must be 16 to 512 visible ASCII characters (no spaces), for example "
            "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`"
        )


def database_url(value: str | None) -> str | None:
    """The URL with its asyncio driver (``postgresql://`` → ``postgresql+asyncpg://``), None
    for SQLite in the data directory; anything EventFlow cannot open is refused now, never with
    the URL in the message (it may hold a password)."""
    if value is None or not value.strip():
        return None
    scheme, sep, rest = value.strip().partition("://")
    driver = _DATABASE_DRIVERS.get(scheme.lower()) if sep else None
    if driver is None:
        shown = f"the scheme {scheme!r} is" if sep else "it is not a URL:"
        raise ConfigurationError(
            f"EVENTFLOW_DATABASE_URL: {shown} not supported; use "
            "postgresql://user:password@host:port/database, or leave it unset for SQLite in "
            "EVENTFLOW_DATA_DIR"
        )
    url = f"{driver}://{rest}"
    try:
        make_url(url)  # a port that is not a number raises too
    except (ArgumentError, ValueError):
        raise ConfigurationError(
            "EVENTFLOW_DATABASE_URL is not a valid URL: write "
            "postgresql://user:password@host:port/database (percent-encode special characters "
            "in the password)"
        ) from None
    return url


def redis_url(value: str | None) -> str | None:
    """The Redis URL, None when unset; a scheme redis-py cannot open is refused now."""
    if value is None or not value.strip():
        return None
    scheme, sep, _ = value.strip().partition("://")
    if not sep or scheme.lower() not in _REDIS_SCHEMES:
        raise ConfigurationError(
            "EVENTFLOW_REDIS_URL: use redis://host:port/db (or rediss:// with TLS, unix:// for "
            "a socket), or leave it unset for the sql broker"
        )
    return value.strip()


def parse_rate(name: str, value: str) -> RateLimitItem | None:
    """A rate limit setting as the ``limits`` library reads it (``10/minute``, ``5/10 seconds``);
    None when empty (no limit)."""
    if not value.strip():
        return None
    try:
        items = parse_many(value.strip())
    except ValueError:
        items = []
    if len(items) != 1 or items[0].amount < 1:
        raise ConfigurationError(
            f"{name}={value!r} is not a rate limit: write COUNT/PERIOD, for example 10/minute, "
            "100/hour or 5/10 seconds (or leave it empty for no limit)"
        )
    return items[0]


def proxy_networks(value: str) -> list[str]:
    """Each trusted proxy in canonical form; uvicorn would silently ignore a malformed one."""
    networks = []
    for entry in (part.strip() for part in value.split(",")):
        if not entry:
            continue
        try:
            network = ipaddress.ip_network(entry, strict=False)
        except ValueError:
            raise ConfigurationError(
                f"EVENTFLOW_TRUSTED_PROXIES: {entry!r} is not an IP address or a CIDR network "
                "(for example 10.0.0.5 or 10.0.0.0/8)"
            ) from None
        single = network.prefixlen == network.max_prefixlen
        networks.append(str(network.network_address) if single else str(network))
    return networks


def kept_secret(path: Path) -> str:
    """The secret kept in ``path``, generated there once (its folder private) if missing."""
    try:
        private_dir(path.parent)
        if not path.exists():
            # Processes starting together each try; one file wins, and all read it.
            create_once(path, secrets.token_urlsafe(48).encode())
        tighten(path)
    except OSError as exc:
        raise ConfigurationError(
            f"cannot keep the JWT secret in {path}: {exc.strerror or exc} "
            "(or set EVENTFLOW_JWT_SECRET)"
        ) from exc
    return _read_secret(path)


def _read_secret(path: Path) -> str:
    """The secret kept in ``path``, refused unless it is as long as EventFlow demands."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigurationError(f"cannot read the JWT secret {path}: {exc.strerror}") from exc
    try:
        secret = raw.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise ConfigurationError(_bad_secret_file(path, "is not UTF-8 text")) from None
    if len(secret.encode()) < MIN_SECRET_LENGTH:
        raise ConfigurationError(_bad_secret_file(path, f"holds {len(secret.encode())} bytes"))
    return secret


def _bad_secret_file(path: Path, what: str) -> str:
    return (
        f"the JWT secret file {path} {what}; a secret needs at least {MIN_SECRET_LENGTH} bytes "
        "of text. Delete the file and a new secret is generated at the next start (everyone "
        "signs in again), or set EVENTFLOW_JWT_SECRET"
    )


def check_secret_strength(secret: str) -> None:
    if secret.strip().lower() in _WEAK_SECRETS or len(secret) < MIN_SECRET_LENGTH:
        raise ConfigurationError(
            f"EVENTFLOW_JWT_SECRET is too weak: use a random string of at least "
            f"{MIN_SECRET_LENGTH} characters"
        )
