"""Open311 GeoReport v2 documents and the mapping to the appeal contract, as pure logic: every
JSON document the gateway renders is validated against the Open311 JSON Schemas (read from
/work/shared/reference/open311-georeport-v2/ by tests/open311_conformance.py), and its XML is
parsed and read back to the same content."""

import json
from datetime import datetime, timedelta, timezone
from urllib.parse import parse_qsl

import pytest

from gateway.open311 import mapping
from gateway.open311.mapping import Open311Error, public_filter, submission
from gateway.open311.render import JSON_MEDIA_TYPE, XML_MEDIA_TYPE, errors_document, render, to_json
from platform_contracts.appeal import AppealCategory, AppealStatus, PublicAppeal
from tests.open311_conformance import assert_valid, parse_xml, same_content, schema_errors

NOW = datetime(2026, 12, 7, 8, 0, tzinfo=timezone.utc)


def both_formats(kind: str, root: str, document) -> None:
    """Valid JSON, and XML that parses to the same content."""
    body, media_type = render("json", root, document)
    assert media_type == JSON_MEDIA_TYPE
    assert_valid(kind, json.loads(body))
    body, media_type = render("xml", root, document)
    assert media_type == XML_MEDIA_TYPE
    assert same_content(document, parse_xml(kind, body)), (document, body.decode())


def categories(anonymous_allowed: bool = True) -> list[dict]:
    return [{"category": c.value, "sla_working_days": 5, "anonymous_allowed": anonymous_allowed,
             "updated_at": None} for c in AppealCategory]


def public_appeal(**changes) -> dict:
    appeal = {"id": "a1b2c3", "category": "hazard", "title": "井盖缺失", "description": "经十路井盖缺失\n很危险",
              "division": "370113001", "location": {"lng": 116.75, "lat": 36.55}, "address": "经十路 1 号",
              "media": ["https://example.org/p/1.jpg"], "status": "submitted", "status_notes": None,
              "department_name": None, "due_at": None, "submitted_at": "2026-12-01T01:02:03.456000+00:00",
              "updated_at": "2026-12-01T01:02:03.456000+00:00"}
    appeal.update(changes)
    return PublicAppeal.model_validate(appeal).model_dump(mode="json")


# ---- services ------------------------------------------------------------------------------

@pytest.mark.parametrize("anonymous_allowed", [True, False])
def test_the_services_are_the_categories_each_with_a_service_definition(anonymous_allowed):
    services = [mapping.service_document(c) for c in categories(anonymous_allowed)]
    both_formats("services", "services", services)
    assert [s["service_code"] for s in services] == [c.value for c in AppealCategory]
    assert all(s["metadata"] is True and s["type"] == "realtime" and s["service_name"] for s in services)
    for category in categories(anonymous_allowed):
        definition = mapping.service_definition(category)
        both_formats("service_definition", "service_definition", definition)
        codes = [a["code"] for a in definition["attributes"]]
        assert codes[:3] == ["title", "division", "public"]
        assert ("contact_required" in codes) is (not anonymous_allowed)
        orders = [a["order"] for a in definition["attributes"]]
        assert orders == sorted(set(orders))


# ---- requests ------------------------------------------------------------------------------

@pytest.mark.parametrize("status,open311", [("submitted", "open"), ("accepted", "open"), ("assigned", "open"),
                                            ("resolved", "closed"), ("closed", "closed"), ("rejected", "closed")])
def test_a_request_is_open_or_closed_with_its_notes_and_agency(status, open311):
    appeal = public_appeal(status=status, status_notes="已修复" if open311 == "closed" else None,
                           department_name="长清区城管局", due_at="2026-12-10T09:00:00+00:00")
    document = mapping.request_document(appeal)
    both_formats("requests", "service_requests", [document])
    assert document["status"] == open311
    assert document["status_notes"].startswith(mapping.STATUS_NOTES[AppealStatus(status)])
    if open311 == "closed":
        assert document["status_notes"].endswith("已修复")
    assert document["agency_responsible"] == "长清区城管局"
    assert document["expected_datetime"] == "2026-12-10T17:00:00+08:00"
    assert document["requested_datetime"] == "2026-12-01T09:02:03+08:00"
    assert (document["service_code"], document["service_name"]) == ("hazard", "安全隐患")
    assert (document["lat"], document["long"]) == (36.55, 116.75)
    assert document["media_url"] == "https://example.org/p/1.jpg"


def test_a_request_raised_as_not_public_shows_nulls_where_its_text_was():
    appeal = public_appeal(description=None, address=None, media=[], location=None)
    document = mapping.request_document(appeal)
    both_formats("requests", "service_requests", [document])
    assert document["description"] is None and document["address"] is None and document["media_url"] is None
    assert document["lat"] is None and document["long"] is None


def test_an_empty_list_of_requests_is_valid_in_both_formats():
    both_formats("requests", "service_requests", [])
    assert render("xml", "service_requests", [])[0].endswith(b"<service_requests />")


def test_the_answer_to_a_submission_has_its_id_a_token_and_a_notice():
    appeal = {"id": "a1", "division": "370113", "likely_duplicates": [{"id": "a0"}]}
    document = mapping.submitted_document(appeal, "tok-1", 5)
    both_formats("submitted", "service_requests", [document])
    assert document["service_request_id"] == "a1" and document["token"] == "tok-1"
    assert "5 个工作日" in document["service_notice"] and "a0" in document["service_notice"]
    both_formats("tokens", "service_requests", [{"service_request_id": "a1", "token": "tok-1"}])


def test_errors_are_arrays_of_code_and_description_and_xml_leaves_out_what_xml_cannot_hold():
    document = errors_document([(403, "api_key: is missing"), (422, "description\x00: bad\x1b")])
    both_formats("errors", "errors", errors_document([(403, "api_key: is missing")]))
    body, _ = render("xml", "errors", document)
    parsed = parse_xml("errors", body)
    assert parsed == [{"code": 403, "description": "api_key: is missing"}, {"code": 422, "description": "description: bad"}]
    assert schema_errors("errors", [{"code": "403"}])  # the check itself refuses a wrong one


def test_text_with_markup_and_unicode_is_escaped_not_interpreted():
    appeal = public_appeal(description="<b>&amp;</b> ]]> 😀 \u2028")
    body, _ = render("xml", "service_requests", [mapping.request_document(appeal)])
    assert parse_xml("requests", body)[0]["description"] == "<b>&amp;</b> ]]> 😀 \u2028"
    assert "😀".encode() in to_json(mapping.request_document(appeal))


# ---- the form of POST requests -------------------------------------------------------------

def form(query: str) -> list[tuple[str, str]]:
    return parse_qsl(query, keep_blank_values=True)


BASE = ("service_code=hazard&lat=36.55&long=116.75&address_string=%E7%BB%8F%E5%8D%81%E8%B7%AF"
        "&description=%E4%BA%95%E7%9B%96%E7%BC%BA%E5%A4%B1%0A%E5%BE%88%E5%8D%B1%E9%99%A9")


def test_a_full_form_becomes_a_submit_appeal_command():
    command = submission(form(BASE + "&media_url=https%3A%2F%2Fexample.org%2F1.jpg&device_id=dev-1"
                                     "&first_name=%E4%B8%89&last_name=%E5%BC%A0&phone=%2B86%20138-0013-8000"
                                     "&email=a%40b.c&account_id=9&attribute[title]=%E6%A0%87%E9%A2%98"
                                     "&attribute[division]=370113001&attribute[public]=false"), "370113")
    assert command["category"] == "hazard" and command["title"] == "标题"
    assert command["description"] == "井盖缺失\n很危险"
    assert command["division"] == "370113001"
    assert command["location"] == {"lng": 116.75, "lat": 36.55, "coord_sys": "wgs84"}
    assert command["address"] == "经十路" and command["media"] == ["https://example.org/1.jpg"]
    assert command["device_id"] == "dev-1" and command["public"] is False
    assert command["submitter"] == {"kind": "worker", "unit_id": None,
                                    "contact": {"name": "张三", "phone": "13800138000"}}
    assert "a@b.c" not in str(command)  # email is not kept


def test_a_form_without_name_or_phone_is_anonymous_in_the_jurisdiction_titled_by_its_first_line():
    command = submission(form(BASE + "&email=&first_name="), "370113")
    assert command["submitter"] == {"kind": "anonymous", "unit_id": None, "contact": None}
    assert command["division"] == "370113" and command["title"] == "井盖缺失"
    long_line = "很" * 100
    assert submission(form(f"service_code=other&address_string=x&description={long_line}"), "370113")["title"] \
        == "很" * mapping.TITLE_FROM_DESCRIPTION


def test_western_names_keep_their_order():
    assert mapping.person_name("John", "Smith") == "John Smith"
    assert mapping.person_name("三", "张") == "张三"
    assert mapping.person_name(None, "张") == "张"


@pytest.mark.parametrize("query,status,names", [
    ("service_code=hazard&address_string=x", 400, "description"),
    ("service_code=hazard&description=d&lat=36.5", 400, "lat and long"),
    ("service_code=hazard&description=d", 400, "location"),
    ("service_code=hazard&description=d&address_id=17", 400, "location"),
    ("service_code=hazard&description=d&lat=north&long=116.7", 422, "lat"),
    ("service_code=hazard&description=d&lat=1&long=1", 422, "lat, long"),  # not in China
    ("service_code=hazard&description=d&address_string=x&attribute[division]=370112001", 422, "attribute[division]"),
    ("service_code=hazard&description=d&address_string=x&attribute[division]=3701130", 422, "attribute[division]"),
    ("service_code=hazard&description=d&address_string=x&media_url=notaurl", 422, "media_url"),
    ("service_code=hazard&description=d&address_string=x&attribute[public]=maybe", 422, "attribute[public]"),
    ("service_code=hazard&description=d&address_string=x&attribute[title]=" + "t" * 201, 422, "attribute[title]"),
    ("service_code=hazard&description=" + "d" * 4001 + "&address_string=x", 422, "description"),
])
def test_a_form_missing_or_invalid_is_refused_naming_the_open311_parameter(query, status, names):
    with pytest.raises(Open311Error) as refused:
        submission(form(query), "370113")
    assert refused.value.status == status
    assert all(code == status for code, _ in refused.value.errors)
    assert any(description.startswith(names) for _, description in refused.value.errors), refused.value.errors


def test_a_wrong_phone_is_refused_without_quoting_it():
    with pytest.raises(Open311Error) as refused:
        submission(form(BASE + "&phone=12800138000"), "370113")
    assert refused.value.status == 422 and "phone" in str(refused.value.errors)
    assert "12800138000" not in str(refused.value.errors)


# ---- the filters of GET requests -----------------------------------------------------------

def test_without_dates_the_last_90_days_at_most_1000_rows_in_the_jurisdiction():
    filters = public_filter([], "370113", NOW)
    assert filters["division"] == "370113" and filters["limit"] == 1000
    assert datetime.fromisoformat(filters["end"]) == NOW
    assert datetime.fromisoformat(filters["start"]) == NOW - timedelta(days=90)


def test_filters_by_codes_status_and_dates():
    filters = public_filter(form("service_code=hazard,legal&service_code=hazard&status=closed"
                                 "&start_date=2026-10-01T00:00:00Z&end_date=2026-11-01T00:00:00%2B08:00"), "370113", NOW)
    assert filters["category"] == ["hazard", "legal"] and filters["open"] is False
    assert datetime.fromisoformat(filters["start"]) == datetime(2026, 10, 1, tzinfo=timezone.utc)
    assert datetime.fromisoformat(filters["end"]) == datetime(2026, 10, 31, 16, tzinfo=timezone.utc)
    both = public_filter(form("status=open,closed&start_date=2026-10-01T00:00:00 08:00"), "370113", NOW)
    assert "open" not in both  # both statuses: no filter
    assert datetime.fromisoformat(both["end"]) - datetime.fromisoformat(both["start"]) == timedelta(days=90)


def test_ids_override_the_other_filters_and_malformed_ids_match_nothing():
    filters = public_filter(form("service_request_id=a1,a2&service_request_id=a1&status=open"), "370113", NOW)
    assert filters["ids"] == ["a1", "a2"] and filters.get("open") is None and filters.get("start") is None
    assert public_filter(form("service_request_id=../etc,%3Cx%3E"), "370113", NOW) is None


@pytest.mark.parametrize("query,status", [
    ("service_code=pothole", 404),
    ("status=pending", 400),
    ("start_date=yesterday", 400),
    ("start_date=2026-10-01T00:00:00", 400),  # no time zone
    ("start_date=2026-01-01T00:00:00Z&end_date=2026-12-01T00:00:00Z", 400),  # more than 90 days
    ("start_date=2026-12-01T00:00:00Z&end_date=2026-11-01T00:00:00Z", 400),
    ("start_date=9999-12-31T00:00:00Z", 400),  # its 90-day window overflowed: a 500
    ("end_date=0001-01-01T00:00:00Z", 400),
    ("start_date=0001-01-01T00:00:00%2B08:00", 400),  # BSON overflowed in the service: a 502
    ("service_request_id=" + ",".join(f"a{i}" for i in range(201)), 400),
])
def test_bad_filters_are_refused(query, status):
    with pytest.raises(Open311Error) as refused:
        public_filter(form(query), "370113", NOW)
    assert refused.value.status == status


# ---- problems ------------------------------------------------------------------------------

def test_the_appeal_services_problems_name_open311_parameters_with_their_status():
    problem = {"status": 422, "detail": "invalid", "errors": [
        {"loc": ["body", "submitter"], "msg": "anonymous appeals are not taken for this category"},
        {"loc": ["body", "division"], "msg": "not in a registered district"},
        {"loc": ["body", "location", "lng"], "msg": "out of range"},
        {"loc": ["body", "submitter", "contact", "phone"], "msg": "bad"},
        {"loc": ["body", "category"], "msg": "unknown"}]}
    error = mapping.problem_errors(problem, {"division": True})
    assert error.status == 422
    assert [d.split(":")[0] for _, d in error.errors] == [
        "first_name, last_name, phone", "attribute[division]", "long", "phone", "service_code"]
    plain = mapping.problem_errors({"status": 404, "detail": "appeal x does not exist"})
    assert (plain.status, plain.errors) == (404, [(404, "appeal x does not exist")])
    assert mapping.problem_errors({"status": 422, "errors": [{"loc": ["body", "division"], "msg": "m"}]}).errors \
        == [(422, "jurisdiction_id: m")]
