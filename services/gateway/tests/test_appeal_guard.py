"""The appeal submission guard (issue 14, "Abuse"): submissions are limited per account, per
device and per client address (429 with Retry-After, a problem document, and nothing sent on),
an admin's blocklist refuses an account, a device or an address (403), and both are counted in
`gateway_appeal_submissions_refused_total`. Gateways of these tests' own, with low limits.

The gateway tests' broker has no appeal service: a submission the guard lets through is
answered 503 ("service appeal is not running") by the RPC client, which is how these tests
tell "passed the guard" from "refused by it"."""

import uuid

import httpx
import pytest

from platform_testing import metric_value
from gateway.appeal_guard import mask
from gateway_test_support import ADMIN_PASSWORD, start_gateway

pytestmark = pytest.mark.timeout(120)

PER_ACCOUNT, PER_DEVICE, PER_ADDRESS = 2, 3, 3
BIG = "1000000/minute"
BLOCKLIST = "/api/v1/appeal-blocklist"


def appeal(**extra) -> dict:
    return {"category": "hazard", "title": "井盖缺失", "description": "路口井盖缺失，夜间骑行危险",
            "division": "370113001", **extra}


class Submitters:
    """A gateway of its own, its admin, and fresh worker accounts that submit appeals."""

    def __init__(self, gateway):
        self.gateway = gateway
        self.admin = gateway.client(gateway.token("admin", ADMIN_PASSWORD))

    def account(self, role: str = "worker", scope="m-1") -> tuple[str, httpx.Client]:
        username, password = f"{role}-{uuid.uuid4().hex[:8]}", f"pw-{uuid.uuid4().hex}"
        created = self.admin.post("/api/v1/users", json={"username": username, "password": password, "role": role,
                                                          "scope": scope})
        assert created.status_code == 201, created.text
        return username, self.gateway.client(self.gateway.token(username, password))

    def close(self):
        self.admin.close()


def submit(client: httpx.Client, device: str | None = None, **extra) -> httpx.Response:
    headers = {"X-Device-Id": device} if device else {}
    return client.post("/api/v1/appeals", json=appeal(**extra), headers=headers)


def passed(response: httpx.Response) -> bool:
    """Let through by the guard: the call reached the RPC client (no appeal service here)."""
    return response.status_code == 503 and "appeal" in response.json()["detail"]


def refused(response: httpx.Response, status: int, what: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert what in response.json()["detail"], response.json()
    if status == 429:
        assert 1 <= int(response.headers["Retry-After"]) <= 3600


@pytest.fixture(scope="module")
def limited(mongodb_uri, amqp_uri, tmp_path_factory):
    """Per account and per device low, per address out of the way."""
    gw = start_gateway(mongodb_uri, amqp_uri, tmp_path_factory.mktemp("appeal-guard"),
                       MONGODB_GATEWAY_DB=f"gateway_appeal_guard_{uuid.uuid4().hex[:8]}",
                       APPEAL_SUBMISSIONS_PER_ACCOUNT=f"{PER_ACCOUNT}/hour",
                       APPEAL_SUBMISSIONS_PER_DEVICE=f"{PER_DEVICE}/hour", APPEAL_SUBMISSIONS_PER_ADDRESS=BIG)
    submitters = Submitters(gw)
    try:
        yield submitters
    finally:
        submitters.close()
        gw.process.stop()


@pytest.fixture(scope="module")
def by_address(mongodb_uri, amqp_uri, tmp_path_factory):
    gw = start_gateway(mongodb_uri, amqp_uri, tmp_path_factory.mktemp("appeal-guard-address"),
                       MONGODB_GATEWAY_DB=f"gateway_appeal_guard_{uuid.uuid4().hex[:8]}",
                       APPEAL_SUBMISSIONS_PER_ACCOUNT=BIG, APPEAL_SUBMISSIONS_PER_DEVICE=BIG,
                       APPEAL_SUBMISSIONS_PER_ADDRESS=f"{PER_ADDRESS}/hour")
    submitters = Submitters(gw)
    try:
        yield submitters
    finally:
        submitters.close()
        gw.process.stop()


def test_an_account_beyond_its_limit_gets_429_and_another_account_does_not(limited):
    _, worker = limited.account()
    with worker:
        assert all(passed(submit(worker)) for _ in range(PER_ACCOUNT))
        refused(submit(worker), 429, "account")
        # Anonymous appeals carry no personal data, and are counted all the same.
        refused(submit(worker, submitter={"kind": "anonymous"}), 429, "account")
    _, other = limited.account()
    with other:
        assert passed(submit(other))
    assert metric_value(limited.gateway.process.metrics(), "gateway_appeal_submissions_refused_total",
                        reason="account") >= 2


def test_a_device_beyond_its_limit_gets_429_whichever_account_sends_from_it(limited):
    device = f"device-{uuid.uuid4().hex}"
    (_, first), (_, second) = limited.account(), limited.account()
    with first, second:
        assert passed(submit(first, device)) and passed(submit(first, device))
        assert passed(submit(second, None, device_id=device))  # the body's device_id when there is no header
        refused(submit(second, device), 429, "device")
        # A refused submission counted against nothing: the second account has one more to go.
        assert passed(submit(second, f"device-{uuid.uuid4().hex}"))
        refused(submit(second, f"device-{uuid.uuid4().hex}"), 429, "account")
    assert metric_value(limited.gateway.process.metrics(), "gateway_appeal_submissions_refused_total",
                        reason="device") >= 1


def test_a_malformed_submission_is_a_422_and_counts_against_nothing(limited):
    _, worker = limited.account()
    with worker:
        for _ in range(PER_ACCOUNT + 1):
            assert submit(worker, category="no-such-category").status_code == 422
        assert worker.post("/api/v1/appeals", json=appeal(), headers={"X-Device-Id": "x" * 129}).status_code == 422
        assert passed(submit(worker))


def test_submissions_from_one_address_are_limited_across_accounts(by_address):
    accounts = [by_address.account() for _ in range(PER_ADDRESS + 1)]
    try:
        assert all(passed(submit(client)) for _, client in accounts[:PER_ADDRESS])
        refused(submit(accounts[-1][1]), 429, "address")
    finally:
        for _, client in accounts:
            client.close()
    assert metric_value(by_address.gateway.process.metrics(), "gateway_appeal_submissions_refused_total",
                        reason="address") >= 1


def test_the_blocklist_refuses_an_account_a_device_and_an_address_until_the_entry_is_removed(limited):
    admin = limited.admin
    username, worker = limited.account()
    device = f"device-{uuid.uuid4().hex}"
    with worker:
        entries = {}
        for kind, value in (("account", username), ("device", device)):
            response = admin.post(BLOCKLIST, json={"kind": kind, "value": value, "reason": "灌水"})
            assert response.status_code == 201, response.text
            entries[kind] = response.json()
            assert entries[kind]["kind"] == kind and entries[kind]["created_by"] == "admin"
        assert entries["account"]["value"] == username
        assert entries["device"]["value"] == mask(device) and device not in str(entries["device"])

        refused(submit(worker), 403, "account")
        _, other = limited.account()
        with other:
            refused(submit(other, device), 403, "device")
            assert passed(submit(other))
            again = admin.post(BLOCKLIST, json={"kind": "device", "value": device})
            assert again.status_code == 409, again.text

            listing = admin.get(BLOCKLIST, params={"limit": 500})
            assert listing.status_code == 200, listing.text
            listed = {item["id"]: item for item in listing.json()["items"]}
            assert {entries["account"]["id"], entries["device"]["id"]} <= set(listed)
            assert device not in listing.text

            # Newest first, one page at a time.
            first = admin.get(BLOCKLIST, params={"limit": 1}).json()
            assert first["items"][0]["id"] == entries["device"]["id"] and first["next_cursor"]
            second = admin.get(BLOCKLIST, params={"limit": 1, "cursor": first["next_cursor"]}).json()
            assert second["items"][0]["id"] == entries["account"]["id"]

            for entry in entries.values():
                removed = admin.delete(f"{BLOCKLIST}/{entry['id']}")
                assert removed.status_code == 200 and removed.json()["id"] == entry["id"], removed.text
                assert admin.delete(f"{BLOCKLIST}/{entry['id']}").status_code == 404
            assert passed(submit(worker)) and passed(submit(other, device))

            # The address: everyone here submits from 127.0.0.1.
            blocked = admin.post(BLOCKLIST, json={"kind": "address", "value": "127.0.0.1"}).json()
            assert blocked["value"] == mask("127.0.0.1") and "127.0.0.1" not in blocked["value"]
            refused(submit(other), 403, "address")
            assert admin.delete(f"{BLOCKLIST}/{blocked['id']}").status_code == 200
    assert metric_value(limited.gateway.process.metrics(), "gateway_appeal_submissions_refused_total",
                        reason="blocklisted") >= 3


def test_only_admins_keep_the_blocklist(limited):
    _, operator = limited.account("operator", "370113")
    with operator:
        assert operator.post(BLOCKLIST, json={"kind": "device", "value": "d-1"}).status_code == 403
        assert operator.get(BLOCKLIST).status_code == 403
        assert operator.delete(f"{BLOCKLIST}/anything").status_code == 403
    with limited.gateway.client() as anonymous:
        assert anonymous.get(BLOCKLIST).status_code == 401
    bad = limited.admin.post(BLOCKLIST, json={"kind": "phone", "value": "13800000000"})
    assert bad.status_code == 422 and "13800000000" not in bad.text


class _NoBlocklist:
    async def find_one(self, *args, **kwargs):
        return None


def test_an_open311_application_is_limited_by_its_key_and_its_citizens_devices_not_its_servers_address():
    """An Open311 application (FixMyStreet's server, say) files for many people from one address:
    the account and address limits would stop it after a handful, so its key has a limit of its
    own and each citizen's device is still limited. Pure logic: the limiter, no blocklist."""
    import asyncio

    from gateway.appeal_guard import COLLECTION, AppealGuard
    from gateway.problems import ApiProblem
    from gateway.settings import Settings

    settings = Settings.from_env({"APPEAL_SUBMISSIONS_PER_ACCOUNT": "2/hour", "APPEAL_SUBMISSIONS_PER_ADDRESS": "2/hour",
                                  "APPEAL_SUBMISSIONS_PER_DEVICE": "2/hour", "APPEAL_SUBMISSIONS_PER_API_KEY": "5/hour",
                                  "JWT_SECRET": "x" * 32, "MONGODB_URI": "mongodb://unused"})
    guard = AppealGuard({COLLECTION: _NoBlocklist()}, settings)

    async def outcomes(account, devices, address="203.0.113.7") -> list[int]:
        statuses = []
        for device in devices:
            try:
                await guard.check(account, device, address)
                statuses.append(200)
            except ApiProblem as problem:
                statuses.append(problem.status)
        return statuses

    # Five citizens' devices through one key and one server address: all five, then the key's limit.
    assert asyncio.run(outcomes("open311:key1", [f"device-{i}" for i in range(6)])) == [200] * 5 + [429]
    # One citizen's device is limited through the application as anywhere.
    assert asyncio.run(outcomes("open311:key2", ["phone-a"] * 3)) == [200, 200, 429]
    # An account from the same address is limited as before.
    assert asyncio.run(outcomes("rider-wang", [None] * 3, "198.51.100.9")) == [200, 200, 429]
