from typing import Annotated

from fastapi import APIRouter, Query

from platform_contracts.organization import (AttachUnit, CreateOrganization, DivisionPrefix, Organization,
                                             OrganizationKind, OrganizationStatus, UpdateOrganization)

from . import API, ORGANIZATION as SERVICE
from ..deps import Caller, CommandId, Cursor, EntityId, Limit, MemberCaller, Rpc
from ..schemas import Page, changed_fields

router = APIRouter(prefix=f"{API}/organizations", tags=["organizations"])


@router.post("", status_code=201, response_model=Organization, summary="Form an organization")
async def create_organization(command: CreateOrganization, caller: Caller, command_id: CommandId, rpc: Rpc):
    return await rpc.call(SERVICE, "create_organization", command=command.model_dump(mode="json"),
                          actor=caller.actor.to_wire(), command_id=command_id)


@router.get("", response_model=Page[Organization], summary="List organizations")
async def list_organizations(
    caller: Caller, rpc: Rpc,
    division: Annotated[DivisionPrefix | None, Query()] = None,
    kind: Annotated[OrganizationKind | None, Query()] = None,
    status: Annotated[OrganizationStatus | None, Query(description="default: active")] = None,
    limit: Limit = 50, cursor: Cursor = None,
):
    filters = {"division": caller.actor.narrow_division(division), "kind": kind, "status": status}
    return await rpc.call(SERVICE, "list_organizations", filters={k: v for k, v in filters.items() if v is not None},
                          limit=limit, cursor=cursor, actor=caller.actor.to_wire())


@router.get("/{organization_id}", response_model=Organization, summary="Get an organization")
async def get_organization(organization_id: EntityId, caller: MemberCaller, rpc: Rpc):
    """Admins and operators in its division; its secretary (the service judges the scope)."""
    return await rpc.call(SERVICE, "get_organization", organization_id=organization_id, actor=caller.actor.to_wire())


@router.patch("/{organization_id}", response_model=Organization, summary="Change an organization")
async def update_organization(organization_id: EntityId, changes: UpdateOrganization, caller: Caller,
                              command_id: CommandId, rpc: Rpc):
    return await rpc.call(SERVICE, "update_organization", organization_id=organization_id,
                          changes=changed_fields(changes), actor=caller.actor.to_wire(), command_id=command_id)


@router.post("/{organization_id}/units", response_model=Organization, summary="Attach a unit it covers")
async def attach_unit(organization_id: EntityId, body: AttachUnit, caller: Caller, command_id: CommandId, rpc: Rpc):
    return await rpc.call(SERVICE, "attach_unit", organization_id=organization_id, unit_id=body.unit_id,
                          actor=caller.actor.to_wire(), command_id=command_id)


@router.delete("/{organization_id}/units/{unit_id}", response_model=Organization, summary="Detach a unit")
async def detach_unit(organization_id: EntityId, unit_id: EntityId, caller: Caller, command_id: CommandId, rpc: Rpc):
    return await rpc.call(SERVICE, "detach_unit", organization_id=organization_id, unit_id=unit_id,
                          actor=caller.actor.to_wire(), command_id=command_id)


@router.post("/{organization_id}/dissolve", response_model=Organization, summary="Dissolve an organization")
async def dissolve_organization(organization_id: EntityId, caller: Caller, command_id: CommandId, rpc: Rpc):
    return await rpc.call(SERVICE, "dissolve_organization", organization_id=organization_id,
                          actor=caller.actor.to_wire(), command_id=command_id)
