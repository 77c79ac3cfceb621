"""The API keys of Open311 applications (CONTRACT.md: other interfaces), admins only: issue one
(the key is shown in the answer, once; only its hash is kept), list them, revoke one (refused
from the next request on, by every replica)."""

from typing import Annotated

from fastapi import APIRouter, Depends, Request

from ..deps import Admin, Cursor, EntityId, Limit
from ..problems import PROBLEM_MEDIA_TYPE, ApiProblem
from ..schemas import Page
from .store import ApiKey, CreateApiKey, IssuedApiKey, Open311Store

router = APIRouter(prefix="/api/v1/open311/api-keys", tags=["open311"])


def store(request: Request) -> Open311Store:
    return Open311Store(request.app.state.db)


Store = Annotated[Open311Store, Depends(store)]


def _problems(described: dict[int, str]) -> dict:
    return {status: {"description": text, "content": {PROBLEM_MEDIA_TYPE: {}}} for status, text in described.items()}


@router.post("", status_code=201, response_model=IssuedApiKey,
             summary="Issue an API key for an Open311 application (admin); the key is shown this once",
             responses=_problems({401: "no valid access token", 403: "the caller is not an admin",
                                  422: "`name` is missing or invalid"}))
async def issue_api_key(body: CreateApiKey, admin: Admin, keys: Store):
    return await keys.issue(body.name, admin.actor.username)


@router.get("", response_model=Page[ApiKey], summary="The API keys issued, newest first, revoked ones too (admin)",
            responses=_problems({401: "no valid access token", 403: "the caller is not an admin"}))
async def list_api_keys(admin: Admin, keys: Store, limit: Limit = 50, cursor: Cursor = None):
    items, next_cursor = await keys.list(limit, cursor)
    return {"items": items, "next_cursor": next_cursor}


@router.delete("/{key_id}", response_model=ApiKey,
               summary="Revoke an API key (admin): refused from the next request on; revoking again changes nothing",
               responses=_problems({401: "no valid access token", 403: "the caller is not an admin",
                                    404: "no API key has this id"}))
async def revoke_api_key(key_id: EntityId, admin: Admin, keys: Store):
    revoked = await keys.revoke(key_id, admin.actor.username)
    if revoked is None:
        raise ApiProblem.of(404, f"API key {key_id} does not exist")
    return revoked
