"""Ledgers (台账) in and out: imports as background jobs, their rejected rows as a workbook,
templates, and exports of the ledgers and the coverage tables to `.xlsx`."""

import asyncio
import math
import time
from datetime import datetime, timezone
from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Form, Path, Query, Request, UploadFile
from fastapi.responses import Response
from limits import parse
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

from platform_contracts.actors import DIVISION_ROLES, Role
from platform_contracts.ledgers import Import, ImportStatus, Ledger
from platform_contracts.organization import DivisionPrefix

from . import API, MEMBER, ORGANIZATION, STATION
from ..auth import Principal
from ..deps import Rpc, current_principal
from ..ledgers.columns import spec_for
from ..ledgers.imports import progress_of
from ..ledgers.workbook import (XLSX_MEDIA_TYPE, UnreadableFile, errors_workbook, read_table, template,
                                template_csv, workbook_bytes)
from ..problems import ApiProblem
from ..schemas import ItemList

router = APIRouter(prefix=API, tags=["ledgers"])
Anyone = Annotated[Principal, Depends(current_principal)]

# Who may import (and export) each ledger; the owning service judges scope row by row.
LEDGER_ROLES = {
    Ledger.units: DIVISION_ROLES,
    Ledger.members: frozenset({Role.admin, Role.operator, Role.secretary}),
    Ledger.stations: DIVISION_ROLES,
}
EXPORT_PAGE = 500
UNFINISHED = [ImportStatus.queued.value, ImportStatus.running.value]
REFUSED = {403: {"description": "your role may not import or export this ledger"}}
# Per replica, in memory, like the general request limits (rate_limit.py): a bound, not a quota.
_EXPORTS = MovingWindowRateLimiter(MemoryStorage())


def _may(caller: Principal, ledger: Ledger) -> None:
    if caller.actor.role not in LEDGER_ROLES[ledger]:
        raise ApiProblem.of(403, f"your role ({caller.actor.role}) may not import or export the {ledger} ledger")


def _limit_exports(request: Request, caller: Principal) -> None:
    limit = parse(request.app.state.settings.exports_per_user)
    if not _EXPORTS.hit(limit, "exports", caller.id):
        reset = _EXPORTS.get_window_stats(limit, "exports", caller.id).reset_time
        raise ApiProblem.of(429, f"at most {limit} exports per account: try again later",
                            headers={"Retry-After": str(max(1, math.ceil(reset - time.time())))})


def _resource(job: dict) -> dict:
    errors_url = f"{API}/imports/{job['_id']}/errors.xlsx" if job.get("rejected") else None
    return Import(id=job["_id"], ledger=job["ledger"], filename=job["filename"], status=job["status"],
                  rows=job.get("rows"), imported=job["imported"], already_present=job["already_present"],
                  rejected=job["rejected"], progress=progress_of(job), error=job.get("error"),
                  created_by=job["created_by"], created_at=job["created_at"], finished_at=job.get("finished_at"),
                  errors_url=errors_url).model_dump(mode="json")


async def _own_import(request: Request, import_id: str, caller: Principal) -> dict:
    job = await request.app.state.imports.get(import_id)
    if job is None or (job["created_by"] != caller.id and not caller.actor.is_admin):
        raise ApiProblem.of(404, f"import {import_id} not found")  # another's import is not revealed
    return job


def _file_response(content: bytes, filename: str, media_type: str = XLSX_MEDIA_TYPE) -> Response:
    return Response(content, media_type=media_type,
                    headers={"Content-Disposition": f"attachment; filename*=UTF-8''{filename}"})


ImportId = Annotated[str, Path(pattern=r"^[0-9a-f]{32}$")]


@router.post("/imports", status_code=202, response_model=Import, summary="Import a ledger (.xlsx or .csv) in the background",
             responses={**REFUSED, 413: {"description": "the file is larger than IMPORT_MAX_BYTES"},
                        422: {"description": "not a workbook or CSV, or required columns missing (named)"},
                        429: {"description": "too many of your imports are still running"}})
async def start_import(request: Request, caller: Anyone,
                       ledger: Annotated[Ledger, Form(description="units, members or stations")],
                       file: Annotated[UploadFile, File(description="the ledger, .xlsx or .csv, headers in row 1")]):
    _may(caller, ledger)
    settings, store = request.app.state.settings, request.app.state.imports
    content = await file.read(settings.import_max_bytes + 1)
    if len(content) > settings.import_max_bytes:
        raise ApiProblem.of(413, f"the file is larger than {settings.import_max_bytes} bytes: split it")
    filename = (file.filename or f"{ledger}.xlsx")[-200:]
    try:
        table = await asyncio.to_thread(read_table, content, filename, header_only=True)
    except UnreadableFile as error:
        raise ApiProblem.invalid(["body", "file"], str(error)) from None
    _columns, missing = spec_for(ledger).header_map(table[0])
    if missing:
        raise ApiProblem.invalid(["body", "file"], "缺少必填列：" + "、".join(missing) + "（请用模板的列名）")
    unfinished = await store.imports.count_documents({"created_by": caller.id, "status": {"$in": UNFINISHED}})
    if unfinished >= settings.imports_running_per_user:
        raise ApiProblem.of(429, f"{unfinished} of your imports are still running: wait for one to finish",
                            headers={"Retry-After": "30"})
    job = await store.create(ledger, filename, content, caller.id, datetime.now(timezone.utc))
    request.app.state.import_runner.wake()
    resource = _resource(job)
    return Response(Import.model_validate(resource).model_dump_json(), status_code=202, media_type="application/json",
                    headers={"Location": f"{API}/imports/{job['_id']}"})


@router.get("/imports", response_model=ItemList[Import], summary="Your imports, newest first (admins: everyone's)")
async def list_imports(request: Request, caller: Anyone, limit: Annotated[int, Query(ge=1, le=100)] = 20):
    jobs = await request.app.state.imports.page(None if caller.actor.is_admin else caller.id, limit)
    return {"items": [_resource(job) for job in jobs]}


@router.get("/imports/{import_id}", response_model=Import, summary="An import's progress and counts",
            responses={404: {"description": "no such import of yours"}})
async def get_import(request: Request, import_id: ImportId, caller: Anyone):
    return _resource(await _own_import(request, import_id, caller))


@router.get("/imports/{import_id}/errors.xlsx", response_class=Response,
            summary="The rejected rows, in your own columns with the reason in front: fix them and upload again",
            responses={200: {"content": {XLSX_MEDIA_TYPE: {}}}, 404: {"description": "no such import of yours"}})
async def import_errors(request: Request, import_id: ImportId, caller: Anyone):
    job = await _own_import(request, import_id, caller)
    rejected = await request.app.state.imports.rejected_rows(job)
    content = errors_workbook(spec_for(Ledger(job["ledger"])).title, job.get("headers") or [], rejected)
    return _file_response(content, f"{job['_id']}-errors.xlsx")


TemplateName = Annotated[str, Path(pattern=r"^(units|members|stations)\.(xlsx|csv)$")]


@router.get("/templates/{name}", response_class=Response, summary="An empty ledger to fill in: units.xlsx, members.csv, ...",
            responses={200: {"content": {XLSX_MEDIA_TYPE: {}, "text/csv": {}}}})
async def ledger_template(name: TemplateName, caller: Anyone):
    ledger_name, _, extension = name.partition(".")
    spec = spec_for(Ledger(ledger_name))
    if extension == "csv":
        return _file_response(template_csv(spec), name, "text/csv; charset=utf-8")
    return _file_response(template(spec), name)


ExportName = Annotated[str, Path(pattern=r"^(units|members|stations|coverage)\.xlsx$")]


@router.get("/exports/{name}", response_class=Response,
            summary="A ledger (units, members, stations) or the coverage tables as .xlsx, narrowed to your scope",
            responses={200: {"content": {XLSX_MEDIA_TYPE: {}}}, **REFUSED,
                       429: {"description": "more exports than EXPORTS_PER_USER"}})
async def export(request: Request, name: ExportName, caller: Anyone, rpc: Rpc,
                 division: Annotated[DivisionPrefix | None, Query()] = None,
                 by: Annotated[str | None, Query(pattern=r"^(division|industry|type)$",
                                                 description="coverage only: one breakdown (default: all three)")] = None):
    what = name.removesuffix(".xlsx")
    _limit_exports(request, caller)
    if what == "coverage":
        if caller.actor.role not in DIVISION_ROLES:
            raise ApiProblem.of(403, "coverage is for operators and admins")
        return _file_response(await _coverage_workbook(rpc, caller, caller.actor.narrow_division(division), by),
                              name)
    ledger = Ledger(what)
    _may(caller, ledger)
    industries = None
    if ledger == Ledger.units:
        industries = {i["name"]: i["code"] for i in (await rpc.call(ORGANIZATION, "list_industries",
                                                                               actor=caller.actor.to_wire()))["items"]}
        division = caller.actor.narrow_division(division)
    spec = spec_for(ledger, industries)
    service, method = {Ledger.units: (ORGANIZATION, "list_units"), Ledger.members: (MEMBER, "list_members"),
                       Ledger.stations: (STATION, "list_stations")}[ledger]
    records = await _all_pages(rpc, service, method, {"division": division} if division else {}, caller)
    content = await asyncio.to_thread(workbook_bytes,
                                      [(spec.title, spec.export_headers(), (spec.record_cells(r) for r in records))])
    return _file_response(content, name)


async def _all_pages(rpc, service: str, method: str, filters: dict, caller: Principal) -> list[dict]:
    records, cursor = [], None
    while True:
        page = await rpc.call(service, method, filters=filters, limit=EXPORT_PAGE, cursor=cursor,
                              actor=caller.actor.to_wire())
        records += page["items"]
        cursor = page.get("next_cursor")
        if not cursor:
            return records


COVERAGE_HEADERS = ["区划", "行业", "单位类型", "单位数", "组织覆盖", "工作覆盖", "未覆盖", "组织覆盖率", "工作覆盖率",
                    "单独建立组织单位数", "单独组建率", "应建未建", "统计时间"]
BREAKDOWN_TITLES = {"division": "按区划", "industry": "按行业", "type": "按单位类型"}


def _coverage_row(figures: dict) -> list[Any]:
    return [figures.get("division") or "全部", figures.get("industry") or "", figures.get("type") or "",
            figures["units"], figures["organization_covered"], figures["work_covered"], figures["uncovered"],
            figures["organization_rate"], figures["work_rate"], figures["standalone_units"],
            figures["standalone_rate"], figures["should_establish"], figures.get("as_of") or ""]


async def _coverage_workbook(rpc, caller: Principal, division: str | None, by: str | None) -> bytes:
    actor = caller.actor.to_wire()
    total = await rpc.call(ORGANIZATION, "get_coverage", query={"division": division} if division else {}, actor=actor)
    sheets = [("总体", COVERAGE_HEADERS, [_coverage_row(total)])]
    for breakdown in ([by] if by else list(BREAKDOWN_TITLES)):
        query = {"by": breakdown, **({"division": division} if division else {})}
        items = (await rpc.call(ORGANIZATION, "coverage_breakdown", query=query, actor=actor))["items"]
        sheets.append((BREAKDOWN_TITLES[breakdown], COVERAGE_HEADERS, [_coverage_row(item) for item in items]))
    return await asyncio.to_thread(workbook_bytes, sheets)
