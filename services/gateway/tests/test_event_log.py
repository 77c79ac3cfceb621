"""The event log against a real database: sequence, exactly-once append, batches, range
reads, purge."""

import uuid
from datetime import datetime, timedelta, timezone

import pytest
from pymongo import ASCENDING, AsyncMongoClient
from pymongo.monitoring import CommandListener

from platform_contracts.envelope import CloudEvent
from gateway.event_log import EventLog

pytestmark = pytest.mark.timeout(30)


def event(**fields) -> CloudEvent:
    return CloudEvent(source="service-station", type="station.updated", division="370113", data={"n": 1}, **fields)


class CommandCounter(CommandListener):
    def __init__(self):
        self.names: list[str] = []

    def started(self, event):
        self.names.append(event.command_name)

    def succeeded(self, event):
        pass

    def failed(self, event):
        pass


@pytest.fixture
def commands() -> CommandCounter:
    return CommandCounter()


@pytest.fixture
async def db(mongodb_uri, commands):
    client = AsyncMongoClient(mongodb_uri, tz_aware=True, event_listeners=[commands])
    try:
        yield client[f"gateway_log_{uuid.uuid4().hex[:8]}"]
    finally:
        await client.close()


async def logged_event_ids(log: EventLog) -> list[str]:
    docs = await log.collection.find({}, {"event_id": 1}).sort("seq", ASCENDING).to_list()
    return [doc["event_id"] for doc in docs]


async def test_append_read_and_purge(db):
    await db["event_log"].create_index([("logged_at", ASCENDING)], name="logged_at")  # as older versions had
    log = EventLog(db)
    await log.ensure_indexes()
    await log.ensure_indexes()  # idempotent, as every start runs it
    assert set(await log.collection.index_information()) == {"_id_", "seq_unique", "event_id_unique",
                                                                "division_keys_seq", "type_keys_seq"}
    first, second = event(), event()
    a = await log.append(first)
    assert await log.append(first) is None  # a redelivery is not logged twice
    b = await log.append(second)
    assert (a.seq, b.seq) == (1, 2) and await log.last_seq() == 2
    assert b.envelope["id"] == second.id and b.division == "370113" and b.type == "station.updated"
    assert [e.seq for e in await log.after(0, 10)] == [1, 2]
    assert [e.seq for e in await log.after(0, 10, upto=1)] == [1]

    week_ago = datetime.now(timezone.utc) - timedelta(days=7)
    assert await log.purge(week_ago) == 0
    await log.collection.update_one({"seq": 1}, {"$set": {"logged_at": week_ago - timedelta(days=1)}})
    assert await log.purge(week_ago) == 1
    assert [e.seq for e in await log.after(0, 10)] == [2]
    assert (await log.append(event())).seq == 3  # the counter never goes back


async def test_a_batch_is_logged_in_order_with_one_insert(db, commands):
    log = EventLog(db)
    await log.ensure_indexes()
    earlier = event()
    await log.append(earlier)
    burst = [event() for _ in range(5)]

    commands.names.clear()
    entries = await log.append_batch(burst)
    assert commands.names == ["insert"]  # positions come from memory; nothing else to keep with it
    assert [e.seq for e in entries] == [2, 3, 4, 5, 6]
    assert await logged_event_ids(log) == [earlier.id] + [e.id for e in burst]


async def test_what_a_batch_gives_rise_to_is_stored_with_it_in_one_transaction(db, commands):
    log = EventLog(db)
    await log.ensure_indexes()
    await log.append(event())

    async def record(entries, session):
        await db["projection"].insert_one({"seqs": [e.seq for e in entries]}, session=session)

    commands.names.clear()
    entries = await log.append_batch([event(), event()], on_logged=record)
    assert commands.names == ["insert", "insert", "commitTransaction"]
    assert [e.seq for e in entries] == [2, 3] and (await db["projection"].find_one())["seqs"] == [2, 3]


async def test_events_already_logged_are_left_out_without_using_positions(db, commands):
    log = EventLog(db)
    await log.ensure_indexes()
    earlier = event()
    await log.append(earlier)
    burst = [event() for _ in range(5)]
    batch = [burst[0], earlier, burst[1], burst[2], burst[1], burst[3], burst[4]]

    entries = await log.append_batch(batch)
    # Already logged, or earlier in the batch: None, and not logged again.
    assert [e.seq if e else None for e in entries] == [2, None, 3, 4, None, 5, 6]
    assert [e.envelope["id"] if e else None for e in entries] == [
        burst[0].id, None, burst[1].id, burst[2].id, None, burst[3].id, burst[4].id]
    assert await logged_event_ids(log) == [earlier.id] + [e.id for e in burst]
    assert await log.append_batch([burst[2], burst[3]]) == [None, None]
    assert (await log.append_batch([event()]))[0].seq == 7  # a replay allocated nothing


async def _noting(entries, session):
    pass


@pytest.mark.parametrize("on_logged", [None, _noting], ids=["insert", "transaction"])
async def test_a_writer_with_a_stale_position_collides_and_retries_with_dense_positions(db, on_logged):
    """Another replica logs meanwhile (a consumer hand-over), one of the batch's events among
    them: what was refused is tried again, so every event is logged exactly once, in order,
    with no unused position."""
    log, rival = EventLog(db), EventLog(db)
    await log.ensure_indexes()
    await log.append(event())  # `log` now believes the next position is 2
    batch = [event() for _ in range(5)]
    await rival.append(batch[2])  # takes 2
    await rival.append(event())  # takes 3

    entries = await log.append_batch(batch, on_logged=on_logged)

    assert entries[2] is None  # the rival logged it
    assert [e.envelope["id"] for e in entries if e] == [batch[i].id for i in (0, 1, 3, 4)]
    assert [e.seq for e in entries if e] == [4, 5, 6, 7]
    assert [e.seq for e in await log.after(0, 100)] == list(range(1, 8))


async def test_a_writer_back_from_standing_by_reloads_its_position(db):
    """A replica that stood by while others wrote and purged must not write below the purged
    positions (where nothing would collide): after a pause it reads the position again."""
    log, rival = EventLog(db), EventLog(db)
    await log.ensure_indexes()
    await log.append(event())
    for _ in range(3):
        await rival.append(event())
    old = datetime.now(timezone.utc) - timedelta(days=30)
    await log.collection.update_many({}, {"$set": {"logged_at": old}})
    assert await log.purge(old + timedelta(days=1)) == 3  # the newest one stays
    log._appended_at -= EventLog.RELOAD_AFTER_IDLE_SECONDS + 1
    assert (await log.append(event())).seq == 5


async def test_a_writer_back_from_a_pause_reads_its_position_from_its_last_entry_on(mongodb_uri):
    """Not with a sort and a limit over the whole log, which SecantusDB answers by reading all of
    it (seconds at 50,000 entries; the consumer pauses between most bursts)."""
    finds: list[dict] = []

    class FindRecorder(CommandListener):
        def started(self, event):
            if event.command_name == "find":
                finds.append(dict(event.command))

        def succeeded(self, event):
            pass

        def failed(self, event):
            pass

    client = AsyncMongoClient(mongodb_uri, tz_aware=True, event_listeners=[FindRecorder()])
    try:
        db = client[f"gateway_log_{uuid.uuid4().hex[:8]}"]
        log, rival = EventLog(db), EventLog(db)
        await log.ensure_indexes()
        for _ in range(3):
            await log.append(event())
        for _ in range(2):
            await rival.append(event())
        log._appended_at -= EventLog.RELOAD_AFTER_IDLE_SECONDS + 1
        finds.clear()
        assert (await log.append(event())).seq == 6
        assert [(f["filter"], f.get("sort")) for f in finds] == [({"seq": {"$gte": 3}}, None)]
    finally:
        await client.close()


async def test_what_is_written_with_a_batch_is_undone_with_it(db):
    log = EventLog(db)
    await log.ensure_indexes()

    async def fail_after_writing(entries, session):
        await db["projection"].insert_one({"seqs": [e.seq for e in entries]}, session=session)
        raise RuntimeError("the projection failed")

    with pytest.raises(RuntimeError):
        await log.append_batch([event(), event()], on_logged=fail_after_writing)
    assert await logged_event_ids(log) == [] and await db["projection"].count_documents({}) == 0
    assert (await log.append(event())).seq == 1  # the undone batch left no gap
