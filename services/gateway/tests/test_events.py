"""Live events end to end: published on a service's events exchange, consumed by the gateway,
logged, and delivered over SSE and WebSocket with filters, scope and resume."""

import asyncio
import json
import signal
import uuid

import httpx
import pytest
import websockets
from httpx_sse import aconnect_sse
from pymongo import AsyncMongoClient

from platform_testing import metric_value, wait_for_async

from gateway_test_support import ADMIN_PASSWORD, start_gateway  # noqa: E402
from gateway_test_support import alert_event, community, coverage_changed_event, publish, station_event

pytestmark = pytest.mark.timeout(60)

STREAM = "/api/v1/events/stream"
STOP_GRACE_SECONDS = 10  # uvicorn's timeout_graceful_shutdown (gateway.__main__); a supervisor kills after it


async def take(source, count: int, timeout: float = 10) -> list:
    """The next `count` events of an open SSE stream."""
    if source.response.status_code != 200:  # a refusal is a problem document: show it, not a content-type error
        await source.response.aread()
        raise AssertionError(f"the stream was refused: {source.response.status_code} {source.response.text}")
    received = []
    async with asyncio.timeout(timeout):
        async for event in source.aiter_sse():
            received.append(event)
            if len(received) == count:
                return received
    raise AssertionError(f"stream ended after {len(received)} of {count} events")


async def logged(gateway, token: str, division: str, events: list) -> list:
    """Publish `events` and take them off a stream of `division`: they are in the log then."""
    async with gateway.async_client(token) as client:
        async with aconnect_sse(client, "GET", STREAM, params={"division": division}) as source:
            await publish(gateway.amqp_uri, *events)
            return await take(source, len(events))


def ids(sse_events) -> list[str]:
    return [json.loads(e.data)["id"] for e in sse_events]


async def test_sse_delivers_a_published_event(gateway, admin_token):
    division = community()
    event = alert_event(division)
    async with gateway.async_client(admin_token) as client:
        async with aconnect_sse(client, "GET", STREAM, params={"division": division}) as source:
            assert source.response.status_code == 200
            assert source.response.headers["content-type"].startswith("text/event-stream")
            await publish(gateway.amqp_uri, event)
            [received] = await take(source, 1)
    assert received.event == "coverage.alert_cleared"
    assert int(received.id) > 0
    envelope = json.loads(received.data)
    assert envelope["id"] == event["id"] and envelope["division"] == division
    assert envelope["data"]["unit_name"] == "顺丰速运"


async def test_type_and_division_filters(gateway, admin_token):
    mine, other = community(), community()
    wanted = alert_event(mine, "coverage.alert_cleared")
    async with gateway.async_client(admin_token) as client:
        params = {"types": "coverage.alert_c*,organization.*", "division": mine[:9]}
        async with aconnect_sse(client, "GET", STREAM, params=params) as source:
            await publish(gateway.amqp_uri,
                          alert_event(mine, "coverage.alert_raised"),   # type does not match
                          alert_event(other, "coverage.alert_cleared"),  # division does not match
                          station_event(mine),                           # another source, type does not match
                          wanted)
            [received] = await take(source, 1)
    assert ids([received]) == [wanted["id"]]


async def all_logged(event_log, event_ids: list[str]) -> bool:
    return await event_log.count_documents({"event_id": {"$in": event_ids}}) == len(event_ids)


async def test_resume_from_last_event_id_without_gap_or_repeat(gateway, admin_token, mongodb_uri):
    division = community()
    first = [alert_event(division) for _ in range(2)]
    missed = [alert_event(division) for _ in range(3)]
    later = alert_event(division)
    async with gateway.async_client(admin_token) as client:
        async with aconnect_sse(client, "GET", STREAM, params={"division": division}) as source:
            await publish(gateway.amqp_uri, *first)
            received = await take(source, 2)
        assert ids(received) == [e["id"] for e in first]
        last_id = received[-1].id

        await publish(gateway.amqp_uri, *missed)  # while disconnected
        # Logged before the client comes back: they reach it by the resume, not live.
        mongo = AsyncMongoClient(mongodb_uri)
        try:
            event_log = mongo[gateway.env["MONGODB_GATEWAY_DB"]]["event_log"]
            missed_ids = [e["id"] for e in missed]
            await wait_for_async(lambda: all_logged(event_log, missed_ids), what="the missed events logged")
        finally:
            await mongo.close()
        async with aconnect_sse(client, "GET", STREAM, params={"division": division},
                                headers={"Last-Event-ID": last_id}) as source:
            await publish(gateway.amqp_uri, later)
            resumed = await take(source, 4)
    assert ids(resumed) == [e["id"] for e in missed + [later]]
    seqs = [int(e.id) for e in resumed]
    assert seqs == sorted(seqs) and seqs[0] > int(last_id)


async def test_a_resume_past_the_retained_log_is_told_of_the_gap(gateway, admin_token, mongodb_uri):
    """Entries purged for retention are not replayed: the client is told it missed some, once,
    with the position it resumes after, and then gets what is still in the log."""
    division = community()
    events = [alert_event(division) for _ in range(4)]
    seqs = [int(e.id) for e in await logged(gateway, admin_token, division, events)]
    mongo = AsyncMongoClient(mongodb_uri)
    try:  # as the retention purge leaves it: the oldest entries gone
        await mongo[gateway.env["MONGODB_GATEWAY_DB"]]["event_log"].delete_many({"seq": {"$lte": seqs[1]}})
    finally:
        await mongo.close()
    async with gateway.async_client(admin_token) as client:
        async with aconnect_sse(client, "GET", STREAM, params={"division": division},
                                headers={"Last-Event-ID": str(seqs[0])}) as source:
            resumed = await take(source, 3)
    async with websockets.connect(ws_url(gateway, admin_token)) as socket:
        await socket.send(json.dumps({"subscribe": {"division": division, "last_event_id": seqs[0]}}))
        await asyncio.wait_for(socket.recv(), 5)
        over_socket = [json.loads(await asyncio.wait_for(socket.recv(), 5)) for _ in range(3)]
    assert over_socket[0]["gap"]["resumed_after"] == seqs[1]
    assert [m["event"]["id"] for m in over_socket[1:]] == [e["id"] for e in events[2:]]
    gap, *rest = resumed
    assert gap.event == "stream.gap" and int(gap.id) == seqs[1]
    assert json.loads(gap.data)["last_event_id"] == seqs[0] and json.loads(gap.data)["resumed_after"] == seqs[1]
    assert ids(rest) == [e["id"] for e in events[2:]]


async def test_resume_with_query_parameters_for_eventsource(gateway, admin_token):
    """Browsers' EventSource cannot set headers: token and position go in the query."""
    division = community()
    events = [alert_event(division) for _ in range(3)]
    async with httpx.AsyncClient(base_url=gateway.url, timeout=15) as client:
        params = {"division": division, "access_token": admin_token}
        async with aconnect_sse(client, "GET", STREAM, params=params) as source:
            await publish(gateway.amqp_uri, *events)
            received = await take(source, 3)
        async with aconnect_sse(client, "GET", STREAM, params={**params, "last_event_id": received[0].id}) as source:
            replayed = await take(source, 2)
    assert ids(replayed) == [e["id"] for e in events[1:]]


async def test_a_redelivered_event_is_delivered_once(gateway, admin_token):
    division = community()
    event, sentinel = alert_event(division), alert_event(division)
    async with gateway.async_client(admin_token) as client:
        before = metric_value((await client.get("/metrics")).text, "gateway_events_duplicate_total")
        async with aconnect_sse(client, "GET", STREAM, params={"division": division}) as source:
            await publish(gateway.amqp_uri, event, event, sentinel)
            received = await take(source, 2)
        after = metric_value((await client.get("/metrics")).text, "gateway_events_duplicate_total")
    assert ids(received) == [event["id"], sentinel["id"]]
    assert after == before + 1


async def test_a_burst_is_logged_once_each_with_dense_positions_in_publish_order(gateway, admin_token, mongodb_uri):
    """Published at once, the events are appended in batches: still one log position each, in
    publish order with no gap, and a redelivery in the same batch or a later one is logged once."""
    division = community()
    burst = [alert_event(division) for _ in range(300)]
    published = burst[:51] + [burst[50]] + burst[51:250] + [burst[10]] + burst[250:]
    async with gateway.async_client(admin_token) as client:
        before = metric_value((await client.get("/metrics")).text, "gateway_events_duplicate_total")
        async with aconnect_sse(client, "GET", STREAM, params={"division": division}) as source:
            await publish(gateway.amqp_uri, *published)
            received = await take(source, len(burst), timeout=30)
        after = metric_value((await client.get("/metrics")).text, "gateway_events_duplicate_total")
    assert ids(received) == [e["id"] for e in burst]
    seqs = [int(e.id) for e in received]
    assert seqs == list(range(seqs[0], seqs[0] + len(burst)))
    assert after == before + 2
    mongo = AsyncMongoClient(mongodb_uri)
    try:
        logged = await mongo[gateway.env["MONGODB_GATEWAY_DB"]]["event_log"].count_documents({"division": division})
    finally:
        await mongo.close()
    assert logged == len(burst)


async def test_invalid_messages_are_dead_lettered_and_the_stream_goes_on(gateway, admin_token):
    division = community()
    unknown_type = {**alert_event(division), "type": "coverage.exploded"}
    bad_data = {**alert_event(division), "data": {"unit_id": "u1"}}
    good = alert_event(division)
    async with gateway.async_client(admin_token) as client:
        before = metric_value((await client.get("/metrics")).text, "gateway_events_invalid_total")
        async with aconnect_sse(client, "GET", STREAM, params={"division": division}) as source:
            await publish(gateway.amqp_uri, b"not json", exchange="organization.events")
            await publish(gateway.amqp_uri, unknown_type, bad_data, good)
            [received] = await take(source, 1)
        metrics = (await client.get("/metrics")).text
        assert ids([received]) == [good["id"]]
        assert metric_value(metrics, "gateway_events_invalid_total") == before + 3
        assert metric_value(metrics, "gateway_events_received_total", source="organization") >= 1

        # Where an operator sees them, as a service's dead letters, and can send them back.
        def ours(listed: list) -> dict:
            return {d["event"]["id"]: d for d in listed if (d["event"] or {}).get("id") in (unknown_type["id"],
                                                                                           bad_data["id"])}
        listed = ours((await client.get("/api/v1/admin/dead-letters", params={"service": "gateway"})).json()["items"])
        assert set(listed) == {unknown_type["id"], bad_data["id"]}
        assert all(d["queue"] == "gateway.events" and "invalid event" in d["error"] for d in listed.values())
        replayed = await client.post("/api/v1/admin/dead-letters/replay", params={"service": "gateway"},
                                     json={"message_ids": [listed[bad_data["id"]]["message_id"]]})
        assert replayed.json() == {"replayed": 1}

        async def counted_invalid(count: float) -> bool:
            return metric_value((await client.get("/metrics")).text, "gateway_events_invalid_total") == count
        # Consumed again, refused again: back among the dead letters.
        await wait_for_async(lambda: counted_invalid(before + 4), what="the replayed event refused again")
        listed = (await client.get("/api/v1/admin/dead-letters", params={"service": "gateway"})).json()["items"]
        assert [(d["event"] or {}).get("id") for d in listed].count(bad_data["id"]) == 1


async def test_stream_auth_and_operator_scope(gateway, make_user):
    inside, outside = "370113" + "001001001", "370112" + "001001001"
    _, operator = make_user("operator", "370113")
    async with httpx.AsyncClient(base_url=gateway.url, timeout=15) as client:
        assert (await client.get(STREAM)).status_code == 401
        assert (await client.get(STREAM, params={"access_token": "garbage"})).status_code == 401
        forbidden = await client.get(STREAM, params={"access_token": operator, "division": "370112"})
        assert forbidden.status_code == 403
        assert forbidden.headers["content-type"].startswith("application/problem+json")
        assert forbidden.json()["errors"][0]["loc"] == ["query", "division"]
        async with websockets.connect(ws_url(gateway, operator)) as socket:  # there, the subscribe message's
            await socket.send(json.dumps({"subscribe": {"division": "370112"}}))
            error = json.loads(await asyncio.wait_for(socket.recv(), 5))["error"]
        assert error["status"] == 403 and error["errors"][0]["loc"] == ["subscribe", "division"]
        bad = await client.get(STREAM, params={"access_token": operator, "types": "a b"})
        assert bad.status_code == 422 and bad.json()["errors"][0]["loc"] == ["query", "types"]
        bad = await client.get(STREAM, params={"access_token": operator}, headers={"Last-Event-ID": "x"})
        assert bad.status_code == 422 and bad.json()["errors"][0]["loc"] == ["header", "Last-Event-ID"]

        # No division asked for: the operator's scope is the filter.
        marker = uuid.uuid4().hex
        theirs = alert_event(inside)
        async with aconnect_sse(client, "GET", STREAM, params={"access_token": operator}) as source:
            await publish(gateway.amqp_uri, alert_event(outside), {**alert_event(inside), "subject": marker})
            await publish(gateway.amqp_uri, theirs)
            received = await take(source, 2)
    assert [json.loads(e.data)["division"] for e in received] == [inside, inside]
    assert json.loads(received[0].data)["subject"] == marker


async def test_an_operator_sees_only_the_coverage_figures_in_their_scope(gateway, make_user, admin_token):
    """A coverage.changed carries the figures of the divisions above its own; an operator of a
    street may not read the district's or the city's (GET /coverage would refuse them)."""
    division = community()
    street = division[:9]
    _, operator = make_user("operator", street)
    event = coverage_changed_event(division)
    async with gateway.async_client(operator) as client, gateway.async_client(admin_token) as admin:
        async with aconnect_sse(client, "GET", STREAM, params={"types": "coverage.changed"}) as mine, \
                aconnect_sse(admin, "GET", STREAM, params={"types": "coverage.changed", "division": division}) as all_:
            await publish(gateway.amqp_uri, event)
            [seen] = await take(mine, 1)
            [seen_by_admin] = await take(all_, 1)
    scopes = [s["division"] for s in json.loads(seen.data)["data"]["scopes"]]
    assert scopes == [street, division]
    assert len(json.loads(seen_by_admin.data)["data"]["scopes"]) == 6


def ws_url(gateway, token) -> str:
    return gateway.url.replace("http://", "ws://") + f"/api/v1/events/ws?access_token={token}"


async def test_websocket_subscribe_and_resubscribe(gateway, admin_token):
    division = community()
    alert, station = alert_event(division), station_event(division)
    async with websockets.connect(ws_url(gateway, admin_token)) as socket:
        await socket.send(json.dumps({"subscribe": {"types": ["coverage.*"], "division": division}}))
        ack = json.loads(await asyncio.wait_for(socket.recv(), 5))
        assert ack["subscribed"]["types"] == ["coverage.*"] and ack["subscribed"]["division"] == division
        await publish(gateway.amqp_uri, station, alert)
        message = json.loads(await asyncio.wait_for(socket.recv(), 10))
        assert message["event"]["id"] == alert["id"] and message["id"] > 0

        # Change the filter: now only station events.
        await socket.send(json.dumps({"subscribe": {"types": ["station.*"], "division": division}}))
        assert "subscribed" in json.loads(await asyncio.wait_for(socket.recv(), 5))
        latest = station_event(division)
        await publish(gateway.amqp_uri, alert_event(division), latest)
        message = json.loads(await asyncio.wait_for(socket.recv(), 10))
        assert message["event"]["id"] == latest["id"]

        # A bad request gets a problem and the socket stays open.
        await socket.send(json.dumps({"subscribe": {"division": "99"}}))
        error = json.loads(await asyncio.wait_for(socket.recv(), 5))["error"]
        assert error["status"] == 422 and error["errors"][0]["loc"] == ["subscribe", "division"]
        await socket.send(json.dumps({"subscribe": {"division": 370113}}))
        error = json.loads(await asyncio.wait_for(socket.recv(), 5))["error"]
        assert error["status"] == 422 and error["errors"][0]["loc"] == ["subscribe", "division"]
        await socket.send("{not json")
        assert json.loads(await asyncio.wait_for(socket.recv(), 5))["error"]["status"] == 400


async def test_websocket_replays_from_last_event_id(gateway, admin_token):
    division = community()
    events = [alert_event(division) for _ in range(3)]
    received = await logged(gateway, admin_token, division, events)
    async with websockets.connect(ws_url(gateway, admin_token)) as socket:
        await socket.send(json.dumps({"subscribe": {"division": division, "last_event_id": int(received[0].id)}}))
        await asyncio.wait_for(socket.recv(), 5)
        replayed = [json.loads(await asyncio.wait_for(socket.recv(), 5)) for _ in range(2)]
    assert [m["event"]["id"] for m in replayed] == [e["id"] for e in events[1:]]


async def test_websocket_refuses_a_bad_token(gateway):
    async with websockets.connect(ws_url(gateway, "garbage")) as socket:
        error = json.loads(await asyncio.wait_for(socket.recv(), 5))["error"]
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await asyncio.wait_for(socket.recv(), 5)
    assert error["status"] == 401 and closed.value.rcvd.code == 4401


@pytest.mark.timeout(90)
async def test_second_replica_delivers_every_event_and_stops_on_sigterm(
        gateway, admin_token, mongodb_uri, amqp_uri, tmp_path):
    """The first gateway is the queue's single active consumer, so this replica's client gets
    every event through the shared log alone, in publish order; SIGTERM then ends the open
    stream and the process, within the grace period (run_platform's, before it kills)."""
    replica = await asyncio.to_thread(start_gateway, mongodb_uri, amqp_uri, tmp_path)
    try:
        division = community()
        events = [alert_event(division) for _ in range(12)]
        async with replica.async_client(admin_token) as client:
            # Ready is not yet warm: a fresh replica's first database round trip can exceed its
            # 2 s budget on a loaded machine and be answered 503 (a CI run saw the stream refused).
            async def serves_the_admin() -> bool:
                return (await client.get("/api/v1/me")).status_code == 200
            await wait_for_async(serves_the_admin, timeout=30, what="the replica serving the admin")
            async with aconnect_sse(client, "GET", STREAM, params={"division": division}) as source:
                await publish(amqp_uri, *events)
                received = await take(source, len(events))
                assert ids(received) == [e["id"] for e in events]
                replica.process.process.send_signal(signal.SIGTERM)
                await asyncio.to_thread(replica.process.process.wait, STOP_GRACE_SECONDS)
        # uvicorn re-raises the signal once it has shut down cleanly, so the status says SIGTERM.
        assert replica.process.process.returncode in (0, -signal.SIGTERM)
        with open(replica.process.log_path) as log:
            assert "Application shutdown complete" in log.read()
    finally:
        replica.process.stop()


async def test_tokens_and_passwords_never_reach_the_log(gateway, admin_token):
    async with websockets.connect(ws_url(gateway, admin_token)):
        pass
    async with httpx.AsyncClient(base_url=gateway.url, timeout=15) as client:
        await client.get(STREAM, params={"access_token": admin_token, "division": "99"})
        await client.post("/api/v1/auth/token", json={"username": "admin", "password": "a-wrong-password"})

    async def logged_up_to_the_login() -> str | None:  # the access line is written once the answer is sent
        with open(gateway.process.log_path) as log:
            text = log.read()
        return text if "POST /api/v1/auth/token 401" in text else None
    text = await wait_for_async(logged_up_to_the_login, timeout=10, what="the failed login's access line")
    assert "WebSocket /api/v1/events/ws?access_token=***" in text  # the line is there, the token is not
    assert admin_token.split(".")[2] not in text and "a-wrong-password" not in text
    assert ADMIN_PASSWORD not in text
