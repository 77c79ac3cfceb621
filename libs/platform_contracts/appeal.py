"""Commands, queries and resources of the appeal service (CONTRACT.md: appeals, departments and
routing). Field names, statuses and categories are fixed.

An appeal (诉求) is raised by a worker, for an enterprise (its unit), or anonymously where its
category allows it. On submission it is routed by category and division to a department; the
department accepts it (受理, which starts its deadline in working days), assigns it to a handler,
resolves it; the person who raised it rates it, and a "not solved" or a low rating reopens it.

    submitted ──accept──▶ accepted ──assign──▶ assigned ──resolve──▶ resolved ──close──▶ closed
        │                    │  ▲                  │                    │
        └──reject──▶ rejected◀──┘  └──reopen / a low rating─────────────┘
                    (merge into another appeal: closed, with duplicate_of)

What these models check is the form of a value; who may do what, and which transitions are
legal, are the appeal service's to decide (403 and 409 naming the field)."""

from datetime import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import (AfterValidator, AnyHttpUrl, AwareDatetime, BaseModel, Field, StrictBool, StringConstraints,
                      model_validator)

from .geo import CoordSys, Location
from .organization import Command, DivisionCode, DivisionPrefix, EntityId, MobilePhone, Name
from .station import Point

# How far around a new appeal's location open appeals of its category are offered as likely
# duplicates (metres), and how far back (days); both overridable per query.
DEFAULT_DUPLICATE_RADIUS_M = 250
MAX_DUPLICATE_RADIUS_M = 5_000
DEFAULT_DUPLICATE_WINDOW_DAYS = 30
MAX_MEDIA = 10


class AppealCategory(StrEnum):
    rights = "rights"  # 权益保障
    labour_protection = "labour_protection"  # 劳动保护
    legal = "legal"  # 法律援助
    housing = "housing"  # 住房
    insurance = "insurance"  # 社会保险
    hazard = "hazard"  # 安全隐患 (riders as "mobile sentinels")
    enterprise_difficulty = "enterprise_difficulty"  # 企业难题
    suggestion = "suggestion"  # 建言献策
    other = "other"


class AppealStatus(StrEnum):
    submitted = "submitted"
    accepted = "accepted"
    assigned = "assigned"
    resolved = "resolved"
    closed = "closed"
    rejected = "rejected"


OPEN_STATUSES = (AppealStatus.submitted, AppealStatus.accepted, AppealStatus.assigned)


class SubmitterKind(StrEnum):
    worker = "worker"
    enterprise = "enterprise"
    anonymous = "anonymous"


class NoteVisibility(StrEnum):
    internal = "internal"  # staff only: handlers, their supervisors, operators, admins
    public = "public"  # also the person who raised it, and Open311's status_notes


def _storable(moment: datetime) -> datetime:
    """A time the database can store and compare: between 1970 and 9000 (at the edges of years
    1 and 9999 the conversion to UTC that BSON needs overflows, and no appeal is that old)."""
    if not 1970 <= moment.year <= 9000:
        raise ValueError("must be a time between 1970 and 9000")
    return moment


# A time in a filter (times earlier than any appeal, or absurdly far ahead, are refused by name).
FilterTime = Annotated[AwareDatetime, AfterValidator(_storable)]
Title = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
AppealText = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=4000)]
NoteText = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000)]
Username = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]
Address = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)]


# ---- submitting ----------------------------------------------------------------------------

class Contact(Command):
    """How to reach the person who raised it: kept encrypted, shown masked, never published."""
    name: Name | None = None
    phone: MobilePhone | None = None


class Submitter(Command):
    kind: SubmitterKind
    unit_id: EntityId | None = Field(None, description="kind enterprise: the unit (enterprise) it is raised for")
    contact: Contact | None = Field(None, description="none for an anonymous appeal")

    @model_validator(mode="after")
    def _fits_kind(self):
        if self.kind == SubmitterKind.enterprise and self.unit_id is None:
            raise ValueError("an enterprise's appeal names its unit_id")
        if self.kind != SubmitterKind.enterprise and self.unit_id is not None:
            raise ValueError("unit_id is given for an enterprise's appeal only")
        if self.kind == SubmitterKind.anonymous and self.contact is not None:
            raise ValueError("an anonymous appeal carries no contact details")
        return self


class SubmitAppeal(Command):
    category: AppealCategory
    title: Title
    description: AppealText = Field(description="up to 4,000 characters")
    division: DivisionCode = Field(description="where it arose: a division in a registered district")
    location: Location | None = None
    address: Address | None = None
    media: list[AnyHttpUrl] = Field(default_factory=list, max_length=MAX_MEDIA,
                                    description="links to photos or video")
    submitter: Submitter = Field(default_factory=lambda: Submitter(kind=SubmitterKind.worker))
    public: StrictBool = Field(True, description="false: its text, address and media are not shown on Open311")
    device_id: Annotated[str, StringConstraints(max_length=128)] | None = Field(
        None, description="the submitting device (Open311 device_id; rate limits)")


# ---- acting on an appeal -------------------------------------------------------------------

class WithNote(Command):
    note: NoteText | None = None


class AcceptAppeal(WithNote):
    department_id: EntityId | None = Field(
        None, description="the department that takes it; default the one it was routed to")


class AssignAppeal(WithNote):
    handler: Username | None = Field(None, description="the handler (username) in the department who acts on it")
    department_id: EntityId | None = Field(None, description="route it to another department instead")

    @model_validator(mode="after")
    def _names_someone(self):
        if self.handler is None and self.department_id is None:
            raise ValueError("name a handler, a department_id, or both")
        return self


class ResolveAppeal(Command):
    resolution: NoteText = Field(description="what was done: public, the person who raised it is told")


class RejectAppeal(Command):
    reason: NoteText = Field(description="why it is not taken up: public")


class RateAppeal(Command):
    rating: int = Field(ge=1, le=5, description="1 (very dissatisfied) to 5 (very satisfied)")
    solved: StrictBool
    comment: NoteText | None = None


class ReopenAppeal(Command):
    reason: NoteText


class CloseAppeal(WithNote):
    pass


class MergeAppeal(Command):
    into: EntityId = Field(description="the appeal this one duplicates")
    note: NoteText | None = None


class AddNote(Command):
    text: NoteText
    visibility: NoteVisibility = NoteVisibility.internal


# ---- reading -------------------------------------------------------------------------------

class AppealFilter(Command):
    status: AppealStatus | None = None
    category: AppealCategory | None = None
    division: DivisionPrefix | None = None
    department: EntityId | None = None
    overdue: StrictBool | None = None
    mine: StrictBool | None = Field(None, description="only appeals I raised")
    submitted_after: FilterTime | None = None
    submitted_before: FilterTime | None = None


class NearbyQuery(Command):
    near: Annotated[str, StringConstraints(strip_whitespace=True, max_length=64)] = Field(
        description="LNG,LAT in coord_sys", examples=["117.0009,36.6758"])
    coord_sys: CoordSys = CoordSys.wgs84
    category: AppealCategory | None = None
    radius_m: int = Field(DEFAULT_DUPLICATE_RADIUS_M, ge=1, le=MAX_DUPLICATE_RADIUS_M)
    days: int = Field(DEFAULT_DUPLICATE_WINDOW_DAYS, ge=1, le=365, description="submitted within this many days")
    limit: int = Field(20, ge=1, le=100)


class PublicAppealFilter(Command):
    """Open311's GET requests: the public view (no contact details, no internal notes)."""
    ids: list[EntityId] | None = Field(None, max_length=200)
    category: list[AppealCategory] | None = None
    open: StrictBool | None = Field(None, description="true: submitted, accepted or assigned; false: the others")
    division: DivisionPrefix | None = None
    start: FilterTime | None = None
    end: FilterTime | None = None
    limit: int = Field(1000, ge=1, le=1000)


class HistoryEntry(BaseModel):
    at: datetime
    action: str = Field(description="submitted, accepted, assigned, note, resolved, rated, reopened, rejected, "
                                    "closed, merged, overdue, escalated")
    actor: str
    status: AppealStatus
    note: str | None = None
    visibility: NoteVisibility = NoteVisibility.public
    department: str | None = None
    handler: str | None = None


class Satisfaction(BaseModel):
    rating: int
    solved: bool
    comment: str | None = None
    rated_at: datetime


class MaskedContact(BaseModel):
    name: str | None = Field(None, description="masked: the family name only")
    phone: str | None = Field(None, description="masked: 138****5678")


class SubmitterView(BaseModel):
    kind: SubmitterKind
    unit_id: str | None = None
    member_id: str | None = None
    contact: MaskedContact | None = None


class Appeal(BaseModel):
    """An appeal as its caller may see it: in full to the staff who handle it (internal notes,
    masked contact details); without internal notes to the person who raised it; and to anyone
    else (nearby reports) without contact details, account or internal notes, and with no
    description, address or media when it was raised as not public."""
    id: str
    category: AppealCategory
    title: str
    description: str | None = None
    division: str
    location: Point | None = Field(None, description="WGS-84")
    location_gcj02: Point | None = None
    address: str | None = None
    media: list[str] = []
    submitter: SubmitterView
    raised_by: str | None = Field(None, description="the account that raised it (to those who may see it)")
    public: bool
    status: AppealStatus
    department: str | None = Field(None, description="the id of the department it is routed to")
    department_name: str | None = None
    handler: str | None = None
    due_at: datetime | None = Field(None, description="set on acceptance: its category's working days on")
    overdue: bool
    escalated_to: str | None = Field(None, description="the division it was escalated to when overdue")
    satisfaction: Satisfaction | None = None
    duplicate_of: str | None = None
    duplicates: list[str] = Field(default_factory=list, description="appeals merged into this one")
    history: list[HistoryEntry] = []
    distance_m: float | None = Field(None, description="metres from `near` (nearby queries)")
    version: int
    submitted_at: datetime
    updated_at: datetime
    resolved_at: datetime | None = None
    closed_at: datetime | None = None


# ---- departments, routing, categories --------------------------------------------------------

class RegisterDepartment(Command):
    name: Name
    division: DivisionCode = Field(description="the level it works at: a district (6 digits) or a street (9)")
    supervisor: Username | None = Field(None, description="who is told when its appeals are overdue")
    kind: Annotated[str, StringConstraints(strip_whitespace=True, max_length=64)] | None = Field(
        None, description="e.g. labour_security, housing, market_regulation, transport, trade_union")


class Department(BaseModel):
    id: str
    name: str
    division: str
    supervisor: str | None = None
    kind: str | None = None
    created_at: datetime


class RoutingRule(Command):
    category: AppealCategory | None = Field(None, description="null: every category (a default)")
    division: DivisionPrefix | None = Field(None, description="a division prefix; null: everywhere (the default)")
    department_id: EntityId


class Route(BaseModel):
    category: AppealCategory | None = None
    division: str | None = None
    department_id: str
    updated_at: datetime


class CategorySettings(Command):
    sla_working_days: int = Field(ge=1, le=120, description="working days from acceptance to the deadline")
    anonymous_allowed: StrictBool


class Category(BaseModel):
    category: AppealCategory
    sla_working_days: int
    anonymous_allowed: bool
    updated_at: datetime | None = None


class PublicAppeal(BaseModel):
    """An appeal as anyone may see it (Open311): no contact details, no account, no internal
    notes; an appeal raised as not public shows no description, address or media."""
    id: str
    category: AppealCategory
    title: str
    description: str | None = None
    division: str
    location: Point | None = None
    address: str | None = None
    media: list[str] = []
    status: AppealStatus
    status_notes: str | None = Field(None, description="the latest public note (a resolution, a rejection)")
    department_name: str | None = None
    due_at: datetime | None = None
    submitted_at: datetime
    updated_at: datetime
