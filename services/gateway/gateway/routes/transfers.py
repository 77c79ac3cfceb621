"""Transfers of organizational relationship (组织关系转接): thin calls to the member service,
which enforces who acts at each step (the sending side approves, the receiving side receives,
the member or the receiving side reports in) and answers 409 to a wrong-state action."""

from typing import Annotated

from fastapi import APIRouter, Query

from platform_contracts.member import (ApproveTransfer, CancelTransfer, RejectTransfer, RequestTransfer, Transfer,
                                       TransferStatus)
from platform_contracts.organization import DivisionPrefix, EntityId as EntityIdValue

from . import API, MEMBER as SERVICE
from ..deps import CommandId, Cursor, EntityId, Limit, MemberCaller, Rpc
from ..schemas import Page

router = APIRouter(prefix=f"{API}/transfers", tags=["transfers"])


@router.post("", status_code=201, response_model=Transfer, summary="Request a transfer")
async def request_transfer(command: RequestTransfer, caller: MemberCaller, command_id: CommandId, rpc: Rpc):
    return await rpc.call(SERVICE, "request_transfer", command=command.model_dump(mode="json"),
                          actor=caller.actor.to_wire(), command_id=command_id)


@router.get("", response_model=Page[Transfer],
            summary="List transfers (either side, narrowed to your scope; a filter outside it is 403)")
async def list_transfers(
    caller: MemberCaller, rpc: Rpc,
    status: Annotated[TransferStatus | None, Query()] = None,
    organization_id: Annotated[EntityIdValue | None, Query(description="either side of the transfer")] = None,
    member_id: Annotated[EntityIdValue | None, Query()] = None,
    division: Annotated[DivisionPrefix | None, Query(description="either side's division")] = None,
    limit: Limit = 50, cursor: Cursor = None,
):
    filters = {"status": status, "organization_id": organization_id, "member_id": member_id, "division": division}
    return await rpc.call(SERVICE, "list_transfers", filters={k: v for k, v in filters.items() if v is not None},
                          limit=limit, cursor=cursor, actor=caller.actor.to_wire())


@router.get("/{transfer_id}", response_model=Transfer, summary="Get a transfer")
async def get_transfer(transfer_id: EntityId, caller: MemberCaller, rpc: Rpc):
    return await rpc.call(SERVICE, "get_transfer", transfer_id=transfer_id, actor=caller.actor.to_wire())


@router.post("/{transfer_id}/approve", response_model=Transfer,
             summary="The sending side approves and issues the introduction letter")
async def approve_transfer(transfer_id: EntityId, caller: MemberCaller, command_id: CommandId, rpc: Rpc,
                           command: ApproveTransfer | None = None):
    body = (command or ApproveTransfer()).model_dump(mode="json", exclude_none=True)
    return await rpc.call(SERVICE, "approve_transfer", transfer_id=transfer_id, command=body,
                          actor=caller.actor.to_wire(), command_id=command_id)


@router.post("/{transfer_id}/receive", response_model=Transfer, summary="The receiving side accepts the letter")
async def receive_transfer(transfer_id: EntityId, caller: MemberCaller, command_id: CommandId, rpc: Rpc):
    return await rpc.call(SERVICE, "receive_transfer", transfer_id=transfer_id, actor=caller.actor.to_wire(),
                          command_id=command_id)


@router.post("/{transfer_id}/report-in", response_model=Transfer,
             summary="The member reports in to the receiving organization: the transfer completes")
async def report_in(transfer_id: EntityId, caller: MemberCaller, command_id: CommandId, rpc: Rpc):
    return await rpc.call(SERVICE, "report_in", transfer_id=transfer_id, actor=caller.actor.to_wire(),
                          command_id=command_id)


@router.post("/{transfer_id}/reject", response_model=Transfer, summary="Either side rejects, with a reason")
async def reject_transfer(transfer_id: EntityId, command: RejectTransfer, caller: MemberCaller,
                          command_id: CommandId, rpc: Rpc):
    return await rpc.call(SERVICE, "reject_transfer", transfer_id=transfer_id,
                          command=command.model_dump(mode="json"), actor=caller.actor.to_wire(), command_id=command_id)


@router.post("/{transfer_id}/cancel", response_model=Transfer,
             summary="The requester, the member or an admin withdraws the request")
async def cancel_transfer(transfer_id: EntityId, caller: MemberCaller, command_id: CommandId, rpc: Rpc,
                          command: CancelTransfer | None = None):
    body = (command or CancelTransfer()).model_dump(mode="json", exclude_none=True)
    return await rpc.call(SERVICE, "cancel_transfer", transfer_id=transfer_id, command=body,
                          actor=caller.actor.to_wire(), command_id=command_id)
