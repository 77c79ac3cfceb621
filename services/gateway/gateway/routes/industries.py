"""The industry registry: the industries units may name (CONTRACT.md: industries)."""

from fastapi import APIRouter

from platform_contracts.organization import RegisteredIndustry, RegisterIndustry

from . import API, ORGANIZATION
from ..deps import Admin, Caller, CommandId, Rpc
from ..problems import PROBLEM_MEDIA_TYPE
from ..schemas import ItemList

router = APIRouter(prefix=f"{API}/industries", tags=["industries"])


def _problems(described: dict[int, str]) -> dict:
    """Error responses for OpenAPI, each an RFC 9457 problem document."""
    return {status: {"description": text, "content": {PROBLEM_MEDIA_TYPE: {}}} for status, text in described.items()}


@router.get("", response_model=ItemList[RegisteredIndustry], summary="Registered industries (units name one)",
            responses=_problems({401: "no valid access token", 503: "the organization service did not answer"}))
async def list_industries(caller: Caller, rpc: Rpc):
    return await rpc.call(ORGANIZATION, "list_industries", actor=caller.actor.to_wire())


@router.post("", status_code=201, response_model=RegisteredIndustry,
             summary="Register an industry, or rename or reclassify one (admin)",
             responses=_problems({
                 401: "no valid access token", 403: "the caller is not an admin",
                 422: "a field is missing or invalid (`code`, `name` or `gb4754` is named), or the "
                      "Idempotency-Key was already used for a different request",
                 503: "the organization service did not answer"}))
async def register_industry(command: RegisterIndustry, admin: Admin, command_id: CommandId, rpc: Rpc):
    return await rpc.call(ORGANIZATION, "register_industry", command=command.model_dump(mode="json"),
                          actor=admin.actor.to_wire(), command_id=command_id)
