from typing import Annotated, Literal

from fastapi import APIRouter, Query

from platform_contracts.organization import CoverageFigures, DivisionPrefix, Industry, Unit, UnitType

from . import API, ORGANIZATION as SERVICE
from ..deps import Admin, Caller, Cursor, Limit, Rpc
from ..schemas import CoverageBreakdown, Page, QueryBool, Report

router = APIRouter(prefix=f"{API}/coverage", tags=["coverage"])


@router.get("", response_model=CoverageFigures, summary="Coverage figures for a division, industry or unit type")
async def get_coverage(
    caller: Caller, rpc: Rpc,
    division: Annotated[DivisionPrefix | None, Query()] = None,
    industry: Annotated[Industry | None, Query()] = None,
    unit_type: Annotated[UnitType | None, Query(alias="type")] = None,
):
    query = {"division": caller.actor.narrow_division(division), "industry": industry, "type": unit_type}
    return await rpc.call(SERVICE, "get_coverage", query=query, actor=caller.actor.to_wire())


@router.get("/breakdown", response_model=CoverageBreakdown, summary="Coverage split by division, industry or type")
async def coverage_breakdown(
    caller: Caller, rpc: Rpc,
    by: Annotated[Literal["division", "industry", "type"], Query()] = "division",
    division: Annotated[DivisionPrefix | None, Query()] = None,
):
    query = {"by": by, "division": caller.actor.narrow_division(division)}
    return await rpc.call(SERVICE, "coverage_breakdown", query=query, actor=caller.actor.to_wire())


@router.get("/alerts", response_model=Page[Unit], summary="Units that should establish an organization")
async def coverage_alerts(caller: Caller, rpc: Rpc, division: Annotated[DivisionPrefix | None, Query()] = None,
                          limit: Limit = 50, cursor: Cursor = None):
    return await rpc.call(SERVICE, "coverage_alerts", division=caller.actor.narrow_division(division), limit=limit,
                          cursor=cursor, actor=caller.actor.to_wire())


@router.post("/reconcile", response_model=Report, summary="Recount coverage from scratch and repair drift (admin)")
async def reconcile_coverage(admin: Admin, rpc: Rpc, repair: Annotated[QueryBool, Query(
        description="false: only report the drift")] = True):
    return await rpc.call(SERVICE, "reconcile_coverage", actor=admin.actor.to_wire(), repair=repair)
