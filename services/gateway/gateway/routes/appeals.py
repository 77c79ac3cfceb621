"""Appeals (CONTRACT.md: appeals, departments and routing): thin calls to the appeal service,
which decides who may do what on the appeal itself — admins everything, operators by division,
handlers the appeals routed to their departments, the person who raised an appeal theirs; anyone
signed in may submit one. The gateway adds what only it can: the submission guard (an admin's
blocklist and the rate limits per account, device and client address: appeal_guard.py), and
that a handler or a supervisor named in a request is an active account it knows.

`GET /appeals/nearby` is declared before `GET /appeals/{appeal_id}`, which would take "nearby"
for an id."""

from typing import Annotated

from fastapi import APIRouter, Depends, Header, Path, Query, Request
from pydantic import AwareDatetime

from platform_contracts.actors import Role
from platform_contracts.appeal import (MAX_DUPLICATE_RADIUS_M, AcceptAppeal, AddNote, Appeal, AppealCategory,
                                       AppealStatus, AssignAppeal, Category, CategorySettings, CloseAppeal,
                                       Department, MergeAppeal, RateAppeal, RegisterDepartment, RejectAppeal,
                                       ReopenAppeal, ResolveAppeal, Route, RoutingRule, SubmitAppeal)
from platform_contracts.geo import CoordSys
from platform_contracts.organization import DivisionPrefix

from . import API
from ..appeal_guard import BlockEntry, BlockRequest, appeal_guard, guard_submission
from ..auth import Principal
from ..deps import Admin, CommandId, Cursor, EntityId, Limit, Rpc, current_principal
from ..problems import ApiProblem
from ..schemas import ItemList, Page, QueryBool

SERVICE = "appeal"  # the nameko service that owns appeals, departments, routing and categories

router = APIRouter(prefix=API, tags=["appeals"])

# Every role: the service judges each appeal.
Anyone = Annotated[Principal, Depends(current_principal)]
DeviceId = Annotated[str | None, Header(alias="X-Device-Id", min_length=1, max_length=128, description=(
    "the submitting device (an app's installation id): submissions are rate-limited per device"))]
IdFilter = Annotated[str | None, Query(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
# Those who act on appeals and departments: the gateway tells them whether a username they name
# is an account (the service refuses anyone else, with 403, before that would matter).
STAFF = (Role.admin, Role.operator, Role.handler)


class SubmittedAppeal(Appeal):
    likely_duplicates: list[Appeal] = []


async def ensure_account(request: Request, caller: Principal, username: str | None, loc: list,
                         role: Role | None = None, department_id: str | None = None) -> None:
    """A username named in a request is an active account (of `role`, scoped to `department_id`,
    when given); 422 naming `loc` otherwise. Only staff are told: an unknown, an inactive and an
    unfit account answer alike."""
    if username is None or caller.actor.role not in STAFF:
        return
    account = await request.app.state.users.by_username(username)
    fit = account is not None and account.get("active", True)
    if fit and role is not None:
        fit = account.get("role") == role and (department_id is None or department_id in (account.get("scope") or ()))
    if not fit:
        what = "an active account" if role is None else f"an active {role} account" + (
            " of the appeal's department" if department_id else "")
        raise ApiProblem.invalid(loc, f"must be the username of {what}")


def wire(command) -> dict:
    return command.model_dump(mode="json")


# ---- appeals -------------------------------------------------------------------------------

@router.post("/appeals", status_code=201, response_model=SubmittedAppeal,
             summary="Submit an appeal (anyone signed in; rate-limited per account, device and client address); "
                     "open appeals of its category nearby come back as `likely_duplicates`",
             responses={403: {"description": "the caller's role or scope does not allow this, or the account, "
                                             "device or client address is on the appeal blocklist"},
                        429: {"description": "too many requests, or more appeals than APPEAL_SUBMISSIONS_PER_ACCOUNT, "
                                             "_PER_DEVICE or _PER_ADDRESS allow: wait Retry-After seconds"}})
async def submit_appeal(request: Request, command: SubmitAppeal, caller: Anyone, command_id: CommandId, rpc: Rpc,
                        device_id: DeviceId = None):
    if device_id is not None:
        command = command.model_copy(update={"device_id": device_id})
    await guard_submission(request, caller.actor.username, command.device_id)
    return await rpc.call(SERVICE, "submit_appeal", command=wire(command), actor=caller.actor.to_wire(),
                          command_id=command_id)


@router.get("/appeals", response_model=Page[Appeal],
            summary="List appeals in the caller's scope (operators: their division; handlers: their departments; "
                    "others: those they raised)")
async def list_appeals(
    caller: Anyone, rpc: Rpc,
    status: Annotated[AppealStatus | None, Query()] = None,
    category: Annotated[AppealCategory | None, Query()] = None,
    division: Annotated[DivisionPrefix | None, Query()] = None,
    overdue: Annotated[QueryBool | None, Query(description="only appeals past their deadline (true), or not")] = None,
    department: IdFilter = None,
    mine: Annotated[QueryBool | None, Query(description="only appeals I raised (true)")] = None,
    submitted_after: Annotated[AwareDatetime | None, Query()] = None,
    submitted_before: Annotated[AwareDatetime | None, Query()] = None,
    limit: Limit = 50, cursor: Cursor = None,
):
    filters = {"status": status, "category": category, "division": division, "overdue": overdue,
               "department": department, "mine": mine,
               "submitted_after": submitted_after.isoformat() if submitted_after else None,
               "submitted_before": submitted_before.isoformat() if submitted_before else None}
    return await rpc.call(SERVICE, "list_appeals", filters={k: v for k, v in filters.items() if v is not None},
                          limit=limit, cursor=cursor, actor=caller.actor.to_wire())


@router.get("/appeals/nearby", response_model=Page[Appeal],
            summary="Open appeals near a point, nearest first with `distance_m` (FixMyStreet's nearby reports): "
                    "is it raised already?")
async def nearby_appeals(
    caller: Anyone, rpc: Rpc,
    near: Annotated[str, Query(min_length=1, max_length=64, description="LNG,LAT in coord_sys, e.g. 117.0009,36.6758")],
    coord_sys: Annotated[CoordSys | None, Query(description="of `near`; default wgs84")] = None,
    category: Annotated[AppealCategory | None, Query()] = None,
    radius_m: Annotated[int | None, Query(ge=1, le=MAX_DUPLICATE_RADIUS_M, description="default 250")] = None,
    days: Annotated[int | None, Query(ge=1, le=365, description="submitted within this many days; default 30")] = None,
    limit: Annotated[int, Query(ge=1, le=100, description="page size")] = 20,
):
    query = {"near": near, "coord_sys": coord_sys, "category": category, "radius_m": radius_m, "days": days,
             "limit": limit}
    return await rpc.call(SERVICE, "nearby_appeals", query={k: v for k, v in query.items() if v is not None},
                          actor=caller.actor.to_wire())


@router.get("/appeals/{appeal_id}", response_model=Appeal, summary="Get an appeal")
async def get_appeal(appeal_id: EntityId, caller: Anyone, rpc: Rpc):
    return await rpc.call(SERVICE, "get_appeal", appeal_id=appeal_id, actor=caller.actor.to_wire())


async def act(rpc, method: str, appeal_id: str, command, caller: Principal, command_id) -> dict:
    return await rpc.call(SERVICE, method, appeal_id=appeal_id, command=wire(command), actor=caller.actor.to_wire(),
                          command_id=command_id)


@router.post("/appeals/{appeal_id}/accept", response_model=Appeal,
             summary="Accept a submitted appeal (受理): its deadline starts (`due_at`, the category's working days)")
async def accept_appeal(appeal_id: EntityId, caller: Anyone, command_id: CommandId, rpc: Rpc,
                        command: AcceptAppeal | None = None):
    return await act(rpc, "accept_appeal", appeal_id, command or AcceptAppeal(), caller, command_id)


@router.post("/appeals/{appeal_id}/assign", response_model=Appeal,
             summary="Assign an accepted appeal to a handler of its department, or route it to another department")
async def assign_appeal(request: Request, appeal_id: EntityId, command: AssignAppeal, caller: Anyone,
                        command_id: CommandId, rpc: Rpc):
    if command.handler is not None and caller.actor.role in STAFF:
        # The service judges the caller on the appeal first (403/404): only then is the handler checked.
        department = command.department_id or (await rpc.call(
            SERVICE, "get_appeal", appeal_id=appeal_id, actor=caller.actor.to_wire())).get("department")
        await ensure_account(request, caller, command.handler, ["body", "handler"], Role.handler, department)
    return await act(rpc, "assign_appeal", appeal_id, command, caller, command_id)


@router.post("/appeals/{appeal_id}/resolve", response_model=Appeal,
             summary="Resolve an appeal: the person who raised it (and those of appeals merged into it) are told")
async def resolve_appeal(appeal_id: EntityId, command: ResolveAppeal, caller: Anyone, command_id: CommandId, rpc: Rpc):
    return await act(rpc, "resolve_appeal", appeal_id, command, caller, command_id)


@router.post("/appeals/{appeal_id}/rate", response_model=Appeal,
             summary="Rate a resolved appeal (the person who raised it): not solved, or a low rating, reopens it")
async def rate_appeal(appeal_id: EntityId, command: RateAppeal, caller: Anyone, command_id: CommandId, rpc: Rpc):
    return await act(rpc, "rate_appeal", appeal_id, command, caller, command_id)


@router.post("/appeals/{appeal_id}/reopen", response_model=Appeal, summary="Reopen a resolved appeal")
async def reopen_appeal(appeal_id: EntityId, command: ReopenAppeal, caller: Anyone, command_id: CommandId, rpc: Rpc):
    return await act(rpc, "reopen_appeal", appeal_id, command, caller, command_id)


@router.post("/appeals/{appeal_id}/reject", response_model=Appeal,
             summary="Reject an appeal that is not taken up, saying why (public)")
async def reject_appeal(appeal_id: EntityId, command: RejectAppeal, caller: Anyone, command_id: CommandId, rpc: Rpc):
    return await act(rpc, "reject_appeal", appeal_id, command, caller, command_id)


@router.post("/appeals/{appeal_id}/close", response_model=Appeal, summary="Close a resolved appeal")
async def close_appeal(appeal_id: EntityId, caller: Anyone, command_id: CommandId, rpc: Rpc,
                       command: CloseAppeal | None = None):
    return await act(rpc, "close_appeal", appeal_id, command or CloseAppeal(), caller, command_id)


@router.post("/appeals/{appeal_id}/merge", response_model=Appeal,
             summary="Merge a duplicate into the appeal it repeats (`into`): closed with `duplicate_of`; whoever "
                     "raised it is told when that one is resolved")
async def merge_appeal(appeal_id: EntityId, command: MergeAppeal, caller: Anyone, command_id: CommandId, rpc: Rpc):
    return await act(rpc, "merge_appeal", appeal_id, command, caller, command_id)


@router.post("/appeals/{appeal_id}/notes", status_code=201, response_model=Appeal,
             summary="Add a note to an appeal: internal (staff only) or public (also the person who raised it)")
async def add_note(appeal_id: EntityId, command: AddNote, caller: Anyone, command_id: CommandId, rpc: Rpc):
    return await act(rpc, "add_note", appeal_id, command, caller, command_id)


# ---- departments, routing, categories --------------------------------------------------------

@router.post("/departments", status_code=201, response_model=Department, tags=["departments"],
             summary="Register a department that takes appeals (operators of its division, admins)")
async def register_department(request: Request, command: RegisterDepartment, caller: Anyone, command_id: CommandId,
                              rpc: Rpc):
    await ensure_account(request, caller, command.supervisor, ["body", "supervisor"])
    return await rpc.call(SERVICE, "register_department", command=wire(command), actor=caller.actor.to_wire(),
                          command_id=command_id)


@router.get("/departments", response_model=Page[Department], tags=["departments"], summary="List departments")
async def list_departments(caller: Anyone, rpc: Rpc, division: Annotated[DivisionPrefix | None, Query()] = None,
                           limit: Limit = 50, cursor: Cursor = None):
    return await rpc.call(SERVICE, "list_departments", division=division, limit=limit, cursor=cursor,
                          actor=caller.actor.to_wire())


@router.get("/departments/{department_id}", response_model=Department, tags=["departments"],
            summary="Get a department")
async def get_department(department_id: EntityId, caller: Anyone, rpc: Rpc):
    return await rpc.call(SERVICE, "get_department", department_id=department_id, actor=caller.actor.to_wire())


@router.put("/appeal-routing", response_model=Route, tags=["departments"],
            summary="Route a category (null: every one) in a division prefix (null: everywhere) to a department")
async def set_route(rule: RoutingRule, caller: Anyone, command_id: CommandId, rpc: Rpc):
    return await rpc.call(SERVICE, "set_route", rule=wire(rule), actor=caller.actor.to_wire(), command_id=command_id)


@router.get("/appeal-routing", response_model=ItemList[Route], tags=["departments"], summary="The routing table")
async def list_routes(caller: Anyone, rpc: Rpc):
    return await rpc.call(SERVICE, "list_routes", actor=caller.actor.to_wire())


@router.put("/appeal-categories/{category}", response_model=Category, tags=["departments"],
            summary="Set a category's deadline in working days and whether anonymous appeals are allowed")
async def set_category(category: Annotated[AppealCategory, Path()], settings: CategorySettings, caller: Anyone,
                       command_id: CommandId, rpc: Rpc):
    return await rpc.call(SERVICE, "set_category", category=category.value, settings=wire(settings),
                          actor=caller.actor.to_wire(), command_id=command_id)


@router.get("/appeal-categories", response_model=ItemList[Category], tags=["departments"],
            summary="Every category's settings")
async def list_categories(caller: Anyone, rpc: Rpc):
    return await rpc.call(SERVICE, "list_categories", actor=caller.actor.to_wire())


# ---- the blocklist (the gateway's own) --------------------------------------------------------

@router.post("/appeal-blocklist", status_code=201, response_model=BlockEntry, tags=["administration"],
             summary="Block appeals from an account, a device or a client address (admin)",
             responses={409: {"description": "the account, device or address is on the blocklist already"}})
async def block_submitter(request: Request, body: BlockRequest, admin: Admin):
    return await appeal_guard(request).block(body, admin.actor.username)


@router.get("/appeal-blocklist", response_model=Page[BlockEntry], tags=["administration"],
            summary="The appeal blocklist, newest first (admin; devices and addresses masked)")
async def list_blocklist(request: Request, admin: Admin, limit: Limit = 50, cursor: Cursor = None):
    items, next_cursor = await appeal_guard(request).entries(limit, cursor)
    return {"items": items, "next_cursor": next_cursor}


@router.delete("/appeal-blocklist/{entry_id}", response_model=BlockEntry, tags=["administration"],
               summary="Take an entry off the appeal blocklist (admin)")
async def unblock_submitter(request: Request, entry_id: EntityId, admin: Admin):
    removed = await appeal_guard(request).unblock(entry_id)
    if removed is None:
        raise ApiProblem.of(404, f"blocklist entry {entry_id} does not exist")
    return removed
