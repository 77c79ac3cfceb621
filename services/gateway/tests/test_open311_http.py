"""The gateway's Open311 routes over HTTP, on a gateway process with its real database (what
needs no appeal service: the API keys, the key check of POST requests, discovery, errors for
what does not exist, the rate limit). What needs the platform is tested end to end, in
tests/test_e2e_open311.py."""

import uuid

import pytest
from pymongo import MongoClient

from gateway_test_support import start_gateway
from tests.open311_conformance import assert_valid, parse_xml, same_content

pytestmark = pytest.mark.timeout(120)

KEYS = "/api/v1/open311/api-keys"


def issue(admin, name: str | None = None) -> dict:
    response = admin.post(KEYS, json={"name": name or f"app-{uuid.uuid4().hex[:6]}"})
    assert response.status_code == 201, response.text
    return response.json()


def assert_open311_errors(response, status: int, fmt: str = "json") -> list[dict]:
    assert response.status_code == status, response.text
    if fmt == "json":
        assert response.headers["content-type"] == "application/json; charset=utf-8"
        errors = response.json()
        assert_valid("errors", errors)
    else:
        assert response.headers["content-type"] == "text/xml; charset=utf-8"
        errors = parse_xml("errors", response.content)
    assert [e["code"] for e in errors] == [status] * len(errors)
    return errors


# ---- API keys -------------------------------------------------------------------------------

def test_an_admin_issues_a_key_shown_once_and_stored_only_as_a_hash(gateway, admin, mongodb_uri):
    issued = issue(admin, "FixMyStreet 长清")
    assert set(issued) >= {"id", "name", "api_key", "created_at", "created_by"} and issued["revoked_at"] is None
    assert issued["name"] == "FixMyStreet 长清" and issued["created_by"] == "admin"
    listed = admin.get(KEYS, params={"limit": 500}).json()["items"]
    mine = next(k for k in listed if k["id"] == issued["id"])
    assert "api_key" not in mine and "hash" not in mine and issued["api_key"] not in str(listed)
    with MongoClient(mongodb_uri) as mongo:
        stored = mongo[gateway.env["MONGODB_GATEWAY_DB"]]["open311_api_keys"].find_one({"_id": issued["id"]})
    assert stored is not None and issued["api_key"] not in str(stored)


def test_keys_are_listed_newest_first_in_pages(admin):
    first, second = issue(admin), issue(admin)
    page = admin.get(KEYS, params={"limit": 1}).json()
    assert page["items"][0]["id"] == second["id"] and page["next_cursor"]
    following = admin.get(KEYS, params={"limit": 1, "cursor": page["next_cursor"]}).json()
    assert following["items"][0]["id"] == first["id"]


def test_only_admins_manage_keys(gateway, admin, make_user):
    key = issue(admin)
    _, operator = make_user("operator", "370113")
    with gateway.client(operator) as client:
        for method, path, body in (("POST", KEYS, {"name": "x"}), ("GET", KEYS, None),
                                   ("DELETE", f"{KEYS}/{key['id']}", None)):
            refused = client.request(method, path, json=body)
            assert refused.status_code == 403, (method, refused.text)
            assert refused.headers["content-type"].startswith("application/problem+json")
    with gateway.client() as anonymous:
        assert anonymous.get(KEYS).status_code == 401
        assert anonymous.delete(f"{KEYS}/{key['id']}").status_code == 401
    assert not admin.get(KEYS, params={"limit": 500}).json()["items"][0]["revoked_at"]  # nothing was revoked


def test_revoking_is_kept_and_repeatable_and_an_unknown_key_is_404(admin):
    key = issue(admin)
    revoked = admin.delete(f"{KEYS}/{key['id']}")
    assert revoked.status_code == 200 and revoked.json()["revoked_at"] and revoked.json()["revoked_by"] == "admin"
    again = admin.delete(f"{KEYS}/{key['id']}")
    assert again.status_code == 200 and again.json()["revoked_at"] == revoked.json()["revoked_at"]
    missing = admin.delete(f"{KEYS}/no-such-key")
    assert missing.status_code == 404 and missing.headers["content-type"].startswith("application/problem+json")
    assert admin.post(KEYS, json={"name": " "}).status_code == 422
    assert admin.post(KEYS, json={"name": "x", "extra": 1}).status_code == 422


# ---- POST requests needs a valid key --------------------------------------------------------

@pytest.mark.parametrize("fmt", ["json", "xml"])
def test_posting_without_a_valid_key_is_403_as_an_open311_error(gateway, admin, fmt):
    form = {"service_code": "hazard", "description": "井盖缺失", "address_string": "经十路", "jurisdiction_id": "370113"}
    with gateway.client() as client:
        missing = client.post(f"/open311/v2/requests.{fmt}", data=form)
        assert "api_key" in assert_open311_errors(missing, 403, fmt)[0]["description"]
        wrong = client.post(f"/open311/v2/requests.{fmt}", data={**form, "api_key": "o311_not-a-key"})
        assert_open311_errors(wrong, 403, fmt)
        key = issue(admin)
        assert admin.delete(f"{KEYS}/{key['id']}").status_code == 200
        revoked = client.post(f"/open311/v2/requests.{fmt}", data={**form, "api_key": key["api_key"]})
        assert_open311_errors(revoked, 403, fmt)


def test_a_body_that_is_not_a_form_is_400(gateway, admin):
    key = issue(admin)
    with gateway.client() as client:
        as_json = client.post(f"/open311/v2/requests.json?api_key={key['api_key']}", json={"service_code": "hazard"})
        assert "x-www-form-urlencoded" in assert_open311_errors(as_json, 400)[0]["description"]
        not_utf8 = client.post("/open311/v2/requests.json", content=b"api_key=" + key["api_key"].encode() + b"&d=\xff",
                               headers={"content-type": "application/x-www-form-urlencoded"})
        assert_open311_errors(not_utf8, 400)
        too_large = client.post("/open311/v2/requests.json", content=b"d=" + b"x" * 70_000,
                                headers={"content-type": "application/x-www-form-urlencoded"})
        assert_open311_errors(too_large, 400)


# ---- discovery, and what is not there ---------------------------------------------------------

def test_discovery_in_both_formats(gateway):
    with gateway.client() as client:
        as_json = client.get("/open311/v2/discovery.json")
        assert as_json.status_code == 200 and as_json.headers["content-type"] == "application/json; charset=utf-8"
        assert_valid("discovery", as_json.json())
        endpoint = as_json.json()["endpoints"][0]
        assert endpoint["url"] == f"{gateway.url}/open311/v2"
        assert endpoint["specification"] == "http://wiki.open311.org/GeoReport_v2"
        assert set(endpoint["formats"]) == {"text/xml", "application/json"}
        as_xml = client.get("/open311/v2/discovery.xml")
        assert as_xml.status_code == 200 and as_xml.headers["content-type"] == "text/xml; charset=utf-8"
        assert same_content(as_json.json(), parse_xml("discovery", as_xml.content))


def test_what_is_not_there_is_an_open311_404_or_405(gateway):
    with gateway.client() as client:
        assert_open311_errors(client.get("/open311/v2/pothole.json"), 404)
        assert_open311_errors(client.get("/open311/v2/pothole.xml"), 404, "xml")
        assert_open311_errors(client.get("/open311/v2/services.csv"), 404, "xml")
        assert_open311_errors(client.get("/open311/v2/discovery.html"), 404, "xml")
        not_allowed = client.delete("/open311/v2/requests.json")
        assert_open311_errors(not_allowed, 405)
        assert set(not_allowed.headers["allow"].split(", ")) == {"GET", "POST"}
        assert_open311_errors(client.put("/open311/v2/discovery.xml"), 405, "xml")


def test_open311_routes_are_not_in_the_openapi_document_but_the_key_routes_are(gateway):
    with gateway.client() as client:
        paths = client.get("/openapi.json").json()["paths"]
    assert not [p for p in paths if p.startswith("/open311/")]
    assert set(paths[KEYS]) == {"get", "post"} and set(paths[f"{KEYS}/{{key_id}}"]) == {"delete"}
    for operation in (paths[KEYS]["post"], paths[KEYS]["get"], paths[f"{KEYS}/{{key_id}}"]["delete"]):
        for status in ("401", "403", "429", "503"):
            assert "application/problem+json" in operation["responses"][status]["content"]
    assert "404" in paths[f"{KEYS}/{{key_id}}"]["delete"]["responses"]


# ---- the rate limit -------------------------------------------------------------------------

PER_ADDRESS = 3


@pytest.fixture(scope="module")
def limited(mongodb_uri, amqp_uri, tmp_path_factory):
    gw = start_gateway(mongodb_uri, amqp_uri, tmp_path_factory.mktemp("open311-limited"),
                       MONGODB_GATEWAY_DB=f"gateway_open311_{uuid.uuid4().hex[:8]}",
                       RATE_LIMIT_PER_ADDRESS=f"{PER_ADDRESS}/minute")
    try:
        yield gw
    finally:
        gw.process.stop()


def test_open311_is_rate_limited_per_address_as_an_open311_429(limited):
    with limited.client() as client:
        statuses = [client.get("/open311/v2/discovery.json").status_code for _ in range(PER_ADDRESS)]
        assert statuses == [200] * PER_ADDRESS
        refused = client.get("/open311/v2/discovery.xml")
        assert "wait" in assert_open311_errors(refused, 429, "xml")[0]["description"]
        assert int(refused.headers["retry-after"]) >= 1
        # Keys that are guessed count against the address too.
        assert_open311_errors(client.post("/open311/v2/requests.json", data={"api_key": "o311_guess"}), 429)
