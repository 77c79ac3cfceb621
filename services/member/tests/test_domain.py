"""Unit tests of the member rules, the transfer state machine, scopes and personal-data
protection (pure: no database, no broker)."""

import base64
import os
from datetime import date, datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from member import access, domain, transfers
from member.presenter import as_resource
from platform_contracts.events import validate_event
from platform_contracts.member import RegisterMember, id_number_check_character, normalize_id_number
from platform_contracts.actors import Actor
from platform_contracts.errors import DomainError
from platform_contracts.problems import from_domain
from platform_testing.problems import fields_named
from service_kit.chassis.entrypoints import locator
from service_kit.pii import FieldCipher, key_from_environment, mask_id_number, mask_phone, parse_key

NOW = datetime(2026, 11, 22, 2, 0, tzinfo=timezone.utc)  # 10:00 in Beijing
TODAY = date(2026, 11, 22)


def id_number(body17: str = "37011319900307123") -> str:
    return body17 + id_number_check_character(body17)


def problem_of(call, *args, where: str = "body", **kwargs) -> dict:
    """The refusal as an entrypoint answers it: fields located in the body (a command's) or
    the query (a list's), the addressed transfer in the path."""
    with pytest.raises(DomainError) as caught:
        call(*args, **kwargs)
    return from_domain(caught.value, locator(("transfer_id",), where)).problem


# ---- ID numbers (GB 11643-1999) --------------------------------------------------------------

def test_a_published_example_id_number_is_valid():
    assert normalize_id_number("11010519491231002x") == "11010519491231002X"
    assert id_number_check_character("11010519491231002") == "X"


@pytest.mark.parametrize("number, reason", [
    ("11010519491231002", "17 digits"),
    ("1101051949123100A1", "17 digits"),
    ("11010519491231002\uff18", "17 digits"),  # a full-width check digit
    ("\uff11\uff11010519491231002X", "17 digits"),  # full-width digits
    ("110105194912310021", "check character"),
    ("110105194902300021", "birth date"),  # 30 February
    ("990105194912310021", "province"),
    (id_number("37011321990307123"), "outside 1900 to today"),
])
def test_invalid_id_numbers_say_why_without_repeating_the_number(number, reason):
    with pytest.raises(ValueError, match=reason) as caught:
        normalize_id_number(number)
    assert number not in str(caught.value) and number[-6:] not in str(caught.value)


def test_every_single_digit_change_breaks_the_check():
    valid = id_number()
    for position in range(17):
        for digit in "0123456789":
            changed = valid[:position] + digit + valid[position + 1:]
            if changed != valid and changed[:17].isdigit():
                try:
                    normalize_id_number(changed)
                except ValueError:
                    continue
                pytest.fail(f"changing position {position} kept the check character valid")


# ---- personal data -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def cipher():
    return FieldCipher(os.urandom(32))


def test_encryption_round_trip_and_ciphertext_hides_the_plaintext(cipher):
    number = id_number()
    token = cipher.encrypt(number, "member:m1:id_number")
    assert token.startswith("v1:") and number not in token and number[-4:] not in base64.b64decode(token[3:]).hex()
    assert cipher.decrypt(token, "member:m1:id_number") == number
    assert cipher.encrypt(number, "member:m1:id_number") != token  # a fresh nonce every time


def test_a_ciphertext_moved_to_another_record_does_not_decrypt(cipher):
    token = cipher.encrypt(id_number(), "member:m1:id_number")
    with pytest.raises(ValueError, match="does not decrypt"):
        cipher.decrypt(token, "member:m2:id_number")
    with pytest.raises(ValueError, match="does not decrypt"):
        FieldCipher(os.urandom(32)).decrypt(token, "member:m1:id_number")


def test_blind_index_is_deterministic_keyed_and_hides_the_value(cipher):
    number = id_number()
    index = cipher.blind_index(number, "member.id_number")
    assert index == cipher.blind_index(number, "member.id_number")
    assert len(index) == 64 and number not in index
    assert index != cipher.blind_index(id_number("37011319900307124"), "member.id_number")
    assert index != cipher.blind_index(number, "instructor.id_number")
    assert index != FieldCipher(os.urandom(32)).blind_index(number, "member.id_number")


def test_masks_show_the_last_four_only():
    assert mask_id_number("11010519491231002X") == "**************002X"
    assert mask_phone("13812345678") == "138****5678"


def test_the_key_must_be_32_bytes_of_base64(monkeypatch):
    assert len(parse_key(base64.b64encode(os.urandom(32)).decode())) == 32
    for bad, reason in [(None, "not set"), ("not base64!", "base64"), (base64.b64encode(b"short").decode(), "32 bytes")]:
        with pytest.raises(ValueError, match=reason):
            parse_key(bad)
    monkeypatch.delenv("FIELD_ENCRYPTION_KEY", raising=False)
    with pytest.raises(SystemExit, match="FIELD_ENCRYPTION_KEY is not set"):
        key_from_environment()


def test_events_refuse_a_plaintext_id_number_or_phone():
    data = {"member_id": "m1", "organization_id": "o1", "stage": "full", "id_number": mask_id_number(id_number())}
    validate_event({"source": "member", "type": "member.registered", "data": data})
    for field, plaintext in (("id_number", id_number()), ("phone", "13812345678")):
        with pytest.raises(ValidationError):
            validate_event({"source": "member", "type": "member.registered", "data": {**data, field: plaintext}})


def test_member_events_carry_where_a_mobile_member_is_but_no_phone_in_it():
    data = {"member_id": "m1", "organization_id": "o1", "stage": "full", "mobile": True, "online_branch_id": "ob1",
            "mobile_location": {"division": "370112001", "description": "历城区华山街道88号"}}
    for type_ in ("member.registered", "member.updated"):
        validate_event({"source": "member", "type": type_, "data": data})
    for description in ("电话13812345678", f"身份证{id_number()}", "座机 8888123", "手机 138-1234 5678"):
        bad = {**data, "mobile_location": {"description": description}}
        with pytest.raises(ValidationError) as caught:
            validate_event({"source": "member", "type": "member.registered", "data": bad})
        assert description not in str(caught.value)


def test_no_event_or_member_record_quotes_a_refused_value():
    """Whatever model refuses a value (a description stored before the rule, say), the error
    that reaches a log does not repeat it."""
    from platform_contracts.member import Member
    place = {"division": "370113", "description": "call 13812345678"}
    checked_in = {"check_in_id": "c1", "member_id": "m1", "station_id": "s1", "organization_id": "o1",
                  "checked_in_at": "2026-11-01T08:00:00+08:00", "mobile": True, "mobile_location": place}
    with pytest.raises(ValidationError) as caught:
        validate_event({"source": "member", "type": "member.checked_in", "data": checked_in})
    assert "13812345678" not in str(caught.value)
    with pytest.raises(ValidationError) as caught:
        Member.model_validate({"id": "m1", "name": "王", "id_number": id_number(), "phone": "13812345678"})
    assert "13812345678" not in str(caught.value)


# ---- the development pipeline --------------------------------------------------------------

def member(stage="applicant", stage_on=date(2025, 1, 1), joined_on=None, override_reason=None, **fields):
    return domain.new_member(
        {"name": "张三", "organization_id": "o1", "division": "370113", "stage": stage, "occupation": "rider",
         "mobile": False, "id_number_masked": "**************1234", **fields},
        stage_on=stage_on, joined_on=joined_on, override_reason=override_reason, member_id="m1", by="op", now=NOW)


def test_category_follows_the_stage():
    assert [domain.category_of(s) for s in domain.STAGES] == [None, None, None, "probationary", "full"]


def test_the_pipeline_goes_one_step_at_a_time_with_dates():
    m = member()
    for stage, on in (("activist", date(2025, 3, 1)), ("candidate", date(2025, 6, 1)),
                      ("probationary", date(2025, 9, 1))):
        domain.promote(m, stage, on=on, override_reason=None, by="sec", now=NOW)
    assert m["stage"] == "probationary" and m["category"] == "probationary" and m["joined_on"] == "2025-09-01"
    assert [(s["stage"], s["on"]) for s in m["stage_history"]] == [
        ("applicant", "2025-01-01"), ("activist", "2025-03-01"), ("candidate", "2025-06-01"),
        ("probationary", "2025-09-01")]
    domain.promote(m, "full", on=date(2026, 9, 1), override_reason=None, by="sec", now=NOW)
    assert m["category"] == "full" and m["stage_history"][-1] == {
        "stage": "full", "on": "2026-09-01", "by": "sec", "recorded_at": NOW}


@pytest.mark.parametrize("current, requested, status", [
    ("applicant", "candidate", 422),   # skipped
    ("activist", "full", 422),         # skipped
    ("candidate", "activist", 422),    # backwards
    ("full", "probationary", 422),     # nothing after full
    ("candidate", "candidate", 409),   # already there
])
def test_only_the_next_stage_is_allowed(current, requested, status):
    m = member(current, joined_on=date(2024, 1, 1) if current == "full" else None)
    problem = problem_of(domain.promote, m, requested, on=None, override_reason=None, by="x", now=NOW)
    assert problem["status"] == status and ("body", "stage") in fields_named(problem)


def test_full_membership_waits_a_year_unless_overridden():
    m = member("probationary", stage_on=date(2026, 3, 1))
    problem = problem_of(domain.promote, m, "full", on=date(2027, 2, 28), override_reason=None, by="x",
                         now=NOW + timedelta(days=400))
    assert problem["status"] == 409 and "2027-03-01" in problem["detail"]
    assert m["stage"] == "probationary" and len(m["stage_history"]) == 1
    domain.promote(m, "full", on=date(2026, 11, 1), override_reason="党委批准提前转正", by="op", now=NOW)
    assert m["stage"] == "full" and m["stage_history"][-1]["override_reason"] == "党委批准提前转正"


def test_registering_a_full_member_keeps_the_probationary_year():
    assert member("probationary", stage_on=date(2025, 9, 1))["joined_on"] == "2025-09-01"
    m = member("full", stage_on=date(2025, 9, 1), joined_on=date(2024, 9, 1))
    assert (m["category"], m["joined_on"]) == ("full", "2024-09-01") and "override_reason" not in m["stage_history"][0]
    for stage_on, joined_on, field in ((date(2025, 9, 1), None, "joined_on"),              # admission unknown
                                       (date(2025, 8, 31), date(2024, 9, 1), "stage_on"),  # a day short of a year
                                       (date(2025, 9, 1), date(2025, 9, 2), "joined_on")):
        problem = problem_of(member, "full", stage_on=stage_on, joined_on=joined_on)
        assert problem["status"] == 422 and fields_named(problem) == {("body", field)}, problem


def test_registering_a_full_member_early_needs_an_override_on_record():
    m = member("full", stage_on=date(2025, 3, 1), joined_on=date(2024, 9, 1), override_reason="党委批准提前转正")
    assert m["stage_history"][0]["override_reason"] == "党委批准提前转正" and m["category"] == "full"
    # An override shortens the year; it does not put admission after full membership, nor apply to other stages.
    problem = problem_of(member, "full", stage_on=date(2025, 3, 1), joined_on=date(2025, 4, 1),
                         override_reason="x")
    assert fields_named(problem) == {("body", "joined_on")}
    problem = problem_of(member, "probationary", override_reason="x")
    assert problem["status"] == 422 and fields_named(problem) == {("body", "override_reason")}


def test_the_probationary_year_from_29_february():
    assert domain.full_membership_from(date(2024, 2, 29)) == date(2025, 3, 1)
    assert domain.full_membership_from(date(2025, 11, 22)) == date(2026, 11, 22)


@pytest.mark.parametrize("on, field", [(date(2026, 12, 1), "on"), (date(2024, 12, 31), "on")])
def test_step_dates_are_not_in_the_future_or_before_the_last_step(on, field):
    problem = problem_of(domain.promote, member(), "activist", on=on, override_reason=None, by="x", now=NOW)
    assert problem["status"] == 422 and ("body", field) in fields_named(problem)


def test_an_override_is_only_for_the_probationary_year():
    problem = problem_of(domain.promote, member(), "activist", on=None, override_reason="why", by="x", now=NOW)
    assert ("body", "override_reason") in fields_named(problem)


def test_dates_are_beijing_dates():
    assert domain.local_date(datetime(2026, 11, 22, 17, 0, tzinfo=timezone.utc)) == date(2026, 11, 23)


def test_only_mobile_members_have_a_location_or_online_branch():
    problem = problem_of(member, mobile_location={"division": "370113", "description": "长清大学城"})
    assert ("body", "mobile_location") in fields_named(problem)
    m = member(mobile=True, online_branch_id="ob1")
    changed = domain.apply_changes(m, {"mobile_location": {"division": "370112"}}, NOW)
    assert changed == ["mobile_location"]
    assert ("body", "mobile_location") in fields_named(problem_of(domain.apply_changes, m, {"mobile": False}, NOW))
    assert m["mobile"] is True  # a refused change leaves the member as it was
    assert ("body", "name") in fields_named(problem_of(domain.apply_changes, m, {"name": None}, NOW))


def test_joined_on_is_for_full_members_only():
    with pytest.raises(ValidationError, match="joined_on"):
        RegisterMember.model_validate({"name": "a", "id_number": id_number(), "organization_id": "o1",
                                       "stage": "candidate", "joined_on": "2020-01-01"})


def test_resources_show_masks_and_hide_ciphertexts():
    m = member(id_number_encrypted="v1:xxx", id_number_index="abc", phone_encrypted="v1:yyy",
               phone_masked="138****5678")
    resource = as_resource(m)
    assert resource["id_number"] == "**************1234" and resource["phone"] == "138****5678"
    assert not {"id_number_encrypted", "id_number_index", "phone_encrypted", "id_number_masked"} & set(resource)


# ---- transfers -----------------------------------------------------------------------------

def transfer(status="requested", letter_expires_on=None):
    t = transfers.new_transfer(
        transfer_id="t1", member={**member(), "unit_id": "u1"}, to_organization={"id": "o2", "division": "370112"},
        to_unit_id="u2", reason="工作调动", by="sec1", now=NOW)
    t.update(status=status, letter_expires_on=letter_expires_on)
    return t


def test_the_happy_path_keeps_history_and_issues_a_letter():
    t = transfer()
    transfers.approve(t, valid_days=30, by="op1", now=NOW)
    assert t["letter_expires_on"] == "2026-12-22"
    transfers.advance(t, "receive", by="op2", now=NOW)
    transfers.advance(t, "report_in", by="m1", now=NOW, note="reported in")
    assert t["status"] == "completed" and not transfers.is_open(t)
    assert [(h["status"], h["by"]) for h in t["history"]] == [
        ("requested", "sec1"), ("approved", "op1"), ("received", "op2"), ("completed", "m1")]
    assert (t["from_organization_id"], t["to_organization_id"], t["from_unit_id"], t["to_unit_id"]) == \
           ("o1", "o2", "u1", "u2")
    assert (t["from_division"], t["to_division"]) == ("370113", "370112")


ALL_STATES = ["requested", "approved", "received", "completed", "rejected", "cancelled", "expired"]


@pytest.mark.parametrize("action", sorted(transfers.MOVES))
@pytest.mark.parametrize("state", ALL_STATES)
def test_every_action_from_every_state(action, state):
    sources, target = transfers.MOVES[action]
    t = transfer(state, letter_expires_on="2026-12-22")
    if state in sources:
        assert transfers.advance(t, action, by="x", now=NOW)["status"] == target
    else:
        problem = problem_of(transfers.advance, t, action, by="x", now=NOW)
        assert problem["status"] == 409 and fields_named(problem) == {("path", "transfer_id")}
        assert state in problem["errors"][0]["msg"] and t["status"] == state


def test_a_letter_past_its_date_cannot_be_received_or_reported_in_on():
    t = transfer("approved", letter_expires_on="2026-11-21")
    assert transfers.letter_expired(t, TODAY) and not transfers.letter_expired(t, date(2026, 11, 21))
    problem = problem_of(transfers.advance, t, "receive", by="x", now=NOW)
    assert problem["status"] == 409 and "expired on 2026-11-21" in problem["detail"]
    assert fields_named(problem) == {("path", "transfer_id")}
    t["status"] = "received"
    problem = problem_of(transfers.advance, t, "report_in", by="x", now=NOW)
    assert problem["status"] == 409 and fields_named(problem) == {("path", "transfer_id")}
    assert transfers.advance(t, "expire", by="system", now=NOW)["status"] == "expired"


def test_a_transfer_to_the_own_organization_is_invalid():
    problem = problem_of(transfers.new_transfer, transfer_id="t", member=member(),
                         to_organization={"id": "o1", "division": "370113"}, to_unit_id=None, reason="x", by="x",
                         now=NOW)
    assert problem["status"] == 422 and ("body", "to_organization_id") in fields_named(problem)


# ---- who may act ---------------------------------------------------------------------------

ADMIN = Actor.parse({"username": "root", "role": "admin", "scope": None})
OP_FROM = Actor.parse({"username": "op113", "role": "operator", "scope": "370113"})
OP_TO = Actor.parse({"username": "op112", "role": "operator", "scope": "370112"})
SEC_FROM = Actor.parse({"username": "sec1", "role": "secretary", "scope": ["o1"]})
SEC_TO = Actor.parse({"username": "sec2", "role": "secretary", "scope": ["o2"]})
WORKER = Actor.parse({"username": "m1", "role": "worker", "scope": "m1"})
STRANGER = Actor.parse({"username": "w9", "role": "worker", "scope": "m9"})


@pytest.mark.parametrize("check, allowed", [
    (access.ensure_sending_side, [ADMIN, OP_FROM, SEC_FROM]),
    (access.ensure_receiving_side, [ADMIN, OP_TO, SEC_TO]),
    (access.ensure_may_report_in, [ADMIN, OP_TO, SEC_TO, WORKER]),
    (access.ensure_either_side, [ADMIN, OP_FROM, SEC_FROM, OP_TO, SEC_TO]),
    (access.ensure_may_cancel, [ADMIN, WORKER, SEC_FROM]),  # SEC_FROM requested it
    (access.ensure_may_see_transfer, [ADMIN, OP_FROM, SEC_FROM, OP_TO, SEC_TO, WORKER]),
])
def test_who_may_act_on_a_transfer(check, allowed):
    t = transfer()
    for actor in (ADMIN, OP_FROM, OP_TO, SEC_FROM, SEC_TO, WORKER, STRANGER):
        if actor in allowed:
            check(actor, t)
        else:
            assert problem_of(check, actor, t)["status"] == 403, actor


def test_who_may_see_and_reveal_a_member():
    m = member()
    for actor in (ADMIN, OP_FROM, SEC_FROM, WORKER):
        access.ensure_may_read(actor, m)
    for actor in (OP_TO, SEC_TO, STRANGER, Actor.parse({"role": "station_manager", "scope": ["s1"]})):
        assert problem_of(access.ensure_may_read, actor, m)["status"] == 403
    access.ensure_may_reveal(OP_FROM, m)
    for actor in (SEC_FROM, WORKER, OP_TO):
        assert problem_of(access.ensure_may_reveal, actor, m)["status"] == 403
    assert problem_of(access.ensure_may_override, SEC_FROM)["status"] == 403


def test_who_may_register_in_a_named_organization_is_decided_before_its_state_and_an_unknown_one_is_outside():
    """access.organization_to_manage: roles that never manage members, and a secretary naming an
    organization not theirs, are refused without the organization service being asked; an
    operator is refused alike for an unknown organization and one outside their division."""
    o1 = {"id": "o1", "division": "370113001", "status": "dissolved"}
    o2 = {"id": "o2", "division": "370112001", "status": "active"}
    known = {"o1": o1, "o2": o2}
    asked = []

    def decide(actor, organization_id):
        def find():
            asked.append(organization_id)
            return known.get(organization_id)
        return access.organization_to_manage(actor, organization_id, "organization_id", find)

    for actor, organization_id in ((STRANGER, "o1"), (SEC_TO, "o1"), (SEC_TO, "o9"),
                                   (Actor.parse({"role": "station_manager", "scope": ["s1"]}), "o1"),
                                   (Actor.parse({"role": "handler", "scope": ["d1"]}), "o9")):
        problem = problem_of(decide, actor, organization_id)
        assert problem["status"] == 403 and fields_named(problem) == {("body", "organization_id")}
    assert asked == []
    details = {problem_of(decide, OP_TO, organization_id)["detail"].replace(organization_id, "X")
               for organization_id in ("o1", "o9")}  # dissolved outside the scope; unknown
    assert details == {"organization X does not exist or is outside your scope"}
    assert decide(OP_FROM, "o1") is o1 and decide(SEC_FROM, "o1") is o1 and decide(ADMIN, "o2") is o2
    assert decide(ADMIN, "o9") is None  # theirs to be told it does not exist
    assert decide(Actor.parse({"username": "s", "role": "secretary", "scope": ["o9"]}), "o9") is None
    assert problem_of(decide, OP_FROM, "o9")["status"] == 403


def test_list_visibility_by_role():
    assert access.visibility(ADMIN) == access.Visibility()
    assert access.visibility(OP_FROM).division == "370113"
    assert access.visibility(SEC_FROM).organization_ids == ("o1",)
    assert access.visibility(WORKER).member_id == "m1"
    assert problem_of(access.visibility, Actor.parse({"role": "operator", "scope": None}))["status"] == 403


def test_list_filters_outside_the_scope_are_refused():
    def check(actor, division=None, organization_id=None, organization_division=None):
        access.ensure_filters_in_scope(access.visibility(actor), division=division, organization_id=organization_id,
                                       organization_division=organization_division)

    check(OP_FROM, division="370113001", organization_id="o1", organization_division="370113001")
    check(OP_FROM, organization_id="o9")  # no such organization: nothing to refuse, nothing to list
    for filters, field in (({"division": "370112"}, "division"), ({"division": "3701"}, "division"),  # wider
                           ({"organization_id": "o2", "organization_division": "370112"}, "organization_id")):
        problem = problem_of(check, OP_FROM, where="query", **filters)
        assert problem["status"] == 403 and fields_named(problem) == {("query", field)}, filters
    check(SEC_FROM, division="370112", organization_id="o1")  # a division only narrows their organizations
    problem = problem_of(check, SEC_FROM, where="query", organization_id="o2")
    assert problem["status"] == 403 and fields_named(problem) == {("query", "organization_id")}
    for actor in (ADMIN, WORKER):
        check(actor, division="370112", organization_id="o2", organization_division="370112")
