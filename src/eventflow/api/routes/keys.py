"""API keys: create one (shown once), list the account's, revoke one. A user's token only."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from eventflow.api.body import read_body, validated
from eventflow.api.deps import ServicesDep, UserId
from eventflow.api.openapi import errors
from eventflow.api.schemas import KeyIn, KeyList, KeyOut, NewKeyOut
from eventflow.auth.keys import MAX_ACTIVE_KEYS, new_key
from eventflow.clock import iso, now_ms
from eventflow.db.keys import TooManyKeys
from eventflow.db.rows import KeyRow
from eventflow.errors import Conflict, NotFound
from eventflow.ids import new_id, parse_id
from eventflow.ingest.validation import check_json_content_type, parse_json_object

router = APIRouter(prefix="/keys", tags=["keys"])

_MAX_BODY = 4 * 1024


def _key_out(row: KeyRow) -> KeyOut:
    return KeyOut(
        id=row.id,
        name=row.name,
        scope=row.scope,
        prefix=row.prefix,
        created_at=iso(row.created_at) or "",
        last_used_at=iso(row.last_used_at),
    )


@router.post(
    "",
    status_code=201,
    response_model=NewKeyOut,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": KeyIn.model_json_schema()}},
        }
    },
    responses={
        201: {
            "links": {
                "RevokeKey": {
                    "operationId": "revoke_key",
                    "parameters": {"key_id": "$response.body#/id"},
                }
            }
        },
        **errors(409),
    },
)
async def create_key(request: Request, services: ServicesDep, user_id: UserId) -> NewKeyOut:
    """Create an API key of scope `ingest` or `read`. The key is in this answer only: only its
    hash is stored, so keep it now. An account may have 100 active keys."""
    check_json_content_type(request.headers.get("content-type"))
    form = validated(KeyIn, parse_json_object(await read_body(request, _MAX_BODY)))
    made = new_key()
    row = KeyRow(
        id=new_id(),
        user_id=user_id,
        name=form.name,
        scope=form.scope,
        prefix=made.prefix,
        hash=made.hash,
        created_at=now_ms(),
    )
    try:
        await services.keys.create(row, MAX_ACTIVE_KEYS)
    except TooManyKeys as exc:
        raise Conflict(
            f"This account already has {MAX_ACTIVE_KEYS} active API keys; revoke one first"
        ) from exc
    return NewKeyOut(
        id=row.id,
        name=row.name,
        scope=form.scope,
        prefix=row.prefix,
        key=made.key,
        created_at=iso(row.created_at) or "",
    )


@router.get("", response_model=KeyList)
async def list_keys(services: ServicesDep, user_id: UserId) -> KeyList:
    """Your active API keys, newest first: never the keys themselves. Revoked keys are gone."""
    return KeyList(items=[_key_out(row) for row in await services.keys.active(user_id)])


@router.delete(
    "/{key_id}",
    status_code=204,
    response_class=Response,
    responses={
        204: {"description": "Revoked: the key stops working everywhere within a second"},
        404: {"description": "No active key with this id in this account"},
    },
)
async def revoke_key(key_id: str, services: ServicesDep, user_id: UserId) -> Response:
    """Revoke an API key: refused at once by this server, within a second by every other."""
    canonical = parse_id(key_id)
    if canonical is None or not await services.keys.revoke(user_id, canonical, now_ms()):
        raise NotFound(f"No active API key {key_id!r} exists for this account")
    services.credentials.keys.revoke(canonical)
    return Response(status_code=204)
