"""Tokens do not outlive what they stood for (issue 12, finding 3): a password change or a
deactivation revokes the tokens issued before it, and a restart does not undo what an admin
did to the bootstrap `admin` account; `python -m gateway reset-admin-password` does, on purpose."""

import os
import subprocess
import sys
import uuid

import pytest
from pymongo import AsyncMongoClient

from gateway.auth import verify_password
from gateway.users import BOOTSTRAP_ADMIN, UserRepository

pytestmark = pytest.mark.timeout(60)


def user_id_of(admin, username: str) -> str:
    users = admin.get("/api/v1/users", params={"limit": 500}).json()["items"]
    return next(u["id"] for u in users if u["username"] == username)


def me_status(gateway, token: str) -> int:
    with gateway.client(token) as client:
        return client.get("/api/v1/me").status_code


def test_a_password_change_revokes_the_tokens_issued_before_it(gateway, admin, make_user):
    username, old_token = make_user("operator", "3701")
    assert me_status(gateway, old_token) == 200
    new_password = f"pw-{uuid.uuid4().hex}"
    assert admin.patch(f"/api/v1/users/{user_id_of(admin, username)}",
                       json={"password": new_password}).status_code == 200
    assert me_status(gateway, old_token) == 401
    assert me_status(gateway, gateway.token(username, new_password)) == 200  # at once, even in the same second


def test_a_deactivation_revokes_the_tokens_issued_before_it_even_after_reactivation(gateway, admin, make_user):
    username, old_token = make_user("operator", "3701")
    user_id = user_id_of(admin, username)
    assert admin.patch(f"/api/v1/users/{user_id}", json={"active": False}).status_code == 200
    assert admin.patch(f"/api/v1/users/{user_id}", json={"active": True}).status_code == 200
    assert me_status(gateway, old_token) == 401


def test_a_role_or_scope_change_keeps_the_tokens(gateway, admin, make_user):
    username, token = make_user("operator", "3701")
    assert admin.patch(f"/api/v1/users/{user_id_of(admin, username)}", json={"scope": "370113"}).status_code == 200
    assert me_status(gateway, token) == 200


@pytest.fixture
async def db(mongodb_uri):
    client = AsyncMongoClient(mongodb_uri, tz_aware=True)
    name = f"gateway_admin_{uuid.uuid4().hex[:8]}"
    try:
        yield client[name]
    finally:
        await client.close()


async def test_a_restart_does_not_reset_a_rotated_admin_password(db):
    users = UserRepository(db)
    await users.bootstrap_admin("the-first-password")
    admin = await users.by_username(BOOTSTRAP_ADMIN)
    await users.update(admin["_id"], {"password": "a-rotated-password"})
    await UserRepository(db).bootstrap_admin("the-first-password")  # a restart, ADMIN_PASSWORD unchanged
    admin = await users.by_username(BOOTSTRAP_ADMIN)
    assert verify_password(admin["password_hash"], "a-rotated-password")
    assert not verify_password(admin["password_hash"], "the-first-password")


async def test_a_restart_does_not_reactivate_a_deactivated_admin(db):
    users = UserRepository(db)
    await users.bootstrap_admin("the-first-password")
    admin = await users.by_username(BOOTSTRAP_ADMIN)
    await users.update(admin["_id"], {"active": False, "role": "operator", "scope": "3701"})
    await UserRepository(db).bootstrap_admin("the-first-password")
    admin = await users.by_username(BOOTSTRAP_ADMIN)
    assert admin["active"] is False and admin["role"] == "operator"


def reset_admin_password(mongodb_uri: str, database: str, stdin: str, **env) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if k != "ADMIN_PASSWORD"}
    environment.update(MONGODB_URI=mongodb_uri, MONGODB_GATEWAY_DB=database, **env)
    return subprocess.run([sys.executable, "-m", "gateway", "reset-admin-password"], input=stdin, env=environment,
                          capture_output=True, text=True, timeout=30)


async def test_reset_admin_password_restores_a_deactivated_admin_and_revokes_its_tokens(db, mongodb_uri):
    users = UserRepository(db)
    await users.bootstrap_admin("the-first-password")
    admin = await users.by_username(BOOTSTRAP_ADMIN)
    await users.update(admin["_id"], {"active": False})
    generation = (await users.by_username(BOOTSTRAP_ADMIN))["token_generation"]

    done = reset_admin_password(mongodb_uri, db.name, "the-operators-new-password\n")
    assert done.returncode == 0, done.stderr
    admin = await users.by_username(BOOTSTRAP_ADMIN)
    assert admin["active"] is True and admin["role"] == "admin" and admin["scope"] is None
    assert verify_password(admin["password_hash"], "the-operators-new-password")
    assert admin["token_generation"] > generation
    assert "the-operators-new-password" not in done.stdout + done.stderr

    from_env = reset_admin_password(mongodb_uri, db.name, "", ADMIN_PASSWORD="a-password-from-the-env")
    assert from_env.returncode == 0, from_env.stderr
    assert verify_password((await users.by_username(BOOTSTRAP_ADMIN))["password_hash"], "a-password-from-the-env")


async def test_reset_admin_password_refuses_a_short_password(db, mongodb_uri):
    refused = reset_admin_password(mongodb_uri, db.name, "short\n")
    assert refused.returncode == 2 and "at least 8" in refused.stderr
    assert await UserRepository(db).by_username(BOOTSTRAP_ADMIN) is None
