from typing import Annotated

from fastapi import APIRouter, Query

from platform_contracts.organization import AssignInstructor, CreateInstructor, DivisionPrefix, Instructor, Unit

from . import API, ORGANIZATION as SERVICE
from ..deps import Caller, CommandId, Cursor, EntityId, Limit, Rpc
from ..schemas import Page

router = APIRouter(prefix=API, tags=["instructors"])


@router.post("/instructors", status_code=201, response_model=Instructor, summary="Register a party-building instructor")
async def create_instructor(command: CreateInstructor, caller: Caller, command_id: CommandId, rpc: Rpc):
    return await rpc.call(SERVICE, "create_instructor", command=command.model_dump(mode="json"),
                          actor=caller.actor.to_wire(), command_id=command_id)


@router.get("/instructors", response_model=Page[Instructor], summary="List instructors")
async def list_instructors(caller: Caller, rpc: Rpc, division: Annotated[DivisionPrefix | None, Query()] = None,
                           limit: Limit = 50, cursor: Cursor = None):
    filters = {"division": caller.actor.narrow_division(division)}
    return await rpc.call(SERVICE, "list_instructors", filters={k: v for k, v in filters.items() if v is not None},
                          limit=limit, cursor=cursor, actor=caller.actor.to_wire())


@router.get("/instructors/{instructor_id}", response_model=Instructor, summary="Get an instructor")
async def get_instructor(instructor_id: EntityId, caller: Caller, rpc: Rpc):
    return await rpc.call(SERVICE, "get_instructor", instructor_id=instructor_id, actor=caller.actor.to_wire())


@router.put("/units/{unit_id}/instructor", response_model=Unit, tags=["units"],
            summary="Assign an instructor to a unit (work coverage)")
async def assign_instructor(unit_id: EntityId, body: AssignInstructor, caller: Caller, command_id: CommandId, rpc: Rpc):
    return await rpc.call(SERVICE, "assign_instructor", unit_id=unit_id, instructor_id=body.instructor_id,
                          actor=caller.actor.to_wire(), command_id=command_id)


@router.delete("/units/{unit_id}/instructor", response_model=Unit, tags=["units"],
               summary="Remove a unit's instructor")
async def unassign_instructor(unit_id: EntityId, caller: Caller, command_id: CommandId, rpc: Rpc):
    return await rpc.call(SERVICE, "unassign_instructor", unit_id=unit_id, actor=caller.actor.to_wire(),
                          command_id=command_id)
