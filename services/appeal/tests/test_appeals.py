"""Integration tests: the appeal service as a process, with the real organization service (the
division registry and units), over real RabbitMQ and SecantusDB, called over RPC as the gateway
calls it. Time is moved on by writing a deadline into the past, as the clock would."""

import uuid
from datetime import datetime, timedelta, timezone

from platform_contracts.problems import Rejected
from platform_testing import wait_for
from platform_testing.problems import fields_named, rejected

ADMIN = {"username": "admin", "role": "admin", "scope": None}
OPERATOR = {"username": "op113", "role": "operator", "scope": "370113"}
OTHER_OPERATOR = {"username": "op112", "role": "operator", "scope": "370112"}
PHONE = "13912345678"


def cid() -> str:
    return uuid.uuid4().hex


def worker(name: str) -> dict:
    return {"username": name, "role": "worker", "scope": f"member-{name}"}


def handler(name: str, *departments) -> dict:
    return {"username": name, "role": "handler", "scope": [d["id"] for d in departments]}


def somewhere() -> tuple[float, float]:
    """A point of its own in Changqing, so each test's nearby searches find its own appeals."""
    n = uuid.uuid4().int
    return round(116.60 + (n % 1000) * 0.0005, 6), round(36.40 + (n // 1000 % 1000) * 0.0005, 6)


def department(rpc, name="长清区人社局", division="370113", supervisor="chief", actor=OPERATOR) -> dict:
    return rpc.register_department({"name": name, "division": division, "supervisor": supervisor},
                                   actor=actor, command_id=cid())


def routed_street(rpc, category: str, dept: dict) -> str:
    """A division of the test's own within the department's (a street of a district department's,
    a community of a street department's), its appeals of `category` routed to `dept`."""
    street = f"{dept['division']}{uuid.uuid4().int % 1000:03d}"
    rpc.set_route({"category": category, "division": street, "department_id": dept["id"]}, actor=OPERATOR,
                  command_id=cid())
    return street


def submit(rpc, actor, division, category="rights", at=None, **fields):
    command = {"category": category, "title": "外卖骑手工资被拖欠", "division": division,
               "description": f"站点拖欠三个月工资，联系电话 {PHONE}", **fields}
    if at is not None:
        command["location"] = {"lng": at[0], "lat": at[1]}
    return rpc.submit_appeal(command, actor=actor, command_id=cid())


def events_of(tap, appeal_id, event_type=None):
    return [e for e in tap.drain() if e["subject"] == appeal_id and (event_type is None or e["type"] == event_type)]


# ---- submitting and routing ------------------------------------------------------------------

def test_an_appeal_is_routed_accepted_with_a_working_day_deadline_assigned_and_resolved(rpc, appeal_events):
    dept = department(rpc)
    street = routed_street(rpc, "rights", dept)
    rider = worker(f"rider{cid()[:6]}")
    appeal = submit(rpc, rider, street, submitter={"kind": "worker", "contact": {"name": "张三丰", "phone": PHONE}})
    assert appeal["status"] == "submitted" and appeal["department"] == dept["id"]
    assert appeal["department_name"] == "长清区人社局" and appeal["raised_by"] == rider["username"]
    assert appeal["submitter"] == {"kind": "worker", "unit_id": None, "member_id": rider["scope"],
                                   "contact": {"name": "张**", "phone": "139****5678"}}
    assert PHONE not in str(appeal) and "139****5678" in appeal["description"]
    assert [h["action"] for h in appeal["history"]] == ["submitted"]  # routing is an internal step

    clerk = handler(f"h{cid()[:6]}", dept)
    accepted = rpc.accept_appeal(appeal["id"], {"note": "已受理"}, actor=clerk, command_id=cid())
    assert accepted["status"] == "accepted" and accepted["due_at"] is not None and accepted["overdue"] is False
    assigned = rpc.assign_appeal(appeal["id"], {"handler": clerk["username"]}, actor=clerk, command_id=cid())
    assert assigned["status"] == "assigned" and assigned["handler"] == clerk["username"]
    resolved = rpc.resolve_appeal(appeal["id"], {"resolution": "已督促企业足额发放"}, actor=clerk, command_id=cid())
    assert resolved["status"] == "resolved" and resolved["resolved_at"]
    types = [e["type"] for e in appeal_events.wait_for(
        lambda e: e["subject"] == appeal["id"] and e["type"] == "appeal.resolved")]
    assert types and [e["type"] for e in events_of(appeal_events, appeal["id"])] == [
        "appeal.submitted", "appeal.accepted", "appeal.assigned", "appeal.resolved"]
    event = events_of(appeal_events, appeal["id"], "appeal.resolved")[0]
    assert event["data"]["raised_by"] == rider["username"] and event["data"]["supervisor"] == "chief"
    assert PHONE not in str(events_of(appeal_events, appeal["id"])) and "张三丰" not in str(appeal_events.seen)
    # The person who raised it reads it, without the internal steps; another worker may not.
    mine = rpc.get_appeal(appeal["id"], actor=rider)
    assert {h["visibility"] for h in mine["history"]} == {"public"} and mine["handler"] == clerk["username"]
    assert rejected(rpc.get_appeal, appeal["id"], actor=worker("someone-else"))["status"] == 403


def test_an_unrouted_appeal_waits_for_an_operator_who_names_the_department(rpc):
    street = f"370113{uuid.uuid4().int % 1000:03d}"
    appeal = submit(rpc, worker("r1"), street, category="legal")
    if appeal["department"] is None:
        problem = rejected(rpc.accept_appeal, appeal["id"], {}, actor=OPERATOR, command_id=cid())
        assert problem["status"] == 422 and ("body", "department_id") in fields_named(problem)
    dept = department(rpc, name="长清区司法局")
    accepted = rpc.accept_appeal(appeal["id"], {"department_id": dept["id"]}, actor=OPERATOR, command_id=cid())
    assert accepted["department"] == dept["id"] and accepted["status"] == "accepted"


def test_bad_submissions_are_refused_naming_the_field_and_store_nothing(rpc, database):
    before = database.appeals.count_documents({})
    for command, field in [
        ({"category": "rights", "title": "t", "description": "d", "division": "999999"}, ("body", "division")),
        ({"category": "rights", "title": "t", "description": "d", "division": "370113",
          "submitter": {"kind": "anonymous"}}, ("body", "submitter", "kind")),
        ({"category": "rights", "title": "t", "description": "x" * 4001, "division": "370113"},
         ("body", "description")),
        ({"category": "nonsense", "title": "t", "description": "d", "division": "370113"}, ("body", "category")),
        ({"category": "rights", "title": "t", "description": "d", "division": "370113",
          "submitter": {"kind": "enterprise", "unit_id": "no-such-unit"}}, ("body", "submitter", "unit_id")),
    ]:
        problem = rejected(rpc.submit_appeal, command, actor=worker("r2"), command_id=cid())
        assert problem["status"] == 422 and field in fields_named(problem), (command, problem)
    assert database.appeals.count_documents({}) == before


def test_an_anonymous_hazard_report_keeps_no_account_and_no_contact(rpc, database):
    appeal = submit(rpc, worker("sentinel"), "370113001", category="hazard", at=somewhere(),
                    title="井盖缺失", submitter={"kind": "anonymous"})
    stored = database.appeals.find_one({"_id": appeal["id"]})
    assert stored["raised_by"] is None and stored["contact"] is None and stored["submitter"]["member_id"] is None
    assert appeal["raised_by"] is None and appeal["submitter"] == {"kind": "anonymous"}


def test_contact_details_are_encrypted_at_rest(rpc, database):
    appeal = submit(rpc, OPERATOR, "370113001", submitter={"kind": "worker", "contact": {"phone": PHONE}})
    stored = database.appeals.find_one({"_id": appeal["id"]})
    assert PHONE not in str(stored) and stored["contact"]["phone"] and stored["contact_masked"]["phone"] == "139****5678"


# ---- scopes ----------------------------------------------------------------------------------

def test_lists_are_narrowed_to_the_callers_scope(rpc):
    dept = department(rpc)
    street = routed_street(rpc, "housing", dept)
    mine = submit(rpc, worker("lister"), street, category="housing")
    clerk = handler("clerk-list", dept)
    assert mine["id"] in [a["id"] for a in rpc.list_appeals({"department": dept["id"]}, actor=clerk)["items"]]
    assert [a["id"] for a in rpc.list_appeals({"mine": True}, actor=worker("lister"))["items"]].count(mine["id"]) == 1
    assert mine["id"] not in [a["id"] for a in rpc.list_appeals({}, actor=worker("another"))["items"]]
    assert rejected(rpc.list_appeals, {"division": "370113"}, actor=OTHER_OPERATOR)["status"] == 403
    assert all(a["division"].startswith("370112") for a in rpc.list_appeals({}, actor=OTHER_OPERATOR)["items"])
    other_dept = department(rpc, name="别的部门")
    assert rejected(rpc.list_appeals, {"department": other_dept["id"]}, actor=clerk)["status"] == 403
    assert rejected(rpc.accept_appeal, mine["id"], {}, actor=handler("outsider", other_dept),
                    command_id=cid())["status"] == 403
    assert rejected(rpc.accept_appeal, mine["id"], {}, actor=OTHER_OPERATOR, command_id=cid())["status"] == 403


def test_departments_and_routes_are_kept_by_operators_of_their_division(rpc):
    assert rejected(department, rpc, division="370112")["status"] == 403
    assert rejected(department, rpc, actor=worker("w"))["status"] == 403
    dept = department(rpc)
    problem = rejected(rpc.set_route, {"category": "rights", "department_id": dept["id"]}, actor=OPERATOR,
                       command_id=cid())
    assert problem["status"] == 403  # everywhere is an admin's
    problem = rejected(rpc.set_route, {"division": "370113", "department_id": "nope"}, actor=OPERATOR,
                       command_id=cid())
    assert problem["status"] == 422 and ("body", "department_id") in fields_named(problem)
    assert rpc.get_department(dept["id"], actor=handler("h", dept))["name"] == dept["name"]
    assert rejected(rpc.get_department, dept["id"], actor=OTHER_OPERATOR)["status"] == 403


# ---- the workflow's conflicts ----------------------------------------------------------------

def test_an_illegal_transition_is_a_409_and_changes_nothing(rpc):
    dept = department(rpc)
    appeal = submit(rpc, worker("r3"), routed_street(rpc, "rights", dept))
    problem = rejected(rpc.resolve_appeal, appeal["id"], {"resolution": "done"}, actor=OPERATOR, command_id=cid())
    assert problem["status"] == 409
    assert rpc.get_appeal(appeal["id"], actor=OPERATOR)["version"] == appeal["version"]


def test_two_handlers_accepting_at_once_one_wins_the_other_gets_409(rpc, appeal_events):
    dept = department(rpc)
    appeal = submit(rpc, worker("r4"), routed_street(rpc, "rights", dept))
    replies = [rpc.accept_appeal.call_async(appeal["id"], {"note": name}, actor=handler(name, dept),
                                            command_id=cid()) for name in ("clerk1", "clerk2", "clerk3")]
    outcomes = []
    for reply in replies:
        try:
            outcomes.append(reply.result()["status"])
        except Rejected as refused:
            outcomes.append(refused.status)
    assert sorted(map(str, outcomes)) == ["409", "409", "accepted"]
    stored = rpc.get_appeal(appeal["id"], actor=OPERATOR)
    assert [h["action"] for h in stored["history"]].count("accepted") == 1
    appeal_events.wait_for(lambda e: e["subject"] == appeal["id"] and e["type"] == "appeal.accepted")
    assert len(events_of(appeal_events, appeal["id"], "appeal.accepted")) == 1


# ---- feedback, reopening, merging ------------------------------------------------------------

def _resolved(rpc, actor, category="rights", **fields):
    dept = department(rpc)
    appeal = submit(rpc, actor, routed_street(rpc, category, dept), category=category, **fields)
    rpc.accept_appeal(appeal["id"], {}, actor=OPERATOR, command_id=cid())
    return rpc.resolve_appeal(appeal["id"], {"resolution": "已解决"}, actor=OPERATOR, command_id=cid()), dept


def test_not_solved_reopens_it_to_its_department_and_only_the_raiser_rates(rpc, appeal_events):
    rider = worker(f"rider{cid()[:6]}")
    appeal, dept = _resolved(rpc, rider)
    assert rejected(rpc.rate_appeal, appeal["id"], {"rating": 5, "solved": True}, actor=OPERATOR,
                    command_id=cid())["status"] == 403
    reopened = rpc.rate_appeal(appeal["id"], {"rating": 4, "solved": False, "comment": "还没发"}, actor=rider,
                               command_id=cid())
    assert reopened["status"] == "accepted" and reopened["handler"] is None and reopened["due_at"]
    appeal_events.wait_for(lambda e: e["subject"] == appeal["id"] and e["type"] == "appeal.reopened")
    # Resolved again, and this time satisfied: closed by the rating.
    rpc.resolve_appeal(appeal["id"], {"resolution": "已补发"}, actor=OPERATOR, command_id=cid())
    closed = rpc.rate_appeal(appeal["id"], {"rating": 5, "solved": True}, actor=rider, command_id=cid())
    assert closed["status"] == "closed" and closed["satisfaction"]["rating"] == 5
    assert rejected(rpc.rate_appeal, appeal["id"], {"rating": 1, "solved": False}, actor=rider,
                    command_id=cid())["status"] == 409


def test_only_the_raiser_or_a_supervisor_reopens(rpc):
    rider = worker(f"rider{cid()[:6]}")
    appeal, dept = _resolved(rpc, rider)
    assert rejected(rpc.reopen_appeal, appeal["id"], {"reason": "x"}, actor=worker("stranger"),
                    command_id=cid())["status"] == 403
    assert rejected(rpc.reopen_appeal, appeal["id"], {"reason": "x"}, actor=handler("plain", dept),
                    command_id=cid())["status"] == 403
    chief = {"username": "chief", "role": "handler", "scope": [dept["id"]]}
    assert rpc.reopen_appeal(appeal["id"], {"reason": "复查"}, actor=chief, command_id=cid())["status"] == "accepted"


def test_a_nearby_appeal_is_offered_as_a_duplicate_merged_and_both_raisers_told_on_resolution(rpc, appeal_events):
    dept = department(rpc)
    street = routed_street(rpc, "hazard", dept)
    here = somewhere()
    first = submit(rpc, worker("sentinel1"), street, category="hazard", at=here, title="路灯不亮")
    second = submit(rpc, worker("sentinel2"), street, category="hazard", at=(here[0] + 0.001, here[1]))
    assert [d["id"] for d in second["likely_duplicates"]] == [first["id"]]
    assert 80 < second["likely_duplicates"][0]["distance_m"] < 100
    assert second["likely_duplicates"][0]["raised_by"] is None  # the public view
    nearby = rpc.nearby_appeals({"near": f"{here[0]},{here[1]}", "category": "hazard"}, actor=worker("x"))
    assert [a["id"] for a in nearby["items"]] == [first["id"], second["id"]]
    assert rpc.nearby_appeals({"near": f"{here[0]},{here[1]}", "category": "housing"}, actor=worker("x"))["items"] == []

    clerk = handler("merger", dept)
    merged = rpc.merge_appeal(second["id"], {"into": first["id"]}, actor=clerk, command_id=cid())
    assert merged["status"] == "closed" and merged["duplicate_of"] == first["id"]
    assert rejected(rpc.merge_appeal, first["id"], {"into": first["id"]}, actor=clerk,
                    command_id=cid())["status"] == 422
    rpc.accept_appeal(first["id"], {}, actor=clerk, command_id=cid())
    rpc.resolve_appeal(first["id"], {"resolution": "已修复"}, actor=clerk, command_id=cid())
    resolved = appeal_events.wait_for(lambda e: e["subject"] == first["id"] and e["type"] == "appeal.resolved")[0]
    assert resolved["data"]["raised_by"] == "sentinel1" and resolved["data"]["also_raised_by"] == ["sentinel2"]
    # The second rider reads the appeal theirs was merged into, in its public view: not who raised it.
    joined = rpc.get_appeal(first["id"], actor=worker("sentinel2"))
    assert joined["status"] == "resolved" and joined["raised_by"] is None and joined["submitter"] == {"kind": "worker"}
    assert rejected(rpc.reopen_appeal, first["id"], {"reason": "x"}, actor=worker("sentinel2"),
                    command_id=cid())["status"] == 403


def test_a_duplicate_merged_into_a_resolved_appeal_is_announced_with_whoever_raised_it(rpc, appeal_events):
    dept = department(rpc)
    street = routed_street(rpc, "hazard", dept)
    here = somewhere()
    first = submit(rpc, worker("early"), street, category="hazard", at=here)
    rpc.accept_appeal(first["id"], {}, actor=OPERATOR, command_id=cid())
    rpc.resolve_appeal(first["id"], {"resolution": "已修复"}, actor=OPERATOR, command_id=cid())
    late = submit(rpc, worker("late"), street, category="hazard", at=here)
    rpc.merge_appeal(late["id"], {"into": first["id"]}, actor=OPERATOR, command_id=cid())
    merged = appeal_events.wait_for(lambda e: e["subject"] == first["id"] and e["type"] == "appeal.merged")[0]
    assert merged["data"]["merged_raisers"] == ["late"] and merged["data"]["status"] == "resolved"
    assert "member_id" not in merged["data"]


def test_an_appeal_goes_only_to_a_department_that_works_in_its_division(rpc):
    elsewhere = department(rpc, name="历下区人社局", division="370102", actor=ADMIN)
    appeal = submit(rpc, worker("r8"), "370113001")
    problem = rejected(rpc.accept_appeal, appeal["id"], {"department_id": elsewhere["id"]}, actor=OPERATOR,
                       command_id=cid())
    assert problem["status"] == 422 and ("body", "department_id") in fields_named(problem)
    problem = rejected(rpc.set_route, {"division": "370113", "department_id": elsewhere["id"]}, actor=OPERATOR,
                       command_id=cid())
    assert problem["status"] == 422 and ("body", "department_id") in fields_named(problem)
    street_operator = {"username": "op-street", "role": "operator", "scope": "370113001"}
    district = department(rpc, name="长清区住建局")
    assert rpc.get_department(district["id"], actor=street_operator)["id"] == district["id"]
    assert district["id"] in [d["id"] for d in rpc.list_departments(None, 500, actor=street_operator)["items"]]


def test_a_filter_time_out_of_range_is_refused_by_name(rpc):
    problem = rejected(rpc.list_appeals, {"submitted_after": "0001-01-01T00:00:00+08:00"}, actor=ADMIN)
    assert problem["status"] == 422 and ("query", "submitted_after") in fields_named(problem)


# ---- overdue ---------------------------------------------------------------------------------

def test_an_appeal_past_its_deadline_is_flagged_once_escalated_and_counted(rpc, appeal_events, database,
                                                                          appeal_service):
    dept = department(rpc, division="370113001", supervisor="street-chief")
    appeal = submit(rpc, worker("r5"), routed_street(rpc, "rights", dept))
    rpc.accept_appeal(appeal["id"], {}, actor=OPERATOR, command_id=cid())
    past = datetime.now(timezone.utc) - timedelta(minutes=1)
    database.appeals.update_one({"_id": appeal["id"]}, {"$set": {"due_at": past, "overdue_at": past}})
    overdue = appeal_events.wait_for(lambda e: e["subject"] == appeal["id"] and e["type"] == "appeal.overdue")
    escalated = appeal_events.wait_for(lambda e: e["subject"] == appeal["id"] and e["type"] == "appeal.escalated")
    assert overdue[0]["data"]["supervisor"] == "street-chief" and escalated[0]["data"]["escalated_to"] == "370113"
    stored = rpc.get_appeal(appeal["id"], actor=OPERATOR)
    assert stored["overdue"] is True and stored["escalated_to"] == "370113"
    assert appeal["id"] in [a["id"] for a in rpc.list_appeals({"overdue": True}, actor=OPERATOR,
                                                              limit=500)["items"]]
    wait_for(lambda: f'appeal_overdue_open{{department="{dept["id"]}",district="370113"}} 1.0'
             in appeal_service.metrics(), timeout=10, what="the overdue gauge")
    # More passes of the timer raise nothing more; resolving takes it off the gauge.
    wait_for(lambda: database.appeals.find_one({"_id": appeal["id"]})["overdue_at"] is None, timeout=5)
    rpc.resolve_appeal(appeal["id"], {"resolution": "已处理"}, actor=OPERATOR, command_id=cid())
    wait_for(lambda: f'appeal_overdue_open{{department="{dept["id"]}",district="370113"}} 0.0'
             in appeal_service.metrics(), timeout=10, what="the overdue gauge back to 0")
    assert len(events_of(appeal_events, appeal["id"], "appeal.overdue")) == 1


def test_feedback_is_asked_for_when_nobody_rated(rpc, appeal_events, database):
    rider = worker(f"rider{cid()[:6]}")
    appeal, _ = _resolved(rpc, rider)
    past = datetime.now(timezone.utc) - timedelta(seconds=1)
    database.appeals.update_one({"_id": appeal["id"]}, {"$set": {"questionnaire_at": past}})
    asked = appeal_events.wait_for(lambda e: e["subject"] == appeal["id"] and e["type"] == "appeal.feedback_requested")
    assert asked[0]["data"]["raised_by"] == rider["username"]
    database.appeals.update_one({"_id": appeal["id"]}, {"$set": {"closes_at": past}})
    appeal_events.wait_for(lambda e: e["subject"] == appeal["id"] and e["type"] == "appeal.closed")
    assert rpc.get_appeal(appeal["id"], actor=rider)["status"] == "closed"


# ---- Open311's public view -------------------------------------------------------------------

def test_the_public_view_shows_no_account_contact_or_internal_note(rpc):
    appeal, _ = _resolved(rpc, worker("r6"), category="hazard", at=somewhere(),
                          submitter={"kind": "worker", "contact": {"phone": PHONE}})
    rpc.add_note(appeal["id"], {"text": "内部：联系了企业负责人", "visibility": "internal"}, actor=OPERATOR,
                 command_id=cid())
    public = rpc.get_public_appeal(appeal["id"], actor={"username": "open311:public", "role": "open311_client",
                                                        "scope": "public"})
    assert public["status_notes"] == "已解决" and public["location"] and "raised_by" not in public
    assert "内部" not in str(public) and PHONE not in str(public) and "139****5678" in public["description"]
    private = submit(rpc, worker("r7"), "370113001", public=False, address="某小区 3 号楼", at=somewhere())
    rpc.accept_appeal(private["id"], {"department_id": department(rpc)["id"]}, actor=OPERATOR, command_id=cid())
    rpc.resolve_appeal(private["id"], {"resolution": "已协调 3 号楼物业"}, actor=OPERATOR, command_id=cid())
    hidden = rpc.get_public_appeal(private["id"], actor={"username": "open311:public", "role": "open311_client",
                                                         "scope": "public"})
    assert hidden["description"] is None and hidden["address"] is None and hidden["location"] is None
    assert hidden["status_notes"] is None and "3 号楼" not in str(hidden)
    # Whoever raised it: their rating's words stay out of the public view.
    rpc.rate_appeal(appeal["id"], {"rating": 5, "solved": True, "comment": "谢谢王科长"}, actor=worker("r6"),
                    command_id=cid())
    rated = rpc.get_public_appeal(appeal["id"], actor={"username": "open311:public", "role": "open311_client",
                                                       "scope": "public"})
    assert "王科长" not in str(rated) and rated["status_notes"] == "已解决"
    listed = rpc.list_public_appeals({"ids": [appeal["id"], private["id"]]},
                                     actor={"username": "open311:public", "role": "open311_client", "scope": "x"})
    assert {a["id"] for a in listed["items"]} == {appeal["id"], private["id"]}


def test_categories_keep_an_admins_settings(rpc):
    assert rejected(rpc.set_category, "legal", {"sla_working_days": 7, "anonymous_allowed": False},
                    actor=OPERATOR, command_id=cid())["status"] == 403
    rpc.set_category("legal", {"sla_working_days": 7, "anonymous_allowed": False}, actor=ADMIN, command_id=cid())
    legal = next(c for c in rpc.list_categories(actor=worker("w"))["items"] if c["category"] == "legal")
    assert legal["sla_working_days"] == 7 and isinstance(legal["updated_at"], str)


def test_a_calendar_year_that_arrives_counts_provisional_deadlines_again_and_clears_a_false_overdue(
        rpc, database, amqp_uri, appeal_service):
    """A deadline counted past the calendar's data treats New Year's Day 2027 as a working day;
    when the 2027 calendar arrives (calendar.year_loaded from the service-station service) it is
    counted again, a day later, and an overdue flag the early count raised is cleared."""
    import json

    from kombu import Connection, Exchange, Producer

    dept = department(rpc)
    appeal = submit(rpc, worker("r9"), routed_street(rpc, "rights", dept))
    rpc.accept_appeal(appeal["id"], {}, actor=OPERATOR, command_id=cid())
    started = datetime(2026, 12, 30, 3, 0, tzinfo=timezone.utc)  # Wednesday 11:00 in China
    provisional_due = datetime(2027, 1, 6, 3, 0, tzinfo=timezone.utc)
    database.appeals.update_one({"_id": appeal["id"]}, {"$set": {
        "clock_started_at": started, "sla_working_days": 5, "due_at": provisional_due, "due_provisional": True,
        "overdue": True, "overdue_at": None, "overdue_counted": True, "escalated_to": "370113"}})
    database.overdue_counts.update_one({"_id": f"{dept['id']}|370113"}, {"$inc": {"count": 1}, "$setOnInsert": {
        "department": dept["id"], "district": "370113"}}, upsert=True)
    event = {"specversion": "1.0", "id": uuid.uuid4().hex, "source": "service-station", "type": "calendar.year_loaded",
             "time": datetime.now(timezone.utc).isoformat(), "subject": "2027", "datacontenttype": "application/json",
             "data": {"year": 2027, "holidays": ["2027-01-01", "2027-01-02", "2027-01-03"], "workdays": []}}
    with Connection(amqp_uri) as connection:
        Producer(connection.channel(), exchange=Exchange("service-station.events", "topic", durable=True)).publish(
            json.dumps(event), routing_key="calendar.year_loaded", content_type="application/cloudevents+json",
            message_id=event["id"], delivery_mode=2)
    wait_for(lambda: database.appeals.find_one({"_id": appeal["id"]})["due_provisional"] is False, timeout=20,
             what="the deadline counted again")
    stored = database.appeals.find_one({"_id": appeal["id"]})
    assert stored["due_at"] == datetime(2027, 1, 7, 3, 0, tzinfo=timezone.utc)
    assert stored["overdue"] is False and stored["overdue_at"] == stored["due_at"] and stored["escalated_to"] is None
    assert database.overdue_counts.find_one({"_id": f"{dept['id']}|370113"})["count"] == 0
