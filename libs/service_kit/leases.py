"""Leases: work that one replica at a time may do (a periodic job, a sweep), whichever replicas
run it. One document per lease in the collection given: `holder`, `expires_at`, `renewed_at`,
and what the work leaves on record when its holder releases it (`completed_at`, for one).

Times are each replica's clock: keep them in step, as NTP does."""

from datetime import datetime, timedelta

from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError


class Leases:
    def __init__(self, collection, session=None):
        self.collection = collection
        self.session = session

    def take(self, name: str, holder: str, now: datetime, seconds: float,
             done_before: datetime | None = None) -> bool:
        """Hold `name` until now + seconds if it is free, expired or already ours (renewal);
        with `done_before`, only if the work it guards was last completed (`completed_at`, as
        recorded by `release`) before then. One atomic update: of holders racing for it,
        exactly one wins."""
        query = {"_id": name, "$or": [{"holder": holder}, {"expires_at": {"$lte": now}}]}
        if done_before is not None:
            query["$and"] = [{"$or": [{"completed_at": None}, {"completed_at": {"$lt": done_before}}]}]
        try:
            lease = self.collection.find_one_and_update(
                query, {"$set": {"holder": holder, "expires_at": now + timedelta(seconds=seconds), "renewed_at": now}},
                upsert=True, return_document=ReturnDocument.AFTER, session=self.session,
            )
        except DuplicateKeyError:  # held by another, or done lately: the filter missed, the upsert collided
            return False
        return lease is not None and lease["holder"] == holder

    def release(self, name: str, holder: str, now: datetime, record: dict | None = None) -> None:
        """Free `name` if it is still ours, setting `record` (what the work it guarded leaves
        on record) in the same update: a holder that lost the lease overwrites nothing."""
        fields = {"expires_at": now, **(record or {})}
        self.collection.update_one({"_id": name, "holder": holder}, {"$set": fields}, session=self.session)

    def get(self, name: str) -> dict:
        """The lease document as stored ({} if never taken)."""
        return self.collection.find_one({"_id": name}, session=self.session) or {}
