"""MongoDB persistence of the organization service: the one place that knows collections,
indexes and queries. Every method runs in the session it was given (a transaction)."""

from pymongo import ASCENDING, ReplaceOne, UpdateOne
from pymongo.errors import DuplicateKeyError

from platform_contracts.codes import division_level, parent_division
from platform_contracts.errors import Conflict, InvalidValue
from service_kit.documents import DocumentRepository, page, prefix_query
from service_kit.leases import Leases

from .domain import ALL, COUNT_FIELDS, CounterKey

_KNOWN_DISTRICTS: set[str] = set()
_KNOWN_INDUSTRIES: set[str] = set()


def ensure_indexes(db) -> None:
    db.units.create_index("credit_code", unique=True)
    db.units.create_index([("division", ASCENDING), ("_id", ASCENDING)])
    db.units.create_index([("should_establish", ASCENDING), ("division", ASCENDING), ("_id", ASCENDING)])
    db.units.create_index([("status", ASCENDING), ("_id", ASCENDING)])  # ?status= without a division
    db.organizations.create_index([("division", ASCENDING), ("_id", ASCENDING)])
    db.organizations.create_index("unit_ids")  # which organizations cover these units (reconciliation)
    db.instructors.create_index([("division", ASCENDING), ("_id", ASCENDING)])
    # Where each counter document sits in the tree is kept apart from its figures: SecantusDB
    # rewrites every index entry of a document it replaces, and the figures are replaced on
    # every command (six documents, 2.7 ms with these two indexes on them, 1.7 ms without).
    db.coverage_tree.create_index("parent")
    db.coverage_tree.create_index("level")


class Repository(DocumentRepository):
    """Stored documents in and out; lists page them through the caller's `to_resource`."""

    def _page(self, collection: str, query: dict, limit: int, cursor: str | None, to_resource) -> dict:
        return page(self.db[collection], query, limit, cursor, to_resource, self.session)

    @staticmethod
    def _division_query(prefix: str | None) -> dict:
        return {"division": prefix_query(prefix)} if prefix else {}

    # ---- divisions -----------------------------------------------------------------------

    def division(self, code: str) -> dict | None:
        return self._get("divisions", code)

    def division_known(self, district: str) -> bool:
        """Districts are registered rarely and never removed: a hit is remembered."""
        if district in _KNOWN_DISTRICTS:
            return True
        if self.division(district) is not None:
            _KNOWN_DISTRICTS.add(district)
            return True
        return False

    def add_division(self, code: str, name: str) -> dict:
        document = {"_id": code, "name": name, "level": division_level(code)}
        self.db.divisions.replace_one({"_id": code}, document, upsert=True, session=self.session)
        return document

    def divisions(self, to_resource) -> list[dict]:
        return [to_resource(d) for d in self.db.divisions.find({}, session=self.session).sort("_id", ASCENDING)]

    # ---- industries ----------------------------------------------------------------------

    def industry_known(self, code: str) -> bool:
        """Industries are registered rarely and never removed: a hit is remembered."""
        if code in _KNOWN_INDUSTRIES:
            return True
        if self._get("industries", code) is not None:
            _KNOWN_INDUSTRIES.add(code)
            return True
        return False

    def add_industry(self, code: str, name: str, gb4754: str) -> dict:
        document = {"_id": code, "name": name, "gb4754": gb4754}
        self.db.industries.replace_one({"_id": code}, document, upsert=True, session=self.session)
        return document

    def industries(self, to_resource) -> list[dict]:
        return [to_resource(d) for d in self.db.industries.find({}, session=self.session).sort("_id", ASCENDING)]

    # ---- units ---------------------------------------------------------------------------

    def unit(self, unit_id: str, field=None) -> dict:
        return self._require("units", "unit", unit_id, field)

    def insert_unit(self, unit: dict) -> None:
        try:
            self.db.units.insert_one(unit, session=self.session)
        except DuplicateKeyError:
            raise Conflict(f"a unit with credit code {unit['credit_code']} is already registered", "credit_code",
                           "already registered")

    def insert_units(self, units: list[dict]) -> None:
        codes = [u["credit_code"] for u in units]
        seen: dict[str, int] = {}
        for index, code in enumerate(codes):
            if code in seen:
                raise InvalidValue(("units", index, "credit_code"), f"same credit code as units[{seen[code]}]")
            seen[code] = index
        taken = self.registered_credit_codes(codes)
        if taken:
            raise Conflict(f"{len(taken)} of these credit codes are already registered",
                           fields=[(("units", i, "credit_code"), "already registered")
                                   for i, code in enumerate(codes) if code in taken])
        self.insert_new_units(units)

    def registered_credit_codes(self, codes: list[str]) -> set[str]:
        """Those of `codes` a unit is registered under."""
        if not codes:
            return set()
        return {d["credit_code"] for d in self.db.units.find({"credit_code": {"$in": codes}}, {"credit_code": 1},
                                                            session=self.session)}

    def insert_new_units(self, units: list[dict]) -> None:
        """Units whose credit codes were checked in this transaction (registered_credit_codes)."""
        self.db.units.insert_many(units, ordered=True, session=self.session)

    def save_unit(self, unit: dict) -> None:
        self._save("units", unit)

    def units(self, filters: dict, limit: int, cursor: str | None, to_resource) -> dict:
        query = self._division_query(filters.get("division"))
        for field in ("industry", "type", "coverage", "status"):
            if filters.get(field):
                query[field] = filters[field]
        return self._page("units", query, limit, cursor, to_resource)

    def alert_units(self, division: str | None, limit: int, cursor: str | None, to_resource) -> dict:
        query = {"should_establish": True, **self._division_query(division)}
        return self._page("units", query, limit, cursor, to_resource)

    def district_units(self, district: str, fields: tuple[str, ...]):
        return self.db.units.find({"division": prefix_query(district)}, dict.fromkeys(fields, 1),
                                  session=self.session)

    def units_unchanged_since(self, read: dict[str, object]) -> bool:
        """Whether each unit still has the `updated_at` it was read with ({unit id: updated_at})."""
        found = {u["_id"]: u.get("updated_at") for u in self.db.units.find(
            {"_id": {"$in": list(read)}}, {"updated_at": 1}, session=self.session)}
        return all(found.get(unit_id) == updated_at for unit_id, updated_at in read.items())

    def set_unit_fields(self, unit_id: str, fields: dict) -> None:
        self.db.units.update_one({"_id": unit_id}, {"$set": fields}, session=self.session)

    # ---- organizations -------------------------------------------------------------------

    def organization(self, organization_id: str, field=None) -> dict:
        return self._require("organizations", "organization", organization_id, field)

    def insert_organization(self, organization: dict) -> None:
        self.db.organizations.insert_one(organization, session=self.session)

    def save_organization(self, organization: dict) -> None:
        self._save("organizations", organization)

    def organizations(self, filters: dict, limit: int, cursor: str | None, to_resource) -> dict:
        query = self._division_query(filters.get("division"))
        for field in ("kind", "status"):
            if filters.get(field):
                query[field] = filters[field]
        return self._page("organizations", query, limit, cursor, to_resource)

    def organizations_covering(self, unit_ids: list[str], chunk: int = 1000):
        """What reconciliation needs of the active organizations covering any of `unit_ids`
        (by the unit_ids index; an organization may cover units of several districts)."""
        seen = set()
        for start in range(0, len(unit_ids), chunk):
            for organization in self.db.organizations.find(
                    {"unit_ids": {"$in": unit_ids[start:start + chunk]}, "status": "active"},
                    {"formation": 1, "unit_ids": 1}, session=self.session):
                if organization["_id"] not in seen:
                    seen.add(organization["_id"])
                    yield organization

    def ancestor_ids(self, organization_id: str, depth: int = 50) -> list[str]:
        """The organization and those above it, to the root (bounded: party trees are shallow)."""
        ids: list[str] = []
        current = organization_id
        while current and len(ids) < depth:
            ids.append(current)
            parent = self.db.organizations.find_one({"_id": current}, {"parent_id": 1}, session=self.session)
            current = parent and parent.get("parent_id")
        return ids

    # ---- instructors ---------------------------------------------------------------------

    def instructor(self, instructor_id: str, field=None) -> dict:
        return self._require("instructors", "instructor", instructor_id, field)

    def insert_instructor(self, instructor: dict) -> None:
        self.db.instructors.insert_one(instructor, session=self.session)

    def save_instructor(self, instructor: dict) -> None:
        self._save("instructors", instructor)

    def instructors(self, filters: dict, limit: int, cursor: str | None, to_resource) -> dict:
        return self._page("instructors", self._division_query(filters.get("division")), limit, cursor, to_resource)

    # ---- coverage counters ---------------------------------------------------------------
    # One document per division prefix ("*" for all): its figures under "all", and per
    # industry, per type and per industry x type in nested maps. A change moves at most six
    # documents (one per level), and a query of any combination reads one. Its place in the
    # tree (`coverage_tree`: parent, level) is written once, with the document's first figures.

    def counter_documents(self, divisions) -> dict[str, dict]:
        """The counter documents of `divisions` that exist, whole: to be read as counters
        (`flatten_counters`) and written back changed (`replace_counters`)."""
        return {d["_id"]: d for d in self.db.coverage_counters.find(
            {"_id": {"$in": sorted(divisions)}}, session=self.session)}

    def replace_counters(self, documents: dict[str, dict], delta: dict[str, dict[str, int]], now) -> dict[str, dict]:
        """Add `delta` to counter documents read in this transaction (changing them in place), and
        write them back whole.
        A replacement costs SecantusDB a third of what nested `$inc`s cost; it is as safe,
        because a document another transaction changed after this one read it is a write
        conflict, and the transaction retries from its read. Returns the documents written."""
        changed: dict[str, dict] = {}
        for key_id, counts in delta.items():
            key = CounterKey.parse(key_id)
            increments = {field: counts[field] for field in COUNT_FIELDS if counts.get(field)}
            if not increments:
                continue
            if key.division not in changed:
                changed[key.division] = documents.get(key.division) or {"_id": key.division}
            node = changed[key.division]
            for part in _path(key).split("."):
                node = node.setdefault(part, {})
            for field, value in increments.items():
                node[field] = node.get(field, 0) + value
        for document in changed.values():
            document["updated_at"] = now
        if changed:
            self.db.coverage_counters.bulk_write(
                [ReplaceOne({"_id": division}, document, upsert=True)
                 for division, document in sorted(changed.items())],  # a fixed order avoids needless conflicts
                ordered=True, session=self.session,
            )
            self._place_in_tree(division for division in changed if division not in documents)
        return changed

    def place_unplaced_counters(self) -> int:
        """Place counter documents missing from coverage_tree (written by a replica older than
        it, during a rolling upgrade): where one sits follows from its division code."""
        placed = {d["_id"] for d in self.db.coverage_tree.find({}, {"_id": 1}, session=self.session)}
        missing = [d["_id"] for d in self.db.coverage_counters.find({}, {"_id": 1}, session=self.session)
                   if d["_id"] not in placed]
        self._place_in_tree(missing)
        return len(missing)

    def _place_in_tree(self, divisions) -> None:
        placements = [UpdateOne({"_id": division}, {"$setOnInsert": _placement(division)}, upsert=True)
                      for division in sorted(divisions)]
        if placements:
            self.db.coverage_tree.bulk_write(placements, ordered=True, session=self.session)

    def _counters_placed(self, tree_query: dict) -> list[dict]:
        """The counter documents whose place in the tree matches `tree_query`."""
        divisions = [d["_id"] for d in self.db.coverage_tree.find(tree_query, {"_id": 1}, session=self.session)]
        if not divisions:
            return []
        return list(self.db.coverage_counters.find({"_id": {"$in": divisions}}, session=self.session))

    def counter(self, key: CounterKey) -> tuple[dict | None, object]:
        """The figures of one key, and when its document last changed."""
        document = self._get("coverage_counters", key.division)
        if document is None:
            return None, None
        return flatten_counters(document).get(key.id), document.get("updated_at")

    def child_counters(self, division: str | None) -> list[tuple[CounterKey, dict, object]]:
        documents = self._counters_placed({"parent": division or ALL})
        return [(CounterKey(d["_id"], ALL, ALL), d.get("all", {}), d.get("updated_at"))
                for d in sorted(documents, key=lambda d: d["_id"])]

    def split_counters(self, division: str | None, by: str) -> list[tuple[CounterKey, dict, object]]:
        """One division's figures split by industry or by type."""
        document = self._get("coverage_counters", division or ALL)
        if document is None:  # nothing counted there yet
            return []
        return [(key, counts, document.get("updated_at"))
                for key_id, counts in sorted(flatten_counters(document).items())
                for key in [CounterKey.parse(key_id)]
                if (key.industry != ALL) == (by == "industry") and (key.type != ALL) == (by == "type")]

    def district_counters(self) -> list[tuple[str, dict]]:
        return [(d["_id"], d.get("all", {})) for d in self._counters_placed({"level": 6})]

    def increment_counters(self, delta: dict[str, dict[str, int]], now) -> None:
        by_document: dict[str, dict[str, int]] = {}
        for key_id, counts in delta.items():
            key = CounterKey.parse(key_id)
            path = _path(key)
            fields = by_document.setdefault(key.division, {})
            for field in COUNT_FIELDS:
                if counts.get(field):
                    fields[f"{path}.{field}"] = counts[field]
        by_document = {division: fields for division, fields in by_document.items() if fields}
        if not by_document:
            return
        self.db.coverage_counters.bulk_write(
            [
                UpdateOne({"_id": division}, {"$inc": fields, "$set": {"updated_at": now}}, upsert=True)
                for division, fields in sorted(by_document.items())  # a fixed order avoids needless conflicts
            ],
            ordered=True, session=self.session,
        )
        self._place_in_tree(by_document)  # rare here (corrections, seeding): every one, as needed

    def reconciliation_districts(self) -> list[str]:
        """Every district that may hold units or counters: the registered ones, and any a
        counter document names (units are only registered in registered districts)."""
        registered = {d["_id"][:6] for d in self.db.divisions.find({}, {"_id": 1}, session=self.session)}
        counted = {d["_id"][:6] for d in self.db.coverage_tree.find({"level": {"$gte": 6}}, {"_id": 1},
                                                                      session=self.session)}
        return sorted(registered | counted)

    def counters_under(self, district: str) -> dict[str, dict[str, int]]:
        """The counters of a district and of its streets and communities."""
        return self._counters({"_id": prefix_query(district)})

    def counters_at_levels(self, levels: list[int]) -> dict[str, dict[str, int]]:
        return _as_counters(self._counters_placed({"level": {"$in": levels}}))

    def _counters(self, query: dict) -> dict[str, dict[str, int]]:
        return _as_counters(self.db.coverage_counters.find(query, session=self.session))

    # ---- leases ----------------------------------------------------------------------------

    def leases(self) -> Leases:
        return Leases(self.db.leases, self.session)


def _as_counters(documents) -> dict[str, dict[str, int]]:
    return {key_id: {f: counts.get(f, 0) for f in COUNT_FIELDS}
            for d in documents for key_id, counts in flatten_counters(d).items()}


def _placement(division: str) -> dict:
    """Where a division's counter document sits in the tree (for breakdowns and gauges)."""
    if division == ALL:
        return {"parent": None, "level": 0}
    return {"parent": parent_division(division) or ALL, "level": len(division)}


def _path(key: CounterKey) -> str:
    if key.industry == ALL and key.type == ALL:
        return "all"
    if key.type == ALL:
        return f"industry.{key.industry}"
    if key.industry == ALL:
        return f"type.{key.type}"
    return f"industry_type.{key.industry}.{key.type}"


def flatten_counters(document: dict) -> dict[str, dict]:
    """A division's counter document as {counter key id: counts}."""
    division = document["_id"]
    flat = {}
    if "all" in document:
        flat[CounterKey(division, ALL, ALL).id] = document["all"]
    for industry, counts in document.get("industry", {}).items():
        flat[CounterKey(division, industry, ALL).id] = counts
    for unit_type, counts in document.get("type", {}).items():
        flat[CounterKey(division, ALL, unit_type).id] = counts
    for industry, types in document.get("industry_type", {}).items():
        for unit_type, counts in types.items():
            flat[CounterKey(division, industry, unit_type).id] = counts
    return flat
