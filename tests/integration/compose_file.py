"""docker-compose.yml as Compose reads it: YAML merge keys, then ``${VAR…}`` from an .env file."""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from testkit import REPO_ROOT

COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
ENV_EXAMPLE = REPO_ROOT / ".env.example"
#: The secrets .env.example asks for.
REQUIRED = ("POSTGRES_PASSWORD", "REDIS_PASSWORD", "EVENTFLOW_JWT_SECRET")
#: ``${NAME}``, ``${NAME:-default}``, ``${NAME-default}``, ``${NAME:?error}``, ``${NAME?error}``,
#: and ``$$`` (a dollar sign): the Compose specification's interpolation, less ``:+`` forms.
_REFERENCE = re.compile(
    r"\$\$|\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}"
)


def raw() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text())
    return data


def references(text: str) -> dict[str, str | None]:
    """Each ``${NAME…}`` in ``text`` and its default (None without ``-`` form)."""
    found: dict[str, str | None] = {}
    for match in _REFERENCE.finditer(text):
        if match["name"] is not None:
            default = match["arg"] if match["op"] in (":-", "-") else None
            found.setdefault(match["name"], default)
    return found


class MissingVariable(Exception):
    pass


def _substitute(text: str, env: Mapping[str, str]) -> str:
    def value(match: re.Match[str]) -> str:
        if match[0] == "$$":
            return "$"
        name, op, arg = match["name"], match["op"], match["arg"]
        current = env.get(name)
        empty = current is None or (current == "" and op is not None and op.startswith(":"))
        if op in (":?", "?") and (current is None if op == "?" else empty):
            raise MissingVariable(f"{name}: {arg}")
        if op in (":-", "-") and (current is None if op == "-" else empty):
            return arg
        return current or ""

    if "$" in _REFERENCE.sub("", text):
        raise AssertionError(f"a form of interpolation these tests do not know: {text!r}")
    return _REFERENCE.sub(value, text)


def interpolate(node: Any, env: Mapping[str, str]) -> Any:
    if isinstance(node, str):
        return _substitute(node, env)
    if isinstance(node, list):
        return [interpolate(item, env) for item in node]
    if isinstance(node, dict):
        return {key: interpolate(value, env) for key, value in node.items()}
    return node


def sample_env() -> dict[str, str]:
    """An .env made as .env.example says: only the required secrets, each fresh."""
    return {name: secrets.token_urlsafe(48) for name in REQUIRED}


def write_env(path: Path, env: Mapping[str, str]) -> Path:
    path.write_text("".join(f"{name}={value}\n" for name, value in env.items()))
    return path


def services(env: Mapping[str, str]) -> dict[str, Any]:
    """The services, interpolated with ``env``."""
    found: dict[str, Any] = interpolate(raw(), env)["services"]
    return found


def eventflow_services(env: Mapping[str, str]) -> dict[str, Any]:
    """The services that run the EventFlow image (the one ``api`` builds)."""
    every = services(env)
    image = every["api"]["image"]
    return {name: s for name, s in every.items() if s.get("image") == image}


def seconds(duration: str) -> float:
    """A Compose duration (``1m30s``, ``45s``, ``500ms``) in seconds."""
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001, "us": 1e-6}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|us|h|m|s)", duration)
    assert parts and "".join(n + u for n, u in parts) == duration, duration
    return sum(float(n) * units[u] for n, u in parts)
