"""The command log and the inbox expire: their TTL indexes, made on a new database and on one
an older version left plain indexes in, and honoured by SecantusDB's TTL sweep."""

import uuid
from datetime import timedelta

import pytest

from service_kit.store import Store, utc_now


@pytest.fixture
def store(mongodb_uri):
    store = Store(mongodb_uri, f"kit_{uuid.uuid4().hex[:8]}", "kit")
    yield store
    store.client.drop_database(store.db.name)
    store.close()


def expiry(store: Store, collection: str, field: str) -> int | None:
    return store.db[collection].index_information()[f"{field}_1"].get("expireAfterSeconds")


def test_command_log_and_inbox_no_longer_grow_without_end(store):
    """Command records hold results (names, partial digits) and were kept for ever."""
    store.ensure_indexes(log_retention_hours=48)
    assert expiry(store, "commands", "executed_at") == expiry(store, "inbox", "applied_at") == 48 * 3600
    store.ensure_indexes(log_retention_hours=48)  # every start runs it: nothing changes


def test_a_database_with_the_plain_indexes_of_an_older_version_gets_ttl_indexes(store):
    store.db.commands.create_index("executed_at")
    store.db.inbox.create_index("applied_at")
    store.ensure_indexes(log_retention_hours=168)
    assert expiry(store, "commands", "executed_at") == expiry(store, "inbox", "applied_at") == 168 * 3600


def test_a_changed_retention_changes_the_expiry_in_place(store):
    store.ensure_indexes(log_retention_hours=168)
    store.ensure_indexes(log_retention_hours=24)
    assert expiry(store, "commands", "executed_at") == expiry(store, "inbox", "applied_at") == 24 * 3600


def test_records_older_than_the_retention_are_removed(store):
    store.ensure_indexes(log_retention_hours=1)
    old, recent = utc_now() - timedelta(hours=2), utc_now()
    store.db.commands.insert_many([{"_id": "old", "executed_at": old}, {"_id": "recent", "executed_at": recent}])
    store.db.inbox.insert_many([{"_id": "old", "applied_at": old}, {"_id": "recent", "applied_at": recent}])
    # SecantusDB's sweep runs every 60 s, like mongod's; this runs one now.
    store.client.admin.command("secantusAdmin.pruneTtl")
    assert [d["_id"] for d in store.db.commands.find()] == ["recent"]
    assert [d["_id"] for d in store.db.inbox.find()] == ["recent"]
