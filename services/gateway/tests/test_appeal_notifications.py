"""Who is told of an appeal's events (issue 14), and who sees them on the live stream: a new
appeal reaches its department's handlers; an assigned one those handlers and the handler named;
an overdue one the handlers and the department's supervisor; an escalated one the operators over
the level it went up to; a resolved one whoever raised it and the raisers of every appeal merged
into it. Pure rules, no I/O."""

import uuid
from datetime import datetime, timezone

import pytest

from platform_contracts.actors import Actor
from platform_contracts.events import validate_event
from gateway.auth import Principal
from gateway.event_log import LogEntry
from gateway.notifications import NOTIFICATION_CREATED, addressed_to, audience_query, notification_events
from gateway.stream_filter import EventFilter

STREET, DISTRICT = "370113001", "370113"
DEPARTMENT = "dept-labour"


def principal(role: str, scope=None, username: str = "someone") -> Principal:
    return Principal(id=f"u-{username}", actor=Actor.parse({"username": username, "role": role, "scope": scope}))


HANDLER = principal("handler", [DEPARTMENT, "dept-other"], "zhang-handler")
OTHER_HANDLER = principal("handler", ["dept-housing"], "li-handler")
WORKER = principal("worker", "m-1", "rider-wang")
MERGED_WORKER = principal("worker", "m-2", "rider-zhao")
SUPERVISOR = principal("operator", STREET, "chief-liu")
DISTRICT_OPERATOR = principal("operator", DISTRICT, "district-op")
STREET_OPERATOR = principal("operator", STREET, "street-op")
ELSEWHERE = principal("operator", "370112", "licheng-op")
ADMIN = principal("admin", None, "admin")


def appeal_event(step: str, **data) -> object:
    fields = {"appeal_id": "a-1", "category": "labour_protection", "division": STREET, "status": "submitted",
              "department": DEPARTMENT, "supervisor": "chief-liu", "raised_by": "rider-wang", "member_id": "m-1",
              "version": 1, **data}
    return validate_event({
        "specversion": "1.0", "id": uuid.uuid4().hex, "source": "appeal", "type": f"appeal.{step}",
        "time": datetime.now(timezone.utc).isoformat(), "subject": fields["appeal_id"], "division": STREET,
        "data": fields})


def audiences(event) -> list[dict]:
    return [n.data["audience"] for n in notification_events(event)]


def told(event, who: Principal) -> bool:
    return any(addressed_to(a, who) for a in audiences(event))


def test_a_new_appeal_tells_its_departments_handlers_only():
    submitted = appeal_event("submitted")
    [notification] = notification_events(submitted)
    assert notification.data["type"] == "appeal.submitted" and notification.data["subject"] == "a-1"
    assert notification.data["audience"] == {"role": "handler", "department_ids": [DEPARTMENT]}
    assert told(submitted, HANDLER) and not told(submitted, OTHER_HANDLER)
    assert not told(submitted, WORKER) and not told(submitted, DISTRICT_OPERATOR)
    assert told(submitted, ADMIN)


def test_a_new_appeal_no_department_takes_tells_the_operators_who_route_it():
    unrouted = appeal_event("submitted", department=None, supervisor=None)
    [notification] = notification_events(unrouted)
    assert notification.data["type"] == "appeal.unrouted" and notification.division == STREET
    assert told(unrouted, DISTRICT_OPERATOR) and told(unrouted, STREET_OPERATOR)
    assert not told(unrouted, ELSEWHERE) and not told(unrouted, HANDLER)


def test_an_assigned_appeal_tells_the_departments_handlers_and_the_handler_named():
    assigned = appeal_event("assigned", status="assigned", handler="zhang-handler")
    [audience] = audiences(assigned)
    assert audience == {"role": "handler", "department_ids": [DEPARTMENT], "username": "zhang-handler"}
    assert told(assigned, HANDLER)
    # Named by username: told even when the department is not (yet) in their scope.
    assert told(assigned, principal("handler", ["dept-elsewhere"], "zhang-handler"))
    assert not told(assigned, OTHER_HANDLER) and not told(assigned, WORKER)


def test_accepted_rated_closed_and_merged_tell_nobody():
    for step in ("accepted", "rated", "closed", "merged"):
        assert notification_events(appeal_event(step, status="accepted")) == [], step


def test_an_overdue_appeal_tells_the_departments_handlers_and_its_supervisor():
    overdue = appeal_event("overdue", status="accepted", overdue=True, due_at="2026-03-02T18:00:00+08:00")
    [notification] = notification_events(overdue)
    assert notification.data["audience"] == {"role": "handler", "department_ids": [DEPARTMENT],
                                             "username": "chief-liu"}
    assert told(overdue, HANDLER) and told(overdue, SUPERVISOR)
    assert not told(overdue, STREET_OPERATOR) and not told(overdue, OTHER_HANDLER) and not told(overdue, WORKER)
    assert "2026-03-02T18:00:00+08:00" in notification.data["body"]


def test_an_escalated_appeal_tells_the_operators_over_the_level_above():
    escalated = appeal_event("escalated", status="accepted", overdue=True, escalated_to=DISTRICT)
    [notification] = notification_events(escalated)
    assert notification.data["audience"] == {"role": "operator", "division": DISTRICT}
    assert notification.division == DISTRICT
    assert told(escalated, DISTRICT_OPERATOR) and told(escalated, principal("operator", "3701", "city-op"))
    assert not told(escalated, STREET_OPERATOR)  # the street is the level it went up from
    assert not told(escalated, ELSEWHERE) and not told(escalated, HANDLER)


def test_a_resolved_appeal_tells_whoever_raised_it_and_the_raisers_of_merged_ones():
    resolved = appeal_event("resolved", status="resolved", handler="zhang-handler",
                            also_raised_by=["rider-zhao", "rider-wang", "rider-zhao"])
    notes = notification_events(resolved)
    assert [n.data["audience"] for n in notes] == [{"username": "rider-wang"}, {"username": "rider-zhao"}]
    assert told(resolved, WORKER) and told(resolved, MERGED_WORKER)
    assert not told(resolved, principal("worker", "m-3", "rider-sun")) and not told(resolved, HANDLER)
    assert len({n.id for n in notes}) == 2
    assert [n.id for n in notification_events(resolved)] == [n.id for n in notes]  # derived from event and rule


def test_an_anonymous_appeal_resolved_tells_only_the_merged_raisers():
    resolved = appeal_event("resolved", status="resolved", raised_by=None, member_id=None,
                            also_raised_by=["rider-zhao"])
    assert audiences(resolved) == [{"username": "rider-zhao"}]
    assert notification_events(appeal_event("resolved", status="resolved", raised_by=None, member_id=None)) == []


def test_a_reopened_appeal_tells_its_departments_handlers_and_a_rejected_one_whoever_raised_it():
    assert audiences(appeal_event("reopened", status="accepted")) == [
        {"role": "handler", "department_ids": [DEPARTMENT]}]
    assert audiences(appeal_event("rejected", status="rejected", also_raised_by=["rider-zhao"])) == [
        {"username": "rider-wang"}, {"username": "rider-zhao"}]


def test_a_duplicate_merged_into_a_resolved_appeal_tells_whoever_raised_it_at_once():
    merged = appeal_event("merged", status="resolved", also_raised_by=["rider-zhao"], merged_raisers=["rider-zhao"])
    assert audiences(merged) == [{"username": "rider-zhao"}] and told(merged, MERGED_WORKER)
    assert notification_events(appeal_event("merged", status="accepted", merged_raisers=["rider-zhao"])) == []


def test_whoever_raised_an_appeal_sees_its_events_without_the_other_people_named():
    from gateway.stream_filter import envelope_for

    event = appeal_event("resolved", status="resolved", also_raised_by=["rider-zhao"], handler="zhang-handler")
    entry = LogEntry(seq=1, type=event.type, division=STREET, envelope=event.model_dump(mode="json"))
    for reader, raised_by, also in ((WORKER, "rider-wang", []), (MERGED_WORKER, None, ["rider-zhao"])):
        data = envelope_for(entry, reader)["data"]
        assert (data["raised_by"], data["also_raised_by"], data["supervisor"], data["handler"]) == (
            raised_by, also, None, None)
        assert "chief-liu" not in str(data) and ("rider-zhao" if reader is WORKER else "rider-wang") not in str(data)
    staff = envelope_for(entry, HANDLER)["data"]
    assert staff["raised_by"] == "rider-wang" and staff["supervisor"] == "chief-liu"


def test_an_unrated_resolution_asks_whoever_raised_it_for_feedback():
    asked = appeal_event("feedback_requested", status="resolved")
    assert audiences(asked) == [{"username": "rider-wang"}] and told(asked, WORKER) and not told(asked, HANDLER)
    assert notification_events(appeal_event("feedback_requested", status="resolved", raised_by=None)) == []


def test_texts_carry_ids_only():
    for event in (appeal_event("submitted"), appeal_event("assigned", handler="zhang-handler"),
                  appeal_event("overdue", overdue=True), appeal_event("escalated", escalated_to=DISTRICT),
                  appeal_event("resolved", status="resolved")):
        for n in notification_events(event):
            text = n.data["title"] + n.data["body"]
            assert "a-1" in n.data["body"]
            assert "m-1" not in text and "rider-wang" not in text and "chief-liu" not in text


@pytest.mark.parametrize("who,expected", [
    (HANDLER, {"audience.department_ids": {"$in": [DEPARTMENT, "dept-other"]}}),
    (WORKER, {"audience.member_id": "m-1"}),
])
def test_a_handlers_inbox_query_holds_their_departments(who, expected):
    query = audience_query(who)
    assert {"audience.username": who.actor.username} in query["$or"]
    assert {"audience.role": {"$in": [None, who.actor.role.value]}, **expected} in query["$or"]


def entry(event, seq: int = 7) -> LogEntry:
    envelope = event.to_json_dict()
    return LogEntry(seq=seq, type=event.type, division=event.division, envelope=envelope)


def test_the_stream_shows_an_appeals_events_to_its_department_its_raisers_and_the_operators_over_it():
    merged = entry(appeal_event("resolved", status="resolved", also_raised_by=["rider-zhao"]))
    assert EventFilter(reader=HANDLER).matches(merged)
    assert EventFilter(reader=WORKER).matches(merged)
    assert EventFilter(reader=MERGED_WORKER).matches(merged)
    assert not EventFilter(reader=OTHER_HANDLER).matches(merged)
    assert not EventFilter(reader=principal("worker", "m-3", "rider-sun")).matches(merged)
    assert not EventFilter(reader=principal("secretary", ["org-1"], "sec")).matches(merged)
    assert not EventFilter(reader=principal("station_manager", ["a-1"], "keeper")).matches(merged)
    # The department's supervisor and the handler it names, whatever their role and scope.
    assert EventFilter(reader=principal("secretary", ["org-1"], "chief-liu")).matches(merged)
    assert EventFilter(reader=principal("handler", ["dept-elsewhere"], "zhang-handler")).matches(
        entry(appeal_event("assigned", status="assigned", handler="zhang-handler")))
    # Operators: as any division-scoped event (the stream narrows their filter to their scope).
    assert EventFilter(division=DISTRICT, reader=DISTRICT_OPERATOR).matches(merged)
    assert not EventFilter(division="370112", reader=ELSEWHERE).matches(merged)
    assert EventFilter(reader=ADMIN).matches(merged)
    # A handler's or a worker's own division filter still narrows.
    assert not EventFilter(division="370112", reader=HANDLER).matches(merged)
    assert not EventFilter(types=("appeal.submitted",), reader=HANDLER).matches(merged)


def test_other_events_stay_hidden_from_handlers_and_workers():
    unit = LogEntry(seq=8, type="unit.registered", division=STREET,
                    envelope={"type": "unit.registered", "subject": "u-1", "division": STREET,
                              "data": {"department": DEPARTMENT, "raised_by": "rider-wang"}})
    assert not EventFilter(reader=HANDLER).matches(unit) and not EventFilter(reader=WORKER).matches(unit)
    assert EventFilter(reader=HANDLER).log_query() == {"type_keys": {"$in": [NOTIFICATION_CREATED, "appeal.", "import."]}}
    assert EventFilter(reader=WORKER).log_query() == {"type_keys": {"$in": [NOTIFICATION_CREATED, "appeal.", "import."]}}


def test_a_handler_sees_the_notifications_of_their_departments_on_the_stream():
    [notification] = notification_events(appeal_event("submitted"))
    logged = entry(notification, seq=9)
    assert EventFilter(reader=HANDLER).matches(logged)
    assert not EventFilter(reader=OTHER_HANDLER).matches(logged)
    assert not EventFilter(reader=WORKER).matches(logged)
