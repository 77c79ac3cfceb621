"""What stands between POST /auth/token and Argon2id: a bound on concurrent hashing, and a
lockout per username and per client address after too many failed attempts.

Failures are counted in MongoDB (`login_failures`), so every replica sees the same counts. A
counter is kept per key (the username, whether or not such an account exists, and the client
address) for one fixed window from its first failure; a TTL index deletes it after the window,
so guessing names leaves no lasting state. Keys are stored hashed: people type passwords into
the username field."""

import asyncio
import contextlib
import hashlib
import logging
import math
from datetime import datetime, timedelta, timezone

from pymongo import ReturnDocument
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from .auth import verify_password
from .metrics import LOGIN_LOCKOUTS, LOGIN_REFUSED
from .problems import ApiProblem
from .settings import Settings

log = logging.getLogger(__name__)

COLLECTION = "login_failures"
BUSY_RETRY_AFTER_SECONDS = 1


class LoginGuard:
    def __init__(self, db: AsyncDatabase, settings: Settings):
        self.failures = db[COLLECTION]
        self.window = timedelta(seconds=settings.login_failure_window_seconds)
        self.limits = {"username": settings.login_max_failures_per_username,
                       "address": settings.login_max_failures_per_address}
        self._hashing = asyncio.Semaphore(settings.login_hashing_concurrency)
        # Attempts hashing or waiting to: beyond this many, new ones are refused at once, so a
        # flood neither piles up memory nor makes every caller wait.
        self._admitted = 0
        self._max_admitted = settings.login_hashing_concurrency + settings.login_hashing_queue

    @staticmethod
    async def ensure_indexes(db: AsyncDatabase) -> None:
        await db[COLLECTION].create_index("expires_at", expireAfterSeconds=0, name="expires_at_ttl")

    @staticmethod
    def _keys(username: str, address: str | None) -> dict[str, str]:
        keys = {"username": username}
        if address:
            keys["address"] = address
        return {kind: hashlib.sha256(f"{kind}:{value}".encode()).hexdigest() for kind, value in keys.items()}

    async def refuse_if_locked(self, username: str, address: str | None) -> None:
        """ApiProblem 429 with Retry-After while the username or the address is locked out."""
        keys = self._keys(username, address)
        now = datetime.now(timezone.utc)
        async for counter in self.failures.find({"_id": {"$in": list(keys.values())}, "expires_at": {"$gt": now}}):
            kind = next(k for k, v in keys.items() if v == counter["_id"])
            if counter["failures"] >= self.limits[kind]:
                LOGIN_REFUSED.labels("locked").inc()
                retry_after = max(1, math.ceil((counter["expires_at"] - now).total_seconds()))
                raise ApiProblem.of(429, f"too many failed logins for this {kind}: try again later",
                                    headers={"Retry-After": str(retry_after)})

    @contextlib.asynccontextmanager
    async def hashing_slot(self):
        """A turn to run Argon2id (64 MiB each); ApiProblem 503 with Retry-After when the turns
        and the queue for them are all taken."""
        if self._admitted >= self._max_admitted:
            LOGIN_REFUSED.labels("busy").inc()
            raise ApiProblem.of(503, "too many logins in progress: try again shortly",
                                headers={"Retry-After": str(BUSY_RETRY_AFTER_SECONDS)})
        self._admitted += 1
        try:
            async with self._hashing:
                yield
        finally:
            self._admitted -= 1

    async def verify(self, password_hash: str | None, password: str) -> bool:
        """verify_password in a worker thread; call it holding a hashing_slot. The turn is held
        until the thread ends even if the caller goes away: cancelling the await would not stop
        the thread nor free its memory."""
        check = asyncio.ensure_future(asyncio.to_thread(verify_password, password_hash, password))
        try:
            return await asyncio.shield(check)
        except asyncio.CancelledError:
            await asyncio.wait([check])
            raise

    async def record_failure(self, username: str, address: str | None) -> None:
        for kind, key in self._keys(username, address).items():
            failures = await self._count(key)
            if failures == self.limits[kind]:  # the failure that locks: once per window
                LOGIN_LOCKOUTS.labels(kind).inc()
                log.warning("login locked out for %s after %d failed attempts: username=%r address=%s",
                            self.window, failures, username, address)

    async def record_success(self, username: str) -> None:
        """The username's failures are forgiven; the address's are not (an attacker's own
        account must not wipe the count of their guesses at others)."""
        await forgive_username(self.failures.database, username)

    async def _count(self, key: str) -> int:
        """This failure counted in the key's current window (a new one if the last has expired)."""
        now = datetime.now(timezone.utc)
        for _ in range(2):
            counter = await self.failures.find_one_and_update(
                {"_id": key, "expires_at": {"$gt": now}}, {"$inc": {"failures": 1}},
                return_document=ReturnDocument.AFTER)
            if counter is not None:
                return counter["failures"]
            try:  # no window open: start one (replacing an expired counter the TTL monitor left)
                await self.failures.replace_one({"_id": key, "expires_at": {"$lte": now}},
                                                {"failures": 1, "expires_at": now + self.window}, upsert=True)
                return 1
            except DuplicateKeyError:
                continue  # another attempt opened the window first: count in it
        return 1


async def forgive_username(db: AsyncDatabase, username: str) -> None:
    """Ends the username's lockout, if any (a successful login; an operator's reset)."""
    await db[COLLECTION].delete_one({"_id": LoginGuard._keys(username, None)["username"]})
