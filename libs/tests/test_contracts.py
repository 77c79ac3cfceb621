"""Unit tests of the shared contract: identifier codes, the event envelope and catalogue."""

import pytest
from pydantic import ValidationError

from platform_contracts.codes import (
    credit_code_check_character, division_chain, mask_phone, normalize_credit_code,
    normalize_division_code, normalize_division_prefix, parent_division,
)
from platform_contracts.envelope import CloudEvent
from platform_contracts.events import CATALOGUE, UnknownEventType, validate_event
from platform_contracts.organization import CreateOrganization, RegisterUnit
from platform_contracts.problems import Rejected, parse_or_reject


@pytest.mark.parametrize("code", ["91350100M000100Y43", "91110000802100433B", "91350100m000100y43"])
def test_valid_credit_codes_are_accepted_and_upper_cased(code):
    assert normalize_credit_code(code) == code.upper()


@pytest.mark.parametrize("code, reason", [
    ("91350100M000100Y44", "check character"),
    ("91350100M000100Y4", "18 characters"),
    ("91350100M0001O0Y43", "cannot appear"),  # the letter O is not in the alphabet
    ("913501A0M000100Y43", "division code"),
])
def test_invalid_credit_codes_say_why(code, reason):
    with pytest.raises(ValueError, match=reason):
        normalize_credit_code(code)


def test_check_character_is_computed_over_the_first_17():
    # Every single-character change of a valid code must change or break the check.
    base = "91350100M000100Y4"
    assert credit_code_check_character(base) == "3"
    assert credit_code_check_character("91350100M000100Y5") != "3"


@pytest.mark.parametrize("code", ["370113", "370113001", "370113001002"])
def test_division_codes_of_each_level(code):
    assert normalize_division_code(code) == code


@pytest.mark.parametrize("code", ["3701", "37011300", "990113", "37011a", "", "3701130010021"])
def test_bad_division_codes(code):
    with pytest.raises(ValueError):
        normalize_division_code(code)


def test_division_prefixes_include_province_and_city():
    assert normalize_division_prefix("37") == "37"
    assert normalize_division_prefix("3701") == "3701"
    with pytest.raises(ValueError):
        normalize_division_prefix("370")


def test_division_chain_and_parent():
    assert division_chain("370113001002") == ["37", "3701", "370113", "370113001", "370113001002"]
    assert parent_division("370113001") == "370113"
    assert parent_division("37") is None


def test_phone_masking_hides_the_middle():
    assert mask_phone("13812345678") == "138****5678"
    assert "1234" not in mask_phone("13812345678")


def test_register_unit_names_every_bad_field():
    with pytest.raises(Rejected) as caught:
        parse_or_reject(RegisterUnit, {"credit_code": "bad", "name": "", "type": "shop",
                                       "industry": "x", "division": "12"})
    problem = caught.value.problem
    assert problem["status"] == 422
    fields = {tuple(e["loc"]) for e in problem["errors"]}
    assert {("body", "credit_code"), ("body", "name"), ("body", "type"), ("body", "division")} <= fields


def test_unknown_fields_are_refused():
    with pytest.raises(ValidationError):
        RegisterUnit.model_validate({"credit_code": "91350100M000100Y43", "name": "a", "type": "enterprise",
                                     "industry": "x", "division": "370113", "colour": "red"})


def test_a_unit_listed_twice_is_refused():
    with pytest.raises(ValidationError, match="more than once"):
        CreateOrganization.model_validate({"name": "a", "kind": "joint_branch", "formation": "joint",
                                           "division": "370113", "unit_ids": ["u1", "u1"]})


def _event(**overrides):
    base = {"source": "member", "type": "member.registered",
            "data": {"member_id": "m1", "organization_id": "o1", "stage": "full"}}
    return {**base, **overrides}


def test_envelope_defaults_follow_cloudevents():
    event = validate_event(_event())
    assert event.specversion == "1.0" and event.id and event.time.tzinfo is not None
    assert event.datacontenttype == "application/json"


def test_events_from_the_wrong_source_or_of_unknown_type_are_refused():
    with pytest.raises(ValueError, match="must come from member"):
        validate_event(_event(source="organization"))
    with pytest.raises(UnknownEventType):
        validate_event(_event(type="member.exploded"))
    with pytest.raises(ValidationError):
        validate_event(_event(data={"member_id": "m1"}))


def test_catalogue_has_every_contract_type():
    contract_types = {
        "unit.registered", "unit.updated", "unit.deregistered", "organization.created", "organization.updated",
        "organization.unit_attached", "organization.unit_detached", "organization.dissolved",
        "instructor.assigned", "instructor.unassigned", "coverage.changed", "coverage.alert_raised",
        "coverage.alert_cleared", "member.registered", "member.updated", "member.promoted", "member.checked_in",
        "transfer.requested", "transfer.approved", "transfer.received", "transfer.completed",
        "transfer.rejected", "transfer.cancelled", "transfer.expired", "station.registered", "station.updated",
        "station.closed", "station.supply_low", "station.visited", "station.activity_scheduled",
        "appeal.submitted", "appeal.accepted", "appeal.assigned", "appeal.resolved", "appeal.rated",
        "appeal.reopened", "appeal.rejected", "appeal.closed", "appeal.overdue", "notification.created",
    }
    assert contract_types <= set(CATALOGUE)


def test_extensions_survive_a_round_trip():
    event = CloudEvent(source="organization", type="unit.updated", division="370113", correlationid="c1")
    again = CloudEvent.model_validate(event.to_json_dict())
    assert again.division == "370113" and again.correlationid == "c1"


def test_committed_asyncapi_document_is_generated_from_the_models():
    import json
    from pathlib import Path

    from platform_contracts.asyncapi import document, published_sources

    committed = json.loads((Path(__file__).resolve().parents[2] / "docs" / "asyncapi.json").read_text())
    assert committed == json.loads(json.dumps(document(published_sources()))), \
        "docs/asyncapi.json is stale: python -m platform_contracts.asyncapi > docs/asyncapi.json"
    assert set(CATALOGUE) == {m["name"] for m in committed["components"]["messages"].values()}
