"""Gateway user accounts in MongoDB (`users`): who may log in, with which role and scope."""

import asyncio
import hashlib
import json
import logging
import secrets
import time
import uuid
from datetime import datetime, timezone

from pymongo import ASCENDING, ReturnDocument
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from platform_contracts.actors import Role

from .auth import hash_password
from .problems import ApiProblem

log = logging.getLogger(__name__)

PUBLIC_FIELDS = ("username", "role", "scope", "active", "created_at", "updated_at")
BOOTSTRAP_ADMIN = "admin"  # the username of the account ensured at startup


def public(doc: dict) -> dict:
    """A user as the API shows it: never the password hash."""
    return {"id": doc["_id"], **{k: doc.get(k) for k in PUBLIC_FIELDS}}


class UserRepository:
    """Accounts, with a short-lived in-process copy for authenticating requests.

    The copy saves a read per request. A change made through this process (`update`) drops it
    at once; one made through another replica applies here within `cache_seconds`."""

    def __init__(self, db: AsyncDatabase, cache_seconds: float = 0):
        self.collection = db["users"]
        self.cache_seconds = cache_seconds
        self._cache: dict[str, tuple[float, dict]] = {}  # username -> (expires at, account)
        self._changes = 0  # bumped on every invalidation, see cached_by_username

    async def ensure_indexes(self) -> None:
        await self.collection.create_index([("username", ASCENDING)], unique=True, name="username_unique")
        # An account created with an Idempotency-Key keeps it: a repeat finds the account.
        await self.collection.create_index([("creation_key", ASCENDING)], unique=True, sparse=True,
                                           name="creation_key_unique")

    async def by_username(self, username: str) -> dict | None:
        return await self.collection.find_one({"username": username})

    async def cached_by_username(self, username: str) -> dict | None:
        """The account as read at most `cache_seconds` ago."""
        cached = self._cache.get(username)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        changes_before = self._changes
        user = await self.by_username(username)
        # A change made while this read was on its way may not be in it: do not keep it then.
        if user is not None and self.cache_seconds > 0 and self._changes == changes_before:
            self._cache[username] = (time.monotonic() + self.cache_seconds, user)
        return user

    def _invalidate(self, username: str) -> None:
        self._changes += 1
        self._cache.pop(username, None)

    async def by_id(self, user_id: str) -> dict | None:
        return await self.collection.find_one({"_id": user_id})

    async def create(self, username: str, password: str, role: str, scope, active: bool = True,
                     idempotency_key: str | None = None) -> dict:
        """A repeated `idempotency_key` returns the account it created first; the same key with a
        different username, role or scope is a 422. (The password is left out of the request's
        fingerprint: an unsalted hash of it must not be kept.)"""
        idempotency = None
        if idempotency_key:
            account = json.dumps({"username": username, "role": role, "scope": scope}, sort_keys=True)
            idempotency = {"key": idempotency_key, "request": hashlib.sha256(account.encode()).hexdigest()}
            if done := await self._created_with(idempotency):
                return done
        now = datetime.now(timezone.utc)
        now = now.replace(microsecond=now.microsecond // 1000 * 1000)  # as stored: a repeat answers the same
        doc = {"_id": uuid.uuid4().hex, "username": username, "role": role, "scope": scope, "active": active,
               "password_hash": await asyncio.to_thread(hash_password, password),
               "created_at": now, "updated_at": now}
        if idempotency:
            doc.update(creation_key=idempotency["key"], creation_request=idempotency["request"])
        try:
            await self.collection.insert_one(doc)
        except DuplicateKeyError:
            # The same key raced this request (its account is the answer), or the name is taken.
            if idempotency and (done := await self._created_with(idempotency)):
                return done
            raise ApiProblem.of(409, f"username {username} is taken") from None
        return doc

    async def _created_with(self, idempotency: dict) -> dict | None:
        done = await self.collection.find_one({"creation_key": idempotency["key"]})
        if done is not None and done.get("creation_request") != idempotency["request"]:
            raise ApiProblem.invalid(["header", "Idempotency-Key"], "already used for a different request")
        return done

    async def update(self, user_id: str, changes: dict) -> dict:
        """Apply role/scope/active/password changes (already validated together). A password
        change or a deactivation revokes the account's tokens (auth.tokens_revoked)."""
        fields = {k: v for k, v in changes.items() if k != "password"}
        if "password" in changes:
            fields["password_hash"] = await asyncio.to_thread(hash_password, changes["password"])
        fields["updated_at"] = datetime.now(timezone.utc)
        update = {"$set": fields}
        if "password" in changes or changes.get("active") is False:
            update["$inc"] = {"token_generation": 1}
        doc = await self.collection.find_one_and_update(
            {"_id": user_id}, update, return_document=ReturnDocument.AFTER)
        if doc is None:
            raise ApiProblem.of(404, f"user {user_id} does not exist")
        self._invalidate(doc["username"])
        return doc

    async def page(self, limit: int, cursor: str | None) -> tuple[list[dict], str | None]:
        """Users in username order; the cursor is the last username of the previous page."""
        query = {"username": {"$gt": cursor}} if cursor else {}
        docs = await self.collection.find(query).sort("username", ASCENDING).limit(limit + 1).to_list()
        more = len(docs) > limit
        docs = docs[:limit]
        return docs, (docs[-1]["username"] if more else None)

    async def bootstrap_admin(self, password: str | None) -> None:
        """Create the `admin` account if there is none, with ADMIN_PASSWORD as its password. An
        existing one is left as it is: a restart must not undo a rotated password or a
        deactivation (`python -m gateway reset-admin-password` is the explicit way back)."""
        if await self.by_username(BOOTSTRAP_ADMIN) is not None:
            log.info("admin account exists (ADMIN_PASSWORD applies only when creating it)")
            return
        if password is None:
            log.warning("ADMIN_PASSWORD is not set: the admin account was created with a random password "
                        "nobody knows; set one with `python -m gateway reset-admin-password`")
        try:
            await self.create(BOOTSTRAP_ADMIN, password or secrets.token_urlsafe(32), Role.admin, None)
            log.info("admin account created")
        except ApiProblem:  # another replica created it at the same moment
            log.info("admin account created by another replica")

    async def reset_admin(self, password: str) -> None:
        """The operator's way back into the `admin` account: this password, the admin role, active,
        and every token issued before revoked. Creates the account if there is none."""
        existing = await self.by_username(BOOTSTRAP_ADMIN)
        if existing is None:
            await self.create(BOOTSTRAP_ADMIN, password, Role.admin, None)
        else:
            await self.update(existing["_id"], {"role": Role.admin, "scope": None, "active": True,
                                                "password": password})
        log.info("admin account reset: password set, role admin, active")
