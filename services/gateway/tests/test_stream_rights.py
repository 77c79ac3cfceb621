"""Open streams keep to the account's current rights: deactivating a user, or narrowing their
role or scope, ends their SSE and WebSocket streams within STREAM_RECHECK_SECONDS."""

import asyncio
import json
import time
import uuid

import pytest
import websockets
from httpx_sse import aconnect_sse

from gateway.auth import Principal, issue_token
from gateway_test_support import ADMIN_PASSWORD, JWT_SECRET, start_gateway

pytestmark = pytest.mark.timeout(60)

STREAM = "/api/v1/events/stream"


@pytest.fixture(scope="module")
def rechecking_gateway(mongodb_uri, amqp_uri, fake_organization, tmp_path_factory):
    gw = start_gateway(mongodb_uri, amqp_uri, tmp_path_factory.mktemp("rights"), STREAM_RECHECK_SECONDS="0.3")
    try:
        yield gw
    finally:
        gw.process.stop()


@pytest.fixture(scope="module")
def accounts(rechecking_gateway):
    """Create an account: (id, token). Changes go through the same gateway, whose cache they drop."""
    gateway = rechecking_gateway
    admin = gateway.client(gateway.token("admin", ADMIN_PASSWORD))

    class Accounts:
        def create(self, role: str, scope=None) -> tuple[str, str]:
            username, password = f"{role}-{uuid.uuid4().hex[:8]}", f"pw-{uuid.uuid4().hex}"
            response = admin.post("/api/v1/users", json={"username": username, "password": password,
                                                         "role": role, "scope": scope})
            assert response.status_code == 201, response.text
            return response.json()["id"], gateway.token(username, password)

        def change(self, user_id: str, **changes) -> None:
            response = admin.patch(f"/api/v1/users/{user_id}", json=changes)
            assert response.status_code == 200, response.text

    with admin:
        yield Accounts()


def ws_url(gateway, token) -> str:
    return gateway.url.replace("http://", "ws://") + f"/api/v1/events/ws?access_token={token}"


async def closing_event(source) -> dict:
    """The problem the stream's last event carries; the stream must end after it."""
    async with asyncio.timeout(10):
        events = [event async for event in source.aiter_sse()]
    assert events and events[-1].event == "stream.closed", events
    return json.loads(events[-1].data)


async def test_open_sse_stream_of_a_deactivated_user_is_closed(rechecking_gateway, accounts):
    user_id, token = accounts.create("operator", "3701")
    async with rechecking_gateway.async_client(token) as client:
        async with aconnect_sse(client, "GET", STREAM, params={"division": "3701"}) as source:
            assert source.response.status_code == 200
            accounts.change(user_id, active=False)
            assert (await closing_event(source))["status"] == 401


async def test_open_sse_stream_ends_when_its_token_expires(rechecking_gateway, accounts):
    user_id, token = accounts.create("operator", "3701")
    with rechecking_gateway.client(token) as client:
        account = client.get("/api/v1/me").json()
    expiring = issue_token(JWT_SECRET, Principal.of({**account, "_id": user_id}), ttl_seconds=3600,
                           now=time.time() - 3600 + 2)  # valid for two more seconds
    async with rechecking_gateway.async_client(expiring) as client:
        async with aconnect_sse(client, "GET", STREAM) as source:
            assert source.response.status_code == 200
            assert (await closing_event(source))["status"] == 401


async def test_open_sse_stream_ends_when_the_role_is_narrowed(rechecking_gateway, accounts):
    user_id, token = accounts.create("operator", "3701")
    async with rechecking_gateway.async_client(token) as client:
        async with aconnect_sse(client, "GET", STREAM) as source:
            accounts.change(user_id, role="worker", scope=uuid.uuid4().hex)
            assert (await closing_event(source))["status"] == 403


async def test_open_websocket_of_a_deactivated_user_is_closed_with_4401(rechecking_gateway, accounts):
    user_id, token = accounts.create("operator", "3701")
    async with websockets.connect(ws_url(rechecking_gateway, token)) as socket:
        await socket.send(json.dumps({"subscribe": {"division": "3701"}}))
        assert "subscribed" in json.loads(await asyncio.wait_for(socket.recv(), 5))
        accounts.change(user_id, active=False)
        with pytest.raises(websockets.ConnectionClosed) as closed:
            async with asyncio.timeout(10):
                while True:
                    await socket.recv()
    assert closed.value.rcvd.code == 4401


async def test_open_websocket_closes_with_4403_when_the_scope_is_narrowed(rechecking_gateway, accounts):
    user_id, token = accounts.create("operator", "3701")
    async with websockets.connect(ws_url(rechecking_gateway, token)) as socket:
        await socket.send(json.dumps({"subscribe": {"division": "3701"}}))
        assert "subscribed" in json.loads(await asyncio.wait_for(socket.recv(), 5))
        accounts.change(user_id, scope="370102")
        with pytest.raises(websockets.ConnectionClosed) as closed:
            async with asyncio.timeout(10):
                while True:
                    await socket.recv()
    assert closed.value.rcvd.code == 4403
