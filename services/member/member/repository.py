"""MongoDB persistence of the member service: the one place that knows collections, indexes
and queries. Every method runs in the session it was given (a transaction).

Members hold their personal data three ways, none of them plaintext: `*_encrypted` (AES-GCM,
for the audited reveal), `id_number_index` (keyed hash: uniqueness and lookups) and
`*_masked` (what every response shows)."""


from pymongo import ASCENDING
from pymongo.errors import DuplicateKeyError

from platform_contracts.errors import Conflict
from service_kit.documents import DocumentRepository, page, prefix_query

from .access import Visibility
from .transfers import OPEN

def ensure_indexes(db) -> None:
    db.members.create_index("id_number_index", unique=True)
    db.members.create_index([("organization_id", ASCENDING), ("_id", ASCENDING)])
    db.members.create_index([("division", ASCENDING), ("_id", ASCENDING)])
    db.transfers.create_index([("status", ASCENDING), ("letter_expires_on", ASCENDING)])
    db.transfers.create_index([("from_organization_id", ASCENDING), ("_id", ASCENDING)])
    db.transfers.create_index([("to_organization_id", ASCENDING), ("_id", ASCENDING)])
    db.transfers.create_index([("from_division", ASCENDING), ("_id", ASCENDING)])
    db.transfers.create_index([("to_division", ASCENDING), ("_id", ASCENDING)])
    db.transfers.create_index([("member_id", ASCENDING), ("_id", ASCENDING)])
    db.check_ins.create_index([("member_id", ASCENDING), ("checked_in_at", ASCENDING)])
    db.audit_log.create_index([("member_id", ASCENDING), ("_id", ASCENDING)])
    db.audit_log.create_index([("by", ASCENDING), ("action", ASCENDING), ("at", ASCENDING)])


def duplicate_id_number() -> Conflict:
    return Conflict("a member with this ID number is already registered", "id_number", "already registered")


class Repository(DocumentRepository):
    """Stored documents in and out; lists page them through the caller's `to_resource`."""

    def _page(self, collection: str, query: dict, limit: int, cursor: str | None, to_resource) -> dict:
        return page(self.db[collection], query, limit, cursor, to_resource, self.session)

    # ---- members -------------------------------------------------------------------------

    def member(self, member_id: str, field=None) -> dict:
        return self._require("members", "member", member_id, field)

    def member_by_id_number_index(self, index: str) -> dict | None:
        return self.db.members.find_one({"id_number_index": index}, session=self.session)

    def insert_member(self, member: dict) -> None:
        try:
            self.db.members.insert_one(member, session=self.session)
        except DuplicateKeyError:
            raise duplicate_id_number()

    def save_member(self, member: dict) -> None:
        try:
            self._save("members", member)
        except DuplicateKeyError:
            raise duplicate_id_number()

    def members(self, filters: dict, visible: Visibility, limit: int, cursor: str | None, to_resource) -> dict:
        query = {k: v for k, v in filters.items() if k in ("organization_id", "mobile", "stage") and v is not None}
        if filters.get("division"):
            query["division"] = prefix_query(filters["division"])
        return self._page("members", {"$and": [query, self._visible_members(visible)]}, limit, cursor, to_resource)

    @staticmethod
    def _visible_members(visible: Visibility) -> dict:
        if visible.division is not None:
            return {"division": prefix_query(visible.division)}
        if visible.organization_ids is not None:
            return {"organization_id": {"$in": list(visible.organization_ids)}}
        if visible.member_id is not None:
            return {"_id": visible.member_id}
        return {}

    def claim_open_transfer(self, member_id: str, transfer_id: str) -> None:
        """At most one open transfer per member: the claim succeeds only on a free member."""
        claimed = self.db.members.update_one(
            {"_id": member_id, "open_transfer_id": None}, {"$set": {"open_transfer_id": transfer_id}},
            session=self.session,
        )
        if claimed.matched_count == 0:
            open_id = self.member(member_id)["open_transfer_id"]
            raise Conflict(f"member {member_id} already has an open transfer, {open_id}", "member_id",
                           "has an open transfer")

    def release_open_transfer(self, member_id: str, transfer_id: str, changes: dict | None = None) -> None:
        released = self.db.members.update_one(
            {"_id": member_id, "open_transfer_id": transfer_id},
            {"$set": {"open_transfer_id": None, **(changes or {})}}, session=self.session,
        )
        if released.matched_count != 1:  # a transfer must never close without its member
            raise RuntimeError(f"member {member_id} does not hold open transfer {transfer_id}")

    # ---- transfers -----------------------------------------------------------------------

    def transfer(self, transfer_id: str) -> dict:
        return self._require("transfers", "transfer", transfer_id)

    def insert_transfer(self, transfer: dict) -> None:
        self.db.transfers.insert_one(transfer, session=self.session)

    def save_transfer(self, transfer: dict) -> None:
        self._save("transfers", transfer)

    def transfers(self, filters: dict, visible: Visibility, limit: int, cursor: str | None, to_resource) -> dict:
        clauses = [self._visible_transfers(visible)]
        if filters.get("status"):
            clauses.append({"status": filters["status"]})
        if filters.get("member_id"):
            clauses.append({"member_id": filters["member_id"]})
        if filters.get("organization_id"):
            clauses.append({"$or": [{"from_organization_id": filters["organization_id"]},
                                    {"to_organization_id": filters["organization_id"]}]})
        if filters.get("division"):
            clauses.append(self._either_division(filters["division"]))
        return self._page("transfers", {"$and": clauses}, limit, cursor, to_resource)

    @staticmethod
    def _visible_transfers(visible: Visibility) -> dict:
        if visible.division is not None:
            return Repository._either_division(visible.division)
        if visible.organization_ids is not None:
            ids = list(visible.organization_ids)
            return {"$or": [{"from_organization_id": {"$in": ids}}, {"to_organization_id": {"$in": ids}}]}
        if visible.member_id is not None:
            return {"member_id": visible.member_id}
        return {}

    @staticmethod
    def _either_division(prefix: str) -> dict:
        return {"$or": [{"from_division": prefix_query(prefix)}, {"to_division": prefix_query(prefix)}]}

    def letters_expired_before(self, day: str, limit: int) -> list[str]:
        """Open transfers whose letter's last valid day is before `day` (ISO dates sort as text)."""
        query = {"status": {"$in": sorted(s.value for s in OPEN)}, "letter_expires_on": {"$lt": day}}
        return [d["_id"] for d in self.db.transfers.find(query, {"_id": 1}, session=self.session).limit(limit)]

    # ---- stations (a read model of the service-station service's events) ---------------

    def station(self, station_id: str) -> dict | None:
        return self._get("stations", station_id)

    def keep_station(self, station: dict) -> bool:
        """Keep a station's newer version; an older one (an event redelivered late) changes
        nothing. Reading first keeps the write a plain one: a refused conditional upsert would
        fail the whole transaction with a duplicate key."""
        kept = self.station(station["_id"])
        if kept is not None and kept["version"] >= station["version"]:
            return False
        self.db.stations.replace_one({"_id": station["_id"]}, station, upsert=True, session=self.session)
        return True

    # ---- check-ins and the audit log -----------------------------------------------------

    def insert_check_in(self, check_in: dict) -> None:
        self.db.check_ins.insert_one(check_in, session=self.session)

    def insert_audit(self, record: dict) -> None:
        self.db.audit_log.insert_one(record, session=self.session)

    def count_audit(self, *, by: str, action: str, outcome: str, since) -> int:
        return self.db.audit_log.count_documents(
            {"by": by, "action": action, "outcome": outcome, "at": {"$gte": since}}, session=self.session)

    def audit_log(self, filters: dict, limit: int, cursor: str | None, to_resource) -> dict:
        """Oldest first (`_id` order is the order of the attempts)."""
        query = {k: v for k, v in filters.items() if k in ("member_id", "outcome") and v is not None}
        return self._page("audit_log", query, limit, cursor, to_resource)
