"""Fixtures of the gateway's integration tests: a fake organization service (nameko) on a
vhost of the gateway tests' own, and the gateway started as production starts it (`python -m
gateway`) on a free port. SecantusDB comes from the test kit's plugin (platform_testing)."""

import os
import pathlib
import subprocess
import sys
import uuid

import httpx
import pytest

from platform_testing import queue_consumers, wait_for
from platform_testing.actors import actor_env
from platform_testing.plugin import own_vhost_and_services

HERE = pathlib.Path(__file__).parent
sys.path.insert(0, str(HERE))  # for gateway_test_support (pytest runs with --import-mode=importlib)

from gateway_test_support import ADMIN_PASSWORD, start_gateway  # noqa: E402

# Not the session's vhost: the fake organization service lives as long as the session and
# would answer the real services' tests their calls to `organization`.
amqp_uri, start_session_service, cluster_rpc = own_vhost_and_services()


@pytest.fixture(scope="session")
def fake_organization(amqp_uri, tmp_path_factory):
    log_path = tmp_path_factory.mktemp("fake") / "fake_organization.log"
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "nameko", "run", "fake_organization", "--broker", amqp_uri],
            cwd=HERE, stdout=log, stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONWARNINGS": "ignore", **actor_env()},
        )
    try:
        wait_for(lambda: queue_consumers(amqp_uri, "rpc-organization") > 0, timeout=30,
                 what=f"the fake organization service (log: {log_path})")
        yield process
    finally:
        process.terminate()
        process.wait(15)


@pytest.fixture(scope="session")
def gateway(mongodb_uri, amqp_uri, fake_organization, tmp_path_factory):
    gw = start_gateway(mongodb_uri, amqp_uri, tmp_path_factory.mktemp("gateway"))
    try:
        yield gw
    finally:
        gw.process.stop()


@pytest.fixture(scope="session")
def admin_token(gateway) -> str:
    return gateway.token("admin", ADMIN_PASSWORD)


@pytest.fixture(scope="session")
def admin(gateway, admin_token) -> httpx.Client:
    with gateway.client(admin_token) as client:
        yield client


@pytest.fixture
def make_user(gateway, admin):
    """Create an account and return (username, token)."""

    def make(role: str, scope=None) -> tuple[str, str]:
        username = f"{role}-{uuid.uuid4().hex[:8]}"
        password = f"pw-{uuid.uuid4().hex}"
        response = admin.post("/api/v1/users", json={"username": username, "password": password,
                                                     "role": role, "scope": scope})
        assert response.status_code == 201, response.text
        return username, gateway.token(username, password)

    return make
