"""Passwords, tokens, roles and scopes. Pure functions, no I/O, so every rule is unit-tested.

Roles and what their `scope` holds (CONTRACT.md "Auth"): admin (none), operator (a division
prefix), secretary (organization ids), station_manager (station ids), worker (a member id)."""

import time
from dataclasses import dataclass
from typing import Any

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from platform_contracts.codes import normalize_division_prefix

from .problems import ApiProblem

ADMIN, OPERATOR, SECRETARY, STATION_MANAGER, WORKER = "admin", "operator", "secretary", "station_manager", "worker"
ROLES = (ADMIN, OPERATOR, SECRETARY, STATION_MANAGER, WORKER)
# Roles that see division-scoped records (units, organizations, coverage, their events).
DIVISION_ROLES = frozenset({ADMIN, OPERATOR})
JWT_ALGORITHM = "HS256"

_hasher = PasswordHasher()  # argon2id with the library's (RFC 9106 low-memory) parameters
# Verified when the username is unknown, so a login takes as long whether or not the user exists.
_DUMMY_HASH = _hasher.hash("not a password anyone has")


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


@dataclass(frozen=True)
class Principal:
    """The authenticated caller."""

    id: str
    username: str
    role: str
    scope: Any = None

    def actor(self) -> dict:
        """Who is asking, in the shape every service's RPC expects."""
        return {"username": self.username, "role": self.role, "scope": self.scope}


def normalize_scope(role: str, scope: Any) -> Any:
    """The scope a user of `role` may hold, normalised; ValueError saying what is wrong."""
    if role == ADMIN:
        if scope not in (None, "", []):
            raise ValueError("an admin has no scope")
        return None
    if role in (OPERATOR, WORKER):
        if not isinstance(scope, str) or not scope.strip():
            raise ValueError("an operator's scope is a division prefix" if role == OPERATOR
                             else "a worker's scope is their member id")
        return normalize_division_prefix(scope) if role == OPERATOR else scope.strip()
    if role in (SECRETARY, STATION_MANAGER):
        what = "organization" if role == SECRETARY else "station"
        if not isinstance(scope, list) or not scope or not all(isinstance(i, str) and i.strip() for i in scope):
            raise ValueError(f"a {role}'s scope is a non-empty list of {what} ids")
        return sorted({i.strip() for i in scope})
    raise ValueError(f"unknown role {role!r}")


def issue_token(secret: str, principal: Principal, ttl_seconds: int, now: float | None = None) -> str:
    issued = int(time.time() if now is None else now)
    claims = {"sub": principal.username, "uid": principal.id, "role": principal.role, "scope": principal.scope,
              "iat": issued, "exp": issued + ttl_seconds}
    return jwt.encode(claims, secret, algorithm=JWT_ALGORITHM)


def decode_token(secret: str, token: str) -> dict:
    """The token's claims; ApiProblem 401 if it is malformed, forged or expired."""
    try:
        return jwt.decode(token, secret, algorithms=[JWT_ALGORITHM], options={"require": ["sub", "exp"]})
    except jwt.ExpiredSignatureError:
        raise unauthorized("the access token has expired") from None
    except jwt.InvalidTokenError:
        raise unauthorized("the access token is not valid") from None


def unauthorized(detail: str) -> ApiProblem:
    return ApiProblem.of(401, detail, headers={"WWW-Authenticate": "Bearer"})


def require_role(principal: Principal, roles: frozenset[str] | set[str]) -> None:
    if principal.role not in roles:
        raise ApiProblem.of(403, f"the {principal.role} role may not do this")


def division_filter(principal: Principal, requested: str | None,
                    loc: tuple | list = ("query", "division")) -> str | None:
    """The division filter to apply for this caller: an operator is narrowed to their scope
    and refused a division outside it (a 403 naming `loc`); an admin gets what was asked for."""
    require_role(principal, DIVISION_ROLES)
    if principal.role == ADMIN:
        return requested
    scope = principal.scope
    if requested is None:
        return scope
    if not requested.startswith(scope):
        detail = f"division {requested} is outside your scope {scope}"
        raise ApiProblem.of(403, detail, [{"loc": list(loc), "msg": detail}])
    return requested
