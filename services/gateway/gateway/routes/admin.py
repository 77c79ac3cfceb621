import asyncio
import functools
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request

from platform_contracts.organization import Division, RegisterDivision
from service_kit import registry, topology

from . import API, ORGANIZATION
from ..deps import Admin, Caller, CommandId, Rpc
from ..problems import ApiProblem
from ..schemas import ItemList, Replayed, ReplayDeadLetters, Report

router = APIRouter(prefix=API, tags=["administration"])

GATEWAY = "gateway"


@functools.cache
def known_services() -> tuple[str, ...]:
    return tuple(entry.name for entry in registry.nameko_services()) + (GATEWAY,)


def service_name(service: Annotated[str, Query(
        pattern=r"^[a-z][a-z0-9_-]{0,63}$",
        description="the nameko service to ask, or `gateway` for the gateway's own")] = ORGANIZATION) -> str:
    """A service of services/registry.toml: a name nobody answers to would wait out the RPC timeout."""
    if service not in known_services():
        raise ApiProblem.invalid(["query", "service"], f"not a service; one of {', '.join(known_services())}")
    return service


ServiceName = Annotated[str, Depends(service_name)]


@router.get("/divisions", response_model=ItemList[Division], tags=["divisions"], summary="Known divisions")
async def list_divisions(caller: Caller, rpc: Rpc):
    return await rpc.call(ORGANIZATION, "list_divisions", actor=caller.actor.to_wire())


@router.post("/divisions", status_code=201, response_model=Division, tags=["divisions"],
             summary="Register a division and its name (admin)")
async def register_division(command: RegisterDivision, admin: Admin, command_id: CommandId, rpc: Rpc):
    return await rpc.call(ORGANIZATION, "register_division", command=command.model_dump(mode="json"),
                          actor=admin.actor.to_wire(), command_id=command_id)


@router.get("/admin/dead-letters", response_model=ItemList[Report],
            summary="Events a service (or the gateway) gave up on (admin)")
async def list_dead_letters(admin: Admin, rpc: Rpc, request: Request, service: ServiceName,
                            limit: Annotated[int, Query(ge=1, le=500)] = 50):
    if service == GATEWAY:  # the gateway's own: invalid events it consumed
        return {"items": await asyncio.to_thread(topology.list_dead_letters, amqp_uri(request), GATEWAY, limit)}
    return await rpc.call(service, "list_dead_letters", limit=limit, actor=admin.actor.to_wire())


@router.post("/admin/dead-letters/replay", response_model=Replayed,
             summary="Send dead letters back to their queues (admin)")
async def replay_dead_letters(admin: Admin, rpc: Rpc, request: Request, service: ServiceName,
                              body: ReplayDeadLetters | None = None):
    message_ids = body.message_ids if body else None
    if service == GATEWAY:
        return {"replayed": await asyncio.to_thread(topology.replay_dead_letters, amqp_uri(request), GATEWAY,
                                                    message_ids)}
    return await rpc.call(service, "replay_dead_letters", message_ids=message_ids, actor=admin.actor.to_wire())


def amqp_uri(request: Request) -> str:
    return request.app.state.settings.amqp_uri
