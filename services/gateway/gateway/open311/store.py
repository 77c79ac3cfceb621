"""What the gateway keeps for Open311, in its own MongoDB database (shared by its replicas):

- `open311_api_keys`: the API keys admins issue to Open311 applications for POST requests. A key
  is shown once, when issued; only its SHA-256 is stored (a key is 256 random bits, so a fast
  hash is as good as a slow one: there is no space of likely keys to try). Each request reads
  the key's record, so a revoked key is refused at once, by every replica.
- `open311_tokens`: the token POST requests returns beside the request's id, one per appeal
  (GET tokens/{token}); a random id, never the appeal id."""

import hashlib
import secrets
import time
import uuid
from datetime import datetime, timezone
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from pymongo import ASCENDING, DESCENDING, ReturnDocument
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

KEYS, TOKENS = "open311_api_keys", "open311_tokens"
KEY_PREFIX = "o311_"


class CreateApiKey(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)] = Field(
        description="who the key is for, e.g. the application and its operator")


class ApiKey(BaseModel):
    id: str
    name: str
    created_by: str
    created_at: datetime
    revoked_at: datetime | None = Field(None, description="set once revoked: the key is refused from then on")
    revoked_by: str | None = None


class IssuedApiKey(ApiKey):
    api_key: str = Field(description="the key itself, shown this once: only its hash is kept")


def key_hash(api_key: str) -> str:
    return hashlib.sha256(api_key.encode()).hexdigest()


def _key(doc: dict) -> dict:
    return {"id": doc["_id"], **{k: doc.get(k) for k in ("name", "created_by", "created_at", "revoked_at",
                                                           "revoked_by")}}


class Open311Store:
    def __init__(self, db: AsyncDatabase):
        self.keys = db[KEYS]
        self.tokens = db[TOKENS]

    async def ensure_indexes(self) -> None:
        await self.keys.create_index([("hash", ASCENDING)], unique=True, name="hash_unique")
        await self.tokens.create_index([("appeal_id", ASCENDING)], unique=True, name="appeal_unique")

    # ---- API keys --------------------------------------------------------------------------

    async def issue(self, name: str, by: str) -> dict:
        api_key = KEY_PREFIX + secrets.token_urlsafe(32)
        # Ids in the order of issue (milliseconds first), so that the list pages by id.
        doc = {"_id": f"{time.time_ns() // 1_000_000:012x}{uuid.uuid4().hex[:12]}", "name": name,
               "hash": key_hash(api_key), "created_by": by, "created_at": datetime.now(timezone.utc),
               "revoked_at": None, "revoked_by": None}
        await self.keys.insert_one(doc)
        return {**_key(doc), "api_key": api_key}

    async def list(self, limit: int, cursor: str | None) -> tuple[list[dict], str | None]:
        """Newest first; the cursor is the last key's id."""
        query = {} if cursor is None else {"_id": {"$lt": cursor}}
        docs = await self.keys.find(query).sort("_id", DESCENDING).limit(limit).to_list()
        return [_key(d) for d in docs], docs[-1]["_id"] if len(docs) == limit else None

    async def revoke(self, key_id: str, by: str) -> dict | None:
        """The key, revoked (the first revocation's time and admin are kept); None if unknown."""
        await self.keys.update_one({"_id": key_id, "revoked_at": None},
                                   {"$set": {"revoked_at": datetime.now(timezone.utc), "revoked_by": by}})
        doc = await self.keys.find_one({"_id": key_id})
        return _key(doc) if doc else None

    async def key_id(self, api_key: str) -> str | None:
        """The id of the valid (issued, not revoked) key `api_key`, else None."""
        if not api_key.startswith(KEY_PREFIX) or len(api_key) > 100:
            return None
        doc = await self.keys.find_one({"hash": key_hash(api_key), "revoked_at": None}, {"_id": 1})
        return doc["_id"] if doc else None

    # ---- tokens ----------------------------------------------------------------------------

    async def token_for(self, appeal_id: str, division: str, key_id: str) -> str:
        """The appeal's token: made on its first submission, the same for a repeat (an
        Idempotency-Key, or the service's duplicate detection answering with it)."""
        new = {"_id": secrets.token_urlsafe(16), "appeal_id": appeal_id, "division": division, "key_id": key_id,
               "created_at": datetime.now(timezone.utc)}
        try:
            doc = await self.tokens.find_one_and_update({"appeal_id": appeal_id}, {"$setOnInsert": new},
                                                        upsert=True, return_document=ReturnDocument.AFTER)
        except DuplicateKeyError:  # a concurrent repeat inserted it first
            doc = await self.tokens.find_one({"appeal_id": appeal_id})
        return doc["_id"]

    async def token(self, token: str) -> dict | None:
        return await self.tokens.find_one({"_id": token})
