"""Streams within limits: a per-user cap on open streams, rate-limited WebSocket resubscribes,
a send timeout for clients that stop reading, and resumes that read only what their filter may
match from the event log (through its indexes), not days of the log."""

import asyncio
import json
import socket
import uuid
from datetime import datetime, timezone
from types import SimpleNamespace

import pytest
import websockets
from httpx_sse import aconnect_sse
from pymongo import AsyncMongoClient

from platform_contracts.envelope import CloudEvent
from platform_testing import wait_for_async
from gateway.auth import Principal, issue_token
from gateway.event_log import EventLog, filter_keys
from gateway.fanout import Broadcaster
from gateway.routes.stream import SocketSession
from gateway.settings import Settings
from gateway.stream_filter import EventFilter

from gateway_test_support import ADMIN_PASSWORD, alert_event, community, start_gateway

pytestmark = pytest.mark.timeout(60)

STREAM = "/api/v1/events/stream"
MAX_STREAMS = 2
SUBSCRIBES_PER_MINUTE = 3
SEND_TIMEOUT_SECONDS = 1


@pytest.fixture(scope="module")
def limited_gateway(mongodb_uri, amqp_uri, fake_organization, tmp_path_factory):
    gw = start_gateway(mongodb_uri, amqp_uri, tmp_path_factory.mktemp("limits"),
                       STREAM_MAX_PER_USER=str(MAX_STREAMS), STREAM_SUBSCRIBES_PER_MINUTE=str(SUBSCRIBES_PER_MINUTE),
                       STREAM_SEND_TIMEOUT_SECONDS=str(SEND_TIMEOUT_SECONDS))
    try:
        yield gw
    finally:
        gw.process.stop()


@pytest.fixture(scope="module")
def limited_admin(limited_gateway):
    with limited_gateway.client(limited_gateway.token("admin", ADMIN_PASSWORD)) as client:
        yield client


def new_operator(gateway, admin, scope: str) -> tuple[str, str]:
    username, password = f"operator-{uuid.uuid4().hex[:8]}", f"pw-{uuid.uuid4().hex}"
    response = admin.post("/api/v1/users", json={"username": username, "password": password,
                                                 "role": "operator", "scope": scope})
    assert response.status_code == 201, response.text
    return response.json()["id"], gateway.token(username, password)


def ws_url(gateway, token) -> str:
    return gateway.url.replace("http://", "ws://") + f"/api/v1/events/ws?access_token={token}"


async def test_streams_beyond_the_per_user_cap_are_refused(limited_gateway, limited_admin):
    _, token = new_operator(limited_gateway, limited_admin, "3701")
    async with limited_gateway.async_client(token) as client:
        async with aconnect_sse(client, "GET", STREAM) as first, aconnect_sse(client, "GET", STREAM) as second:
            assert first.response.status_code == second.response.status_code == 200
            refused = await client.get(STREAM)
            assert refused.status_code == 429 and refused.json()["status"] == 429
            async with websockets.connect(ws_url(limited_gateway, token)) as socket:
                with pytest.raises(websockets.ConnectionClosed) as closed:
                    while True:
                        await asyncio.wait_for(socket.recv(), 5)
            assert closed.value.rcvd.code == 4429
        # The slots are given back when the streams close.
        async def past_the_cap():
            response = await client.get(STREAM, headers={"Last-Event-ID": "x"})
            return response if response.status_code != 429 else None
        again = await wait_for_async(past_the_cap, timeout=10, what="the stream slots given back")
        assert again.status_code == 422  # past the cap check: the bad id is what it refuses


async def test_websocket_resubscribes_are_rate_limited(limited_gateway, limited_admin):
    _, token = new_operator(limited_gateway, limited_admin, "3701")
    async with websockets.connect(ws_url(limited_gateway, token)) as socket:
        replies = []
        for _ in range(SUBSCRIBES_PER_MINUTE + 1):
            await socket.send(json.dumps({"subscribe": {"division": "3701"}}))
            replies.append(json.loads(await asyncio.wait_for(socket.recv(), 5)))
    assert all("subscribed" in reply for reply in replies[:SUBSCRIBES_PER_MINUTE])
    assert replies[-1]["error"]["status"] == 429


async def test_websocket_subscribe_uses_the_current_scope_not_the_one_at_connect(limited_gateway, limited_admin):
    user_id, token = new_operator(limited_gateway, limited_admin, "3701")
    async with websockets.connect(ws_url(limited_gateway, token)) as socket:
        await socket.send(json.dumps({"subscribe": {"division": "3701"}}))
        assert json.loads(await asyncio.wait_for(socket.recv(), 5))["subscribed"]["division"] == "3701"
        narrowed = limited_admin.patch(f"/api/v1/users/{user_id}", json={"scope": "370102"})
        assert narrowed.status_code == 200, narrowed.text
        await socket.send(json.dumps({"subscribe": {}}))
        assert json.loads(await asyncio.wait_for(socket.recv(), 5))["subscribed"]["division"] == "370102"


async def test_sse_client_that_stops_reading_is_dropped_after_the_send_timeout(limited_gateway, limited_admin,
                                                                              mongodb_uri):
    division = community()
    client = AsyncMongoClient(mongodb_uri, tz_aware=True)
    event_log = client[limited_gateway.env["MONGODB_GATEWAY_DB"]]["event_log"]
    try:  # far more than the socket buffers hold, for a replay to this client
        last = await event_log.find_one({}, {"seq": 1}, sort=[("seq", -1)])
        first = (last["seq"] if last else 0) + 1
        big = [{**alert_event(division), "padding": "x" * 100_000} for _ in range(100)]
        await event_log.insert_many([
            {"seq": first + n, "event_id": e["id"], "type": e["type"], "division": division, **filter_keys(e),
             "logged_at": datetime.now(timezone.utc), "envelope": e} for n, e in enumerate(big)])
    finally:
        await client.close()
    reader = socket.socket()
    reader.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    reader.connect(("127.0.0.1", int(limited_gateway.env["GATEWAY_PORT"])))
    with reader:
        reader.sendall((f"GET {STREAM}?division={division}&last_event_id={first - 1} HTTP/1.1\r\n"
                        f"Host: gateway\r\nAuthorization: {limited_admin.headers['Authorization']}\r\n"
                        "Accept: text/event-stream\r\n\r\n").encode())
        # What is tested, not a wait for something: the client reads nothing for longer than the
        # send timeout (the gateway's end of it shows only once the client reads again).
        await asyncio.sleep(SEND_TIMEOUT_SECONDS + 3)
        reader.settimeout(10)
        received = 0
        while chunk := reader.recv(1 << 20):  # until the gateway's end: it gave up on this client
            received += len(chunk)
    assert 0 < received < sum(len(json.dumps(e)) for e in big)


class SocketThatStopsReading:
    """A WebSocket whose client subscribes once and then reads nothing: every send blocks."""

    def __init__(self, settings: Settings, account: dict):
        async def cached_by_username(username):
            return account
        self.app = SimpleNamespace(state=SimpleNamespace(settings=settings, users=SimpleNamespace(
            cached_by_username=cached_by_username)))
        self.messages = [json.dumps({"subscribe": {}})]
        self.closed_with = None

    async def receive_text(self) -> str:
        if self.messages:
            return self.messages.pop()
        await asyncio.Event().wait()

    async def send_json(self, message: dict) -> None:
        await asyncio.Event().wait()

    async def close(self, code: int, reason: str) -> None:
        self.closed_with = code


async def test_websocket_client_that_stops_reading_is_closed_after_the_send_timeout():
    settings = Settings(mongodb_uri="unused", jwt_secret="s" * 32, stream_send_timeout_seconds=0.2)
    account = {"_id": "u1", "username": "admin", "role": "admin", "scope": None, "active": True}
    principal = Principal.of(account)
    socket = SocketThatStopsReading(settings, account)
    session = SocketSession(socket, issue_token(settings.jwt_secret, principal, 60), principal,
                            Broadcaster(event_log=None), settings)
    async with asyncio.timeout(10):  # without a send timeout the session waits for ever
        await session.run()
    assert socket.closed_with == 1008


class CountingLog(EventLog):
    """The event log, counting the entries a resume reads from it."""

    read = 0

    async def after(self, *args, **kwargs):
        page = await super().after(*args, **kwargs)
        self.read += len(page)
        return page


@pytest.fixture
async def fresh_log(mongodb_uri):
    client = AsyncMongoClient(mongodb_uri, tz_aware=True)
    name = f"stream_limits_{uuid.uuid4().hex[:8]}"
    event_log = CountingLog(client[name])
    await event_log.ensure_indexes()
    try:
        yield event_log
    finally:
        await client.drop_database(name)
        await client.close()


@pytest.mark.parametrize("wanted", ["division", "type"])
async def test_a_resume_reads_only_the_log_entries_its_filter_may_match(fresh_log, wanted):
    mine, others = community(), community()
    noise = [alert_event(others, "coverage.alert_raised") for _ in range(40)]
    matching = [alert_event(mine, "coverage.alert_cleared") for _ in range(2)]
    events = [*noise[:20], matching[0], *noise[20:], matching[1]]
    await fresh_log.append_batch([CloudEvent.model_validate(e) for e in events])
    broadcaster = Broadcaster(fresh_log)
    broadcaster.delivered = await fresh_log.last_seq()
    event_filter = EventFilter(division=mine) if wanted == "division" else EventFilter(types=("coverage.alert_cleared",))
    stream = broadcaster.stream(broadcaster.subscribe(event_filter), last_event_id=0)
    replayed = [await anext(stream) for _ in matching]
    await stream.aclose()
    assert [entry.envelope["id"] for entry in replayed] == [e["id"] for e in matching]
    assert fresh_log.read <= len(matching) + 1  # and one: the look for a gap reads the first position


async def test_entries_logged_before_the_filter_keys_existed_are_found_by_a_resume(fresh_log):
    division = community()
    # Logged as before `filter_keys`: no keys.
    await fresh_log.collection.insert_one({"seq": 1, "event_id": "old", "type": "coverage.alert_raised",
                                           "division": division, "envelope": alert_event(division)})
    await fresh_log.ensure_indexes()
    where = EventFilter(types=("coverage.*",), division=division[:4]).log_query()
    [found] = await fresh_log.after(0, 10, where=where)
    assert found.seq == 1
