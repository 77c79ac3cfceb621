from typing import Annotated

from fastapi import APIRouter, Query

from platform_contracts.organization import (CoverageStatus, DivisionPrefix, Industry, RegisterUnit, RegisterUnits,
                                             Unit, UnitList, UnitStatus, UnitType, UpdateUnit)

from . import API, ORGANIZATION
from ..deps import Caller, CommandId, Cursor, EntityId, Limit, Rpc
from ..schemas import Page, changed_fields

router = APIRouter(prefix=f"{API}/units", tags=["units"])
SERVICE = ORGANIZATION


@router.post("", status_code=201, response_model=Unit, summary="Register a unit")
async def register_unit(command: RegisterUnit, caller: Caller, command_id: CommandId, rpc: Rpc):
    return await rpc.call(SERVICE, "register_unit", command=command.model_dump(mode="json"),
                          actor=caller.actor.to_wire(), command_id=command_id)


@router.post("/bulk", status_code=201, response_model=UnitList,
             summary="Register up to 1,000 units at once (a ledger import): all of them or none")
async def register_units(command: RegisterUnits, caller: Caller, command_id: CommandId, rpc: Rpc):
    return await rpc.call(SERVICE, "register_units", commands=[u.model_dump(mode="json") for u in command.units],
                          actor=caller.actor.to_wire(), command_id=command_id)


@router.get("", response_model=Page[Unit], summary="List units")
async def list_units(
    caller: Caller, rpc: Rpc,
    division: Annotated[DivisionPrefix | None, Query()] = None,
    industry: Annotated[Industry | None, Query()] = None,
    unit_type: Annotated[UnitType | None, Query(alias="type")] = None,
    coverage: Annotated[CoverageStatus | None, Query()] = None,
    status: Annotated[UnitStatus | None, Query(description="default: active (the units coverage counts)")] = None,
    limit: Limit = 50, cursor: Cursor = None,
):
    filters = {"division": caller.actor.narrow_division(division), "industry": industry,
               "type": unit_type, "coverage": coverage, "status": status}
    return await rpc.call(SERVICE, "list_units", filters={k: v for k, v in filters.items() if v is not None},
                          limit=limit, cursor=cursor, actor=caller.actor.to_wire())


@router.get("/{unit_id}", response_model=Unit, summary="Get a unit")
async def get_unit(unit_id: EntityId, caller: Caller, rpc: Rpc):
    return await rpc.call(SERVICE, "get_unit", unit_id=unit_id, actor=caller.actor.to_wire())


@router.patch("/{unit_id}", response_model=Unit, summary="Change a unit's registered details")
async def update_unit(unit_id: EntityId, changes: UpdateUnit, caller: Caller, command_id: CommandId, rpc: Rpc):
    return await rpc.call(SERVICE, "update_unit", unit_id=unit_id, changes=changed_fields(changes),
                          actor=caller.actor.to_wire(), command_id=command_id)


@router.post("/{unit_id}/deregister", response_model=Unit, summary="Deregister a unit")
async def deregister_unit(unit_id: EntityId, caller: Caller, command_id: CommandId, rpc: Rpc):
    return await rpc.call(SERVICE, "deregister_unit", unit_id=unit_id, actor=caller.actor.to_wire(),
                          command_id=command_id)
