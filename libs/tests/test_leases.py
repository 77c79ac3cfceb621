"""Leases on a real MongoDB wire server: one holder at a time, renewal, expiry, the work's
schedule (`done_before`), and release by the holder only."""

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone

import pymongo
import pytest

from platform_testing import mongodb_server
from service_kit.leases import Leases

T0 = datetime(2026, 12, 1, 8, 0, tzinfo=timezone.utc)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


@pytest.fixture(scope="module")
def client():
    with mongodb_server() as uri:
        client = pymongo.MongoClient(uri, tz_aware=True)
        yield client
        client.close()


@pytest.fixture
def leases(client):
    database = client[f"leases_{uuid.uuid4().hex[:8]}"]
    yield Leases(database.leases)
    client.drop_database(database.name)


def race(leases: Leases, name: str, now: datetime, holders: int = 8) -> list[str]:
    """Every holder tries to take `name` at once; the holders that got it."""
    start = threading.Barrier(holders)

    def attempt(holder: str) -> bool:
        start.wait()
        return leases.take(name, holder, now, 60)

    names = [f"replica-{i}" for i in range(holders)]
    with ThreadPoolExecutor(holders) as pool:
        return [holder for holder, won in zip(names, pool.map(attempt, names)) if won]


def test_of_holders_racing_for_a_lease_exactly_one_wins(leases):
    for round_ in range(5):
        name = f"job-{round_}"
        won = race(leases, name, at(0))  # never taken: the upserts collide
        assert len(won) == 1 and leases.get(name)["holder"] == won[0]
        won_again = race(leases, name, at(60))  # expired: the updates race for it
        assert len(won_again) == 1 and leases.get(name)["holder"] == won_again[0]


def test_the_holder_renews_its_lease_and_the_others_wait_for_it_to_expire(leases):
    assert leases.take("job", "a", at(0), 60)
    assert not leases.take("job", "b", at(30), 60)
    assert leases.take("job", "a", at(30), 60)  # renewal: now held until 90
    assert leases.get("job")["expires_at"] == at(90) and leases.get("job")["renewed_at"] == at(30)
    assert not leases.take("job", "b", at(61), 60)
    assert leases.take("job", "b", at(90), 60)  # expired: anyone's
    assert not leases.take("job", "a", at(100), 60)
    assert leases.get("job")["holder"] == "b"


def test_done_before_keeps_work_completed_since_then_from_running_again(leases):
    assert leases.take("job", "a", at(0), 60, done_before=at(0))  # never completed
    leases.release("job", "a", at(10), record={"completed_at": at(10)})
    assert not leases.take("job", "b", at(20), 60, done_before=at(10))
    assert not leases.take("job", "a", at(20), 60, done_before=at(5))  # not even the last holder
    assert leases.take("job", "b", at(20), 60)  # without done_before: free is free
    leases.release("job", "b", at(30))  # released without a record: the completion stays
    assert leases.get("job")["completed_at"] == at(10)
    assert leases.take("job", "c", at(40), 60, done_before=at(11))


def test_only_the_holder_releases_and_records(leases):
    assert leases.get("job") == {}
    assert leases.take("job", "a", at(0), 60)
    leases.release("job", "b", at(10), record={"last_run": {"by": "b"}})
    assert leases.get("job")["holder"] == "a" and "last_run" not in leases.get("job")
    assert not leases.take("job", "c", at(20), 60)
    leases.release("job", "a", at(30), record={"last_run": {"by": "a"}})
    assert leases.get("job")["last_run"] == {"by": "a"} and leases.get("job")["expires_at"] == at(30)
    assert leases.take("job", "c", at(30), 60)


def test_a_holder_that_lost_its_lease_overwrites_nothing(leases):
    assert leases.take("job", "a", at(0), 60)
    assert leases.take("job", "b", at(60), 60)  # a stalled past its lease
    assert not leases.take("job", "a", at(70), 60)  # a's renewal fails: it stops
    leases.release("job", "a", at(70), record={"last_run": {"by": "a"}})
    assert leases.get("job")["holder"] == "b" and leases.get("job")["expires_at"] == at(120)
    assert "last_run" not in leases.get("job")
