"""Use cases of the service-station service. Each command runs inside one transaction (a
UnitOfWork): load, check who is asking (access.py), apply the domain rules, save, emit events.
A station's division has been checked with the organization service (a registered district)
before the transaction opened.

Free text (addresses, activity titles and descriptions, adjustment reasons) is kept and
published with anything that looks like an ID number or a phone masked (service_kit.pii)."""

import logging
from datetime import datetime

from platform_contracts import geo
from platform_contracts.actors import Actor
from platform_contracts.calendar import CalendarYear
from platform_contracts.errors import Conflict, InvalidValue, NotFound
from platform_contracts.events import MemberCheckedIn
from platform_contracts.station import (DEFAULT_RADIUS_M, AdjustSupply, RecordVisit, RegisterStation,
                                        ScheduleActivity, SetSupply, SignUp, StationFilter, StationStatus,
                                        UpdateStation, UtilisationQuery)
from service_kit import nearby
from service_kit.china_calendar import ChinaCalendar, calendar_of
from service_kit.documents import new_id
from service_kit.pii import redact_text

from . import access, domain, intervals, opening_hours
from .metrics import SUPPLY_CROSSINGS, USES
from .presenter import activity_resource, as_resource, station_resource, supply_resource
from .repository import Repository, station_query

log = logging.getLogger(__name__)

# Stored beside the location for the near search; not a change anyone made.
INTERNAL_FIELDS = {nearby.CELLS_FIELD}
STATION_CLOSED = "the station is closed"


def _masked(text: str | None) -> str | None:
    return redact_text(text) if text else text


def _located(location: geo.Location) -> dict:
    """A location as stored: the WGS-84 GeoJSON point and its grid cells."""
    lng, lat = location.wgs84()
    return {nearby.LOCATION_FIELD: geo.geojson_point(lng, lat), **nearby.cell_fields(lng, lat)}


class Commands:

    @staticmethod
    def _repo(uow) -> Repository:
        return Repository(uow.db, uow.session)

    # ---- the holiday calendar ------------------------------------------------------------

    @staticmethod
    def calendar(db, session=None) -> ChinaCalendar:
        return calendar_of(list(db.calendar_overrides.find({}, session=session)))

    def _keep_intervals(self, uow, station: dict) -> None:
        if station["status"] == StationStatus.closed:
            station["open_intervals"], station["intervals_from"] = [], None
            return
        station["open_intervals"], station["intervals_from"] = intervals.compute(
            station["opening_hours"], uow.now, self.calendar(uow.db, uow.session))

    def load_calendar_year(self, uow, command: CalendarYear, actor: Actor) -> dict:
        """An admin loads a year's State Council schedule (an override of the package's data);
        every station's open intervals are computed again by the refresh timer, and
        `calendar.year_loaded` tells the other services that count working days."""
        actor.require_admin()
        record = {"_id": command.year, "holidays": [d.isoformat() for d in command.holidays],
                  "workdays": [d.isoformat() for d in command.workdays]}
        try:  # the same checks the calendar makes when it is built
            ChinaCalendar({command.year: record})
        except ValueError as exc:
            raise InvalidValue("holidays", str(exc)) from None
        uow.db.calendar_overrides.replace_one({"_id": command.year}, record, upsert=True, session=uow.session)
        self._repo(uow).mark_all_behind()
        # The appeal service counts deadlines in working days with the same calendar.
        uow.emit("calendar.year_loaded", subject=str(command.year), data=command.model_dump(mode="json"))
        return {"year": command.year, "holidays": record["holidays"], "workdays": record["workdays"]}

    @staticmethod
    def calendar_years(db) -> dict:
        overrides = sorted(db.calendar_overrides.find({}), key=lambda o: o["_id"])
        calendar = calendar_of(overrides)
        return {"covered_from": calendar.covered_from().isoformat(),
                "covered_until": calendar.covered_until().isoformat(),
                "overrides": [{"year": o["_id"], "holidays": o["holidays"], "workdays": o["workdays"]}
                              for o in overrides]}

    def refresh_intervals(self, db, now: datetime, batch: int) -> int:
        """Compute again the open intervals of up to `batch` stations whose window starts
        before today (or that a calendar change marked); the number refreshed. Each write is
        conditional on the station's version: a station changed meanwhile keeps its own."""
        repo = Repository(db)
        calendar = self.calendar(db)
        _, today = intervals.window_start(now)
        refreshed = 0
        for station in repo.stations_behind(today, batch):
            spans, day = intervals.compute(station["opening_hours"], now, calendar)
            refreshed += repo.set_intervals(station["_id"], station["version"], spans, day)
        return refreshed

    # ---- stations ------------------------------------------------------------------------

    @staticmethod
    def _emit_station(uow, event_type: str, station: dict, **extra) -> dict:
        resource = station_resource(station, uow.now)
        uow.emit(event_type, subject=station["_id"], division=station["division"], data={**resource, **extra})
        return resource

    def register_station(self, uow, command: RegisterStation, actor: Actor) -> dict:
        access.ensure_may_register(actor, command.division)
        opening_hours.validate(command.opening_hours)
        fields = command.model_dump(mode="json", exclude={"location"})
        fields["address"] = _masked(fields["address"])
        station = domain.new_station({**fields, **_located(command.location)}, station_id=new_id(),
                                     by=actor.username, now=uow.now)
        self._keep_intervals(uow, station)
        self._repo(uow).insert_station(station)
        return self._emit_station(uow, "station.registered", station)

    def update_station(self, uow, station_id: str, changes: UpdateStation, actor: Actor) -> dict:
        repo = self._repo(uow)
        station = repo.station(station_id)
        access.ensure_runs(actor, station)
        fields = changes.model_dump(mode="json", exclude_unset=True, exclude={"location"})
        if changes.location is not None:
            fields.update(_located(changes.location))
        domain.ensure_changes_allowed(fields, access.is_manager_only(actor, station))
        if "division" in fields:
            actor.ensure_division(fields["division"], "division")
        if "opening_hours" in fields:
            opening_hours.validate(fields["opening_hours"])
        if "address" in fields:
            fields["address"] = _masked(fields["address"])
        changed = domain.apply_changes(station, fields, uow.now)
        if not changed:
            return station_resource(station, uow.now)
        if {"opening_hours", "status"} & set(changed):
            self._keep_intervals(uow, station)
        if "status" in changed:
            self._low_supplies(uow, station, len(self._low_items(station)) * (
                1 if station["status"] == StationStatus.active else -1))
        repo.save_station(station)
        return self._emit_station(uow, "station.updated", station, changed=[f for f in changed
                                                                             if f not in INTERNAL_FIELDS])

    def close_station(self, uow, station_id: str, actor: Actor) -> dict:
        repo = self._repo(uow)
        station = repo.station(station_id)
        access.ensure_may_close(actor, station)
        was_active = station["status"] == StationStatus.active
        domain.close(station, by=actor.username, now=uow.now)
        repo.save_station(station)
        if was_active:
            self._low_supplies(uow, station, -len(self._low_items(station)))
        for activity in repo.scheduled_activities(station_id):
            if domain.still_open(activity, uow.now):
                self._cancel_activity(uow, repo, station, activity, STATION_CLOSED)
        return self._emit_station(uow, "station.closed", station)

    def list_stations(self, db, filters: StationFilter, limit: int, cursor: str | None, now: datetime) -> dict:
        if filters.open_now and filters.open_at is not None:
            raise InvalidValue("open_at", "give open_now=true or open_at, not both")
        if filters.open_at is not None:
            domain.check_open_at(filters.open_at, now)
        at = now if filters.open_now else filters.open_at
        query = station_query(filters.model_dump(mode="json"), at)
        repo = Repository(db)
        if filters.near is None:
            if filters.radius_m is not None:
                raise InvalidValue("radius_m", "is given with near only")
            return repo.stations(query, limit, cursor, lambda station: station_resource(station, now))
        if cursor:
            raise InvalidValue("cursor", "near results are one page, nearest first: ask for a larger limit")
        lng, lat = geo.to_wgs84(*geo.parse_near(filters.near), filters.coord_sys)
        ranked = repo.near(query, lng, lat, filters.radius_m or DEFAULT_RADIUS_M, limit)
        return {"items": [station_resource(station, now, metres) for station, metres in ranked], "next_cursor": None}

    # ---- supplies ------------------------------------------------------------------------

    @staticmethod
    def _low_items(station: dict) -> list[str]:
        return [item for item, s in station.get("supplies", {}).items() if domain.is_low(s["quantity"],
                                                                                          s["low_threshold"])]

    @staticmethod
    def _low_supplies(uow, station: dict, change: int) -> None:
        """Low items per district (the gauge `station_supplies_low` reads these counters)."""
        if change:
            uow.db.low_supplies.update_one({"_id": station["division"][:6]}, {"$inc": {"items": change}},
                                           upsert=True, session=uow.session)

    def _crossed(self, uow, station: dict, item: str, supply: dict, crossing: str | None) -> None:
        if crossing is None:
            return
        if station["status"] == StationStatus.active:
            self._low_supplies(uow, station, 1 if crossing == domain.LOW else -1)
        uow.emit(crossing, subject=station["_id"], division=station["division"], data={
            "station_id": station["_id"], "item": item, "quantity": supply["quantity"],
            "low_threshold": supply["low_threshold"], "unit": supply.get("unit"), "division": station["division"],
            "manager": station.get("manager")})
        district, direction = station["division"][:6], crossing.removeprefix("station.supply_")
        uow.on_commit.append(lambda: SUPPLY_CROSSINGS.labels(district, direction).inc())

    def set_supply(self, uow, station_id: str, item: str, command: SetSupply, actor: Actor) -> dict:
        repo = self._repo(uow)
        station = repo.station(station_id)
        access.ensure_runs(actor, station)
        supply, crossing = domain.set_supply(station, item, quantity=command.quantity,
                                             low_threshold=command.low_threshold, unit=command.unit, now=uow.now)
        repo.set_supply(station_id, item, supply)
        self._crossed(uow, station, item, supply, crossing)
        return supply_resource(item, supply)

    def adjust_supply(self, uow, station_id: str, item: str, command: AdjustSupply, actor: Actor) -> dict:
        repo = self._repo(uow)
        station = repo.station(station_id)
        access.ensure_runs(actor, station)
        domain.ensure_not_closed(station)
        if item not in station["supplies"]:
            raise NotFound("supply", item, "item", f"station {station_id} keeps no {item}: "
                                                   f"PUT /stations/{station_id}/supplies/{item} first")
        after = repo.adjust_supply(station_id, item, command.delta, uow.now)
        if after is None:
            raise domain.too_few(station_id, item, station["supplies"][item]["quantity"], command.delta)
        repo.insert_adjustment({"_id": new_id(), "station_id": station_id, "item": item, "delta": command.delta,
                                "reason": _masked(command.reason), "quantity_after": after["quantity"],
                                "by": actor.username, "at": uow.now})
        self._crossed(uow, station, item, after, domain.adjustment_crossing(after, command.delta))
        return supply_resource(item, after)

    # ---- visits and utilisation ----------------------------------------------------------

    def record_visit(self, uow, station_id: str, command: RecordVisit, actor: Actor) -> dict:
        repo = self._repo(uow)
        station = repo.station(station_id)
        access.ensure_may_record_visit(actor, station, command.member_id)
        if station["status"] != StationStatus.active:
            raise Conflict(f"station {station_id} is {station['status']}: no visits are recorded", None,
                           f"the station is {station['status']}")
        visit = {"_id": new_id(), "station_id": station_id, "visitor": command.visitor.value,
                 "member_id": command.member_id, "at": uow.now, "by": actor.username, "division": station["division"]}
        repo.insert_visit(visit)
        day, hour = domain.day_and_hour(uow.now)
        repo.count_use(station_id, day, hour, f"visits.{visit['visitor']}")
        uow.emit("station.visited", subject=station_id, division=station["division"], data={
            "visit_id": visit["_id"], **{k: visit[k] for k in ("station_id", "visitor", "member_id", "at",
                                                               "division")}})
        district, kind = station["division"][:6], visit["visitor"]
        uow.on_commit.append(lambda: USES.labels(district, kind).inc())
        return as_resource(visit)

    def count_check_in(self, uow, checked_in: MemberCheckedIn) -> None:
        """A member's check-in (member.checked_in) counts in the station's utilisation."""
        repo = self._repo(uow)
        station = repo.find_station(checked_in.station_id)
        if station is None:  # checked in before the member service knew the stations
            log.info("check-in %s names no station of ours: not counted", checked_in.check_in_id)
            return
        day, hour = domain.day_and_hour(checked_in.checked_in_at)
        repo.count_use(station["_id"], day, hour, "check_ins")
        district = station["division"][:6]
        uow.on_commit.append(lambda: USES.labels(district, "check_in").inc())

    @staticmethod
    def utilisation(db, station_id: str, query: UtilisationQuery, actor: Actor) -> dict:
        repo = Repository(db)
        access.ensure_runs(actor, repo.station(station_id))
        days = [domain.utilisation_day(d) for d in repo.utilisation(station_id, query.from_.isoformat(),
                                                                     query.to.isoformat())]
        return {"station_id": station_id, "from": query.from_.isoformat(), "to": query.to.isoformat(),
                "timezone": "Asia/Shanghai", "total": sum(d["total"] for d in days), "days": days}

    # ---- activities ----------------------------------------------------------------------

    def schedule_activity(self, uow, station_id: str, command: ScheduleActivity, actor: Actor) -> dict:
        repo = self._repo(uow)
        station = repo.station(station_id)
        access.ensure_runs(actor, station)
        fields = {**command.model_dump(exclude={"title", "description", "season"}),
                  "title": _masked(command.title), "description": _masked(command.description),
                  "season": command.season.value if command.season else None}
        activity = domain.new_activity(fields, station=station, activity_id=new_id(), by=actor.username,
                                       now=uow.now)
        repo.insert_activity(activity)
        uow.emit("station.activity_scheduled", subject=station_id, division=station["division"],
                 data=self._activity_data(station, activity))
        return activity_resource(activity)

    @staticmethod
    def _activity_data(station: dict, activity: dict) -> dict:
        return {"activity_id": activity["_id"], "station_id": station["_id"], "division": station["division"],
                "manager": station.get("manager"),
                **{k: activity[k] for k in ("title", "season", "starts_at", "ends_at", "capacity")}}

    def remind(self, uow, activity_id: str) -> bool:
        """Tell the people signed up for an activity that starts soon: `station.activity_reminder`
        with the sign-ups not yet reminded, each marked in the same transaction, so that each is
        reminded once (a later pass, another replica) and one who signs up late still is."""
        repo = self._repo(uow)
        activity = repo.find_activity(activity_id)
        if activity is None or not domain.still_open(activity, uow.now):
            return False
        sign_ups = repo.sign_ups_to_remind(activity_id)
        if not sign_ups:
            return False
        repo.mark_reminded([s["_id"] for s in sign_ups], uow.now)
        station = repo.station(activity["station_id"])
        uow.emit("station.activity_reminder", subject=station["_id"], division=station["division"], data={
            **self._activity_data(station, activity),
            "sign_ups": [{"sign_up_id": s["_id"], "member_id": s.get("member_id"), "by": s["by"]} for s in sign_ups]})
        return True

    def _cancel_activity(self, uow, repo: Repository, station: dict, activity: dict, reason: str) -> None:
        sign_ups = repo.active_sign_ups(activity["_id"])
        repo.cancel_sign_ups(activity["_id"], uow.now)
        domain.cancel_activity(activity, reason=reason, now=uow.now)
        repo.save_activity(activity)
        uow.emit("station.activity_cancelled", subject=station["_id"], division=station["division"], data={
            **self._activity_data(station, activity), "reason": reason,
            "sign_ups": [{"sign_up_id": s["_id"], "member_id": s.get("member_id"), "by": s["by"]} for s in sign_ups]})

    def cancel_activity(self, uow, station_id: str, activity_id: str, reason: str, actor: Actor) -> dict:
        repo = self._repo(uow)
        station = repo.station(station_id)
        activity = repo.activity(station_id, activity_id)
        access.ensure_runs(actor, station)
        if not domain.still_open(activity, uow.now):
            raise Conflict(f"activity {activity_id} is {activity['status']} or over", None,
                           "cancelled already, or over")
        self._cancel_activity(uow, repo, station, activity, _masked(reason))
        return activity_resource(activity)

    def sign_up(self, uow, station_id: str, activity_id: str, command: SignUp, actor: Actor) -> dict:
        repo = self._repo(uow)
        station = repo.station(station_id)
        activity = repo.activity(station_id, activity_id)
        # Who may sign up here is decided first: a caller who may not is refused (403) whatever
        # the state of the station or the activity, and only those who may are told it (409).
        member_id = access.sign_up_member(actor, station, command.member_id)
        domain.ensure_not_closed(station)
        domain.ensure_open_for_sign_ups(activity, uow.now)
        # The place first: every sign-up writes the activity, so concurrent ones conflict there
        # and are retried one after another, each seeing the others' places and sign-ups.
        if not repo.take_place(activity_id, activity["capacity"]):
            raise domain.full(activity)
        if member_id is not None and repo.active_sign_up_of(activity_id, member_id) is not None:
            raise Conflict(f"member {member_id} has signed up for activity {activity_id} already", "member_id",
                           "signed up already")
        sign_up = domain.new_sign_up(activity=activity, sign_up_id=new_id(), member_id=member_id,
                                     by=actor.username, now=uow.now)
        repo.insert_sign_up(sign_up)
        return as_resource(sign_up)

    def cancel_sign_up(self, uow, station_id: str, activity_id: str, sign_up_id: str, actor: Actor) -> dict:
        repo = self._repo(uow)
        station = repo.station(station_id)
        repo.activity(station_id, activity_id)
        sign_up = repo.sign_up(activity_id, sign_up_id)
        access.ensure_may_cancel_sign_up(actor, station, sign_up)
        if not repo.cancel_sign_up(sign_up_id, uow.now):
            raise Conflict(f"sign-up {sign_up_id} is cancelled already", None, "cancelled already")
        repo.release_place(activity_id)
        return as_resource({**sign_up, "status": "cancelled", "cancelled_at": uow.now})
