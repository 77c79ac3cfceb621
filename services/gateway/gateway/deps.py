"""FastAPI dependencies: the caller, role checks, idempotency and the RPC client."""

import uuid
from typing import Annotated

from fastapi import Depends, Header, Path, Query, Request
from starlette.requests import HTTPConnection
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from platform_contracts.actors import DIVISION_ROLES, Role

from .auth import Principal, decode_token, tokens_revoked, unauthorized
from .idempotency import request_fingerprint
from .rpc import RpcClient

_bearer = HTTPBearer(auto_error=False, description="an access token from POST /api/v1/auth/token")


async def authenticate(connection: HTTPConnection, token: str | None) -> Principal:
    """The active user a token belongs to, if the token is not older than the account's last
    password change or deactivation. Role and scope are read from the account, not the token, so
    those changes apply at once through this replica, and within USER_CACHE_SECONDS through
    another."""
    if not token:
        raise unauthorized("an access token is required (Authorization: Bearer <token>)")
    claims = decode_token(connection.app.state.settings.jwt_secret, token)
    user = await connection.app.state.users.cached_by_username(claims["sub"])
    if user is None or not user.get("active", False):
        raise unauthorized("the account is unknown or inactive")
    if tokens_revoked(claims, user):
        raise unauthorized("the access token was revoked by a password change or deactivation: log in again")
    return Principal.of(user)


async def current_principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    return await authenticate(request, credentials.credentials if credentials else None)


async def stream_principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    access_token: Annotated[str | None, Query(description="for EventSource, which cannot set headers")] = None,
) -> Principal:
    return await authenticate(request, credentials.credentials if credentials else access_token)


def roles_allowed(*roles: Role):
    """A dependency giving the caller when their role is one of `roles`; 403 for the others."""
    async def caller_in_role(principal: Annotated[Principal, Depends(current_principal)]) -> Principal:
        principal.actor.require(*roles)
        return principal
    return caller_in_role


async def command_id(
    request: Request,
    principal: Annotated[Principal, Depends(current_principal)],
    idempotency_key: Annotated[str | None, Header(max_length=200, description=(
        "repeat a write with the same key to get its first result instead of a second write; "
        "the same key on a different request (another path or body) is refused with 422"))] = None,
) -> str | dict:
    """Makes a write idempotent: the service returns the first result for a repeated key, and
    refuses a key reused for a different request, which it tells by the request's fingerprint."""
    if not idempotency_key:
        return uuid.uuid4().hex
    return {"key": f"{principal.actor.username}:{idempotency_key}", "request": await request_fingerprint(request)}


def rpc_client(request: Request) -> RpcClient:
    return request.app.state.rpc


# Units, organizations, instructors, coverage: the roles that see division-scoped records.
Caller = Annotated[Principal, Depends(roles_allowed(*DIVISION_ROLES))]
Admin = Annotated[Principal, Depends(roles_allowed(Role.admin))]
# Members and transfers: only the roles with any say over members are let through. Scope is the
# member service's to judge, on the records themselves (an operator by division, a secretary by
# organization, a worker as the member).
MemberCaller = Annotated[Principal, Depends(roles_allowed(Role.admin, Role.operator, Role.secretary, Role.worker))]
CommandId = Annotated[str | dict, Depends(command_id)]
Rpc = Annotated[RpcClient, Depends(rpc_client)]
Limit = Annotated[int, Query(ge=1, le=500, description="page size")]
Cursor = Annotated[str | None, Query(max_length=500, description="next_cursor of the previous page")]
EntityId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]

