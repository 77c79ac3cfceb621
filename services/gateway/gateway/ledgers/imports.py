"""Ledger imports as background jobs that survive a crash (`imports` in the gateway's MongoDB).

An upload is stored (sealed: a members ledger holds ID numbers) and queued; whichever replica
claims it runs it under a lease it renews each batch, so a replica killed mid-import leaves the
job to another, or to itself once restarted. A job goes through its rows in fixed batches and
records each batch's outcome with one conditional update (its counts and the position of the
next batch): a batch is re-sent after a crash under the same command id (units) or the same
per-row command ids (members, stations), which the services answer from their command logs, so
nothing is imported twice and no count is doubled. A row is imported, found already registered
(an earlier import of the same row), or rejected with its reasons, which the errors workbook
gives back in the operator's own columns."""

import asyncio
import base64
import collections
import contextlib
import functools
import hashlib
import hmac
import json
import logging
import os
import socket
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from gridfs import AsyncGridFSBucket
from pymongo import ASCENDING, DESCENDING, ReturnDocument
from pymongo.asynchronous.database import AsyncDatabase

from platform_contracts.actors import Actor
from platform_contracts.envelope import CloudEvent
from platform_contracts.events import validate_event
from platform_contracts.ledgers import (IMPORT_BATCH_MAX_ROWS, BatchOutcome, ImportStatus, Ledger, RejectedRow,
                                        RowError, RowProblem)
from service_kit.pii import FieldCipher

from ..problems import ApiProblem
from .columns import LedgerSpec, spec_for
from .workbook import UnreadableFile, is_blank, read_table

log = logging.getLogger(__name__)

REPLICA = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
LEASE_SECONDS = 10.0  # renewed every third of it while a job runs: a dead runner's job waits no longer
PROGRESS_EVENT_SECONDS = 1.0  # at most one import.progressed a second per import
BATCHES_IN_FLIGHT = 2  # the batch being written, and the next one queued behind it
ROW_CALLS_AT_ONCE = 8  # members and stations: rows in flight at once, each its own command
RETRY_SECONDS = (1, 2, 5, 10, 30)  # a batch the platform could not take now (503, timeout) is sent again


@dataclass(frozen=True)
class PreparedRow:
    row: int  # in the operator's file: the header is row 1
    cells: list
    data: dict
    errors: list[RowError]


def prepare_rows(spec: LedgerSpec, table: list[list]) -> list[PreparedRow]:
    """Every data row of the file: its fields, or why they cannot be read. A row with the key of
    an earlier row (the same credit code, ID number) is a mistake in the file and is rejected."""
    columns, _missing = spec.header_map(table[0])
    rows, first_with_key = [], {}
    for number, cells in enumerate(table[1:], start=2):
        if is_blank(cells):
            continue
        data, errors = spec.read_row(cells, columns)
        key = data.get(spec.key)
        if key is not None and not errors:
            if key in first_with_key:
                errors = [RowError(field=spec.key, problem=RowProblem.duplicate_in_file,
                                   detail=f"与第 {first_with_key[key]} 行相同")]
            else:
                first_with_key[key] = number
        rows.append(PreparedRow(number, list(cells), data, errors))
    return rows


class ImportStore:
    def __init__(self, db: AsyncDatabase, cipher: FieldCipher):
        self.imports = db["imports"]
        self.rejections = db["import_rejections"]
        self.files = AsyncGridFSBucket(db, bucket_name="import_files")
        self.cipher = cipher

    @staticmethod
    async def ensure_indexes(db: AsyncDatabase) -> None:
        await db["imports"].create_index([("created_by", ASCENDING)])
        await db["imports"].create_index([("status", ASCENDING)])
        await db["import_rejections"].create_index([("import_id", ASCENDING)])

    async def create(self, ledger: Ledger, filename: str, content: bytes, created_by: str, now: datetime) -> dict:
        import_id = uuid.uuid4().hex
        sealed = self.cipher.encrypt(base64.b64encode(content).decode(), f"import:{import_id}:file")
        file_id = await self.files.upload_from_stream(f"{import_id}.sealed", sealed.encode())
        job = {"_id": import_id, "ledger": ledger.value, "filename": filename, "file_id": file_id,
               "sha256": hashlib.sha256(content).hexdigest(), "status": ImportStatus.queued.value, "rows": None,
               "imported": 0, "already_present": 0, "rejected": 0, "next_batch": 0, "batches": None,
               "error": None, "created_by": created_by, "created_at": now, "started_at": None,
               "finished_at": None, "lease_holder": None, "lease_until": now}
        await self.imports.insert_one(job)
        return job

    async def get(self, import_id: str) -> dict | None:
        return await self.imports.find_one({"_id": import_id})

    async def page(self, created_by: str | None, limit: int) -> list[dict]:
        query = {} if created_by is None else {"created_by": created_by}
        return await self.imports.find(query).sort("created_at", DESCENDING).limit(limit).to_list()

    async def file_content(self, job: dict) -> bytes:
        stream = await self.files.open_download_stream(job["file_id"])
        sealed = (await stream.read()).decode()
        return base64.b64decode(self.cipher.decrypt(sealed, f"import:{job['_id']}:file"))

    async def claim(self, now: datetime) -> dict | None:
        """The oldest job waiting, or one whose runner's lease lapsed, now leased to this replica."""
        return await self.imports.find_one_and_update(
            {"status": {"$in": [ImportStatus.queued.value, ImportStatus.running.value]}, "lease_until": {"$lte": now}},
            {"$set": {"status": ImportStatus.running.value, "lease_holder": REPLICA,
                      "lease_until": now + timedelta(seconds=LEASE_SECONDS)}},
            sort=[("created_at", ASCENDING)], return_document=ReturnDocument.AFTER)

    async def started(self, job: dict, headers: list, rows: int, batches: int, now: datetime) -> dict | None:
        return await self.imports.find_one_and_update(
            {"_id": job["_id"], "lease_holder": REPLICA},
            {"$set": {"headers": [str(h) if h is not None else "" for h in headers], "rows": rows,
                      "batches": batches, "started_at": job.get("started_at") or now,
                      "lease_until": now + timedelta(seconds=LEASE_SECONDS)}},
            return_document=ReturnDocument.AFTER)

    async def renew_lease(self, job: dict, now: datetime) -> bool:
        renewed = await self.imports.update_one({"_id": job["_id"], "lease_holder": REPLICA},
                                                {"$set": {"lease_until": now + timedelta(seconds=LEASE_SECONDS)}})
        return renewed.matched_count == 1

    async def record_batch(self, job: dict, batch: int, outcome: BatchOutcome, rejected_cells: dict[int, list],
                           spec: LedgerSpec, now: datetime) -> dict | None:
        """The batch's rejected rows, then its counts and the next batch's position, once: None
        if the lease was lost (another replica took the job over) or the batch recorded already."""
        if outcome.rejected:
            documents = [{"_id": f"{job['_id']}:{r.row}", "import_id": job["_id"], "row": r.row,
                          "cells": self.cipher.encrypt(json.dumps(rejected_cells[r.row], default=str, ensure_ascii=False),
                                                       f"import:{job['_id']}:row:{r.row}"),
                          "reason": spec.error_text(r.errors), "created_at": now} for r in outcome.rejected]
            with contextlib.suppress(Exception):  # rows recorded before a crash: the batch is being redone
                await self.rejections.insert_many(documents, ordered=False)
        return await self.imports.find_one_and_update(
            {"_id": job["_id"], "lease_holder": REPLICA, "next_batch": batch},
            {"$set": {"next_batch": batch + 1},
             "$inc": {"imported": len(outcome.imported), "already_present": len(outcome.present),
                      "rejected": len(outcome.rejected)}},
            return_document=ReturnDocument.AFTER)

    async def finish(self, job: dict, status: ImportStatus, now: datetime, error: str | None = None) -> dict | None:
        finished = await self.imports.find_one_and_update(
            {"_id": job["_id"], "lease_holder": REPLICA},
            {"$set": {"status": status.value, "error": error, "finished_at": now, "lease_holder": None}},
            return_document=ReturnDocument.AFTER)
        if finished is not None:  # the file is no longer needed: the rejected rows are kept apart
            with contextlib.suppress(Exception):
                await self.files.delete(job["file_id"])
        return finished

    async def rejected_rows(self, job: dict) -> list[tuple[int, list, str]]:
        documents = await self.rejections.find({"import_id": job["_id"]}).to_list()
        return sorted((d["row"], json.loads(self.cipher.decrypt(d["cells"], f"import:{job['_id']}:row:{d['row']}")),
                       d["reason"]) for d in documents)


def import_event(event_type: str, job: dict, source: str) -> CloudEvent:
    """`import.progressed` or `import.finished`: the job's counts, for whoever started it."""
    return validate_event(CloudEvent(source=source, type=event_type, subject=job["_id"], data={
        "id": job["_id"], "ledger": job["ledger"], "status": job["status"], "rows": job.get("rows"),
        "imported": job["imported"], "already_present": job["already_present"], "rejected": job["rejected"],
        "progress": progress_of(job), "created_by": job["created_by"]}))


def progress_of(job: dict) -> float:
    if job["status"] == ImportStatus.done.value:
        return 1.0
    if not job.get("batches"):
        return 0.0
    return round(min(job["next_batch"] / job["batches"], 1.0), 4)


def row_command_id(secret: bytes, ledger: str, actor: Actor, data: dict) -> str:
    """One row's command id: the same row (same values) imported again by the same role and
    scope is the same command, which the service answers from its command log instead of
    registering it twice. Keyed, since a row holds personal data."""
    canonical = json.dumps([ledger, actor.role, actor.scope, data], sort_keys=True, ensure_ascii=False, default=str)
    return "ledger-" + hmac.new(secret, canonical.encode(), hashlib.sha256).hexdigest()[:40]


EmitEvent = Callable[[str, dict], Awaitable[None]]


class ImportRunner:
    """Runs queued imports, one at a time per replica; `wake()` after an upload starts it at once."""

    def __init__(self, store: ImportStore, rpc, actor_of: Callable[[str], Awaitable[Actor | None]],
                 emit: EmitEvent, command_secret: bytes, poll_seconds: float = 2.0):
        self.store = store
        self.rpc = rpc
        self.actor_of = actor_of
        self.emit = emit
        self.command_secret = command_secret
        self.poll_seconds = poll_seconds
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run_forever(), name="ledger-imports")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def wake(self) -> None:
        self._wake.set()

    async def _run_forever(self) -> None:
        while True:
            try:
                job = await self.store.claim(_now())
            except Exception:
                log.exception("imports: claiming a job failed; trying again")
                job = None
            if job is None:
                self._wake.clear()
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.poll_seconds)
                continue
            run = asyncio.create_task(self.run(job))
            heartbeat = asyncio.create_task(self._keep_lease(job, run))
            try:
                await asyncio.wait([run])
            finally:  # stopping the gateway stops the job where it is: it resumes from its last batch
                heartbeat.cancel()
                run.cancel()
            if run.cancelled():
                log.warning("imports: import %s lost its lease; another replica has it", job["_id"])
            elif run.exception() is not None:  # the lease lapses and the job is taken up again
                log.error("imports: import %s stopped; it resumes once its lease lapses", job["_id"],
                          exc_info=run.exception())

    async def _keep_lease(self, job: dict, run: asyncio.Task) -> None:
        while True:
            await asyncio.sleep(LEASE_SECONDS / 3)
            try:
                if not await self.store.renew_lease(job, _now()):
                    run.cancel()
                    return
            except Exception:  # the database away: the batch's own write fails too, and says so
                log.warning("imports: could not renew the lease of import %s", job["_id"])

    async def run(self, job: dict) -> None:
        log.info("imports: running import %s (%s, batch %d on)", job["_id"], job["ledger"], job["next_batch"])
        actor = await self.actor_of(job["created_by"])
        if actor is None:
            await self._fail(job, "导入人的账号已停用")
            return
        ledger = Ledger(job["ledger"])
        spec = spec_for(ledger, await self._industry_names(actor) if ledger == Ledger.units else None)
        try:
            table = await asyncio.to_thread(read_table, await self.store.file_content(job), job["filename"])
        except UnreadableFile as error:
            await self._fail(job, str(error))
            return
        _columns, missing = spec.header_map(table[0])
        if missing:
            await self._fail(job, "缺少必填列：" + "、".join(missing))
            return
        rows = await asyncio.to_thread(prepare_rows, spec, table)
        batch_size = IMPORT_BATCH_MAX_ROWS if ledger == Ledger.units else 100
        batches = [rows[i:i + batch_size] for i in range(0, len(rows), batch_size)]
        job = await self.store.started(job, table[0], len(rows), len(batches), _now())
        if job is None:
            return
        last_progress_event = 0.0
        loop = asyncio.get_running_loop()
        # The next batch is on its way while the service writes this one, so that the service is
        # not idle while the answer travels back and the batch is recorded. Batches are recorded
        # in order; one the service committed out of order is answered from its command log
        # when the job resumes after a crash.
        in_flight: collections.deque[tuple[int, asyncio.Task]] = collections.deque()

        async def record_oldest() -> bool:
            nonlocal job, last_progress_event
            number, sending = in_flight.popleft()
            recorded = await self.store.record_batch(job, number, await sending,
                                                     {r.row: r.cells for r in batches[number]}, spec, _now())
            if recorded is None:
                log.warning("imports: import %s was taken over by another replica", job["_id"])
                return False
            job = recorded
            if loop.time() - last_progress_event >= PROGRESS_EVENT_SECONDS:
                last_progress_event = loop.time()
                await self._emit("import.progressed", job)
            return True

        try:
            for number in range(job["next_batch"], len(batches)):
                in_flight.append((number, asyncio.create_task(self._with_retries(
                    functools.partial(self._send, ledger, job, number, batches[number], actor)))))
                if len(in_flight) == BATCHES_IN_FLIGHT and not await record_oldest():
                    return
            while in_flight:
                if not await record_oldest():
                    return
        finally:
            for _, sending in in_flight:
                sending.cancel()
        finished = await self.store.finish(job, ImportStatus.done, _now())
        if finished is not None:
            log.info("imports: import %s done: %d imported, %d already there, %d rejected", job["_id"],
                     finished["imported"], finished["already_present"], finished["rejected"])
            await self._emit("import.finished", finished)

    async def _fail(self, job: dict, error: str) -> None:
        finished = await self.store.finish(job, ImportStatus.failed, _now(), error)
        if finished is not None:
            log.warning("imports: import %s failed: %s", job["_id"], error)
            await self._emit("import.finished", finished)

    async def _emit(self, event_type: str, job: dict) -> None:
        try:
            await self.emit(event_type, job)
        except Exception:  # progress is also on GET /imports/{id}: a lost event is not a lost import
            log.exception("imports: could not log %s for %s", event_type, job["_id"])

    async def _industry_names(self, actor: Actor) -> dict[str, str]:
        industries = await self.rpc.call("organization", "list_industries", actor=actor.to_wire())
        return {item["name"]: item["code"] for item in industries["items"]}

    async def _with_retries(self, send: Callable[[], Awaitable[BatchOutcome]]) -> BatchOutcome:
        for delay in (*RETRY_SECONDS, None):
            try:
                return await send()
            except ApiProblem as problem:
                if problem.status not in (502, 503, 504) or delay is None:
                    raise
                log.warning("imports: the platform could not take a batch now (%d); again in %d s",
                            problem.status, delay)
                await asyncio.sleep(delay)
        raise AssertionError("unreachable")

    async def _send(self, ledger: Ledger, job: dict, number: int, batch: list[PreparedRow],
                    actor: Actor) -> BatchOutcome:
        outcome = BatchOutcome(rejected=[RejectedRow(row=r.row, errors=r.errors) for r in batch if r.errors])
        good = [r for r in batch if not r.errors]
        if not good:
            return outcome
        if ledger == Ledger.units:
            answer = await self.rpc.call("organization", "import_units", import_id=job["_id"],
                                         rows=[{"row": r.row, "data": r.data} for r in good],
                                         actor=actor.to_wire(), command_id=f"import:{job['_id']}:{number}")
            sent = BatchOutcome.model_validate(answer)
            return BatchOutcome(imported=sent.imported, present=sent.present,
                                rejected=sorted(outcome.rejected + sent.rejected, key=lambda r: r.row))
        limit = asyncio.Semaphore(ROW_CALLS_AT_ONCE)

        async def one(row: PreparedRow):
            async with limit:
                return row, await self._register_row(ledger, job, row, actor)
        for row, (kind, errors) in await asyncio.gather(*(one(r) for r in good)):
            if kind == "imported":
                outcome.imported.append(row.row)
            elif kind == "present":
                outcome.present.append(row.row)
            else:
                outcome.rejected.append(RejectedRow(row=row.row, errors=errors))
        outcome.rejected.sort(key=lambda r: r.row)
        return outcome

    async def _register_row(self, ledger: Ledger, job: dict, row: PreparedRow, actor: Actor
                            ) -> tuple[str, list[RowError]]:
        service, method = ("member", "register_member") if ledger == Ledger.members else \
            ("service-station", "register_station")
        try:
            created = await self.rpc.call(service, method, command=row.data, actor=actor.to_wire(),
                                          command_id=row_command_id(self.command_secret, ledger.value, actor, row.data))
        except ApiProblem as problem:
            if problem.status in (502, 503, 504):
                raise
            if problem.status == 409 and ledger == Ledger.members and _fields(problem) == ["id_number"]:
                return "present", []  # the same person, registered before
            fields = _fields(problem) or ["data"]
            return "rejected", [RowError(field=f, problem=RowProblem.refused, detail=_reason(problem, f))
                                for f in fields]
        # The same row imported before is answered from the service's command log: the record then
        # predates this import (a run of this import cut short by a crash does not: it counts as
        # this import's, as it is).
        registered = datetime.fromisoformat(str(created["registered_at"]))
        started = job["started_at"] if job["started_at"].tzinfo else job["started_at"].replace(tzinfo=timezone.utc)
        return ("imported" if registered >= started else "present"), []


def _fields(problem: ApiProblem) -> list[str]:
    fields = []
    for error in problem.document.get("errors") or []:
        loc = [str(part) for part in error.get("loc") or []]
        while loc and loc[0] in ("body", "query", "path", "command"):
            loc = loc[1:]
        if loc and ".".join(loc) not in fields:
            fields.append(".".join(loc))
    return fields


def _reason(problem: ApiProblem, field: str) -> str:
    for error in problem.document.get("errors") or []:
        if ".".join(str(p) for p in error.get("loc") or []).endswith(field):
            return str(error.get("msg") or problem.document.get("detail"))
    return str(problem.document.get("detail"))


def _now() -> datetime:
    return datetime.now(timezone.utc)

