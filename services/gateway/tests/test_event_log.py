"""The event log against a real database: sequence, exactly-once append, range reads, purge."""

import uuid
from datetime import datetime, timedelta, timezone

import pytest
from pymongo import AsyncMongoClient

from platform_contracts.envelope import CloudEvent
from gateway.events import EventLog

pytestmark = pytest.mark.timeout(30)


def event(**fields) -> CloudEvent:
    return CloudEvent(source="service-station", type="station.updated", division="370113", data={"n": 1}, **fields)


async def test_append_read_and_purge(mongodb_uri):
    client = AsyncMongoClient(mongodb_uri, tz_aware=True)
    try:
        log = EventLog(client[f"gateway_log_{uuid.uuid4().hex[:8]}"])
        await log.ensure_indexes()
        await log.ensure_indexes()  # idempotent, as every start runs it
        first, second = event(), event()
        a = await log.append(first)
        assert await log.append(first) is None  # a redelivery is not logged twice
        b = await log.append(second)
        assert (a.seq, b.seq) == (1, 2) and await log.last_seq() == 2
        assert b.envelope["id"] == second.id and b.division == "370113" and b.type == "station.updated"
        assert [e.seq for e in await log.after(0, 10)] == [1, 2]
        assert [e.seq for e in await log.after(0, 10, upto=1)] == [1]

        week_ago = datetime.now(timezone.utc) - timedelta(days=7)
        await log.collection.update_one({"seq": 1}, {"$set": {"logged_at": week_ago - timedelta(days=1)}})
        assert await log.purge(week_ago) == 1
        assert [e.seq for e in await log.after(0, 10)] == [2]
        assert (await log.append(event())).seq == 3  # the counter never goes back
    finally:
        await client.close()
