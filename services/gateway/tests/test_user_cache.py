"""The in-process copy of accounts that authentication reads, against a real database."""

import asyncio
import uuid

import pytest
from pymongo import AsyncMongoClient

from gateway.users import UserRepository

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
async def db(mongodb_uri):
    client = AsyncMongoClient(mongodb_uri, tz_aware=True)
    try:
        yield client[f"gateway_users_{uuid.uuid4().hex[:8]}"]
    finally:
        await client.close()


async def test_a_change_through_this_process_applies_at_once(db):
    users = UserRepository(db, cache_seconds=60)
    user = await users.create("op-1", "a-long-password", "operator", "3701")
    assert (await users.cached_by_username("op-1"))["scope"] == "3701"
    await users.update(user["_id"], {"scope": "370113"})
    assert (await users.cached_by_username("op-1"))["scope"] == "370113"
    await users.update(user["_id"], {"active": False})
    assert (await users.cached_by_username("op-1"))["active"] is False
    assert await users.cached_by_username("nobody") is None


async def test_a_change_through_another_replica_applies_within_the_ttl(db):
    users, other_replica = UserRepository(db, cache_seconds=0.5), UserRepository(db, cache_seconds=0.5)
    user = await users.create("op-2", "a-long-password", "operator", "3701")
    assert (await users.cached_by_username("op-2"))["active"] is True
    await other_replica.update(user["_id"], {"active": False})
    assert (await users.cached_by_username("op-2"))["active"] is True  # the cached copy, no read
    await asyncio.sleep(0.6)  # what is tested: the 0.5 s cache lapses, and the change is read
    assert (await users.cached_by_username("op-2"))["active"] is False


async def test_a_read_overtaken_by_a_change_is_not_kept(db):
    """A read that started before an update and returns after it may hold the old account:
    it is used for that one request but not cached."""
    users = UserRepository(db, cache_seconds=60)
    user = await users.create("op-3", "a-long-password", "operator", "3701")
    read_started, update_done = asyncio.Event(), asyncio.Event()
    read = users.by_username

    async def slow_read(username):
        doc = await read(username)
        read_started.set()
        await update_done.wait()
        return doc

    users.by_username = slow_read
    in_flight = asyncio.create_task(users.cached_by_username("op-3"))
    await read_started.wait()
    await users.update(user["_id"], {"active": False})
    update_done.set()
    assert (await in_flight)["active"] is True
    users.by_username = read
    assert (await users.cached_by_username("op-3"))["active"] is False
