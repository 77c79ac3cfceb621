"""Notifications end to end in the gateway: transfer events published on "member.events" as the
member service publishes them, the notifications they create on each addressee's stream and at
GET /api/v1/notifications, per-user read marks, and a redelivery that creates nothing twice."""

import asyncio
import contextlib
import json
import uuid

import pytest
import websockets
from httpx_sse import aconnect_sse
from pymongo import AsyncMongoClient

from platform_testing import wait_for_async

from gateway_test_support import community, new_transfer, publish, transfer_event

pytestmark = pytest.mark.timeout(60)

STREAM = "/api/v1/events/stream"
NOTIFICATIONS = "/api/v1/notifications"


def is_notification(kind: str, transfer: dict):
    return lambda e: (e["type"] == "notification.created" and e["data"]["type"] == kind
                      and e["data"]["subject"] == transfer["transfer_id"])


async def receive_until(events, predicate, timeout: float = 10) -> list[dict]:
    """The next events of an SSE stream (its `aiter_sse()`) up to and including the first that
    satisfies `predicate`."""
    received = []
    async with asyncio.timeout(timeout):
        while not received or not predicate(received[-1]):
            received.append(json.loads((await anext(events)).data))
    return received


OTHER_MEMBER = uuid.uuid4().hex  # a member no transfer of `side` concerns


@pytest.fixture
def side(make_user):
    """The accounts of a transfer's two sides, and the member's."""
    transfer = new_transfer(community(), f"370112{uuid.uuid4().int % 10**6:06d}")
    return transfer, {
        "sending_operator": make_user("operator", transfer["from_division"])[1],
        "second_sending_operator": make_user("operator", transfer["from_division"])[1],
        "sending_secretary": make_user("secretary", [transfer["from_organization_id"]])[1],
        "receiving_operator": make_user("operator", transfer["to_division"])[1],
        "receiving_secretary": make_user("secretary", [transfer["to_organization_id"]])[1],
        "worker": make_user("worker", transfer["member_id"])[1],
        "other_worker": make_user("worker", OTHER_MEMBER)[1],
    }


async def listing(gateway, token: str, **params) -> list[dict]:
    async with gateway.async_client(token) as client:
        response = await client.get(NOTIFICATIONS, params=params)
    assert response.status_code == 200, response.text
    return response.json()["items"]


async def has_notifications(gateway, token: str, count: int) -> bool:
    return len(await listing(gateway, token)) == count


async def test_each_side_and_the_member_get_their_notifications_only(gateway, side):
    transfer, tokens = side
    async with contextlib.AsyncExitStack() as stack:
        streams = {}
        for who in ("sending_operator", "sending_secretary", "receiving_operator", "worker", "other_worker"):
            client = await stack.enter_async_context(gateway.async_client(tokens[who]))
            source = await stack.enter_async_context(aconnect_sse(client, "GET", STREAM))
            assert source.response.status_code == 200
            streams[who] = source.aiter_sse()
        await publish(gateway.amqp_uri, transfer_event("requested", transfer))
        await publish(gateway.amqp_uri, transfer_event("approved", transfer))

        awaiting_approval = is_notification("transfer.awaiting_approval", transfer)
        awaiting_receipt = is_notification("transfer.awaiting_receipt", transfer)
        for who in ("sending_operator", "sending_secretary"):
            [notice] = [e for e in await receive_until(streams[who], awaiting_approval) if awaiting_approval(e)]
            assert notice["source"] == "gateway" and notice["subject"] == notice["data"]["id"]
            assert notice["division"] == transfer["from_division"]
        # The receiving side is told only when the transfer reaches it.
        seen = await receive_until(streams["receiving_operator"], awaiting_receipt)
        assert not any(awaiting_approval(e) for e in seen)
        # The member hears of each step, and nothing but their own notifications.
        seen = await receive_until(streams["worker"], is_notification("transfer.approved", transfer))
        assert [e["data"]["type"] for e in seen] == ["transfer.requested", "transfer.approved"]
        assert {e["type"] for e in seen} == {"notification.created"}
        # Another member hears nothing of it: the first thing they get is their own notification.
        someone_else = {**new_transfer(community(), community()), "member_id": transfer["member_id"]}
        await publish(gateway.amqp_uri, transfer_event("received", someone_else))
        assert not any(awaiting_approval(e) for e in await receive_until(
            streams["worker"], is_notification("transfer.awaiting_report_in", someone_else)))
        # Nor did the member of no transfer: the first thing on their stream is their own, published last.
        their_own = {**new_transfer(community(), community()), "member_id": OTHER_MEMBER}
        await publish(gateway.amqp_uri, transfer_event("requested", their_own))
        [first] = await receive_until(streams["other_worker"], lambda e: True)
        assert is_notification("transfer.requested", their_own)(first), first

    assert [n["type"] for n in await listing(gateway, tokens["sending_operator"])] == ["transfer.awaiting_approval"]
    assert [n["type"] for n in await listing(gateway, tokens["receiving_secretary"])] == ["transfer.awaiting_receipt"]
    mine = await listing(gateway, tokens["worker"])
    assert [n["type"] for n in mine] == ["transfer.awaiting_report_in", "transfer.approved", "transfer.requested"]
    assert set(mine[0]) == {"id", "type", "title", "body", "subject", "created_at", "read"}
    assert [n["subject"] for n in await listing(gateway, tokens["other_worker"])] == [their_own["transfer_id"]]


async def test_read_marks_are_per_user(gateway, side):
    transfer, tokens = side
    await publish(gateway.amqp_uri, transfer_event("requested", transfer))
    [notice] = await wait_for_async(lambda: listing(gateway, tokens["sending_operator"]),
                                    what="the operator's notification")
    assert notice["read"] is False

    async with gateway.async_client(tokens["sending_operator"]) as client:
        marked = await client.post(f"{NOTIFICATIONS}/{notice['id']}/read")
        assert marked.status_code == 200 and marked.json()["read"] is True
        assert (await client.post(f"{NOTIFICATIONS}/{notice['id']}/read")).json()["read"] is True  # idempotent
        assert (await client.post(f"{NOTIFICATIONS}/nosuchnotification/read")).status_code == 404
    async with gateway.async_client(tokens["receiving_operator"]) as client:
        assert (await client.post(f"{NOTIFICATIONS}/{notice['id']}/read")).status_code == 404  # not theirs

    assert await listing(gateway, tokens["sending_operator"], unread="true") == []
    assert [n["id"] for n in await listing(gateway, tokens["sending_operator"], unread="false")] == [notice["id"]]
    # Read by one operator, still unread for the other and for the secretary.
    for who in ("second_sending_operator", "sending_secretary"):
        assert [(n["id"], n["read"]) for n in await listing(gateway, tokens[who], unread="true")] == \
               [(notice["id"], False)]


async def test_pages_newest_first(gateway, side):
    transfer, tokens = side
    steps = ("requested", "approved", "received", "completed")
    await publish(gateway.amqp_uri, *(transfer_event(step, transfer) for step in steps))
    expected = ["transfer.completed", "transfer.awaiting_report_in", "transfer.approved", "transfer.requested"]
    async with gateway.async_client(tokens["worker"]) as client:
        await wait_for_async(lambda: has_notifications(gateway, tokens["worker"], 4),
                             what="the member's four notifications")
        pages, cursor = [], None
        while True:
            page = (await client.get(NOTIFICATIONS, params={"limit": 3, **({"cursor": cursor} if cursor else {})}))
            assert page.status_code == 200, page.text
            pages.append([n["type"] for n in page.json()["items"]])
            if (cursor := page.json()["next_cursor"]) is None:
                break
        assert (await client.get(NOTIFICATIONS, params={"cursor": "x"})).status_code == 422
    assert pages == [expected[:3], expected[3:]]


async def test_the_receiving_side_hears_that_an_approved_transfer_ended(gateway, side):
    transfer, tokens = side
    approved = {**transfer, "letter_expires_on": "2026-12-22"}  # approval issued the letter
    await publish(gateway.amqp_uri, transfer_event("approved", approved), transfer_event("rejected", approved))
    await wait_for_async(lambda: has_notifications(gateway, tokens["receiving_secretary"], 2),
                         what="the receiving secretary's two notifications")
    for who in ("receiving_secretary", "receiving_operator"):
        assert [n["type"] for n in await listing(gateway, tokens[who])] == \
               ["transfer.rejected", "transfer.awaiting_receipt"], who
    assert [n["type"] for n in await listing(gateway, tokens["sending_operator"])] == ["transfer.rejected"]
    assert [n["type"] for n in await listing(gateway, tokens["worker"])] == ["transfer.rejected", "transfer.approved"]


async def test_a_redelivered_event_creates_one_notification(gateway, side, mongodb_uri):
    transfer, tokens = side
    event = transfer_event("requested", transfer)
    async with gateway.async_client(tokens["sending_operator"]) as client:
        async with aconnect_sse(client, "GET", STREAM) as source:
            await publish(gateway.amqp_uri, event, event)
            await publish(gateway.amqp_uri, event, transfer_event("rejected", transfer))
            seen = await receive_until(source.aiter_sse(), is_notification("transfer.rejected", transfer))
    assert [(e["type"], e["data"].get("type")) for e in seen] == [
        ("transfer.requested", None), ("notification.created", "transfer.awaiting_approval"),
        ("transfer.rejected", None), ("notification.created", "transfer.rejected")]

    client = AsyncMongoClient(mongodb_uri, tz_aware=True)
    try:
        db = client[gateway.env["MONGODB_GATEWAY_DB"]]
        stored = await db["notifications"].find({"subject": transfer["transfer_id"]}).to_list()
        assert sorted(n["type"] for n in stored) == [  # each event's member and side, once
            "transfer.awaiting_approval", "transfer.rejected", "transfer.rejected", "transfer.requested"]
        seqs = [doc["seq"] for doc in await db["event_log"].find({}, {"seq": 1}).sort("seq", 1).to_list()]
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))  # the log's positions stay dense
    finally:
        await client.close()


async def test_websocket_delivers_notifications_to_their_addressee(gateway, side):
    transfer, tokens = side
    url = gateway.url.replace("http://", "ws://") + f"/api/v1/events/ws?access_token={tokens['worker']}"
    async with websockets.connect(url) as socket:
        await socket.send(json.dumps({"subscribe": {"types": ["notification.*", "transfer.*"]}}))
        assert "subscribed" in json.loads(await asyncio.wait_for(socket.recv(), 5))
        await publish(gateway.amqp_uri, transfer_event("received", transfer))
        message = json.loads(await asyncio.wait_for(socket.recv(), 10))
    assert message["event"]["type"] == "notification.created"
    assert message["event"]["data"]["type"] == "transfer.awaiting_report_in"
    assert message["event"]["data"]["audience"] == {"role": "worker", "member_id": transfer["member_id"]}
