"""Service stations (CONTRACT.md: stations): thin calls to the service-station service, which
decides who may do what on the station itself — operators by division, station managers their
own stations, workers search, read, record their visits and sign up. Anyone signed in may
search and read stations: where a warm station is and when it is open is public. The holiday
calendar's overrides (a year the package does not know yet) are loaded by admins here too."""

from datetime import date
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import AwareDatetime, BaseModel

from platform_contracts.actors import Role
from platform_contracts.calendar import CalendarYear
from platform_contracts.geo import CoordSys
from platform_contracts.organization import DivisionPrefix
from platform_contracts.station import (MAX_RADIUS_M, Activity, AdjustSupply, CancelActivity, RecordVisit,
                                        RegisterStation, ScheduleActivity, SetSupply, SignUp, SignUpRecord, Station,
                                        StationKind, StationStatus, Supply, UpdateStation, Utilisation,
                                        Visit)

from . import API, STATION as SERVICE
from ..auth import Principal
from ..deps import Admin, CommandId, Cursor, EntityId, Limit, Rpc, current_principal
from ..problems import ApiProblem
from ..schemas import Page, QueryBool, changed_fields

router = APIRouter(prefix=API, tags=["stations"])

# Every role: the service judges each station.
Anyone = Annotated[Principal, Depends(current_principal)]
Item = Annotated[str, Path(pattern=r"^[\w-]{1,40}$", description="the supply item, e.g. water or 矿泉水")]


class CalendarOverride(BaseModel):
    year: int
    holidays: list[date]
    workdays: list[date]


class CalendarCoverage(BaseModel):
    covered_from: date
    covered_until: date
    overrides: list[CalendarOverride]


# ---- stations ------------------------------------------------------------------------------

async def ensure_manager_account(request: Request, caller: Principal, username: str | None) -> None:
    """A station's `manager` is a person the platform knows: an active account (the gateway's),
    who is told when its supplies run low. Usually a station_manager scoped to the station (who
    may then run it); a street operator who looks after a station in person may be named too.
    Only those who may name a manager (admins, operators; the service refuses anyone else with
    403) are told, and an unknown and an inactive account answer alike."""
    if username is None or caller.actor.role not in (Role.admin, Role.operator):
        return
    account = await request.app.state.users.by_username(username)
    if account is None or not account.get("active", True):
        raise ApiProblem.invalid(["body", "manager"], "must be the username of an active account")


@router.post("/stations", status_code=201, response_model=Station,
             summary="Register a station (operators of its division, admins)")
async def register_station(request: Request, command: RegisterStation, caller: Anyone, command_id: CommandId,
                           rpc: Rpc):
    await ensure_manager_account(request, caller, command.manager)
    return await rpc.call(SERVICE, "register_station", command=command.model_dump(mode="json"),
                          actor=caller.actor.to_wire(), command_id=command_id)


@router.get("/stations", response_model=Page[Station],
            summary="Find stations: nearest first with `near` (and `distance_m`), open now or at a time, "
                    "with amenities")
async def list_stations(
    caller: Anyone, rpc: Rpc,
    near: Annotated[str | None, Query(max_length=64, description="LNG,LAT in coord_sys, e.g. 117.0009,36.6758")] = None,
    coord_sys: Annotated[CoordSys | None, Query(description="of `near`; default wgs84")] = None,
    radius_m: Annotated[int | None, Query(ge=1, le=MAX_RADIUS_M, description="with near; default 5000")] = None,
    open_now: Annotated[QueryBool | None, Query(description="only stations open now (true)")] = None,
    open_at: Annotated[AwareDatetime | None, Query(description="only stations open then (within 7 days)")] = None,
    amenity: Annotated[str | None, Query(max_length=200, description="comma-separated: water,charging")] = None,
    division: Annotated[DivisionPrefix | None, Query()] = None,
    kind: Annotated[StationKind | None, Query()] = None,
    status: Annotated[StationStatus | None, Query(description="default: active")] = None,
    limit: Limit = 50, cursor: Cursor = None,
):
    filters = {"near": near, "coord_sys": coord_sys, "radius_m": radius_m, "open_now": open_now,
               "open_at": open_at.isoformat() if open_at else None, "amenity": amenity, "division": division,
               "kind": kind, "status": status}
    return await rpc.call(SERVICE, "list_stations", filters={k: v for k, v in filters.items() if v is not None},
                          limit=limit, cursor=cursor, actor=caller.actor.to_wire())


@router.get("/stations/{station_id}", response_model=Station, summary="Get a station")
async def get_station(station_id: EntityId, caller: Anyone, rpc: Rpc):
    return await rpc.call(SERVICE, "get_station", station_id=station_id, actor=caller.actor.to_wire())


@router.patch("/stations/{station_id}", response_model=Station,
              summary="Change a station (its manager: all but kind, division and manager)")
async def update_station(request: Request, station_id: EntityId, changes: UpdateStation, caller: Anyone,
                         command_id: CommandId, rpc: Rpc):
    if "manager" in changes.model_fields_set:
        await ensure_manager_account(request, caller, changes.manager)
    return await rpc.call(SERVICE, "update_station", station_id=station_id, changes=changed_fields(changes),
                          actor=caller.actor.to_wire(), command_id=command_id)


@router.post("/stations/{station_id}/close", response_model=Station,
             summary="Close a station for good: out of searches at once, open activities cancelled")
async def close_station(station_id: EntityId, caller: Anyone, command_id: CommandId, rpc: Rpc):
    return await rpc.call(SERVICE, "close_station", station_id=station_id, actor=caller.actor.to_wire(),
                          command_id=command_id)


# ---- supplies ------------------------------------------------------------------------------

@router.put("/stations/{station_id}/supplies/{item}", response_model=Supply,
            summary="Set a supply's quantity, low threshold and unit")
async def set_supply(station_id: EntityId, item: Item, command: SetSupply, caller: Anyone, command_id: CommandId,
                     rpc: Rpc):
    return await rpc.call(SERVICE, "set_supply", station_id=station_id, item=item,
                          command=command.model_dump(mode="json"), actor=caller.actor.to_wire(),
                          command_id=command_id)


@router.post("/stations/{station_id}/supplies/{item}/adjust", response_model=Supply,
             summary="Add to or take from a supply (never below 0: 409, nothing changed)")
async def adjust_supply(station_id: EntityId, item: Item, command: AdjustSupply, caller: Anyone,
                        command_id: CommandId, rpc: Rpc):
    return await rpc.call(SERVICE, "adjust_supply", station_id=station_id, item=item,
                          command=command.model_dump(mode="json"), actor=caller.actor.to_wire(),
                          command_id=command_id)


# ---- visits and utilisation ----------------------------------------------------------------

@router.post("/stations/{station_id}/visits", status_code=201, response_model=Visit,
             summary="Count a visit (anonymous by default; a worker records their own)")
async def record_visit(station_id: EntityId, caller: Anyone, command_id: CommandId, rpc: Rpc,
                       command: RecordVisit | None = None):
    return await rpc.call(SERVICE, "record_visit", station_id=station_id,
                          command=command.model_dump(mode="json") if command else None,
                          actor=caller.actor.to_wire(), command_id=command_id)


@router.get("/stations/{station_id}/utilisation", response_model=Utilisation, response_model_by_alias=True,
            summary="Visits and check-ins per day and hour (Asia/Shanghai)")
async def get_utilisation(
    station_id: EntityId, caller: Anyone, rpc: Rpc,
    first: Annotated[date, Query(alias="from", description="first day")],
    last: Annotated[date, Query(alias="to", description="last day, included (at most 366 days on)")],
):
    return await rpc.call(SERVICE, "get_utilisation", station_id=station_id,
                          period={"from": first.isoformat(), "to": last.isoformat()}, actor=caller.actor.to_wire())


# ---- activities ----------------------------------------------------------------------------

@router.post("/stations/{station_id}/activities", status_code=201, response_model=Activity,
             summary="Schedule an activity at a station (四季暖新: spring jobs, summer cooling, ...)")
async def schedule_activity(station_id: EntityId, command: ScheduleActivity, caller: Anyone, command_id: CommandId,
                            rpc: Rpc):
    return await rpc.call(SERVICE, "schedule_activity", station_id=station_id,
                          command=command.model_dump(mode="json"), actor=caller.actor.to_wire(),
                          command_id=command_id)


@router.get("/stations/{station_id}/activities", response_model=Page[Activity], summary="A station's activities")
async def list_activities(station_id: EntityId, caller: Anyone, rpc: Rpc, limit: Limit = 50, cursor: Cursor = None):
    return await rpc.call(SERVICE, "list_activities", station_id=station_id, limit=limit, cursor=cursor,
                          actor=caller.actor.to_wire())


@router.get("/stations/{station_id}/activities/{activity_id}", response_model=Activity, summary="Get an activity")
async def get_activity(station_id: EntityId, activity_id: EntityId, caller: Anyone, rpc: Rpc):
    return await rpc.call(SERVICE, "get_activity", station_id=station_id, activity_id=activity_id,
                          actor=caller.actor.to_wire())


@router.post("/stations/{station_id}/activities/{activity_id}/cancel", response_model=Activity,
             summary="Cancel an activity; its sign-ups are told")
async def cancel_activity(station_id: EntityId, activity_id: EntityId, command: CancelActivity, caller: Anyone,
                          command_id: CommandId, rpc: Rpc):
    return await rpc.call(SERVICE, "cancel_activity", station_id=station_id, activity_id=activity_id,
                          command=command.model_dump(mode="json"), actor=caller.actor.to_wire(),
                          command_id=command_id)


@router.post("/stations/{station_id}/activities/{activity_id}/sign-ups", status_code=201,
             response_model=SignUpRecord, summary="Sign up for an activity (no more than its places)")
async def sign_up(station_id: EntityId, activity_id: EntityId, caller: Anyone, command_id: CommandId, rpc: Rpc,
                  command: SignUp | None = None):
    return await rpc.call(SERVICE, "sign_up", station_id=station_id, activity_id=activity_id,
                          command=command.model_dump(mode="json") if command else None,
                          actor=caller.actor.to_wire(), command_id=command_id)


@router.delete("/stations/{station_id}/activities/{activity_id}/sign-ups/{sign_up_id}",
               response_model=SignUpRecord, summary="Cancel a sign-up (its place is free again)")
async def cancel_sign_up(station_id: EntityId, activity_id: EntityId, sign_up_id: EntityId, caller: Anyone,
                         command_id: CommandId, rpc: Rpc):
    return await rpc.call(SERVICE, "cancel_sign_up", station_id=station_id, activity_id=activity_id,
                          sign_up_id=sign_up_id, actor=caller.actor.to_wire(), command_id=command_id)


# ---- the holiday calendar ------------------------------------------------------------------

@router.get("/calendar", response_model=CalendarCoverage, tags=["administration"],
            summary="The holiday calendar's coverage and the years admins loaded")
async def get_calendar(caller: Anyone, rpc: Rpc):
    return await rpc.call(SERVICE, "get_calendar", actor=caller.actor.to_wire())


@router.put("/calendar/{year}", response_model=CalendarOverride, tags=["administration"],
            summary="Load a year's State Council holiday schedule (admin): it replaces the package's year")
async def load_calendar_year(year: Annotated[int, Path(ge=2004, le=2100)], body: CalendarYear, admin: Admin,
                             command_id: CommandId, rpc: Rpc):
    if body.year != year:
        raise ApiProblem.invalid(["body", "year"], f"must be the year in the path, {year}")
    return await rpc.call(SERVICE, "load_calendar_year", calendar=body.model_dump(mode="json"),
                          actor=admin.actor.to_wire(), command_id=command_id)
