"""Commands, queries and resources of the organization service (CONTRACT.md: units,
organizations, instructors, coverage). Field names and enumeration values are fixed."""

from datetime import date, datetime
from enum import StrEnum
from typing import Annotated

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, StrictBool, StringConstraints
from pydantic.json_schema import WithJsonSchema

from .codes import normalize_credit_code, normalize_division_code, normalize_division_prefix

# The JSON schemas state the form of each code, so generated clients refuse what the validators
# would; the check characters and the GB/T 2260 province codes are the validators' alone.
# Each code also names its standard as a `format`, which generated clients and the fuzz run
# (tests/test_openapi_fuzz.py) can fill with valid values.
CreditCode = Annotated[str, AfterValidator(normalize_credit_code), WithJsonSchema({
    "type": "string", "format": "gb32100-credit-code", "pattern": r"^[0-9A-HJ-NPQRTUWXY]{18}$",
    "minLength": 18, "maxLength": 18,
    "description": "unified social credit code (GB 32100-2015): 18 characters, the last a check character"})]
DivisionCode = Annotated[str, AfterValidator(normalize_division_code), WithJsonSchema({
    "type": "string", "format": "gb2260-division", "pattern": r"^[0-9]{6}([0-9]{3}){0,2}$",
    "minLength": 6, "maxLength": 12,
    "description": "division code (GB/T 2260): 6 digits (district), 9 (street) or 12 (community)"})]
DivisionPrefix = Annotated[str, AfterValidator(normalize_division_prefix), WithJsonSchema({
    "type": "string", "pattern": r"^([0-9]{2}|[0-9]{4}|[0-9]{6}|[0-9]{9}|[0-9]{12})$", "minLength": 2,
    "maxLength": 12, "description": "a division at any level: 2 (province), 4 (city), 6, 9 or 12 digits"})]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
# An industry's code in the platform's registry (GET /industries), e.g. `express` or a local
# name such as 快递; units name a registered one, so the coverage counters (one entry per
# industry in each division level's document) stay bounded.
# "|" and "*" are reserved by the coverage counter keys; "." and "$" cannot name a stored field.
Industry = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64, pattern=r"^[^|*.$]+$"),
    WithJsonSchema({"type": "string", "format": "registered-industry", "pattern": r"^[^|*.$]+$",
                    "minLength": 1, "maxLength": 64}),
]
INDUSTRY_DESCRIPTION = "the code of a registered industry (GET /industries); another is a 422 naming it"
# A GB/T 4754-2017 category at any depth: a section letter (A..T), or a division, group or class number.
Gb4754Code = Annotated[str, StringConstraints(strip_whitespace=True, pattern=r"^([A-T]|\d{2,4})$")]
MobilePhone = Annotated[str, StringConstraints(strip_whitespace=True, pattern=r"^1[3-9]\d{9}$")]
EntityId = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]


def _not_null(value):
    if value is None:
        raise ValueError("cannot be null: leave the field out to keep its value")
    return value


# A PATCH field that may be left out but not cleared: its type admits no null, and an explicit
# null is refused by name (422) instead of reaching the stored record.
Kept = BeforeValidator(_not_null)


def _no_duplicates(ids: list[str]) -> list[str]:
    if len(set(ids)) != len(ids):
        raise ValueError("a unit is listed more than once")
    return ids


class UnitType(StrEnum):
    enterprise = "enterprise"
    social_organization = "social_organization"
    industry_association = "industry_association"
    platform_company = "platform_company"
    building = "building"
    park = "park"
    business_district = "business_district"
    market = "market"


class CoverageStatus(StrEnum):
    organization = "organization"
    work = "work"
    none = "none"


class UnitStatus(StrEnum):
    active = "active"
    deregistered = "deregistered"


class OrganizationKind(StrEnum):
    industry_committee = "industry_committee"
    comprehensive_committee = "comprehensive_committee"
    committee = "committee"
    general_branch = "general_branch"
    branch = "branch"
    joint_branch = "joint_branch"
    group = "group"


class Formation(StrEnum):
    standalone = "standalone"
    joint = "joint"
    attached = "attached"
    anchor_led = "anchor_led"
    area = "area"
    industry = "industry"


class OrganizationStatus(StrEnum):
    active = "active"
    dissolved = "dissolved"


class Command(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _drop_null_defaults(schema: dict) -> None:
    # A Kept field's "default: null" would tell clients that null is accepted.
    for field in schema.get("properties", {}).values():
        if "default" in field and field["default"] is None and "anyOf" not in field:
            del field["default"]


class Changes(Command):
    """A PATCH body: the fields sent change, those left out keep their value."""
    model_config = ConfigDict(extra="forbid", json_schema_extra=_drop_null_defaults)


# ---- units -------------------------------------------------------------------------------

class RegisterUnit(Command):
    credit_code: CreditCode
    name: Name
    type: UnitType
    industry: Industry = Field(description=INDUSTRY_DESCRIPTION)
    division: DivisionCode
    employees: int = Field(0, ge=0, le=10_000_000)
    above_scale: StrictBool = Field(False, description="规上: above designated size")
    address: str | None = Field(None, max_length=500)


BULK_MAX_UNITS = 1000


class RegisterUnits(Command):
    """A ledger import (台账): registered all together or not at all."""
    units: list[RegisterUnit] = Field(min_length=1, max_length=BULK_MAX_UNITS)


class UpdateUnit(Changes):
    """Only the fields sent change; `address` may be cleared with null, the others not."""
    name: Annotated[Name, Kept] = None
    type: Annotated[UnitType, Kept] = None
    industry: Annotated[Industry, Kept] = Field(None, description=INDUSTRY_DESCRIPTION)
    division: Annotated[DivisionCode, Kept] = None
    employees: Annotated[int, Kept] = Field(None, ge=0, le=10_000_000)
    above_scale: Annotated[StrictBool, Kept] = None
    address: str | None = Field(None, max_length=500)


class Unit(BaseModel):
    id: str
    credit_code: str
    name: str
    type: UnitType
    industry: str
    division: str
    employees: int
    above_scale: bool = False
    address: str | None = None
    full_members: int = 0
    probationary_members: int = 0
    coverage: CoverageStatus
    organization_ids: list[str] = []
    standalone: bool = Field(False, description="has a standalone organization of its own")
    instructor_id: str | None = None
    should_establish: bool
    status: UnitStatus
    registered_at: datetime
    updated_at: datetime


class UnitList(BaseModel):
    items: list[Unit]


class UnitFilter(Command):
    division: DivisionPrefix | None = None
    industry: Industry | None = None
    type: UnitType | None = None
    coverage: CoverageStatus | None = None
    status: UnitStatus | None = UnitStatus.active


# ---- organizations -------------------------------------------------------------------------

class CreateOrganization(Command):
    name: Name
    kind: OrganizationKind
    formation: Formation
    division: DivisionCode
    parent_id: EntityId | None = None
    unit_ids: Annotated[list[EntityId], AfterValidator(_no_duplicates)] = Field(default_factory=list, max_length=500)
    secretary: Name | None = None
    established_on: date | None = None
    online: StrictBool = Field(False, description="云端支部: an online branch for members on the move")
    star_rating: int | None = Field(None, ge=1, le=5)


class UpdateOrganization(Changes):
    """Only the fields sent change; parent_id, secretary and star_rating may be cleared with null."""
    name: Annotated[Name, Kept] = None
    kind: Annotated[OrganizationKind, Kept] = None
    parent_id: EntityId | None = None
    secretary: Name | None = None
    online: Annotated[StrictBool, Kept] = None
    star_rating: int | None = Field(None, ge=1, le=5)


class AttachUnit(Command):
    unit_id: EntityId


class Organization(BaseModel):
    id: str
    name: str
    kind: OrganizationKind
    formation: Formation
    division: str
    parent_id: str | None = None
    unit_ids: list[str] = []
    former_unit_ids: list[str] = Field([], description="the units it covered when it was dissolved")
    secretary: str | None = None
    established_on: date
    online: bool = False
    star_rating: int | None = None
    status: OrganizationStatus
    dissolved_on: date | None = None
    created_at: datetime
    updated_at: datetime


class OrganizationFilter(Command):
    division: DivisionPrefix | None = None
    kind: OrganizationKind | None = None
    status: OrganizationStatus | None = OrganizationStatus.active


# ---- instructors ---------------------------------------------------------------------------

class CreateInstructor(Command):
    name: Name
    phone: MobilePhone
    division: DivisionCode


class AssignInstructor(Command):
    instructor_id: EntityId


class Instructor(BaseModel):
    id: str
    name: str
    phone: str = Field(description="masked, e.g. 138****5678")
    division: str
    unit_ids: list[str] = []
    created_at: datetime


class InstructorFilter(Command):
    division: DivisionPrefix | None = None


# ---- divisions -----------------------------------------------------------------------------

class RegisterDivision(Command):
    code: DivisionCode
    name: Name


class Division(BaseModel):
    code: str
    name: str
    level: str


# ---- industries ----------------------------------------------------------------------------

class RegisterIndustry(Command):
    code: Industry
    name: Name
    gb4754: Gb4754Code = Field(description="its GB/T 4754-2017 category: section letter or 2-4 digit code")


class RegisteredIndustry(BaseModel):
    """An industry of the registry (`Industry` is the type of its code)."""
    code: str
    name: str
    gb4754: str | None = Field(None, description="null for codes registered from units stored before the registry")


# ---- coverage ------------------------------------------------------------------------------

class CoverageQuery(Command):
    division: DivisionPrefix | None = None
    industry: Industry | None = None
    type: UnitType | None = None


class BreakdownQuery(Command):
    by: Annotated[str, StringConstraints(pattern=r"^(division|industry|type)$")]
    division: DivisionPrefix | None = None


class CoverageFigures(BaseModel):
    division: str | None = None
    industry: str | None = None
    type: str | None = None
    units: int
    organization_covered: int
    work_covered: int
    uncovered: int
    organization_rate: float
    work_rate: float
    standalone_units: int
    standalone_rate: float
    should_establish: int
    as_of: datetime | None = None

