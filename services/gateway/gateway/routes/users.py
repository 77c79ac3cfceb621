from typing import Annotated

from fastapi import APIRouter, Depends, Request

from platform_contracts.actors import Role, normalize_scope

from . import API
from ..auth import Principal, issue_token, unauthorized
from ..deps import Admin, CommandId, Cursor, EntityId, Limit, current_principal
from ..problems import ApiProblem
from ..schemas import CreateUser, Page, Token, TokenRequest, UpdateUser, User, changed_fields
from ..users import public

router = APIRouter(prefix=API, tags=["users"])


def _problem(description: str, retry_after: bool = False) -> dict:
    response = {"description": description, "content": {"application/problem+json": {}}}
    if retry_after:
        response["headers"] = {"Retry-After": {"description": "seconds to wait", "schema": {"type": "integer"}}}
    return response


@router.post("/auth/token", response_model=Token, tags=["auth"], summary="Exchange a username and password for a token",
             responses={
                 401: _problem("wrong username or password, or the account is inactive"),
                 429: _problem("too many failed logins for this username or client address (LOGIN_MAX_FAILURES_*"
                               " within LOGIN_FAILURE_WINDOW_SECONDS): locked until Retry-After", retry_after=True),
                 503: _problem("every password-hashing turn of this replica is taken", retry_after=True),
             })
async def issue_access_token(body: TokenRequest, request: Request):
    state = request.app.state
    guard = state.login_guard
    address = request.client.host if request.client else None
    await guard.refuse_if_locked(body.username, address)
    async with guard.hashing_slot():
        await guard.refuse_if_locked(body.username, address)  # failures counted while this one waited
        user = await state.users.by_username(body.username)
        valid = await guard.verify(user and user["password_hash"], body.password)
        if not valid or not user.get("active", False):
            await guard.record_failure(body.username, address)
            raise unauthorized("wrong username or password, or the account is inactive")
    await guard.record_success(body.username)
    principal = Principal.of(user)
    ttl = state.settings.access_token_ttl_seconds
    token = issue_token(state.settings.jwt_secret, principal, ttl, generation=user.get("token_generation", 0))
    return Token(access_token=token, expires_in=ttl)


@router.get("/me", response_model=User, summary="The account the token belongs to")
async def me(principal: Annotated[Principal, Depends(current_principal)], request: Request):
    return public(await request.app.state.users.by_id(principal.id))


@router.post("/users", status_code=201, response_model=User, summary="Create an account (admin)")
async def create_user(body: CreateUser, admin: Admin, command_id: CommandId, request: Request):
    scope = checked_scope(body.role, body.scope)
    key = command_id["key"] if isinstance(command_id, dict) else None  # a dict only with an Idempotency-Key
    return public(await request.app.state.users.create(body.username, body.password, body.role, scope,
                                                       idempotency_key=key))


@router.get("/users", response_model=Page[User], summary="List accounts (admin)")
async def list_users(admin: Admin, request: Request, limit: Limit = 50, cursor: Cursor = None):
    docs, next_cursor = await request.app.state.users.page(limit, cursor)
    return {"items": [public(d) for d in docs], "next_cursor": next_cursor}


@router.get("/users/{user_id}", response_model=User, summary="Get an account (admin)")
async def get_user(user_id: EntityId, admin: Admin, request: Request):
    doc = await request.app.state.users.by_id(user_id)
    if doc is None:
        raise ApiProblem.of(404, f"user {user_id} does not exist")
    return public(doc)


@router.patch("/users/{user_id}", response_model=User,
               summary="Change an account's role, scope, status or password (admin)")
async def update_user(user_id: EntityId, body: UpdateUser, admin: Admin, request: Request):
    users = request.app.state.users
    changes = changed_fields(body)
    current = await users.by_id(user_id)
    if current is None:
        raise ApiProblem.of(404, f"user {user_id} does not exist")
    if "role" in changes or "scope" in changes:
        role = changes.get("role") or current["role"]
        changes["role"] = role
        changes["scope"] = checked_scope(role, changes["scope"] if "scope" in changes else current.get("scope"))
    demoted = changes.get("active") is False or changes.get("role", Role.admin) != Role.admin
    if current["username"] == admin.actor.username and demoted:
        raise ApiProblem.of(409, "an admin cannot deactivate or demote their own account")
    return public(await users.update(user_id, changes))


def checked_scope(role: str, scope):
    try:
        return normalize_scope(role, scope)
    except ValueError as exc:
        raise ApiProblem.invalid(["body", "scope"], str(exc)) from None
