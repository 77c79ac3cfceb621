"""MongoDB persistence of the service-station service: the one place that knows collections,
indexes and queries. Every method runs in the session it was given (a transaction).

- `stations`: the station, its location as a GeoJSON point (`location`, 2dsphere-indexed for
  operators' ad-hoc queries) beside the grid cell the near search looks up by (service_kit.nearby),
  its supplies by item (`supplies.<item>`), and its open intervals for the coming days
  (`open_intervals: [{start, end}]`, indexed, so `open_now`/`open_at` is a filter, not a parse).
- `supply_adjustments`: every adjustment, with the quantity it left.
- `visits` and `utilisation` (one document per station and local day: counts by visitor kind,
  check-ins, and by hour).
- `activities` (with `signed_up`, the places taken) and `sign_ups`."""

from datetime import datetime

from pymongo import ASCENDING, ReturnDocument

from platform_contracts.errors import NotFound
from platform_contracts.station import ActivityStatus, SignUpStatus, StationStatus
from service_kit import nearby
from service_kit.documents import DocumentRepository, page, prefix_query


def ensure_indexes(db) -> None:
    nearby.ensure_indexes(db.stations)
    db.stations.create_index([("division", ASCENDING), ("_id", ASCENDING)])
    db.stations.create_index([("status", ASCENDING), ("_id", ASCENDING)])
    db.stations.create_index([("open_intervals.start", ASCENDING), ("open_intervals.end", ASCENDING)])
    db.stations.create_index("intervals_from")  # the refresh finds stations whose intervals are behind
    db.supply_adjustments.create_index([("station_id", ASCENDING), ("item", ASCENDING), ("at", ASCENDING)])
    db.visits.create_index([("station_id", ASCENDING), ("at", ASCENDING)])
    db.utilisation.create_index([("station_id", ASCENDING), ("day", ASCENDING)])
    db.activities.create_index([("station_id", ASCENDING), ("starts_at", ASCENDING)])
    db.activities.create_index([("starts_at", ASCENDING)])  # the reminders' timer
    db.sign_ups.create_index([("activity_id", ASCENDING), ("reminded_at", ASCENDING)])
    db.sign_ups.create_index([("activity_id", ASCENDING), ("status", ASCENDING)])
    db.sign_ups.create_index([("activity_id", ASCENDING), ("member_id", ASCENDING)])


def open_at_filter(at: datetime) -> dict:
    return {"open_intervals": {"$elemMatch": {"start": {"$lte": at}, "end": {"$gt": at}}}}


def station_query(filters: dict, open_at: datetime | None) -> dict:
    """The list and search filters (StationFilter) as one MongoDB filter, flat and its most
    selective condition first (SecantusDB plans no index under a top-level `$and`). The near
    search applies it to the candidates its grid cells give (Repository.near)."""
    query: dict = {}
    if filters.get("division"):
        query["division"] = prefix_query(filters["division"])
    if open_at is not None:
        query.update(open_at_filter(open_at))
    if filters.get("kind"):
        query["kind"] = filters["kind"]
    if filters.get("amenity"):
        query["amenities"] = {"$all": list(filters["amenity"])}
    query["status"] = filters.get("status") or StationStatus.active.value
    return query


class Repository(DocumentRepository):

    # ---- stations ------------------------------------------------------------------------

    def station(self, station_id: str, field=None) -> dict:
        return self._require("stations", "station", station_id, field)

    def find_station(self, station_id: str) -> dict | None:
        return self._get("stations", station_id)

    def insert_station(self, station: dict) -> None:
        self.db.stations.insert_one(station, session=self.session)

    def save_station(self, station: dict) -> None:
        self._save("stations", station)

    def stations(self, query: dict, limit: int, cursor: str | None, to_resource) -> dict:
        return page(self.db.stations, query, limit, cursor, to_resource, self.session)

    def near(self, query: dict, lng: float, lat: float, radius_m: float, limit: int) -> list[tuple[dict, float]]:
        """Stations matching `query` within radius_m of (lng, lat), nearest first: the grid
        cells around the point through their index, `query` applied to those candidates in a
        second stage, then exact distances (service_kit.nearby.find_near). Measured here over
        20,000 stations with open_now and two amenities: p50 1.3 ms (the bare cell lookup
        1.1 ms; the cells `$and` the query in one find: 550 ms, a scan)."""
        return nearby.find_near(self.db.stations, lng, lat, radius_m, limit, query, session=self.session)

    def set_intervals(self, station_id: str, version: int, intervals: list[dict], intervals_from: str) -> bool:
        """Store freshly computed open intervals, unless the station changed meanwhile."""
        result = self.db.stations.update_one(
            {"_id": station_id, "version": version},
            {"$set": {"open_intervals": intervals, "intervals_from": intervals_from}}, session=self.session)
        return result.matched_count == 1

    def stations_behind(self, day: str, limit: int) -> list[dict]:
        """Stations not closed whose open intervals start before `day` (or were never computed)."""
        query = {"status": {"$ne": StationStatus.closed.value},
                 "$or": [{"intervals_from": None}, {"intervals_from": {"$lt": day}}]}
        fields = {"opening_hours": 1, "version": 1, "status": 1}
        return list(self.db.stations.find(query, fields, session=self.session).limit(limit))

    def mark_all_behind(self) -> int:
        """Every station's intervals to be computed again (the holiday calendar changed)."""
        return self.db.stations.update_many({"status": {"$ne": StationStatus.closed.value}},
                                            {"$set": {"intervals_from": None}}, session=self.session).modified_count

    # ---- supplies ------------------------------------------------------------------------

    def set_supply(self, station_id: str, item: str, supply: dict) -> None:
        self.db.stations.update_one({"_id": station_id}, {"$set": {f"supplies.{item}": supply}}, session=self.session)

    def adjust_supply(self, station_id: str, item: str, delta: int, now: datetime) -> dict | None:
        """Move the item's quantity by delta in one conditional update: only on a station that
        is not closed and has the item, and never below 0. The item as it is after, or None when
        the condition failed (nothing written). Concurrent adjustments each see their own
        before and after, so none is lost and each crossing of the threshold is seen once."""
        field = f"supplies.{item}"
        condition = {"_id": station_id, "status": {"$ne": StationStatus.closed.value},
                     f"{field}.quantity": {"$gte": max(-delta, 0)}}
        after = self.db.stations.find_one_and_update(
            condition, {"$inc": {f"{field}.quantity": delta}, "$set": {f"{field}.updated_at": now}},
            projection={field: 1}, return_document=ReturnDocument.AFTER, session=self.session)
        return None if after is None else after["supplies"][item]

    def insert_adjustment(self, record: dict) -> None:
        self.db.supply_adjustments.insert_one(record, session=self.session)

    # ---- visits and utilisation ----------------------------------------------------------

    def insert_visit(self, visit: dict) -> None:
        self.db.visits.insert_one(visit, session=self.session)

    def count_use(self, station_id: str, day: str, hour: int, counter: str) -> None:
        """One more visit (`visits.<visitor>`) or check-in (`check_ins`) on a station's local day."""
        self.db.utilisation.update_one(
            {"_id": f"{station_id}:{day}"},
            {"$inc": {counter: 1, f"hours.{hour:02d}": 1}, "$setOnInsert": {"station_id": station_id, "day": day}},
            upsert=True, session=self.session)

    def utilisation(self, station_id: str, first: str, last: str) -> list[dict]:
        query = {"station_id": station_id, "day": {"$gte": first, "$lte": last}}
        return list(self.db.utilisation.find(query, session=self.session).sort("day", ASCENDING))

    # ---- activities ----------------------------------------------------------------------

    def activity(self, station_id: str, activity_id: str) -> dict:
        activity = self._get("activities", activity_id)
        if activity is None or activity["station_id"] != station_id:
            raise NotFound("activity", activity_id)
        return activity

    def find_activity(self, activity_id: str) -> dict | None:
        return self._get("activities", activity_id)

    def insert_activity(self, activity: dict) -> None:
        self.db.activities.insert_one(activity, session=self.session)

    def save_activity(self, activity: dict) -> None:
        self._save("activities", activity)

    def activities(self, station_id: str, limit: int, cursor: str | None, to_resource) -> dict:
        return page(self.db.activities, {"station_id": station_id}, limit, cursor, to_resource, self.session)

    def scheduled_activities(self, station_id: str) -> list[dict]:
        query = {"station_id": station_id, "status": ActivityStatus.scheduled.value}
        return list(self.db.activities.find(query, session=self.session))

    def take_place(self, activity_id: str, capacity: int) -> bool:
        """One place, if one is left: a conditional increment, so that concurrent sign-ups
        (each in its transaction, conflicting on this document) never take more than capacity."""
        taken = self.db.activities.update_one(
            {"_id": activity_id, "status": ActivityStatus.scheduled.value, "signed_up": {"$lt": capacity}},
            {"$inc": {"signed_up": 1}}, session=self.session)
        return taken.matched_count == 1

    def release_place(self, activity_id: str) -> None:
        self.db.activities.update_one({"_id": activity_id, "signed_up": {"$gt": 0}}, {"$inc": {"signed_up": -1}},
                                      session=self.session)

    def sign_up(self, activity_id: str, sign_up_id: str) -> dict:
        sign_up = self._get("sign_ups", sign_up_id)
        if sign_up is None or sign_up["activity_id"] != activity_id:
            raise NotFound("sign-up", sign_up_id)
        return sign_up

    def active_sign_up_of(self, activity_id: str, member_id: str) -> dict | None:
        return self.db.sign_ups.find_one({"activity_id": activity_id, "member_id": member_id,
                                          "status": SignUpStatus.active.value}, session=self.session)

    def activities_to_remind(self, now: datetime, until: datetime, limit: int) -> list[str]:
        """Scheduled activities starting between now and `until` with a sign-up not yet reminded."""
        query = {"status": ActivityStatus.scheduled.value, "starts_at": {"$gt": now, "$lte": until}}
        starting = [a["_id"] for a in self.db.activities.find(query, {"_id": 1}, session=self.session)]
        waiting = self.db.sign_ups.distinct("activity_id", {
            "activity_id": {"$in": starting}, "status": SignUpStatus.active.value, "reminded_at": None},
            session=self.session)
        return sorted(waiting)[:limit]

    def sign_ups_to_remind(self, activity_id: str) -> list[dict]:
        query = {"activity_id": activity_id, "status": SignUpStatus.active.value, "reminded_at": None}
        return list(self.db.sign_ups.find(query, session=self.session).sort("_id", ASCENDING))

    def mark_reminded(self, sign_up_ids: list[str], now: datetime) -> int:
        return self.db.sign_ups.update_many({"_id": {"$in": sign_up_ids}, "reminded_at": None},
                                            {"$set": {"reminded_at": now}}, session=self.session).modified_count

    def active_sign_ups(self, activity_id: str) -> list[dict]:
        query = {"activity_id": activity_id, "status": SignUpStatus.active.value}
        return list(self.db.sign_ups.find(query, session=self.session).sort("_id", ASCENDING))

    def insert_sign_up(self, sign_up: dict) -> None:
        self.db.sign_ups.insert_one(sign_up, session=self.session)

    def cancel_sign_up(self, sign_up_id: str, now: datetime) -> bool:
        """Cancel an active sign-up; False if it was not active (cancelled already)."""
        result = self.db.sign_ups.update_one(
            {"_id": sign_up_id, "status": SignUpStatus.active.value},
            {"$set": {"status": SignUpStatus.cancelled.value, "cancelled_at": now}}, session=self.session)
        return result.matched_count == 1

    def cancel_sign_ups(self, activity_id: str, now: datetime) -> None:
        self.db.sign_ups.update_many(
            {"activity_id": activity_id, "status": SignUpStatus.active.value},
            {"$set": {"status": SignUpStatus.cancelled.value, "cancelled_at": now}}, session=self.session)
