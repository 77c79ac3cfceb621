"""Members (党员 and those on the way): thin calls to the member service, which enforces scope
and holds the personal data. ID numbers and phones only ever come back masked, except from the
audited reveal endpoint, a POST so the full number never sits in a URL or an access log; admins
read that audit (reveals and refused attempts) at /admin/audit-log."""

from typing import Annotated

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel

from platform_contracts.member import (AuditOutcome, AuditRecord, CheckIn, CheckInRecord, FindMember, Member,
                                       PromoteMember, RegisterMember, RevealIdNumber, Stage, UpdateMember)
from platform_contracts.organization import DivisionPrefix, EntityId as EntityIdValue

from . import API, MEMBER as SERVICE
from ..deps import Admin, CommandId, Cursor, EntityId, Limit, MemberCaller, Rpc
from ..schemas import Page, QueryBool, changed_fields

# The prefix stops at the API root: the audit log of reveals lives under /admin.
router = APIRouter(prefix=API, tags=["members"])

NO_STORE = {"Cache-Control": "no-store"}


class RevealedIdNumber(BaseModel):
    member_id: str
    id_number: str


@router.post("/members", status_code=201, response_model=Member, summary="Register a member")
async def register_member(command: RegisterMember, caller: MemberCaller, command_id: CommandId, rpc: Rpc):
    return await rpc.call(SERVICE, "register_member", command=command.model_dump(mode="json"),
                          actor=caller.actor.to_wire(), command_id=command_id)


@router.get("/members", response_model=Page[Member],
            summary="List members (narrowed to your scope; a filter outside it is 403)")
async def list_members(
    caller: MemberCaller, rpc: Rpc,
    organization_id: Annotated[EntityIdValue | None, Query()] = None,
    division: Annotated[DivisionPrefix | None, Query()] = None,
    mobile: Annotated[QueryBool | None, Query(description="流动党员 only (true) or none of them (false)")] = None,
    stage: Annotated[Stage | None, Query()] = None,
    limit: Limit = 50, cursor: Cursor = None,
):
    filters = {"organization_id": organization_id, "division": division, "mobile": mobile, "stage": stage}
    return await rpc.call(SERVICE, "list_members", filters={k: v for k, v in filters.items() if v is not None},
                          limit=limit, cursor=cursor, actor=caller.actor.to_wire())


@router.post("/members/lookup", response_model=Member,
             summary="Find a member by ID number (in the body, never a URL); 404 outside your scope",
             responses={404: {"description": "no member with this ID number within the caller's scope"}})
async def find_member(body: FindMember, caller: MemberCaller, rpc: Rpc):
    return await rpc.call(SERVICE, "find_member_by_id_number", id_number=body.id_number, actor=caller.actor.to_wire())


@router.get("/members/{member_id}", response_model=Member, summary="Get a member")
async def get_member(member_id: EntityId, caller: MemberCaller, rpc: Rpc):
    return await rpc.call(SERVICE, "get_member", member_id=member_id, actor=caller.actor.to_wire())


@router.patch("/members/{member_id}", response_model=Member,
              summary="Change a member's details (organization, unit and stage change by transfer and promotion)")
async def update_member(member_id: EntityId, changes: UpdateMember, caller: MemberCaller, command_id: CommandId,
                        rpc: Rpc):
    return await rpc.call(SERVICE, "update_member", member_id=member_id, changes=changed_fields(changes),
                          actor=caller.actor.to_wire(), command_id=command_id)


@router.post("/members/{member_id}/promote", response_model=Member,
             summary="Move a member one stage along the pipeline")
async def promote_member(member_id: EntityId, command: PromoteMember, caller: MemberCaller, command_id: CommandId,
                         rpc: Rpc):
    return await rpc.call(SERVICE, "promote_member", member_id=member_id,
                          command=command.model_dump(mode="json", exclude_none=True),
                          actor=caller.actor.to_wire(), command_id=command_id)


@router.post("/members/{member_id}/check-ins", status_code=201, response_model=CheckInRecord,
             summary="Record a member's report-in at a station or check-in point")
async def check_in(member_id: EntityId, body: CheckIn, caller: MemberCaller, command_id: CommandId, rpc: Rpc):
    return await rpc.call(SERVICE, "check_in", member_id=member_id, station_id=body.station_id,
                          actor=caller.actor.to_wire(), command_id=command_id)


@router.post("/members/{member_id}/id-number/reveal", response_model=RevealedIdNumber,
             summary="The full ID number (admin; operator of the member's division), with a reason; audited")
async def reveal_id_number(member_id: EntityId, body: RevealIdNumber, caller: MemberCaller, rpc: Rpc,
                           response: Response):
    response.headers.update(NO_STORE)
    return await rpc.call(SERVICE, "reveal_id_number", member_id=member_id, reason=body.reason,
                          actor=caller.actor.to_wire())


@router.get("/admin/audit-log", response_model=Page[AuditRecord], tags=["administration"],
            summary="Attempts to see a full ID number, revealed or refused, oldest first (admin)")
async def list_audit_log(
    admin: Admin, rpc: Rpc,
    member_id: Annotated[EntityIdValue | None, Query()] = None,
    outcome: Annotated[AuditOutcome | None, Query()] = None,
    limit: Limit = 50, cursor: Cursor = None,
):
    filters = {"member_id": member_id, "outcome": outcome}
    return await rpc.call(SERVICE, "list_audit_log", filters={k: v for k, v in filters.items() if v is not None},
                          limit=limit, cursor=cursor, actor=admin.actor.to_wire())
