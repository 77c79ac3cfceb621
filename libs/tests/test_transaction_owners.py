"""A process killed inside a transaction does not hold up the writes that follow for the
transaction's lifetime (60 s): another process's heartbeat finds it gone and ends its sessions
(service_kit.transaction_owners). Against the real database server."""

import subprocess
import sys
import textwrap
import threading
import uuid

import pymongo
import pytest

from platform_testing import wait_for
from service_kit.config import env_config
from service_kit.transaction_owners import COLLECTION, TransactionOwners, heartbeat_seconds_from

# Far below the 60 s the database would otherwise take: a stalled write fails the test.
pytestmark = pytest.mark.timeout(40)

HEARTBEAT = 0.5

HOLDER = textwrap.dedent("""
    import sys, time, pymongo
    from service_kit.transaction_owners import TransactionOwners
    uri, database = sys.argv[1:3]
    db = pymongo.MongoClient(uri, tz_aware=True)[database]
    owners = TransactionOwners(db, heartbeat_seconds=float(sys.argv[3]))
    session = db.client.start_session()
    owners.session_started(session)
    session.start_transaction()
    db.counters.update_one({"_id": "seq"}, {"$inc": {"value": 1}}, session=session)
    print("holding", flush=True)
    time.sleep(600)
""")


@pytest.fixture
def db(mongodb_uri):
    client = pymongo.MongoClient(mongodb_uri, tz_aware=True)
    database = client[f"owners_{uuid.uuid4().hex[:8]}"]
    database.counters.insert_one({"_id": "seq", "value": 0})
    yield database
    client.drop_database(database.name)
    client.close()


def killed_inside_a_transaction(mongodb_uri, db) -> None:
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, mongodb_uri, db.name, str(HEARTBEAT)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "holding"
    finally:
        holder.kill()  # kill -9: no endSessions, the transaction stays open on the server
        holder.wait()


def test_a_killed_processs_open_transaction_is_ended_and_the_write_it_held_goes_through(mongodb_uri, db):
    killed_inside_a_transaction(mongodb_uri, db)
    assert db[COLLECTION].count_documents({}) == 1  # the dead process's sessions, on record
    survivor = TransactionOwners(db, heartbeat_seconds=HEARTBEAT)
    stopped = threading.Event()
    threading.Thread(target=survivor.run, args=(stopped,), daemon=True).start()
    try:
        with db.client.start_session() as session:
            survivor.session_started(session)
            session.with_transaction(
                lambda s: db.counters.update_one({"_id": "seq"}, {"$inc": {"value": 10}}, session=s))
    finally:
        stopped.set()
    # The killed transaction's increment was undone, the survivor's applied once.
    assert db.counters.find_one({"_id": "seq"})["value"] == 10
    assert [r["_id"] for r in db[COLLECTION].find()] == [survivor.owner]


def test_a_live_owner_keeps_its_record_and_a_slow_one_is_recorded_again(db):
    first = TransactionOwners(db, heartbeat_seconds=HEARTBEAT)
    second = TransactionOwners(db, heartbeat_seconds=HEARTBEAT)
    for owners in (first, second):
        with db.client.start_session() as session:
            owners.session_started(session)
    assert first.beat() == 0 and second.beat() == 0
    assert db[COLLECTION].count_documents({}) == 2
    # `second` misses its heartbeats: `first` ends its sessions and removes its record...
    wait_for(lambda: first.beat() == 1, timeout=10, interval=HEARTBEAT, what="the silent owner found gone")
    assert db[COLLECTION].count_documents({"_id": second.owner}) == 0
    # ...and its next beat puts the record back with the sessions it uses.
    second.beat()
    again = db[COLLECTION].find_one({"_id": second.owner})
    assert again is not None and len(again["sessions"]) == 1


def test_a_clean_stop_leaves_no_record(db):
    owners = TransactionOwners(db, heartbeat_seconds=HEARTBEAT)
    with db.client.start_session() as session:
        owners.session_started(session)
    owners.leave()
    assert db[COLLECTION].count_documents({}) == 0


def test_a_service_takes_its_heartbeat_from_the_environment(monkeypatch):
    """env_config passes on only the variables it knows: this one was not among them, so every
    service beat at the 5 s default whatever was set (a chaos run's 21 s of 504s after a kill)."""
    monkeypatch.setenv("MONGODB_URI", "mongodb://127.0.0.1:1/")
    monkeypatch.setenv("TRANSACTION_OWNER_HEARTBEAT_SECONDS", "1")
    assert heartbeat_seconds_from(env_config("organization", 8081)) == 1.0


def test_silence_is_judged_on_the_observers_clock_and_not_across_its_own_failed_heartbeat(db):
    """No two clocks are compared, and a database outage that stopped every heartbeat does not
    make every process look gone when it ends (the review of the first version found both)."""
    now = [1_000.0]
    observer = TransactionOwners(db, heartbeat_seconds=HEARTBEAT, clock=lambda: now[0])
    other = TransactionOwners(db, heartbeat_seconds=HEARTBEAT)
    with db.client.start_session() as session:
        other.session_started(session)
    assert observer.beat() == 0  # first seen: not judged yet
    now[0] += 60  # far past 4 heartbeats, with the other silent...
    reachable = observer.collection
    unreachable = pymongo.MongoClient("mongodb://127.0.0.1:1/", serverSelectionTimeoutMS=100)
    observer.collection = unreachable[db.name][COLLECTION]
    with pytest.raises(pymongo.errors.PyMongoError):
        observer.beat()  # ...but the observer's own heartbeat failed meanwhile
    observer.collection = reachable
    unreachable.close()
    assert observer.beat() == 0 and other.owner in observer.others_alive()
    now[0] += 4 * HEARTBEAT  # silent for 4 heartbeats seen from here: gone
    assert other.owner not in observer.others_alive()
    assert observer.beat() == 1
    assert db[COLLECTION].count_documents({"_id": other.owner}) == 0
