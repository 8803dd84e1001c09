"""Problem types: every slug in the source is described once, and ``/problems/<slug>`` answers."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import eventflow
import eventflow.api.app
import eventflow.cli
import eventflow.http_protocol
import eventflow.serve
from eventflow.api.problem_types import PROBLEM_TYPES
from eventflow.api.problems import problem_response
from eventflow.errors import EventflowError

SOURCE = Path(eventflow.__file__).parent
# Functions that take a slug as a positional argument, and its index.
_POSITIONAL_SLUG = {"_refuse": 3}


def _slugs_in(tree: ast.AST) -> Iterator[str]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            for keyword in node.keywords:
                if keyword.arg == "slug" and isinstance(keyword.value, ast.Constant):
                    yield str(keyword.value.value)
            name = getattr(node.func, "attr", getattr(node.func, "id", None))
            index = _POSITIONAL_SLUG.get(str(name))
            if index is not None and len(node.args) > index:
                argument = node.args[index]
                assert isinstance(argument, ast.Constant), ast.unparse(node)
                yield str(argument.value)
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            named_slug = any(isinstance(t, ast.Name) and t.id == "slug" for t in targets)
            if named_slug and isinstance(node.value, ast.Constant):
                yield str(node.value.value)


def _source_slugs() -> dict[str, str]:
    found: dict[str, str] = {}
    for path in sorted(SOURCE.rglob("*.py")):
        for slug in _slugs_in(ast.parse(path.read_text(), str(path))):
            found.setdefault(slug, str(path.relative_to(SOURCE)))
    return found


def _error_classes(base: type[EventflowError] = EventflowError) -> Iterator[type[EventflowError]]:
    yield base
    for subclass in base.__subclasses__():
        yield from _error_classes(subclass)


def test_the_source_scan_finds_slugs_of_every_kind() -> None:
    found = _source_slugs()
    # A class attribute, a keyword argument, and a positional one.
    assert found["not-found"] == "errors.py"
    assert found["too-many-streams"].startswith("api/")
    assert found["headers-too-large"] == "http_protocol.py"


def test_every_slug_in_the_source_is_described_and_nothing_else() -> None:
    found = _source_slugs()
    missing = {slug: where for slug, where in found.items() if slug not in PROBLEM_TYPES}
    assert not missing, f"add these to eventflow/api/problem_types.py: {missing}"
    assert set(PROBLEM_TYPES) == set(found), "described, but used nowhere"


def test_error_classes_and_their_types_agree() -> None:
    for cls in _error_classes():
        kind = PROBLEM_TYPES[cls.slug]
        assert (kind.title, kind.status) == (cls.title, cls.status), cls.__name__


def test_a_problem_type_is_a_path_on_this_server() -> None:
    problem = problem_response(422, "Validation failed", "x", slug="validation")
    assert bytes(problem.body).startswith(b'{"type":"/problems/validation"')
    plain = problem_response(404, "Not Found", "x")
    assert bytes(plain.body).startswith(b'{"type":"about:blank"')


@pytest.mark.parametrize("slug", sorted(PROBLEM_TYPES))
async def test_each_type_is_described_in_json(client: httpx.AsyncClient, slug: str) -> None:
    response = await client.get(f"/problems/{slug}", headers={"Accept": "application/json"})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.headers["vary"] == "Accept"
    body = response.json()
    kind = PROBLEM_TYPES[slug]
    assert body == {
        "type": f"/problems/{slug}",
        "title": kind.title,
        "status": kind.status,
        "description": kind.description,
    }


async def test_a_browser_gets_a_page_that_runs_nothing(client: httpx.AsyncClient) -> None:
    response = await client.get(
        "/problems/validation", headers={"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert "<h1>422 Validation failed</h1>" in response.text
    assert "<code>errors</code>" in response.text
    assert "<script" not in response.text
    policy = response.headers["content-security-policy"]
    assert policy.startswith("default-src 'none'")
    assert response.headers["x-content-type-options"] == "nosniff"


async def test_an_unknown_type_is_a_404_problem(client: httpx.AsyncClient) -> None:
    response = await client.get("/problems/no-such-thing")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["type"] == "/problems/not-found"
    assert "no-such-thing" in body["detail"]
