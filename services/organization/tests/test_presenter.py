"""Stored documents as the contract's resources."""

from datetime import datetime, timezone

from organization.presenter import as_resource, division_resource

NOW = datetime(2026, 11, 22, 2, 0, tzinfo=timezone.utc)


def test_a_resource_has_an_id_json_types_and_no_internal_fields():
    unit = {"_id": "u1", "name": "a", "registered_at": NOW, "organization_ids": ["o1"],
            "standalone_organization_ids": ["o1"], "command_id": "c1"}
    assert as_resource(unit) == {"id": "u1", "name": "a", "registered_at": "2026-11-22T02:00:00+00:00",
                                 "organization_ids": ["o1"]}
    assert as_resource(None) is None


def test_an_instructor_shows_the_masked_phone_only():
    stored = {"_id": "i1", "name": "b", "phone_encrypted": "v1:xxx", "phone_masked": "138****5678"}
    assert as_resource(stored) == {"id": "i1", "name": "b", "phone": "138****5678"}
    legacy = {"_id": "i2", "name": "c", "phone": "13700001111"}  # in clear until migrate encrypts it
    assert as_resource(legacy)["phone"] == "137****1111"


def test_a_division_is_shown_by_its_code():
    assert division_resource({"_id": "370113", "name": "历下区", "level": "district"}) == {
        "code": "370113", "name": "历下区", "level": "district"}
