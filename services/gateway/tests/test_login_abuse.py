"""Login abuse (issue 12, finding 1): Argon2id (64 MiB a hash) bounded in concurrency, guessing
locked out per username and per client address, against a gateway of these tests' own (small
limits, a short window, a database of its own)."""

import asyncio
import ipaddress
import time
import uuid

import httpx
import pytest
from pymongo import AsyncMongoClient

from platform_testing import metric_value
from gateway_test_support import ADMIN_PASSWORD, start_gateway  # noqa: E402

from gateway.login_guard import LoginGuard
from gateway.problems import ApiProblem
from gateway.settings import Settings

pytestmark = pytest.mark.timeout(90)

MAX_FAILURES_PER_USERNAME = 3
MAX_FAILURES_PER_ADDRESS = 5
LONG_WINDOW_SECONDS = 120  # longer than any test takes: a lockout seen here is not over by then
SHORT_WINDOW_SECONDS = 3
ARGON2_MEMORY_MIB = 64  # argon2-cffi's default (RFC 9106 low-memory) parameters
TOKEN_PATH = "/api/v1/auth/token"


def guarded_gateway(mongodb_uri, amqp_uri, log_dir, window_seconds: float, max_failures_per_username: int):
    return start_gateway(mongodb_uri, amqp_uri, log_dir, MONGODB_GATEWAY_DB=f"gateway_login_{uuid.uuid4().hex[:8]}",
                         LOGIN_HASHING_CONCURRENCY="1", LOGIN_HASHING_QUEUE="2",
                         LOGIN_MAX_FAILURES_PER_USERNAME=str(max_failures_per_username),
                         LOGIN_MAX_FAILURES_PER_ADDRESS=str(MAX_FAILURES_PER_ADDRESS),
                         LOGIN_FAILURE_WINDOW_SECONDS=str(window_seconds))


@pytest.fixture(scope="module")
def guarded(mongodb_uri, amqp_uri, tmp_path_factory):
    gw = guarded_gateway(mongodb_uri, amqp_uri, tmp_path_factory.mktemp("guarded"), LONG_WINDOW_SECONDS,
                         MAX_FAILURES_PER_USERNAME)
    try:
        yield gw
    finally:
        gw.process.stop()


@pytest.fixture
def briefly_guarded(mongodb_uri, amqp_uri, tmp_path):
    gw = guarded_gateway(mongodb_uri, amqp_uri, tmp_path, SHORT_WINDOW_SECONDS, max_failures_per_username=1)
    try:
        yield gw
    finally:
        gw.process.stop()


def client_at(gateway, address: str) -> httpx.Client:
    """A client the gateway sees at `address` (uvicorn trusts X-Forwarded-For from 127.0.0.1)."""
    client = gateway.client()
    client.headers["X-Forwarded-For"] = address
    return client


# Each test's own client address: drawn at random from 250, two tests of the module (one gateway,
# one 120 s window) sometimes shared one, and its failures locked the other out early (a flake
# seen under load, taken for one failure counted twice).
_ADDRESSES = (str(address) for address in ipaddress.ip_network("198.18.0.0/15").hosts())


def an_address() -> str:
    return next(_ADDRESSES)


def new_account(gateway) -> tuple[str, str]:
    username, password = f"user-{uuid.uuid4().hex[:8]}", f"pw-{uuid.uuid4().hex}"
    with client_at(gateway, an_address()) as client:
        token = client.post(TOKEN_PATH, json={"username": "admin", "password": ADMIN_PASSWORD}).json()["access_token"]
        created = client.post("/api/v1/users", json={"username": username, "password": password, "role": "admin"},
                              headers={"Authorization": f"Bearer {token}"})
    assert created.status_code == 201, created.text
    return username, password


def peak_rss_mib(pid: int) -> float:
    """The process's peak resident memory (VmHWM): what the OOM killer would have seen."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM in /proc/<pid>/status")


async def test_a_flood_of_bad_logins_neither_exhausts_memory_nor_is_hashed_unlimited(guarded):
    username, password = new_account(guarded)
    pid = guarded.process.process.pid
    peak_before = peak_rss_mib(pid)
    async with guarded.async_client() as client:
        client.headers["X-Forwarded-For"] = an_address()
        client.timeout = 60
        responses = await asyncio.gather(*(
            client.post(TOKEN_PATH, json={"username": username, "password": f"guess-{i}"}) for i in range(200)))
    growth = peak_rss_mib(pid) - peak_before
    statuses = [r.status_code for r in responses]
    # One hash at a time (LOGIN_HASHING_CONCURRENCY=1): the peak grows by less than a second
    # hash's memory. Unbounded, the thread pool ran several at once.
    assert growth < ARGON2_MEMORY_MIB, f"peak RSS grew by {growth:.0f} MiB"
    assert set(statuses) <= {401, 429, 503}, statuses
    # Waiting attempts look at the count again: no more than the limit were checked (one may have
    # been hashing when the last counted failure was recorded).
    assert statuses.count(401) <= MAX_FAILURES_PER_USERNAME + 1, statuses
    for refused in (r for r in responses if r.status_code in (429, 503)):
        assert int(refused.headers["Retry-After"]) >= 1
    with client_at(guarded, an_address()) as client:
        locked = client.post(TOKEN_PATH, json={"username": username, "password": password})
    assert locked.status_code == 429 and 1 <= int(locked.headers["Retry-After"]) <= LONG_WINDOW_SECONDS, locked.text
    assert metric_value(guarded.process.metrics(), "gateway_login_refused_total", reason="busy") > 0


def test_password_guessing_is_locked_out_per_username(guarded):
    username, password = new_account(guarded)
    lockouts_before = metric_value(guarded.process.metrics(), "gateway_login_lockouts_total", kind="username")
    with client_at(guarded, an_address()) as client:
        for attempt in range(MAX_FAILURES_PER_USERNAME):
            assert client.post(TOKEN_PATH, json={"username": username, "password": f"guess-{attempt}"}).status_code == 401
    # Locked for every address, even with the right password.
    with client_at(guarded, an_address()) as client:
        locked = client.post(TOKEN_PATH, json={"username": username, "password": password})
    assert locked.status_code == 429 and int(locked.headers["Retry-After"]) >= 1, locked.text
    assert locked.headers["content-type"].startswith("application/problem+json")
    assert metric_value(guarded.process.metrics(), "gateway_login_lockouts_total", kind="username") == lockouts_before + 1
    log = open(guarded.process.log_path, encoding="utf-8").read()
    assert f"username='{username}'" in log and "guess-" not in log and password not in log


def test_the_right_password_works_again_after_the_window(briefly_guarded):
    username, password = new_account(briefly_guarded)
    with client_at(briefly_guarded, an_address()) as client:
        assert client.post(TOKEN_PATH, json={"username": username, "password": "a-guess"}).status_code == 401
        locked = client.post(TOKEN_PATH, json={"username": username, "password": password})
        assert locked.status_code == 429 and int(locked.headers["Retry-After"]) <= SHORT_WINDOW_SECONDS
        time.sleep(int(locked.headers["Retry-After"]) + 0.1)  # what is tested: the lockout lapses, as it said
        assert client.post(TOKEN_PATH, json={"username": username, "password": password}).status_code == 200


def test_guessing_usernames_that_do_not_exist_is_locked_out_too(guarded):
    nobody = f"nobody-{uuid.uuid4().hex[:8]}"
    with client_at(guarded, an_address()) as client:
        statuses = [client.post(TOKEN_PATH, json={"username": nobody, "password": "guess"}).status_code
                    for _ in range(MAX_FAILURES_PER_USERNAME + 1)]
    assert statuses == [401] * MAX_FAILURES_PER_USERNAME + [429]


def test_guessing_from_one_address_is_locked_out_across_usernames(guarded):
    username, password = new_account(guarded)
    address = an_address()
    with client_at(guarded, address) as client:
        for _ in range(MAX_FAILURES_PER_ADDRESS):
            response = client.post(TOKEN_PATH, json={"username": f"n-{uuid.uuid4().hex[:8]}", "password": "guess"})
            assert response.status_code == 401
        assert client.post(TOKEN_PATH, json={"username": username, "password": password}).status_code == 429
    with client_at(guarded, an_address()) as client:  # another address is not affected
        assert client.post(TOKEN_PATH, json={"username": username, "password": password}).status_code == 200


async def test_failures_are_counted_across_replicas_and_forgotten_after_the_window(mongodb_uri):
    mongo = AsyncMongoClient(mongodb_uri, tz_aware=True)
    try:
        db = mongo[f"gateway_guard_{uuid.uuid4().hex[:8]}"]
        await LoginGuard.ensure_indexes(db)
        settings = Settings(mongodb_uri=mongodb_uri, login_max_failures_per_username=2,
                            login_failure_window_seconds=0.5)
        replica_a, replica_b = LoginGuard(db, settings), LoginGuard(db, settings)
        await replica_a.record_failure("alice", "203.0.113.1")
        await replica_b.record_failure("alice", "203.0.113.2")
        with pytest.raises(ApiProblem) as locked:
            await replica_a.refuse_if_locked("alice", "203.0.113.3")
        assert locked.value.status == 429
        await asyncio.sleep(0.6)  # what is tested: the 0.5 s window lapses, and its failures with it
        await replica_b.refuse_if_locked("alice", "203.0.113.3")  # a new window
        await replica_b.record_failure("alice", "203.0.113.1")
        await replica_a.refuse_if_locked("alice", "203.0.113.3")  # one failure in it: not locked
    finally:
        await mongo.close()
