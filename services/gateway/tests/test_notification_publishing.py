"""Notifications published to `gateway.events` through the gateway's outbox, as the services
publish their events: each once, with the id it has in the event log, in log order, without the
personal data its cause carried; and what a gateway committed but did not publish before it
died goes out when a gateway starts, before anything newer."""

import asyncio
import contextlib
import json
import subprocess
import sys
import uuid

import aio_pika
import pytest
from pymongo import AsyncMongoClient

from platform_contracts.events import validate_event
from platform_testing import broker_connections, close_broker_connections, metric_value, rabbit_vhost, wait_for_async
from service_kit.outbox import relay_connection_name
from gateway.app import ensure_indexes
from gateway.event_log import EventLog
from gateway.notifications import NotificationStore, with_notifications

from gateway_test_support import community, new_transfer, publish, start_gateway, transfer_event

pytestmark = pytest.mark.timeout(90)

PHONE, ID_NUMBER = "13912345678", "11010519491231002X"


@contextlib.asynccontextmanager
async def listening(amqp_uri: str):
    """A queue bound to `gateway.events` for `notification.created`; yields drain(), which
    returns every message received so far."""
    received: list[aio_pika.abc.AbstractIncomingMessage] = []
    connection = await aio_pika.connect(amqp_uri)
    async with connection:
        channel = await connection.channel()
        exchange = await channel.declare_exchange("gateway.events", aio_pika.ExchangeType.TOPIC, durable=True)
        queue = await channel.declare_queue(exclusive=True)
        await queue.bind(exchange, routing_key="notification.created")

        async def drain():
            while (message := await queue.get(no_ack=True, fail=False)) is not None:
                received.append(message)
            return received

        yield drain


async def published_once_in_log_order(db, drain, cause_ids: list[str], expected: int) -> list:
    """Wait until the causes' `expected` notifications are logged, published and marked so (no
    relay publishes a record again after that); their messages, checked against the log."""
    async def all_logged():
        found = await db["event_log"].find(
            {"type": "notification.created", "envelope.causationid": {"$in": cause_ids}}).sort("seq", 1).to_list()
        return found if len(found) == expected else None

    async def all_marked():
        return await db["outbox"].count_documents({"_id": {"$in": seqs}, "published_at": None}) == 0

    logged = await wait_for_async(all_logged, what=f"{expected} notifications logged")
    seqs = [entry["seq"] for entry in logged]
    await wait_for_async(all_marked, what="their outbox records marked published")
    messages = [m for m in await drain() if json.loads(m.body)["causationid"] in cause_ids]
    assert [m.message_id for m in messages] == [entry["event_id"] for entry in logged]
    for message, entry in zip(messages, logged):
        assert message.exchange == "gateway.events" and message.routing_key == "notification.created"
        assert message.content_type == "application/cloudevents+json"  # structured mode (service_kit.outbox)
        assert json.loads(message.body) == entry["envelope"]
        assert validate_event(json.loads(message.body)).source == "gateway"
    return messages


async def test_each_notification_is_published_once_with_its_logged_id(gateway, mongodb_uri):
    transfer = new_transfer(community(), community())
    cause = transfer_event("requested", transfer)
    cause["data"]["note"] = f"call {PHONE}, ID number {ID_NUMBER}"  # what a requester might write
    client = AsyncMongoClient(mongodb_uri, tz_aware=True)
    try:
        async with listening(gateway.amqp_uri) as drain:
            await publish(gateway.amqp_uri, cause, cause)  # and a redelivery
            messages = await published_once_in_log_order(
                client[gateway.env["MONGODB_GATEWAY_DB"]], drain, [cause["id"]], expected=2)
    finally:
        await client.close()
    assert {json.loads(m.body)["data"]["type"] for m in messages} == {
        "transfer.awaiting_approval", "transfer.requested"}
    for message in messages:  # notifications carry ids, never their cause's free text
        assert PHONE.encode() not in message.body and ID_NUMBER.encode() not in message.body


async def bind_as_earlier_versions_did(amqp_uri: str) -> None:
    """The gateway's queue bound to its own exchange too, so that it consumed notifications back."""
    connection = await aio_pika.connect(amqp_uri)
    async with connection:
        channel = await connection.channel()
        exchange = await channel.declare_exchange("gateway.events", aio_pika.ExchangeType.TOPIC, durable=True)
        queue = await channel.declare_queue("gateway.events", durable=True,
                                            arguments={"x-single-active-consumer": True})
        await queue.bind(exchange, routing_key="#")


async def test_notifications_committed_but_not_published_go_out_first_when_a_gateway_starts(
        mongodb_uri, tmp_path):
    """As a gateway that died between its commit and the broker's confirm leaves them."""
    database = f"gateway_outbox_{uuid.uuid4().hex[:8]}"
    client = AsyncMongoClient(mongodb_uri, tz_aware=True)
    transfer = new_transfer(community(), community())
    left, later = transfer_event("requested", transfer), transfer_event("approved", transfer)
    # A notification from elsewhere on gateway.events: the gateway must not consume it.
    stranger = with_notifications([validate_event(transfer_event("received", transfer))])[1].to_json_dict()
    try:
        db = client[database]
        await ensure_indexes(db)
        await EventLog(db).append_batch(with_notifications([validate_event(left)]),
                                        on_logged=NotificationStore(db).record)
        assert await db["outbox"].count_documents({"published_at": None}) == 2
        with rabbit_vhost() as amqp_uri:  # no other gateway publishes there
            await bind_as_earlier_versions_did(amqp_uri)
            async with listening(amqp_uri) as drain:
                replica = await asyncio.to_thread(start_gateway, mongodb_uri, amqp_uri, tmp_path,
                                                  MONGODB_GATEWAY_DB=database, OUTBOX_POLL_SECONDS="0.2")
                try:
                    await publish(amqp_uri, stranger, later)  # in this order into the gateway's queue
                    messages = await published_once_in_log_order(db, drain, [left["id"], later["id"]], expected=4)
                finally:
                    await asyncio.to_thread(replica.process.stop)
        assert await db["event_log"].count_documents({"event_id": stranger["id"]}) == 0
    finally:
        await client.close()
    assert [json.loads(m.body)["causationid"] for m in messages] == [left["id"]] * 2 + [later["id"]] * 2


async def test_notifications_go_out_once_each_after_the_broker_drops_the_relays_connection(mongodb_uri, tmp_path):
    """The broker closes the connection the gateway's relay publishes on while it is idle (as a
    broker restart or an operator would): the relay notices before its next batch and opens a
    new one, so the notifications logged after it go out at once, once each, without a failed
    pass and the catch-up that follows one."""
    database = f"gateway_drop_{uuid.uuid4().hex[:8]}"
    client = AsyncMongoClient(mongodb_uri, tz_aware=True)
    before, after = (transfer_event("requested", new_transfer(community(), community())) for _ in range(2))
    try:
        db = client[database]
        with rabbit_vhost() as amqp_uri:  # only this gateway's relay is closed
            async with listening(amqp_uri) as drain:
                replica = await asyncio.to_thread(start_gateway, mongodb_uri, amqp_uri, tmp_path,
                                                  MONGODB_GATEWAY_DB=database, OUTBOX_POLL_SECONDS="0.2")
                try:
                    await publish(amqp_uri, before)
                    await published_once_in_log_order(db, drain, [before["id"]], expected=2)
                    name = relay_connection_name("gateway")
                    closed = await asyncio.to_thread(close_broker_connections, amqp_uri, name)
                    assert len(closed) == 1
                    await publish(amqp_uri, after)
                    await published_once_in_log_order(db, drain, [after["id"]], expected=2)
                    reopened = await asyncio.to_thread(broker_connections, amqp_uri, name)
                    assert len(reopened) == 1 and reopened != closed
                    failures = metric_value(replica.process.metrics(), "outbox_publish_failures_total", service="gateway")
                    assert failures == 0 and replica.process.ready()
                finally:
                    await asyncio.to_thread(replica.process.stop)
    finally:
        await client.close()


def test_the_gateway_runs_the_kit_without_nameko_or_eventlet():
    """Its image does not install them: what it shares with the services must not import them."""
    check = ("import sys, gateway.__main__; "
             "sys.exit(' '.join({m.split('.')[0] for m in sys.modules} & {'nameko', 'eventlet'}) or None)")
    result = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
