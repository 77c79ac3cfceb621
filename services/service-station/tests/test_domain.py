"""Pure rules of service stations and the form of their commands (platform_contracts.station):
no database, no broker."""

from datetime import datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from platform_contracts.errors import Conflict, InvalidValue
from platform_contracts.station import (AdjustSupply, RecordVisit, RegisterStation, ScheduleActivity, SetSupply,
                                        StationFilter, UpdateStation, UtilisationQuery)
from service_station import domain

NOW = datetime(2026, 3, 9, 2, 0, tzinfo=timezone.utc)  # 10:00 in China


def locs(exc: ValidationError) -> set[tuple]:
    return {tuple(e["loc"]) for e in exc.errors()}


# ---- commands ------------------------------------------------------------------------------

def station_command(**fields) -> dict:
    return {"kind": "warm_station", "name": "驿站", "division": "370113001", "address": "经十路 1 号",
            "location": {"lng": 117.0, "lat": 36.65}, "opening_hours": "24/7", **fields}


@pytest.mark.parametrize("fields, loc", [
    ({"kind": "igloo"}, ("kind",)),
    ({"amenities": ["water", "water"]}, ("amenities",)),
    ({"amenities": ["jacuzzi"]}, ("amenities", 0)),
    ({"location": {"lng": 200, "lat": 36.6}}, ("location", "lng")),
    ({"location": {"lng": 2.35, "lat": 48.85}}, ("location",)),  # Paris
    ({"location": {"lng": 117.0, "lat": 36.6, "coord_sys": "mercator"}}, ("location", "coord_sys")),
    ({"status": "closed"}, ("status",)),
    ({"capacity": -1}, ("capacity",)),
    ({"manager": "no spaces allowed"}, ("manager",)),
    ({"division": "3701"}, ("division",)),
])
def test_a_registration_names_the_field_it_refuses(fields, loc):
    with pytest.raises(ValidationError) as refused:
        RegisterStation.model_validate(station_command(**fields))
    assert loc in locs(refused.value)


def test_a_registration_in_bd09_and_gcj02_is_accepted():
    for system in ("gcj02", "bd09"):
        assert RegisterStation.model_validate(station_command(
            location={"lng": 117.0, "lat": 36.65, "coord_sys": system})).location.coord_sys == system


def test_an_update_refuses_null_for_what_cannot_be_cleared_but_clears_the_manager():
    with pytest.raises(ValidationError) as refused:
        UpdateStation.model_validate({"opening_hours": None})
    assert ("opening_hours",) in locs(refused.value)
    assert UpdateStation.model_validate({"manager": None}).model_dump(exclude_unset=True) == {"manager": None}


def test_supplies_visits_and_activities_check_their_fields():
    with pytest.raises(ValidationError) as refused:
        SetSupply.model_validate({"quantity": -1, "low_threshold": 0})
    assert ("quantity",) in locs(refused.value)
    with pytest.raises(ValidationError) as refused:
        AdjustSupply.model_validate({"delta": 0, "reason": "x"})
    assert ("delta",) in locs(refused.value)
    with pytest.raises(ValidationError) as refused:
        AdjustSupply.model_validate({"delta": 1, "reason": "x" * 501})
    assert ("reason",) in locs(refused.value)
    for body in ({"visitor": "member"}, {"visitor": "worker", "member_id": "m1"}):
        with pytest.raises(ValidationError):
            RecordVisit.model_validate(body)
    with pytest.raises(ValidationError):
        ScheduleActivity.model_validate({"title": "t", "starts_at": "2026-03-10T10:00:00+08:00",
                                         "ends_at": "2026-03-10T09:00:00+08:00", "capacity": 1, "description": "d"})
    with pytest.raises(ValidationError) as refused:
        ScheduleActivity.model_validate({"title": "t", "starts_at": "2026-03-10T10:00:00",
                                         "ends_at": "2026-03-10T11:00:00+08:00", "capacity": 0, "description": "d"})
    assert {("starts_at",), ("capacity",)} <= locs(refused.value)


def test_search_filters_take_a_comma_list_of_amenities():
    assert StationFilter.model_validate({"amenity": "water,charging"}).amenity == ["water", "charging"]
    for bad in ("water,,charging", "water,jacuzzi"):
        with pytest.raises(ValidationError) as refused:
            StationFilter.model_validate({"amenity": bad})
        assert any(loc[0] == "amenity" for loc in locs(refused.value))
    with pytest.raises(ValidationError):
        StationFilter.model_validate({"radius_m": 50_001})


def test_utilisation_periods_are_ordered_and_bounded():
    assert UtilisationQuery.model_validate({"from": "2026-03-01", "to": "2026-03-31"}).from_.day == 1
    for period in ({"from": "2026-03-02", "to": "2026-03-01"}, {"from": "2025-01-01", "to": "2026-03-01"}):
        with pytest.raises(ValidationError):
            UtilisationQuery.model_validate(period)


# ---- rules ---------------------------------------------------------------------------------

def test_a_crossing_is_reported_once_each_way():
    assert domain.crossing(False, True) == domain.LOW
    assert domain.crossing(True, False) == domain.RESTOCKED
    assert domain.crossing(True, True) is None and domain.crossing(False, False) is None
    # After the atomic update: 9 left of a threshold of 10, having taken 3 (from 12).
    assert domain.adjustment_crossing({"quantity": 9, "low_threshold": 10}, -3) == domain.LOW
    assert domain.adjustment_crossing({"quantity": 7, "low_threshold": 10}, -2) is None
    assert domain.adjustment_crossing({"quantity": 10, "low_threshold": 10}, 3) == domain.RESTOCKED
    assert domain.is_low(0, 0) is False  # a threshold of 0 never alerts


def test_supply_items_name_a_safe_field():
    assert domain.supply_item("矿泉水") == "矿泉水" and domain.supply_item("power-bank_2") == "power-bank_2"
    for bad in ("a.b", "$inc", "", "x" * 41, "a b", "water\n"):
        with pytest.raises(InvalidValue):
            domain.supply_item(bad)


def test_visits_count_on_chinas_day_and_hour():
    assert domain.day_and_hour(datetime(2026, 3, 8, 16, 30, tzinfo=timezone.utc)) == ("2026-03-09", 0)
    day = domain.utilisation_day({"day": "2026-03-09", "visits": {"worker": 2}, "check_ins": 1, "hours": {"09": 3}})
    assert day["total"] == 3 and day["hours"][9] == 3 and len(day["hours"]) == 24


def test_open_at_must_lie_in_the_days_kept():
    domain.check_open_at(NOW, NOW)
    domain.check_open_at(datetime(2026, 3, 8, 16, 0, tzinfo=timezone.utc), NOW)  # today's midnight, China
    for at in (NOW - timedelta(days=1), NOW + timedelta(days=8)):
        with pytest.raises(InvalidValue):
            domain.check_open_at(at, NOW)


def test_is_open_reads_the_stored_intervals_of_active_stations_only():
    station = {"status": "active", "open_intervals": [{"start": NOW, "end": NOW + timedelta(hours=1)}]}
    assert domain.is_open_at(station, NOW) and not domain.is_open_at(station, NOW + timedelta(hours=1))
    assert not domain.is_open_at({**station, "status": "suspended"}, NOW)


def test_a_closed_station_is_closed_once():
    station = {"_id": "s1", "status": "active", "version": 3, "open_intervals": [{}]}
    domain.close(station, by="op", now=NOW)
    assert (station["status"], station["version"], station["open_intervals"]) == ("closed", 4, [])
    with pytest.raises(Conflict):
        domain.close(station, by="op", now=NOW)
