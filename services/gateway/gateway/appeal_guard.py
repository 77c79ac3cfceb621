"""What stands between a submitted appeal and the appeal service: an admin's blocklist, and rate
limits per account, per device and per client address (the issue's "Abuse").

- The blocklist (`appeal_blocklist` in the gateway's MongoDB, shared by every replica): an
  account (a username, or `open311:<key id>` for an Open311 application), a device (the
  submitting app's `X-Device-Id`, Open311's `device_id`) or a client address. A listed
  submitter is refused with 403. Devices and addresses are personal data: they are kept as a
  hash for the lookup (as login_guard.py keeps usernames and addresses) and shown masked
  (`ab****yz`), never in full; usernames are shown as the rest of the platform shows them.
- The limits (APPEAL_SUBMISSIONS_PER_ACCOUNT, _PER_DEVICE, _PER_ADDRESS, in the `limits`
  notation; an Open311 application's key APPEAL_SUBMISSIONS_PER_API_KEY instead of the
  account's and the address's: it files for many people from one server), kept in memory by each replica like the general request limits (rate_limit.py): a
  bound on abuse, not an exact quota. A submission beyond any of them is a 429 with Retry-After
  and counts against none of them; an anonymous appeal carries no personal data of its
  submitter, yet its account, device and address are counted all the same (only here, in
  memory, never stored).

Both refusals are counted in `gateway_appeal_submissions_refused_total{reason}`. The REST
route (routes/appeals.py) and Open311's `POST requests` call `guard_submission` before the
service is asked."""

import hashlib
import math
import time
import uuid
from datetime import datetime, timezone
from enum import StrEnum
from typing import Annotated

from fastapi import Request
from limits import parse
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter
from prometheus_client import Counter
from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from pymongo import ASCENDING, DESCENDING
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from .problems import ApiProblem

COLLECTION = "appeal_blocklist"
OPEN311_ACCOUNT = "open311:"  # the account of an Open311 application: open311:<API key id>

SUBMISSIONS_REFUSED = Counter(
    "gateway_appeal_submissions_refused", "Appeal submissions refused before reaching the appeal service, by reason "
    "(account, device, address: beyond that rate limit; blocklisted: an admin's blocklist)", ["reason"])
for _reason in ("account", "api_key", "device", "address", "blocklisted"):
    SUBMISSIONS_REFUSED.labels(_reason)


class BlockKind(StrEnum):
    account = "account"
    device = "device"
    address = "address"


class BlockRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: BlockKind
    value: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=128)] = Field(
        description="account: a username (or open311:<API key id>); device: the X-Device-Id or Open311 device_id; "
                    "address: a client IP address")
    reason: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)] | None = None


class BlockEntry(BaseModel):
    id: str
    kind: BlockKind
    value: str = Field(description="an account in full; a device or an address masked")
    reason: str | None = None
    created_by: str
    created_at: datetime


def mask(value: str) -> str:
    """A device id or an address as shown: enough to tell entries apart, not the value."""
    if len(value) <= 4:
        return "****"
    keep = 2 if len(value) < 12 else 4
    return f"{value[:keep]}****{value[-keep:]}"


class AppealGuard:
    def __init__(self, db: AsyncDatabase, settings):
        self.blocklist = db[COLLECTION]
        self.limits = {"account": parse(settings.appeal_submissions_per_account),
                       "api_key": parse(settings.appeal_submissions_per_api_key),
                       "device": parse(settings.appeal_submissions_per_device),
                       "address": parse(settings.appeal_submissions_per_address)}
        self.limiter = MovingWindowRateLimiter(MemoryStorage())

    @staticmethod
    async def ensure_indexes(db: AsyncDatabase) -> None:
        await db[COLLECTION].create_index([("key", ASCENDING)], unique=True, name="key_unique")

    @staticmethod
    def key(kind: str, value: str) -> str:
        return hashlib.sha256(f"appeal-blocklist:{kind}:{value}".encode()).hexdigest()

    # ---- the guard -------------------------------------------------------------------------

    async def check(self, account: str | None, device_id: str | None, address: str | None) -> None:
        """ApiProblem 403 for a blocklisted submitter, 429 with Retry-After beyond a limit; else
        the submission is counted against each limit."""
        who = {k: v for k, v in (("account", account), ("device", device_id), ("address", address)) if v}
        keys = {self.key(kind, value): kind for kind, value in who.items()}
        if keys and (listed := await self.blocklist.find_one({"key": {"$in": list(keys)}}, {"kind": 1})):
            SUBMISSIONS_REFUSED.labels("blocklisted").inc()
            raise ApiProblem.of(403, f"appeals from this {listed['kind']} are blocked by an administrator")
        # An Open311 application files for many people from one server: its key has a limit of its
        # own, and its server's address none (each citizen's device is still limited).
        if account is not None and account.startswith(OPEN311_ACCOUNT):
            who = {("api_key" if kind == "account" else kind): value for kind, value in who.items() if kind != "address"}
        counters = {kind: f"{kind}:{self.key(kind, value)}" for kind, value in who.items()}
        # No await between testing and counting: every limit is tested, and only a submission
        # within all of them counts against them.
        for kind, counter in counters.items():
            if not self.limiter.test(self.limits[kind], counter):
                SUBMISSIONS_REFUSED.labels(kind).inc()
                reset = self.limiter.get_window_stats(self.limits[kind], counter).reset_time
                retry_after = max(1, math.ceil(reset - time.time()))
                raise ApiProblem.of(429, f"more than {self.limits[kind]} appeals from this {kind.replace('_', ' ')}: "
                                         f"wait {retry_after} s", headers={"Retry-After": str(retry_after)})
        for kind, counter in counters.items():
            self.limiter.hit(self.limits[kind], counter)

    # ---- the blocklist ---------------------------------------------------------------------

    async def block(self, request: BlockRequest, by: str) -> dict:
        """A new entry; ApiProblem 409 if the same kind and value is listed already."""
        value = request.value
        # Ids in the order of creation (milliseconds first), so that the list pages by id.
        doc = {"_id": f"{time.time_ns() // 1_000_000:012x}{uuid.uuid4().hex[:20]}", "key": self.key(request.kind, value), "kind": request.kind.value,
               "value": value if request.kind == BlockKind.account else mask(value), "reason": request.reason,
               "created_by": by, "created_at": datetime.now(timezone.utc)}
        try:
            await self.blocklist.insert_one(doc)
        except DuplicateKeyError:
            raise ApiProblem.of(409, f"this {request.kind} is on the blocklist already") from None
        return entry(doc)

    async def entries(self, limit: int, cursor: str | None) -> tuple[list[dict], str | None]:
        """Newest first; the cursor is the last entry's id."""
        query = {} if cursor is None else {"_id": {"$lt": cursor}}
        docs = await self.blocklist.find(query).sort("_id", DESCENDING).limit(limit).to_list()
        return [entry(d) for d in docs], docs[-1]["_id"] if len(docs) == limit else None

    async def unblock(self, entry_id: str) -> dict | None:
        doc = await self.blocklist.find_one_and_delete({"_id": entry_id})
        return entry(doc) if doc else None


def entry(doc: dict) -> dict:
    return {"id": doc["_id"], **{k: doc.get(k) for k in ("kind", "value", "reason", "created_by", "created_at")}}


def appeal_guard(request: Request) -> AppealGuard:
    """The app's guard, made on first use from its database and settings."""
    state = request.app.state
    guard = getattr(state, "appeal_guard", None)
    if guard is None:
        guard = state.appeal_guard = AppealGuard(state.db, state.settings)
    return guard


def client_address(request: Request) -> str | None:
    return request.client.host if request.client else None


async def guard_submission(request: Request, account: str | None, device_id: str | None) -> None:
    """Before an appeal is submitted (REST and Open311): ApiProblem 403 when the account, the
    device or the request's client address is blocklisted, 429 with Retry-After beyond the
    submissions allowed per account, per device or per address."""
    await appeal_guard(request).check(account, device_id, client_address(request))
