"""MongoDB persistence of the appeal service: the one place that knows collections, indexes and
queries. Every method runs in the session it was given (a transaction).

- `appeals`: the appeal with its history; its location as a GeoJSON point beside the grid cells
  the nearby search looks up by (service_kit.nearby); the timers' single-field keys
  `overdue_at` (an open appeal's deadline, until it is flagged), `questionnaire_at` and
  `closes_at` (a resolved appeal's feedback reminder and automatic close), and
  `due_provisional` (a deadline counted past the calendar's data). SecantusDB plans an index
  only for a filter on one field, so each timer asks for exactly one.
- `departments`, `routes` (`_id` "<category or *>|<division prefix or *>"), `categories`
  (an admin's SLA and anonymity settings), `calendar_overrides` (the years admins loaded at the
  service-station service, from its calendar.year_loaded events).
- `overdue_counts`: overdue open appeals per department and district (the gauge reads them)."""

from datetime import datetime

from pymongo import ASCENDING

from platform_contracts.appeal import OPEN_STATUSES
from service_kit import nearby
from service_kit.documents import DocumentRepository, page, prefix_query


def ensure_indexes(db) -> None:
    nearby.ensure_indexes(db.appeals, geospatial=False)
    db.appeals.create_index("overdue_at")
    db.appeals.create_index("questionnaire_at")
    db.appeals.create_index("closes_at")
    db.appeals.create_index("due_provisional")
    db.appeals.create_index("raised_by")
    db.appeals.create_index("submitted_at")  # Open311's time window
    db.appeals.create_index([("department", ASCENDING), ("_id", ASCENDING)])
    db.appeals.create_index([("division", ASCENDING), ("_id", ASCENDING)])
    db.appeals.create_index([("status", ASCENDING), ("_id", ASCENDING)])
    db.departments.create_index([("division", ASCENDING), ("_id", ASCENDING)])


def appeal_query(filters: dict, now: datetime) -> dict:
    """The list filters (AppealFilter, narrowed to the caller's scope) as one flat filter."""
    query: dict = {}
    if filters.get("division"):
        query["division"] = prefix_query(filters["division"])
    if filters.get("departments") is not None:
        query["department"] = {"$in": list(filters["departments"])}
    if filters.get("department"):
        query["department"] = filters["department"]
    if filters.get("raised_by"):
        query["raised_by"] = filters["raised_by"]
    for field in ("status", "category"):
        if filters.get(field):
            query[field] = filters[field]
    if filters.get("overdue") is not None:
        query["overdue"] = filters["overdue"]
    submitted = {}
    if filters.get("submitted_after"):
        submitted["$gte"] = filters["submitted_after"]
    if filters.get("submitted_before"):
        submitted["$lt"] = filters["submitted_before"]
    if submitted:
        query["submitted_at"] = submitted
    return query


class Repository(DocumentRepository):

    # ---- appeals -------------------------------------------------------------------------

    def appeal(self, appeal_id: str, field=None) -> dict:
        return self._require("appeals", "appeal", appeal_id, field)

    def insert_appeal(self, appeal: dict) -> None:
        self.db.appeals.insert_one(appeal, session=self.session)

    def save_appeal(self, appeal: dict) -> None:
        """Write the appeal back. Filtered by `_id` alone (SecantusDB plans an index only for a
        one-field filter): two transactions that read and write the same appeal conflict on it,
        and the one retried reads what the other wrote, so two handlers acting at once get one
        success and one 409 from the workflow's rules, and nothing half-written."""
        self.db.appeals.replace_one({"_id": appeal["_id"]}, appeal, session=self.session)

    def appeals_by_id(self, appeal_ids: list[str]) -> list[dict]:
        return list(self.db.appeals.find({"_id": {"$in": appeal_ids}}, {"contact": 0, "history": 0},
                                         session=self.session))

    def flag_overdue(self, appeal_id: str, changes: dict, entries: list[dict], versions: int) -> None:
        """Write an overdue flag: the fields that change, the history entries added, the versions
        moved on. By `_id` alone, one appeal at a time: SecantusDB answers `update_many` on
        `_id $in [...]` by reading the whole collection (about 5 s a batch over 100,000). The
        caller read the appeal in this transaction; a concurrent change conflicts with it."""
        self.db.appeals.update_one({"_id": appeal_id}, {
            "$set": changes, "$inc": {"version": versions}, "$push": {"history": {"$each": entries}}},
            session=self.session)

    def clear_timer(self, appeal_id: str, field: str) -> None:
        self.db.appeals.update_one({"_id": appeal_id}, {"$set": {field: None}}, session=self.session)

    def appeals(self, query: dict, limit: int, cursor: str | None, to_resource) -> dict:
        return page(self.db.appeals, query, limit, cursor, to_resource, self.session)

    def near(self, lng: float, lat: float, radius_m: float, since: datetime) -> list[dict]:
        """Open appeals submitted since `since` in the grid cells around (lng, lat): the
        candidates domain.nearby_duplicates decides among."""
        query = {"status": {"$in": [s.value for s in OPEN_STATUSES]}, "submitted_at": {"$gte": since}}
        return [a for a, _ in nearby.find_near(self.db.appeals, lng, lat, radius_m, 10_000, query, {"contact": 0},
                                               session=self.session)]

    def public_appeals(self, first: dict, rest: dict, limit: int) -> list[dict]:
        """Newest first: `first` (one indexed field) in a stage of its own, then `rest`."""
        pipeline = [{"$match": first}, *([{"$match": rest}] if rest else []), {"$project": {"contact": 0}},
                    {"$sort": {"submitted_at": -1}}, {"$limit": limit}]
        return list(self.db.appeals.aggregate(pipeline, session=self.session))

    def due(self, field: str, now: datetime, limit: int) -> list[str]:
        """Ids of appeals whose timer key `field` has come (an indexed range on one field, in no
        particular order: a sort would make SecantusDB read them twice)."""
        return [a["_id"] for a in self.db.appeals.find({field: {"$lte": now}}, {"_id": 1}, session=self.session)
                .limit(limit)]

    def provisional(self, limit: int) -> list[dict]:
        """Appeals whose deadline was counted past the calendar's data, earliest deadline first."""
        found = self.db.appeals.find({"due_provisional": True}, session=self.session)
        return list(found.sort("due_at", ASCENDING).limit(limit))

    def count_overdue(self, department: str | None, district: str, change: int) -> None:
        self.db.overdue_counts.update_one(
            {"_id": f"{department or '-'}|{district}"},
            {"$inc": {"count": change}, "$setOnInsert": {"department": department or "-", "district": district}},
            upsert=True, session=self.session)

    def overdue_counts(self) -> list[dict]:
        return list(self.db.overdue_counts.find({}, session=self.session))

    # ---- departments, routes, categories -------------------------------------------------

    def department(self, department_id: str, field=None) -> dict:
        return self._require("departments", "department", department_id, field)

    def find_department(self, department_id: str | None) -> dict | None:
        return self._get("departments", department_id) if department_id else None

    def insert_department(self, department: dict) -> None:
        self.db.departments.insert_one(department, session=self.session)

    def departments(self, query: dict, limit: int, cursor: str | None, to_resource) -> dict:
        return page(self.db.departments, query, limit, cursor, to_resource, self.session)

    def routes(self) -> list[dict]:
        return list(self.db.routes.find({}, session=self.session).sort("_id", ASCENDING))

    def set_route(self, route: dict) -> None:
        self.db.routes.replace_one({"_id": route["_id"]}, route, upsert=True, session=self.session)

    def categories(self) -> dict[str, dict]:
        return {c["_id"]: c for c in self.db.categories.find({}, session=self.session)}

    def set_category(self, settings: dict) -> None:
        self.db.categories.replace_one({"_id": settings["_id"]}, settings, upsert=True, session=self.session)

    # ---- the holiday calendar ------------------------------------------------------------

    def calendar_overrides(self) -> list[dict]:
        return list(self.db.calendar_overrides.find({}, session=self.session))

    def set_calendar_override(self, record: dict) -> None:
        self.db.calendar_overrides.replace_one({"_id": record["_id"]}, record, upsert=True, session=self.session)
