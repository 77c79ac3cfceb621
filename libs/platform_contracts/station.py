"""Commands, queries and resources of the service-station service (CONTRACT.md: stations).
Field names and enumeration values are fixed.

What these models check is the form of a value; what it means is the service's to check: a
station's `division` must lie in a district registered on the platform, and `opening_hours`
must parse as OpenStreetMap opening hours (both refused with a 422 naming the field, by the
service-station service, which owns the parser and asks the organization service about
divisions). Locations are given in WGS-84, GCJ-02 or BD-09 (`geo.Location`) and kept in WGS-84."""

from datetime import date, datetime
from enum import StrEnum
from typing import Annotated

from pydantic import (AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, StrictBool, StringConstraints,
                      field_validator, model_validator)

from .geo import CoordSys, Location
from .organization import Changes, Command, DivisionCode, DivisionPrefix, EntityId, Kept, Name

# The widest `near` search (metres); service_kit.nearby.MAX_RADIUS_M is the same bound.
MAX_RADIUS_M = 50_000
DEFAULT_RADIUS_M = 5_000
# How far ahead `open_at` may ask: each station keeps its open intervals for today and the
# seven days after it (Asia/Shanghai), refreshed daily and on every change.
OPEN_INTERVAL_DAYS = 8


class StationKind(StrEnum):
    warm_station = "warm_station"  # 暖新驿站
    service_center = "service_center"  # 党群服务中心
    friendly_community = "friendly_community"  # 友好社区
    friendly_building = "friendly_building"  # 友好楼宇
    brothers_home = "brothers_home"  # 小哥之家
    check_in_point = "check_in_point"  # 党员报到点


class Amenity(StrEnum):
    water = "water"
    charging = "charging"
    battery_swap = "battery_swap"
    microwave = "microwave"
    rest = "rest"
    toilet = "toilet"
    first_aid = "first_aid"
    legal_aid = "legal_aid"
    heating = "heating"
    cooling = "cooling"
    wifi = "wifi"


class StationStatus(StrEnum):
    active = "active"
    suspended = "suspended"  # out of service for a while (renovation): no check-ins, not found by searches
    closed = "closed"  # for good, by POST /stations/{id}/close


class Visitor(StrEnum):
    anonymous = "anonymous"
    worker = "worker"
    member = "member"


class Season(StrEnum):
    """四季暖新: the seasonal activities held at stations."""
    spring_jobs = "spring_jobs"
    summer_cooling = "summer_cooling"
    autumn_school_aid = "autumn_school_aid"
    winter_warmth = "winter_warmth"


class ActivityStatus(StrEnum):
    scheduled = "scheduled"
    cancelled = "cancelled"


class SignUpStatus(StrEnum):
    active = "active"
    cancelled = "cancelled"


def _not_closed(status: StationStatus) -> StationStatus:
    if status == StationStatus.closed:
        raise ValueError("a station is closed with POST /stations/{id}/close, not by its status")
    return status


def _no_duplicate_amenities(amenities: list[Amenity]) -> list[Amenity]:
    if len(set(amenities)) != len(amenities):
        raise ValueError("an amenity is listed more than once")
    return amenities


Username = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64,
                                            pattern=r"^[A-Za-z0-9_.@-]+$")]
OpeningHours = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=1000), Field(
    description="OpenStreetMap opening_hours syntax, e.g. `Mo-Fr 08:00-20:00; Sa,Su 10:00-18:00; PH off` or `24/7`, "
                "evaluated in Asia/Shanghai with the State Council's holidays and adjusted working days; "
                "invalid syntax is a 422 naming opening_hours with the parser's message",
    examples=["Mo-Fr 08:00-20:00; Sa,Su 10:00-18:00; PH off"])]
Address = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)]
Amenities = Annotated[list[Amenity], AfterValidator(_no_duplicate_amenities), Field(max_length=len(Amenity))]
SettableStatus = Annotated[StationStatus, AfterValidator(_not_closed), Field(
    description="active or suspended; a station is closed for good with POST /stations/{id}/close")]
Capacity = Annotated[int, Field(ge=0, le=100_000, description="how many people it can host at once")]
# A supply item names a field of the stored station: word characters (any script) and dashes.
SupplyItem = Annotated[str, StringConstraints(pattern=r"^[\w-]{1,40}$"), Field(
    description="the item's name: 1 to 40 letters, digits, _ or -, e.g. water or 矿泉水", examples=["water"])]
SupplyUnit = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=20)]
Quantity = Annotated[int, Field(ge=0, le=1_000_000_000)]
Reason = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)]
Description = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000)]


# ---- stations ------------------------------------------------------------------------------

class RegisterStation(Command):
    kind: StationKind
    name: Name
    division: DivisionCode = Field(description="a division in a district registered on the platform")
    address: Address
    location: Location
    amenities: Amenities = Field(default_factory=list)
    capacity: Capacity = 0
    manager: Username | None = Field(None, description="the username of the station_manager who runs it (专人管理)")
    opening_hours: OpeningHours
    status: SettableStatus = StationStatus.active


class UpdateStation(Changes):
    """Only the fields sent change; `manager` may be cleared with null, the others not. A
    station manager may change everything but `kind`, `division` and `manager`."""
    kind: Annotated[StationKind, Kept] = None
    name: Annotated[Name, Kept] = None
    division: Annotated[DivisionCode, Kept] = None
    address: Annotated[Address, Kept] = None
    location: Annotated[Location, Kept] = None
    amenities: Annotated[Amenities, Kept] = None
    capacity: Annotated[Capacity, Kept] = None
    manager: Username | None = None
    opening_hours: Annotated[OpeningHours, Kept] = None
    status: Annotated[SettableStatus, Kept] = None


class Point(BaseModel):
    lng: float
    lat: float


class Supply(BaseModel):
    item: str
    quantity: int
    low_threshold: int
    unit: str | None = None
    low: bool = Field(description="quantity is below low_threshold")
    updated_at: datetime


class Station(BaseModel):
    id: str
    name: str
    kind: StationKind
    division: str
    address: str
    location: Point = Field(description="WGS-84")
    location_gcj02: Point = Field(description="GCJ-02, as Amap/Gaode and Tencent maps show it")
    opening_hours: str
    open_now: bool = Field(description="open at the time of the answer, holidays and adjusted working days included")
    amenities: list[Amenity]
    manager: str | None = None
    capacity: int
    supplies: list[Supply] = []
    status: StationStatus
    distance_m: float | None = Field(None, description="metres from `near`, in near queries")
    version: int = Field(description="increases with every change of the station")
    registered_at: datetime
    updated_at: datetime
    closed_at: datetime | None = None


def _amenity_list(value):
    """`water,charging` (a query parameter) or a list, as a list of amenities."""
    if isinstance(value, str):
        value = [part.strip() for part in value.split(",")]
        if not all(value):
            raise ValueError("a comma-separated list of amenities, e.g. water,charging")
    return value


class StationFilter(Command):
    near: Annotated[str, StringConstraints(strip_whitespace=True, max_length=64)] | None = Field(
        None, description="LNG,LAT: sort by distance from this point (in coord_sys) and give distance_m",
        examples=["117.0009,36.6758"])
    coord_sys: CoordSys = Field(CoordSys.wgs84, description="the coordinate system of `near`")
    radius_m: int | None = Field(None, ge=1, le=MAX_RADIUS_M,
                                 description=f"with near: how far to look (default {DEFAULT_RADIUS_M} m)")
    open_now: StrictBool | None = Field(None, description="only stations open now (true)")
    open_at: AwareDatetime | None = Field(
        None, description=f"only stations open at this time, within the next {OPEN_INTERVAL_DAYS - 1} days")
    amenity: list[Amenity] | None = Field(None, description="comma-separated: stations that have every one of them")
    division: DivisionPrefix | None = None
    kind: StationKind | None = None
    status: StationStatus = Field(StationStatus.active, description="default: active (what riders may use)")

    _amenities = field_validator("amenity", mode="before")(_amenity_list)


# ---- supplies ------------------------------------------------------------------------------

class SetSupply(Command):
    quantity: Quantity
    low_threshold: Quantity = Field(description="below this, the station is low on the item (station.supply_low)")
    unit: SupplyUnit | None = Field(None, description="e.g. bottles, boxes")


class AdjustSupply(Command):
    delta: int = Field(ge=-1_000_000_000, le=1_000_000_000, description="added (positive) or used (negative); not 0")
    reason: Reason

    @field_validator("delta")
    @classmethod
    def _not_zero(cls, delta: int) -> int:
        if delta == 0:
            raise ValueError("must not be 0")
        return delta


# ---- visits and utilisation ----------------------------------------------------------------

class RecordVisit(Command):
    visitor: Visitor = Visitor.anonymous
    member_id: EntityId | None = Field(None, description="the member, when visitor is member")

    @model_validator(mode="after")
    def _member_id_for_members_only(self):
        if (self.visitor == Visitor.member) != (self.member_id is not None):
            raise ValueError("member_id is given when, and only when, visitor is member")
        return self


class Visit(BaseModel):
    id: str
    station_id: str
    visitor: Visitor
    member_id: str | None = None
    at: datetime
    by: str


class UtilisationQuery(Command):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    from_: date = Field(alias="from", description="first day (Asia/Shanghai)")
    to: date = Field(description="last day, included; at most 366 days after `from`")

    @model_validator(mode="after")
    def _ordered(self):
        if self.to < self.from_:
            raise ValueError("`to` is before `from`")
        if (self.to - self.from_).days > 366:
            raise ValueError("at most 366 days at a time")
        return self


class UtilisationDay(BaseModel):
    day: date
    total: int = Field(description="visits and check-ins")
    visits: dict[str, int] = Field(description="visits by visitor kind")
    check_ins: int = Field(description="members' check-ins (POST /members/{id}/check-ins)")
    hours: list[int] = Field(description="visits and check-ins per hour of the day (Asia/Shanghai), 0 to 23")


class Utilisation(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    station_id: str
    from_: date = Field(alias="from")
    to: date
    timezone: str = "Asia/Shanghai"
    total: int
    days: list[UtilisationDay] = Field(description="days with any visit or check-in")


# ---- activities ----------------------------------------------------------------------------

class ScheduleActivity(Command):
    title: Name
    season: Season | None = Field(None, description="四季暖新: which seasonal activity it is, if one")
    starts_at: AwareDatetime
    ends_at: AwareDatetime
    capacity: int = Field(ge=1, le=100_000, description="places")
    description: Description

    @model_validator(mode="after")
    def _ends_after_it_starts(self):
        if self.ends_at <= self.starts_at:
            raise ValueError("ends_at must be after starts_at")
        return self


class Activity(BaseModel):
    id: str
    station_id: str
    division: str
    title: str
    season: Season | None = None
    starts_at: datetime
    ends_at: datetime
    capacity: int
    signed_up: int
    places_left: int
    description: str
    status: ActivityStatus
    created_by: str
    created_at: datetime
    cancelled_at: datetime | None = None
    cancel_reason: str | None = None


class CancelActivity(Command):
    reason: Reason


class SignUp(Command):
    member_id: EntityId | None = Field(
        None, description="the member signing up: a worker's own (the default for a worker); "
                          "a station's manager or an operator may sign up anyone, or a walk-in with none")


class SignUpRecord(BaseModel):
    id: str
    activity_id: str
    station_id: str
    member_id: str | None = None
    by: str
    status: SignUpStatus
    signed_up_at: datetime
    cancelled_at: datetime | None = None
