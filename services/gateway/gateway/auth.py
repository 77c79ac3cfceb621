"""Passwords, tokens and the authenticated caller. Pure functions, no I/O, so every rule is
unit-tested. Roles, scopes and what they allow are platform_contracts.actors': the gateway and
the services judge a caller by the same rules."""

import time
from dataclasses import dataclass

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from platform_contracts.actors import Actor

from .problems import ApiProblem

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
    """The authenticated user: their account's id, and the actor they are to the services (every
    RPC carries `actor.to_wire()`)."""

    id: str
    actor: Actor

    @classmethod
    def of(cls, account: dict) -> "Principal":
        return cls(id=account["_id"], actor=Actor.parse({k: account.get(k) for k in ("username", "role", "scope")}))


def issue_token(secret: str, principal: Principal, ttl_seconds: int, now: float | None = None,
                generation: int = 0) -> str:
    """`generation` is the account's token generation (see tokens_revoked)."""
    issued = int(time.time() if now is None else now)
    actor = principal.actor.to_wire()
    claims = {"sub": actor["username"], "uid": principal.id, "role": actor["role"], "scope": actor["scope"],
              "iat": issued, "exp": issued + ttl_seconds, "gen": generation}
    return jwt.encode(claims, secret, algorithm=JWT_ALGORITHM)


def decode_token(secret: str, token: str) -> dict:
    """The token's claims; ApiProblem 401 if it is malformed, forged or expired."""
    try:
        return jwt.decode(token, secret, algorithms=[JWT_ALGORITHM], options={"require": ["sub", "exp"]})
    except jwt.ExpiredSignatureError:
        raise unauthorized("the access token has expired") from None
    except jwt.InvalidTokenError:
        raise unauthorized("the access token is not valid") from None


def tokens_revoked(claims: dict, account: dict) -> bool:
    """Whether the token was issued before the account's last password change or deactivation:
    each bumps the account's `token_generation`, which its tokens carry as `gen`. (A counter, not
    a time, so that replicas' clocks and a login in the same second do not matter.)"""
    return claims.get("gen", 0) != account.get("token_generation", 0)


def unauthorized(detail: str) -> ApiProblem:
    return ApiProblem.of(401, detail, headers={"WWW-Authenticate": "Bearer"})
