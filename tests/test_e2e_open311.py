"""Open311 GeoReport v2 end to end (issue 14), on the platform as `make run` starts it: an admin
issues an API key; an Open311 application (speaking XML, as FixMyStreet's does, and JSON) lists
the services of a district, reads a service definition, files a request with a location, a
photo and a contact phone, follows it by its token and its id while a department accepts and
resolves it (open, then closed with the resolution as its notes, the department as the agency
responsible and the deadline as the expected time), finds it among the district's requests by
the filters, and not in another district's. Wrong input is an Open311 error array with the
right status, a revoked key is refused at once, and the phone is in no answer. Every JSON answer
is validated against the Open311 JSON Schemas, every XML one parsed and compared with its JSON."""

import uuid
from datetime import datetime, timedelta, timezone

import httpx
import pytest

from tests.open311_conformance import assert_valid, parse_xml, same_content
from tests.test_e2e_transfers import PASSWORD, created, new_phone, ok

pytestmark = pytest.mark.slow

DISTRICT, OTHER_DISTRICT = "370113", "370112"
STREET = "370113403"  # Open311's requests of this test: a street no other test uses
WHERE = {"lng": 116.7612, "lat": 36.5523}  # Changqing, Jinan
CATEGORY = "hazard"  # anonymous appeals allowed by default
NAMED_ONLY = "legal"  # anonymous appeals not allowed by default


class Open311:
    """An Open311 client of the gateway, keeping every answer to search for personal data."""

    def __init__(self, platform):
        self.texts: list[str] = []
        self.http = httpx.Client(base_url=f"{platform.gateway_url}/open311/v2", timeout=15,
                                 event_hooks={"response": [self._keep]})

    def _keep(self, response: httpx.Response) -> None:
        response.read()
        self.texts.append(response.text)

    def close(self) -> None:
        self.http.close()

    def get(self, kind: str, path: str, fmt: str = "json", **params):
        """A GET in both formats: the JSON (validated) and the XML (parsed) must say the same."""
        as_json = self.http.get(f"{path}.json", params=params)
        assert as_json.status_code == 200, as_json.text
        assert as_json.headers["content-type"] == "application/json; charset=utf-8"
        document = as_json.json()
        assert_valid(kind, document)
        as_xml = self.http.get(f"{path}.xml", params=params)
        assert as_xml.status_code == 200, as_xml.text
        assert as_xml.headers["content-type"] == "text/xml; charset=utf-8"
        assert same_content(document, parse_xml(kind, as_xml.content)), (document, as_xml.text)
        return document

    def post(self, form: dict, fmt: str = "json", **headers) -> httpx.Response:
        return self.http.post(f"requests.{fmt}", data=form, headers=headers)

    def error(self, response: httpx.Response, status: int, fmt: str = "json") -> list[str]:
        """The descriptions of an Open311 error answer with `status`."""
        assert response.status_code == status, response.text
        if fmt == "json":
            errors = response.json()
            assert_valid("errors", errors)
        else:
            errors = parse_xml("errors", response.content)
        assert errors and all(e["code"] == status for e in errors), errors
        return [e["description"] for e in errors]


@pytest.fixture(scope="module")
def open311(platform):
    client = Open311(platform)
    yield client
    client.close()


@pytest.fixture(scope="module")
def desk(platform):
    """A department of the district that takes this test's category in its street, and a
    handler of it."""
    with platform.client() as admin:
        department = created(admin.post("/departments", json={"name": f"长清区应急管理局{uuid.uuid4().hex[:4]}",
                                                              "division": DISTRICT}))
        ok(admin.put("/appeal-routing", json={"category": CATEGORY, "division": STREET,
                                              "department_id": department["id"]}))
        username = f"o311handler{uuid.uuid4().hex[:6]}"
        created(admin.post("/users", json={"username": username, "password": PASSWORD, "role": "handler",
                                           "scope": [department["id"]]}))
    client = httpx.Client(base_url=f"{platform.gateway_url}/api/v1", timeout=15,
                          headers={"Authorization": f"Bearer {platform.token(username, PASSWORD)}"})
    yield department, username, client
    client.close()


@pytest.fixture(scope="module")
def api_key(platform) -> str:
    with platform.client() as admin:
        return created(admin.post("/open311/api-keys", json={"name": "FixMyStreet 长清"}))["api_key"]


def request_form(api_key: str, **fields) -> dict:
    return {"api_key": api_key, "jurisdiction_id": DISTRICT, "service_code": CATEGORY,
            "lat": str(WHERE["lat"]), "long": str(WHERE["lng"]), "address_string": "长清区大学路与紫薇路路口",
            "description": "路口井盖缺失\n夜间骑行很危险", "attribute[division]": STREET, **fields}


# ---- discovery and services -------------------------------------------------------------------

def test_discovery_names_this_endpoint_and_both_formats(platform, open311):
    discovery = open311.get("discovery", "discovery")
    endpoint = discovery["endpoints"][0]
    assert endpoint["url"] == f"{platform.gateway_url}/open311/v2"
    assert set(endpoint["formats"]) == {"text/xml", "application/json"}


def test_services_are_the_categories_of_a_served_district(open311):
    services = open311.get("services", "services", jurisdiction_id=DISTRICT)
    assert {s["service_code"] for s in services} == {"rights", "labour_protection", "legal", "housing", "insurance",
                                                     "hazard", "enterprise_difficulty", "suggestion", "other"}
    assert all(s["metadata"] for s in services)
    hazard = open311.get("service_definition", f"services/{CATEGORY}", jurisdiction_id=DISTRICT)
    assert hazard["service_code"] == CATEGORY and "contact_required" not in {a["code"] for a in hazard["attributes"]}
    legal = open311.get("service_definition", f"services/{NAMED_ONLY}", jurisdiction_id=DISTRICT)
    assert "contact_required" in {a["code"] for a in legal["attributes"]}


@pytest.mark.parametrize("fmt", ["json", "xml"])
def test_a_jurisdiction_is_needed_and_must_be_served(open311, fmt):
    # Several districts are registered (Jinan's, Qingdao's, Bortala's): jurisdiction_id is required.
    for path in ("services", "requests", f"services/{CATEGORY}", "requests/abc", "tokens/abc"):
        assert any("jurisdiction_id" in d for d in open311.error(open311.http.get(f"{path}.{fmt}"), 400, fmt))
        unknown = open311.http.get(f"{path}.{fmt}", params={"jurisdiction_id": "999999"})
        assert any("jurisdiction_id" in d for d in open311.error(unknown, 404, fmt))
    assert open311.error(open311.http.get(f"services/pothole.{fmt}", params={"jurisdiction_id": DISTRICT}), 404, fmt)


# ---- filing and following a request -------------------------------------------------------------

def test_a_request_filed_in_xml_is_followed_until_it_is_closed(platform, open311, desk, api_key):
    department, handler, handler_client = desk
    phone = new_phone()
    filed = open311.post(request_form(api_key, first_name="师傅", last_name="李", phone=phone,
                                      media_url="https://img.example.org/manhole.jpg", device_id="fms-device-1",
                                      email="rider@example.org"), fmt="xml")
    assert filed.status_code == 200, filed.text
    [answer] = parse_xml("submitted", filed.content)
    assert_valid("submitted", [answer])
    request_id, token = answer["service_request_id"], answer["token"]
    assert token != request_id and "2 个工作日" in answer["service_notice"]

    # The token leads to the request, in this jurisdiction only.
    assert open311.get("tokens", f"tokens/{token}", jurisdiction_id=DISTRICT) == [
        {"service_request_id": request_id, "token": token}]
    assert open311.error(open311.http.get(f"tokens/{token}.json", params={"jurisdiction_id": OTHER_DISTRICT}), 404)
    assert open311.error(open311.http.get("tokens/no-such-token.xml", params={"jurisdiction_id": DISTRICT}), 404, "xml")

    # Open, in the district, routed to the department.
    [request] = open311.get("requests", f"requests/{request_id}", jurisdiction_id=DISTRICT)
    assert request["status"] == "open" and request["status_notes"] == "已提交，待受理"
    assert (request["service_code"], request["service_name"]) == (CATEGORY, "安全隐患")
    assert request["agency_responsible"] == department["name"]
    assert request["description"] == "路口井盖缺失\n夜间骑行很危险"
    assert (request["lat"], request["long"]) == (WHERE["lat"], WHERE["lng"])
    assert request["media_url"] == "https://img.example.org/manhole.jpg"
    assert request["address"] == "长清区大学路与紫薇路路口" and request["expected_datetime"] is None
    assert open311.error(open311.http.get(f"requests/{request_id}.json",
                                          params={"jurisdiction_id": OTHER_DISTRICT}), 404)
    # What the department sees: the street, the contact (masked), nothing of the email.
    staff_view = ok(handler_client.get(f"/appeals/{request_id}"))
    assert staff_view["division"] == STREET and staff_view["title"] == "路口井盖缺失"
    assert staff_view["submitter"]["kind"] == "worker" and staff_view["submitter"]["contact"]["phone"] != phone
    assert "rider@example.org" not in str(staff_view)

    # Among the district's requests, by the filters.
    def listed(**params) -> set[str]:
        found = open311.get("requests", "requests", jurisdiction_id=DISTRICT, **params)
        return {r["service_request_id"] for r in found}
    assert request_id in listed()
    assert request_id in listed(service_code=f"{CATEGORY},{NAMED_ONLY}", status="open")
    assert request_id not in listed(service_code=NAMED_ONLY)
    assert request_id not in listed(status="closed")
    assert listed(service_request_id=f"{request_id},no-such-id") == {request_id}
    now = datetime.now(timezone.utc).replace(microsecond=0)
    assert request_id in listed(start_date=(now - timedelta(hours=1)).isoformat().replace("+00:00", "Z"))
    assert request_id not in listed(start_date=(now - timedelta(days=30)).isoformat(),
                                    end_date=(now - timedelta(days=10)).isoformat())
    others = open311.get("requests", "requests", jurisdiction_id=OTHER_DISTRICT)
    assert request_id not in {r["service_request_id"] for r in others}

    # Accepted: still open, with a deadline; resolved: closed, with the resolution as its notes.
    ok(handler_client.post(f"/appeals/{request_id}/accept", json={"note": "已受理"}))
    [accepted] = open311.get("requests", f"requests/{request_id}", jurisdiction_id=DISTRICT)
    assert accepted["status"] == "open" and accepted["status_notes"].startswith("已受理")
    assert accepted["expected_datetime"] is not None
    ok(handler_client.post(f"/appeals/{request_id}/resolve", json={"resolution": "井盖已补装"}))
    [resolved] = open311.get("requests", f"requests/{request_id}", jurisdiction_id=DISTRICT)
    assert resolved["status"] == "closed" and resolved["status_notes"] == "已办结：井盖已补装"
    assert resolved["updated_datetime"] >= request["updated_datetime"]
    assert request_id in listed(status="closed") and request_id not in listed(status="open")

    assert not [text for text in open311.texts if phone in text or phone[-8:] in text]


def test_an_anonymous_request_and_one_kept_out_of_the_public_view(open311, api_key):
    filed = open311.post(request_form(api_key, **{"attribute[public]": "false", "attribute[title]": "地面塌陷"}))
    assert filed.status_code == 200, filed.text
    assert_valid("submitted", filed.json())
    [request] = open311.get("requests", f"requests/{filed.json()[0]['service_request_id']}", jurisdiction_id=DISTRICT)
    assert request["description"] is None and request["address"] is None and request["media_url"] is None
    assert request["status"] == "open"


def test_a_repeat_under_one_idempotency_key_is_the_same_request_and_token(open311, api_key):
    form, key = request_form(api_key, description="电线杆倾斜"), uuid.uuid4().hex
    first = open311.post(form, **{"Idempotency-Key": key})
    again = open311.post(form, **{"Idempotency-Key": key})
    assert first.status_code == again.status_code == 200, (first.text, again.text)
    assert first.json() == again.json()
    reused = open311.post({**form, "description": "另一件事"}, **{"Idempotency-Key": key})
    assert open311.error(reused, 422)


# ---- errors --------------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["json", "xml"])
def test_wrong_requests_are_open311_errors_naming_the_parameter(open311, api_key, fmt):
    def refused(status: int, **changes) -> str:
        form = {k: v for k, v in {**request_form(api_key), **changes}.items() if v is not None}
        return " ".join(open311.error(open311.post(form, fmt), status, fmt))

    assert "service_code" in refused(400, service_code=None)
    assert "service_code" in refused(404, service_code="pothole")
    assert "jurisdiction_id" in refused(400, jurisdiction_id=None)
    assert "jurisdiction_id" in refused(404, jurisdiction_id="999999")
    assert "description" in refused(400, description=None)
    assert "location" in refused(400, lat=None, long=None, address_string=None)
    assert "attribute[division]" in refused(422, **{"attribute[division]": "370112001"})
    # A category that takes no anonymous appeals: a name and phone are needed.
    assert "phone" in refused(422, service_code=NAMED_ONLY)
    wrong_phone = "12012345678"
    said = refused(422, service_code=NAMED_ONLY, first_name="明", last_name="王", phone=wrong_phone)
    assert "phone" in said and wrong_phone not in said
    assert "lat" in refused(422, lat="north")
    assert "media_url" in refused(422, media_url="not a url")


def test_a_revoked_key_is_refused_at_once(platform, open311):
    with platform.client() as admin:
        key = created(admin.post("/open311/api-keys", json={"name": "soon revoked"}))
        assert open311.post(request_form(key["api_key"], description="路灯不亮")).status_code == 200
        ok(admin.delete(f"/open311/api-keys/{key['id']}"))
        assert any(k["id"] == key["id"] and k["revoked_at"] for k in ok(admin.get("/open311/api-keys"))["items"])
    assert "api_key" in open311.error(open311.post(request_form(key["api_key"], description="路灯不亮")), 403)[0]
    assert open311.error(open311.post(request_form(None)), 403)


def test_a_blocklisted_application_is_refused(platform, open311):
    with platform.client() as admin:
        key = created(admin.post("/open311/api-keys", json={"name": "abusive"}))
        blocked = admin.post("/appeal-blocklist", json={"kind": "account", "value": f"open311:{key['id']}"})
        assert blocked.status_code == 201, blocked.text
    assert open311.error(open311.post(request_form(key["api_key"]), "xml"), 403, "xml")
