"""MongoDB away: the gateway answers 503 with Retry-After within its database timeouts (about
2 s), never hangs a request until a generic 500. A gateway of its own, on a SecantusDB of its
own, since the test stops that database."""

import subprocess

import httpx
import pytest

from platform_testing import free_port, mongo_ready, start_secantus, wait_for

from gateway_test_support import ADMIN_PASSWORD, start_gateway

pytestmark = pytest.mark.timeout(90)

# Well above the gateway's 2 s database timeouts and well below the 10 s wait that came before them.
CLIENT_TIMEOUT_SECONDS = 6


def test_database_outage_is_a_503_with_retry_after_not_a_hang(amqp_uri, tmp_path):
    port = free_port()
    database = start_secantus(str(tmp_path / "secantus"), port, str(tmp_path / "secantus.log"))
    mongodb_uri = f"mongodb://127.0.0.1:{port}/?directConnection=true"
    try:
        wait_for(lambda: mongo_ready(mongodb_uri), timeout=30, what="SecantusDB")
        gateway = start_gateway(mongodb_uri, amqp_uri, tmp_path, USER_CACHE_SECONDS="0")
        try:
            token = gateway.token("admin", ADMIN_PASSWORD)
            database.terminate()
            database.wait(15)
            with httpx.Client(base_url=gateway.url, timeout=CLIENT_TIMEOUT_SECONDS) as client:
                me = client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
                login = client.post("/api/v1/auth/token", json={"username": "admin", "password": ADMIN_PASSWORD})
            for response in (me, login):
                assert response.status_code == 503, response.text
                assert response.headers["content-type"].startswith("application/problem+json")
                assert int(response.headers["retry-after"]) > 0
                assert "database" in response.json()["detail"]
        finally:
            gateway.process.kill()  # a graceful stop waits for its background work's database timeouts
    finally:
        if database.poll() is None:
            database.terminate()
            try:
                database.wait(15)
            except subprocess.TimeoutExpired:
                database.kill()
