"""Who is notified of what, and whom a notification addresses: pure rules, no I/O."""

import pytest

from platform_contracts.actors import Actor
from gateway.auth import Principal
from gateway.event_log import LogEntry
from gateway.stream_filter import EventFilter
from gateway.notifications import NOTIFICATION_CREATED, addressed_to, notification_events, rules_for, with_notifications
from platform_contracts.events import validate_event

from gateway_test_support import alert_event, new_transfer, transfer_event

SENDING, RECEIVING = "370113001", "370112001"


def principal(role: str, scope=None, username: str = "someone", id_: str = "u-1") -> Principal:
    return Principal(id=id_, actor=Actor.parse({"username": username, "role": role, "scope": scope}))


@pytest.fixture
def transfer() -> dict:
    return new_transfer(SENDING, RECEIVING)


def audiences(step: str, transfer: dict) -> dict[str, tuple[str, dict]]:
    return {n.rule: (n.type, n.audience) for n in rules_for(validate_event(transfer_event(step, transfer)))}


def test_each_transfer_step_notifies_the_side_that_must_act_and_the_member(transfer):
    sending = {"division": SENDING, "organization_ids": [transfer["from_organization_id"]]}
    receiving = {"division": RECEIVING, "organization_ids": [transfer["to_organization_id"]]}
    member = {"role": "worker", "member_id": transfer["member_id"]}
    assert audiences("requested", transfer) == {"sending_side": ("transfer.awaiting_approval", sending),
                                                "member": ("transfer.requested", member)}
    assert audiences("approved", transfer) == {"receiving_side": ("transfer.awaiting_receipt", receiving),
                                               "member": ("transfer.approved", member)}
    assert audiences("received", transfer) == {"member": ("transfer.awaiting_report_in", member)}
    assert audiences("completed", transfer) == {"member": ("transfer.completed", member),
                                                "side": ("transfer.completed", receiving)}
    for step in ("rejected", "cancelled"):  # before approval: the receiving side never heard of it
        assert audiences(step, transfer) == {"member": (f"transfer.{step}", member),
                                             "side": (f"transfer.{step}", sending)}


def test_a_transfer_ending_after_approval_tells_the_receiving_side_too(transfer):
    approved = {**transfer, "letter_expires_on": "2026-12-22"}  # the letter approval issued
    sending = {"division": SENDING, "organization_ids": [transfer["from_organization_id"]]}
    receiving = {"division": RECEIVING, "organization_ids": [transfer["to_organization_id"]]}
    for step in ("rejected", "cancelled", "expired"):
        assert audiences(step, approved) == {"member": (f"transfer.{step}", {"role": "worker",
                                                                            "member_id": transfer["member_id"]}),
                                             "side": (f"transfer.{step}", sending),
                                             "receiving_side": (f"transfer.{step}", receiving)}
    # Completion is the receiving side's own news, once.
    assert audiences("completed", approved)["side"] == ("transfer.completed", receiving)
    assert "receiving_side" not in audiences("completed", approved)


def test_within_one_division_both_sides_are_told_once(transfer):
    """A transfer inside one street: its operators would otherwise get the same news twice."""
    local = {**transfer, "to_division": SENDING, "letter_expires_on": "2026-12-22"}
    told = audiences("rejected", local)
    assert "receiving_side" not in told
    assert told["side"] == ("transfer.rejected", {"division": SENDING, "organization_ids": [
        transfer["from_organization_id"], transfer["to_organization_id"]]})


def test_a_coverage_alert_notifies_the_divisions_operators():
    [n] = rules_for(validate_event(alert_event(SENDING, "coverage.alert_raised")))
    assert (n.type, n.subject, n.audience) == ("coverage.should_establish", "u1",
                                               {"role": "operator", "division": SENDING})
    assert "顺丰" not in n.body  # ids, not names
    assert rules_for(validate_event(alert_event(SENDING, "coverage.alert_cleared"))) == []


def test_notification_events_are_valid_deterministic_and_follow_their_cause(transfer):
    source = validate_event(transfer_event("requested", transfer))
    events = notification_events(source)
    again = notification_events(validate_event(transfer_event("requested", transfer, event_id=source.id)))
    assert [e.id for e in events] == [e.id for e in again]  # a redelivery derives the same ids
    assert len({e.id for e in events}) == 2
    for event in events:
        validate_event(event)
        assert (event.source, event.type, event.subject, event.causationid) == \
               ("gateway", NOTIFICATION_CREATED, event.id, source.id)
        assert event.data["id"] == event.id and event.data["subject"] == transfer["transfer_id"]
        assert {"read", "read_by", "seq"}.isdisjoint(event.data)
    assert [e.division for e in events] == [SENDING, None]  # the audience's division, if any
    assert [e.type for e in with_notifications([source])] == ["transfer.requested"] + [NOTIFICATION_CREATED] * 2


def test_addressing():
    side = {"division": "370113001", "organization_ids": ["org-a"]}
    assert addressed_to(side, principal("operator", "370113"))
    assert addressed_to(side, principal("operator", "370113001"))
    assert not addressed_to(side, principal("operator", "370112"))
    assert not addressed_to(side, principal("operator", "370113001002"))  # narrower than the division
    assert addressed_to(side, principal("secretary", ["org-x", "org-a"]))
    assert not addressed_to(side, principal("secretary", ["org-b"]))
    assert not addressed_to(side, principal("worker", "m-1"))
    assert addressed_to(side, principal("admin"))

    member = {"role": "worker", "member_id": "m-1"}
    assert addressed_to(member, principal("worker", "m-1"))
    assert not addressed_to(member, principal("worker", "m-2"))
    assert not addressed_to({"role": "secretary", "division": "370113"}, principal("operator", "3701"))

    assert addressed_to({"username": "li"}, principal("station_manager", ["s-1"], username="li"))
    assert addressed_to({"user_id": "u-9"}, principal("worker", "m-1", id_="u-9"))
    assert not addressed_to({"username": "li"}, principal("operator", "37", username="wang"))


def notification_entry(audience: dict, division: str | None) -> LogEntry:
    return LogEntry(seq=1, type=NOTIFICATION_CREATED, division=division,
                    envelope={"type": NOTIFICATION_CREATED, "division": division, "data": {"audience": audience}})


def test_stream_filter_with_a_reader():
    alert = LogEntry(seq=2, type="coverage.alert_raised", division="370113001", envelope={})
    for_operators = notification_entry({"division": "370113001"}, "370113001")
    for_member = notification_entry({"role": "worker", "member_id": "m-1"}, None)

    operator = EventFilter(division="370113", reader=principal("operator", "370113"))
    assert operator.matches(alert) and operator.matches(for_operators) and not operator.matches(for_member)
    elsewhere = EventFilter(division="370112", reader=principal("operator", "370112"))
    assert not elsewhere.matches(for_operators)

    worker = EventFilter(reader=principal("worker", "m-1"))
    assert worker.matches(for_member) and not worker.matches(for_operators) and not worker.matches(alert)

    admin = EventFilter(division="370113", reader=principal("admin"))
    assert admin.matches(alert) and admin.matches(for_operators) and admin.matches(for_member)
    assert not EventFilter(types=("coverage.*",), reader=principal("admin")).matches(for_member)


def test_a_station_manager_streams_the_events_of_their_own_stations_only():
    """Issue 13: a station's manager sees `station.supply_low` (and the rest of station.*) of
    the stations they manage on the live stream, beside their notifications; nothing of other
    stations, and no other kind of event."""
    def station_entry(event_type: str, station_id: str) -> LogEntry:
        return LogEntry(seq=3, type=event_type, division="370113001",
                        envelope={"type": event_type, "subject": station_id, "division": "370113001"})

    keeper = EventFilter(reader=principal("station_manager", ["s1"], username="keeper"))
    assert keeper.matches(station_entry("station.supply_low", "s1"))
    assert not keeper.matches(station_entry("station.supply_low", "s2"))
    assert not keeper.matches(LogEntry(seq=4, type="unit.registered", division="370113001",
                                       envelope={"type": "unit.registered", "subject": "s1"}))
    assert keeper.log_query() == {"type_keys": {"$in": [NOTIFICATION_CREATED, "station.", "appeal.", "import."]}}
    assert not EventFilter(reader=principal("worker", "m-1")).matches(station_entry("station.supply_low", "s1"))
