"""The event catalogue (CONTRACT.md "Events"): every type, its source, and the model of its
`data`. Publishers validate against these before an event enters the outbox; consumers
validate on receipt. Data models allow extra fields so that adding a field is not a break."""

from datetime import date, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from .calendar import CalendarYear
from .envelope import CloudEvent
from .member import Location, MaskedIdNumber, MaskedPhone
from .organization import CoverageFigures, Instructor, Organization, Unit
from .station import Season, Station, Visitor


class EventData(BaseModel):
    # A refusal never quotes the value: events carry personal data, masked or (by mistake) not.
    model_config = ConfigDict(extra="allow", hide_input_in_errors=True)


class UnitEvent(Unit):
    model_config = ConfigDict(extra="allow")


class UnitsImported(EventData):
    """Units of one district registered by a ledger import, one event per batch and district
    (an import of 230,000 units would otherwise be 230,000 `unit.registered`)."""
    import_id: str
    district: str
    count: int
    unit_ids: list[str]


class ImportProgress(EventData):
    """A ledger import's progress, for whoever started it (GET /imports/{id} has the same)."""
    id: str
    ledger: str
    status: str
    rows: int | None = None
    imported: int
    already_present: int
    rejected: int
    progress: float
    created_by: str


class OrganizationEvent(Organization):
    model_config = ConfigDict(extra="allow")


class UnitAttachment(EventData):
    organization_id: str
    unit_id: str


class InstructorAssignment(EventData):
    instructor_id: str
    unit_id: str


class InstructorEvent(Instructor):
    model_config = ConfigDict(extra="allow")


class CoverageScope(EventData):
    division: str | None
    industry: str | None = None
    type: str | None = None
    before: CoverageFigures
    after: CoverageFigures


class CoverageChanged(EventData):
    division: str
    before: CoverageFigures
    after: CoverageFigures
    scopes: list[CoverageScope] = []
    cause: str | None = None


class CoverageAlert(EventData):
    unit_id: str
    unit_name: str
    division: str
    full_members: int
    reason: str


class MaskedPersonalData(EventData):
    """Personal data as events may carry it: masked (the patterns refuse plaintext, and the
    refusal does not quote it)."""
    model_config = ConfigDict(extra="allow", hide_input_in_errors=True)

    name: str | None = None
    id_number: MaskedIdNumber | None = None
    phone: MaskedPhone | None = None


class MemberMobility(EventData):
    """A mobile member's (流动党员) whereabouts and online branch (云端支部): no personal
    identifiers (a location's description refuses anything like a phone or ID number)."""
    mobile: bool | None = None
    mobile_location: Location | None = None
    online_branch_id: str | None = None


class MemberEventData(MaskedPersonalData, MemberMobility):
    member_id: str
    organization_id: str
    unit_id: str | None = None
    division: str | None = None
    occupation: str | None = None


class MemberRegistered(MemberEventData):
    stage: str
    category: str | None = None  # "full" | "probationary" once admitted


class MemberUpdated(MaskedPersonalData, MemberMobility):
    # The member service sends every field of MemberEventData, stage and category; they are
    # not required yet because libs/tests/test_reliable_consumer.py publishes free-form data.
    member_id: str | None = None
    organization_id: str | None = None
    unit_id: str | None = None
    division: str | None = None
    stage: str | None = None
    category: str | None = None
    changed: list[str] = []


class MemberPromoted(MemberMobility):
    member_id: str
    organization_id: str
    unit_id: str | None = None
    from_stage: str
    to_stage: str
    category: str | None = None
    division: str | None = None
    on: date | None = None
    override_reason: str | None = None


class MemberCheckedIn(MemberMobility):
    check_in_id: str
    member_id: str
    station_id: str
    organization_id: str
    checked_in_at: datetime


class TransferEventData(EventData):
    """Both sides of a transfer, so each side's operators and secretaries can be told."""
    transfer_id: str
    member_id: str
    from_organization_id: str
    to_organization_id: str
    from_unit_id: str | None = None
    to_unit_id: str | None = None
    from_division: str | None = None
    to_division: str | None = None
    status: str | None = None
    letter_expires_on: date | None = None
    by: str | None = None
    note: str | None = None


class TransferCompleted(TransferEventData):
    category: str | None = None
    stage: str | None = None


class StationEvent(Station):
    """station.registered, station.updated (with the fields that `changed`), station.closed: the
    station as GET /stations/{id} gives it. `version` orders them: a consumer keeping a copy
    applies an event only over an older version."""
    model_config = ConfigDict(extra="allow")

    changed: list[str] = []


class SupplyCrossed(EventData):
    """station.supply_low (the quantity fell below low_threshold) and station.supply_restocked
    (back at or above it): once per crossing, with whom to tell (the manager, the division)."""
    station_id: str
    item: str
    quantity: int
    low_threshold: int
    unit: str | None = None
    division: str
    manager: str | None = None


class StationVisited(EventData):
    visit_id: str
    station_id: str
    visitor: Visitor
    member_id: str | None = None
    at: datetime
    division: str


class ActivityEventData(EventData):
    """An activity at a station; `starts_at` is what a reminder before it is timed by."""
    activity_id: str
    station_id: str
    division: str
    title: str
    season: Season | None = None
    starts_at: datetime
    ends_at: datetime
    capacity: int
    manager: str | None = None


class CancelledSignUp(EventData):
    sign_up_id: str
    member_id: str | None = None
    by: str


class ActivityCancelled(ActivityEventData):
    """station.activity_cancelled: every sign-up that was open, so each can be told."""
    reason: str
    sign_ups: list[CancelledSignUp] = []


class ActivityReminder(ActivityEventData):
    """station.activity_reminder: an activity starts within the reminder's lead time; the open
    sign-ups not reminded before, so each is told once."""
    sign_ups: list[CancelledSignUp] = []


class AppealEventData(EventData):
    """Every appeal.* event: where the appeal stands, and whom it concerns — the department (its
    handlers and supervisor), the handler, and the account that raised it (`raised_by`; none for
    an anonymous or an Open311 appeal) with the accounts of appeals merged into it (`also_raised_by`).
    Ids and usernames only: no title, text, contact details or location."""
    appeal_id: str
    category: str
    division: str
    status: str
    department: str | None = None
    supervisor: str | None = None
    handler: str | None = None
    due_at: datetime | None = None
    overdue: bool = False
    escalated_to: str | None = None
    raised_by: str | None = None
    also_raised_by: list[str] = []
    duplicate_of: str | None = None
    merged_raisers: list[str] = Field([], description="appeal.merged: who raised the duplicate merged into it")
    rating: int | None = None
    solved: bool | None = None
    version: int


class NotificationAudience(EventData):
    """Whom a notification is for: a user, or the people in a scope (operators over `division`,
    secretaries of one of `organization_ids`, the worker whose member id is `member_id`),
    narrowed to `role` when given. Ids only."""
    user_id: str | None = None
    username: str | None = None
    role: str | None = None
    division: str | None = None
    organization_ids: list[str] | None = None
    member_id: str | None = None
    department_ids: list[str] | None = None


class NotificationCreated(EventData):
    """A notification, as GET /notifications lists it (without `read`), and whom it is for. Its
    texts carry ids, never names, ID numbers or phones."""
    id: str
    type: str = Field(description="what it asks or tells, e.g. transfer.awaiting_approval")
    title: str
    body: str
    subject: str = Field(description="the id of the entity it is about, e.g. the transfer")
    created_at: datetime
    audience: NotificationAudience


# type -> (source service, data model). Types without a dedicated model take any object.
CATALOGUE: dict[str, tuple[str, type[BaseModel]]] = {
    "unit.registered": ("organization", UnitEvent),
    "unit.updated": ("organization", UnitEvent),
    "unit.deregistered": ("organization", UnitEvent),
    "unit.imported": ("organization", UnitsImported),
    "organization.created": ("organization", OrganizationEvent),
    "organization.updated": ("organization", OrganizationEvent),
    "organization.unit_attached": ("organization", UnitAttachment),
    "organization.unit_detached": ("organization", UnitAttachment),
    "organization.dissolved": ("organization", OrganizationEvent),
    "instructor.created": ("organization", InstructorEvent),
    "instructor.assigned": ("organization", InstructorAssignment),
    "instructor.unassigned": ("organization", InstructorAssignment),
    "coverage.changed": ("organization", CoverageChanged),
    "coverage.alert_raised": ("organization", CoverageAlert),
    "coverage.alert_cleared": ("organization", CoverageAlert),
    "member.registered": ("member", MemberRegistered),
    "member.updated": ("member", MemberUpdated),
    "member.promoted": ("member", MemberPromoted),
    "member.checked_in": ("member", MemberCheckedIn),
    "transfer.requested": ("member", TransferEventData),
    "transfer.approved": ("member", TransferEventData),
    "transfer.received": ("member", TransferEventData),
    "transfer.completed": ("member", TransferCompleted),
    "transfer.rejected": ("member", TransferEventData),
    "transfer.cancelled": ("member", TransferEventData),
    "transfer.expired": ("member", TransferEventData),
    "station.registered": ("service-station", StationEvent),
    "station.updated": ("service-station", StationEvent),
    "station.closed": ("service-station", StationEvent),
    "station.supply_low": ("service-station", SupplyCrossed),
    "station.supply_restocked": ("service-station", SupplyCrossed),
    "station.visited": ("service-station", StationVisited),
    "station.activity_scheduled": ("service-station", ActivityEventData),
    "station.activity_cancelled": ("service-station", ActivityCancelled),
    "station.activity_reminder": ("service-station", ActivityReminder),
    "calendar.year_loaded": ("service-station", CalendarYear),
    "appeal.submitted": ("appeal", AppealEventData),
    "appeal.accepted": ("appeal", AppealEventData),
    "appeal.assigned": ("appeal", AppealEventData),
    "appeal.resolved": ("appeal", AppealEventData),
    "appeal.rated": ("appeal", AppealEventData),
    "appeal.reopened": ("appeal", AppealEventData),
    "appeal.rejected": ("appeal", AppealEventData),
    "appeal.closed": ("appeal", AppealEventData),
    "appeal.overdue": ("appeal", AppealEventData),
    "appeal.escalated": ("appeal", AppealEventData),
    "appeal.merged": ("appeal", AppealEventData),
    "appeal.feedback_requested": ("appeal", AppealEventData),
    "notification.created": ("gateway", NotificationCreated),
    "import.progressed": ("gateway", ImportProgress),
    "import.finished": ("gateway", ImportProgress),
}

SOURCES = sorted({source for source, _ in CATALOGUE.values()})


def exchange_for(source: str) -> str:
    """The topic exchange a service publishes on; nameko's @event_handler binds to it."""
    return f"{source}.events"


class UnknownEventType(ValueError):
    pass


def validate_event(envelope: dict[str, Any] | CloudEvent) -> CloudEvent:
    """Validate the envelope and its data against the catalogue; raises ValueError."""
    event = envelope if isinstance(envelope, CloudEvent) else CloudEvent.model_validate(envelope)
    if event.type not in CATALOGUE:
        raise UnknownEventType(f"unknown event type {event.type!r}")
    source, model = CATALOGUE[event.type]
    if event.source != source:
        raise ValueError(f"{event.type} must come from {source}, not {event.source}")
    model.model_validate(event.data)
    return event


def data_of(event: CloudEvent, model: type[BaseModel]) -> Any:
    return model.model_validate(event.data)
