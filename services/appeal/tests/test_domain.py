"""The appeal service's pure rules: deadlines in working days (Spring Festival 2026, an adjusted
Saturday, a year the calendar does not know yet), the workflow's legal transitions, routing by
category and division prefix, escalation, likely duplicates, merging and feedback."""

from datetime import date, datetime, timedelta, timezone

import pytest

from appeal import domain
from platform_contracts.appeal import AppealStatus
from platform_contracts.errors import Conflict, InvalidValue
from service_kit.china_calendar import ChinaCalendar

CST = timezone(timedelta(hours=8))
CALENDAR = ChinaCalendar()


def cst(*args) -> datetime:
    return datetime(*args, tzinfo=CST)


# ---- deadlines -------------------------------------------------------------------------------

def test_a_deadline_never_lands_in_spring_festival_and_an_adjusted_saturday_counts():
    # Friday 13 February 2026; Saturday the 14th is worked in exchange; 15-23 are Spring Festival.
    accepted = cst(2026, 2, 13, 10, 0)
    assert domain.deadline(CALENDAR, accepted, 1) == (cst(2026, 2, 14, 10, 0).astimezone(timezone.utc), False)
    due, provisional = domain.deadline(CALENDAR, accepted, 2)
    assert due == cst(2026, 2, 24, 10, 0) and not provisional
    for working_days in range(1, 8):
        due, _ = domain.deadline(CALENDAR, accepted, working_days)
        assert not date(2026, 2, 15) <= due.astimezone(CST).date() <= date(2026, 2, 23)


def test_the_adjusted_saturday_after_the_festival_counts_and_ordinary_weekends_do_not():
    # Tuesday 24 February: 25, 26, 27 (Fri), then Saturday 28 February, worked in exchange.
    assert domain.deadline(CALENDAR, cst(2026, 2, 24, 9, 30), 4)[0] == cst(2026, 2, 28, 9, 30)
    # An ordinary week: Friday 6 March + 1 working day is Monday 9 March.
    assert domain.deadline(CALENDAR, cst(2026, 3, 6, 17, 0), 1)[0] == cst(2026, 3, 9, 17, 0)


def test_a_deadline_in_a_year_the_calendar_does_not_know_is_provisional_and_counted_again_later():
    accepted = cst(2026, 12, 30, 11, 0)  # Wednesday; the package's data ends with 2026
    due, provisional = domain.deadline(CALENDAR, accepted, 5)
    # 31 Dec, then 1 January 2027 counted as an ordinary Friday (unknown), 4, 5, 6 January.
    assert (due, provisional) == (cst(2027, 1, 6, 11, 0), True)
    known = ChinaCalendar({2027: {"holidays": [date(2027, 1, 1)], "workdays": []}})
    assert domain.deadline(known, accepted, 5) == (cst(2027, 1, 7, 11, 0).astimezone(timezone.utc), False)


def test_acceptance_starts_the_clock_and_a_reopening_starts_it_again():
    appeal = _appeal()
    domain.start_clock(appeal, CALENDAR, 2, cst(2026, 2, 13, 10, 0))
    assert appeal["due_at"] == appeal["overdue_at"] == cst(2026, 2, 24, 10, 0)
    appeal["status"] = AppealStatus.accepted.value
    assert not domain.is_overdue(appeal, cst(2026, 2, 24, 9, 59))
    assert domain.is_overdue(appeal, cst(2026, 2, 24, 10, 0))
    changes, entries = domain.mark_overdue(appeal, {"division": "370113401"}, cst(2026, 2, 24, 10, 1))
    assert [e["action"] for e in entries] == ["overdue", "escalated"] and changes["escalated_to"] == "370113"
    assert appeal["overdue"] and appeal["overdue_at"] is None and appeal["escalated_to"] == "370113"
    assert not domain.is_overdue(appeal, cst(2026, 3, 1))  # flagged once per deadline
    appeal["status"] = AppealStatus.resolved.value
    appeal["resolved_at"] = cst(2026, 3, 2)
    domain.reopen(appeal, CALENDAR, cst(2026, 3, 3, 9, 0), actor="w", reason="still broken")
    assert appeal["status"] == "accepted" and not appeal["overdue"] and appeal["due_at"] == cst(2026, 3, 5, 9, 0)


def test_escalation_goes_one_level_up():
    assert domain.escalation_division("370113401001") == "370113401"
    assert domain.escalation_division("370113401") == "370113"
    assert domain.escalation_division("370113") == "3701"


# ---- the workflow --------------------------------------------------------------------------

LEGAL = {
    "submitted": {"accept", "assign", "reject", "merge"},
    "accepted": {"assign", "resolve", "reject", "merge"},
    "assigned": {"assign", "resolve", "reject", "merge"},
    "resolved": {"close", "rate", "reopen"},
    "closed": {"rate", "reopen"},
    "rejected": set(),
}


@pytest.mark.parametrize("status", list(LEGAL))
def test_only_the_legal_transitions_are_allowed_and_the_others_are_conflicts(status):
    for action in ("accept", "assign", "resolve", "reject", "close", "rate", "reopen", "merge"):
        appeal = {**_appeal(), "status": status}
        if action in LEGAL[status]:
            domain.ensure_may(appeal, action)
        else:
            with pytest.raises(Conflict):
                domain.ensure_may(appeal, action)


def test_a_low_rating_or_not_solved_reopens():
    assert domain.reopens(1, True) and domain.reopens(2, True) and domain.reopens(5, False)
    assert not domain.reopens(3, True) and not domain.reopens(5, True)


def test_feedback_is_taken_within_the_window_only_and_once():
    appeal = {**_appeal(), "status": "resolved", "resolved_at": cst(2026, 3, 1)}
    domain.ensure_within_window(appeal, cst(2026, 3, 15), 15, "rated")
    with pytest.raises(Conflict):
        domain.ensure_within_window(appeal, cst(2026, 3, 17), 15, "rated")
    appeal["satisfaction"] = {"rating": 4}
    with pytest.raises(Conflict):
        domain.ensure_not_rated(appeal)


# ---- routing -------------------------------------------------------------------------------

def test_routing_takes_the_longest_division_prefix_and_the_category_over_a_default():
    rules = [domain.Rule(None, None, "default"), domain.Rule(None, "370113", "district-office"),
             domain.Rule("housing", "370113", "housing-bureau"), domain.Rule("housing", None, "city-housing"),
             domain.Rule("rights", "370113401", "street-union")]
    assert domain.route(rules, "housing", "370113401001") == "housing-bureau"
    assert domain.route(rules, "rights", "370113401001") == "street-union"
    assert domain.route(rules, "rights", "370113402") == "district-office"
    assert domain.route(rules, "housing", "370102") == "city-housing"
    assert domain.route(rules, "legal", "370102") == "default"
    assert domain.route([domain.Rule("legal", "3701", "x")], "housing", "370113") is None


# ---- duplicates and merging ----------------------------------------------------------------

def _appeal(**fields) -> dict:
    base = {"_id": "a1", "category": "hazard", "status": "submitted", "division": "370113401",
            "submitted_at": cst(2026, 3, 1), "duplicate_of": None, "location": _point(116.7421, 36.5537),
            "history": [], "version": 1, "raised_by": "rider1", "also_raised_by": [], "duplicates": []}
    return {**base, **fields}


def _point(lng, lat) -> dict:
    return {"type": "Point", "coordinates": [lng, lat]}


def test_likely_duplicates_are_open_of_the_same_category_recent_and_within_the_radius():
    here = (116.7421, 36.5537)
    candidates = [
        _appeal(_id="near", location=_point(116.7440, 36.5537)),  # ~170 m east
        _appeal(_id="far", location=_point(116.7460, 36.5537)),  # ~350 m
        _appeal(_id="other-category", category="housing"),
        _appeal(_id="resolved", status="resolved"),
        _appeal(_id="merged", duplicate_of="x"),
        _appeal(_id="old", submitted_at=cst(2026, 1, 1)),
        _appeal(_id="itself"),
        _appeal(_id="nearest", location=_point(116.7422, 36.5537)),
    ]
    found = domain.nearby_duplicates(candidates, *here, 250, appeal_id="itself", category="hazard",
                                     since=cst(2026, 2, 1), limit=10)
    assert [a["_id"] for a, _ in found] == ["nearest", "near"]
    assert 160 < found[1][1] < 180


def test_merging_closes_the_duplicate_and_remembers_who_to_tell():
    into = _appeal(_id="first", raised_by="rider1", status="accepted")
    duplicate = _appeal(_id="second", raised_by="rider2", also_raised_by=["rider3"])
    domain.merge(duplicate, into, actor="handler1", now=cst(2026, 3, 2), note=None)
    assert duplicate["status"] == "closed" and duplicate["duplicate_of"] == "first"
    assert into["also_raised_by"] == ["rider2", "rider3"] and into["duplicates"] == ["second"]
    with pytest.raises(InvalidValue):
        domain.merge(_appeal(_id="x"), _appeal(_id="x"), actor="h", now=cst(2026, 3, 2), note=None)
    with pytest.raises(InvalidValue):
        domain.merge(_appeal(_id="y"), duplicate, actor="h", now=cst(2026, 3, 2), note=None)
    with pytest.raises(Conflict):
        domain.merge(_appeal(_id="z"), _appeal(_id="done", status="rejected"), actor="h", now=cst(2026, 3, 2),
                     note=None)


def test_a_name_is_masked_to_the_family_name():
    assert domain.mask_name("张三丰") == "张**" and domain.mask_name("李") == "李*"
