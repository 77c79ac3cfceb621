"""Pure rules: password hashing, tokens, roles and scopes as the gateway applies them."""

import time

import pytest

from platform_contracts.actors import Actor, Role, normalize_scope
from platform_contracts.errors import Forbidden
from gateway.auth import Principal, decode_token, hash_password, issue_token, verify_password
from gateway.problems import ApiProblem, domain_problem

SECRET = "unit-test-secret-that-is-long-enough-for-hs256"
OPERATOR = Principal.of({"_id": "1", "username": "op", "role": "operator", "scope": "3701"})
ADMIN_USER = Principal.of({"_id": "2", "username": "admin", "role": "admin"})


def test_password_hash_is_salted_and_verifies():
    first, second = hash_password("correct horse"), hash_password("correct horse")
    assert first != second and first.startswith("$argon2id$")
    assert verify_password(first, "correct horse")
    assert not verify_password(first, "wrong horse")
    assert not verify_password(None, "correct horse")
    assert not verify_password("not a hash", "correct horse")


def test_token_round_trip():
    claims = decode_token(SECRET, issue_token(SECRET, OPERATOR, 60))
    assert (claims["sub"], claims["role"], claims["scope"]) == ("op", "operator", "3701")
    assert claims["exp"] - claims["iat"] == 60


@pytest.mark.parametrize("token", [
    issue_token(SECRET, OPERATOR, 60, now=time.time() - 120),       # expired
    issue_token("another-secret-that-is-long-enough-too", OPERATOR, 60),  # forged
    "not.a.token",
])
def test_bad_tokens_are_401(token):
    with pytest.raises(ApiProblem) as refused:
        decode_token(SECRET, token)
    assert refused.value.status == 401 and refused.value.headers == {"WWW-Authenticate": "Bearer"}


@pytest.mark.parametrize("role,scope,expected", [
    ("admin", None, None),
    ("operator", " 370113 ", "370113"),
    ("secretary", ["o2", "o1", "o1"], ["o1", "o2"]),
    ("station_manager", ["s1"], ["s1"]),
    ("worker", "m1", "m1"),
])
def test_scope_per_role(role, scope, expected):
    assert normalize_scope(role, scope) == expected


@pytest.mark.parametrize("role,scope", [
    ("admin", "3701"), ("operator", None), ("operator", "99"), ("operator", "37011"), ("operator", ["3701"]),
    ("secretary", []), ("secretary", "o1"), ("station_manager", [""]), ("worker", None), ("king", None),
])
def test_invalid_scopes(role, scope):
    with pytest.raises(ValueError):
        normalize_scope(role, scope)


def test_a_principal_hands_the_services_its_actor_as_before():
    secretary = Principal.of({"_id": "3", "username": "sec", "role": "secretary", "scope": ["o1", "o2"]})
    assert secretary.actor.to_wire() == {"username": "sec", "role": "secretary", "scope": ["o1", "o2"]}
    assert OPERATOR.actor.to_wire() == {"username": "op", "role": "operator", "scope": "3701"}
    assert ADMIN_USER.actor.to_wire() == {"username": "admin", "role": "admin", "scope": None}


def test_division_filter_narrows_operators_to_their_scope():
    assert ADMIN_USER.actor.narrow_division(None) is None
    assert ADMIN_USER.actor.narrow_division("3702") == "3702"
    assert OPERATOR.actor.narrow_division(None) == "3701"
    assert OPERATOR.actor.narrow_division("370113") == "370113"
    for outside in ("3702", "37"):
        with pytest.raises(Forbidden) as refused:
            OPERATOR.actor.narrow_division(outside)
        document = domain_problem(refused.value, lambda field: ["query", *field])
        assert document["status"] == 403
        assert [e["loc"] for e in document["errors"]] == [["query", "division"]]
    with pytest.raises(Forbidden):
        Actor("w", Role.worker, "m1").narrow_division(None)


def test_require_role():
    ADMIN_USER.actor.require(Role.admin)
    with pytest.raises(Forbidden) as refused:
        OPERATOR.actor.require(Role.admin)
    document = domain_problem(refused.value, lambda field: ["query", *field])
    assert document["status"] == 403 and document["detail"] == "the operator role may not do this"


def test_tokens_are_redacted_from_logs():
    import logging

    from gateway.logs import RedactTokens

    record = logging.LogRecord("uvicorn.error", logging.INFO, __file__, 1, '%s - "WebSocket %s" %s',
                               ("127.0.0.1:1", "/api/v1/events/ws?access_token=eyJabc.def-ghi&x=1", "[accepted]"), None)
    assert RedactTokens().filter(record)
    assert record.getMessage() == '127.0.0.1:1 - "WebSocket /api/v1/events/ws?access_token=***&x=1" [accepted]'
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "header Authorization: Bearer eyJ.a.b", (), None)
    RedactTokens().filter(record)
    assert "eyJ" not in record.getMessage()
