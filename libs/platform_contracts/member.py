"""Commands, queries and resources of the member service (CONTRACT.md: members, transfers).
Field names and enumeration values are fixed.

Resident identity numbers, GB 11643-1999: 17 digits (6 division, 8 birth date YYYYMMDD, 3
sequence) and a check character. They are personal data: resources and events carry them
masked (`MaskedIdNumber`), and only the member service's reveal RPC returns one in full."""

import re
from datetime import date, datetime
from enum import StrEnum
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictBool, StringConstraints, model_validator
from pydantic.json_schema import WithJsonSchema

from .codes import PROVINCE_CODES, is_ascii_digits
from .organization import Command, DivisionCode, DivisionPrefix, EntityId, MobilePhone, Name

ID_NUMBER_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
ID_NUMBER_CHECK = "10X98765432"  # indexed by the weighted sum mod 11


def id_number_check_character(first_17: str) -> str:
    return ID_NUMBER_CHECK[sum(int(c) * w for c, w in zip(first_17, ID_NUMBER_WEIGHTS)) % 11]


def normalize_id_number(value: str) -> str:
    """Return the number with an upper-case X, or raise ValueError saying what is wrong.
    The messages never repeat the number: they end up in logs and problem documents."""
    number = value.strip().upper()
    if len(number) != 18 or not is_ascii_digits(number[:17]) or not (is_ascii_digits(number[17]) or number[17] == "X"):
        raise ValueError("an ID number has 17 digits and a check character (a digit or X)")
    if number[:2] not in PROVINCE_CODES:
        raise ValueError("the first two digits of an ID number are a province code (GB/T 2260)")
    try:
        born = date(int(number[6:10]), int(number[10:12]), int(number[12:14]))
    except ValueError:
        raise ValueError("digits 7-14 of an ID number are a birth date, and this one does not exist")
    if not date(1900, 1, 1) <= born <= date.today():
        raise ValueError("the birth date in an ID number lies outside 1900 to today")
    if id_number_check_character(number[:17]) != number[17]:
        raise ValueError("check character does not match (GB 11643-1999)")
    return number


IdNumber = Annotated[str, AfterValidator(normalize_id_number), WithJsonSchema({
    "type": "string", "format": "gb11643-id-number", "pattern": r"^[0-9]{17}[0-9X]$",
    "minLength": 18, "maxLength": 18,
    "description": "resident identity number (GB 11643-1999): 17 digits and a check character (a digit or X)"})]
# What resources and events may carry: the last four characters only.
MaskedIdNumber = Annotated[str, StringConstraints(pattern=r"^\*{14}[0-9]{3}[0-9X]$")]
MaskedPhone = Annotated[str, StringConstraints(pattern=r"^[0-9]{3}\*+[0-9]{4}$")]
Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)]


class Stage(StrEnum):
    """发展党员: the development pipeline, in order."""
    applicant = "applicant"
    activist = "activist"
    candidate = "candidate"
    probationary = "probationary"
    full = "full"


class Category(StrEnum):
    full = "full"
    probationary = "probationary"


class Occupation(StrEnum):
    rider = "rider"
    courier = "courier"
    ride_hailing_driver = "ride_hailing_driver"
    truck_driver = "truck_driver"
    streamer = "streamer"
    other = "other"


class MemberStatus(StrEnum):
    active = "active"


class TransferStatus(StrEnum):
    requested = "requested"
    approved = "approved"
    received = "received"
    completed = "completed"
    rejected = "rejected"
    cancelled = "cancelled"
    expired = "expired"


def no_contact_numbers(value: str) -> str:
    """A place description is published with the member's events: it must not carry a phone or
    an ID number, so no run of 7 or more digits (a landline has 7 or 8), spaces and dashes aside."""
    if re.search(r"[0-9]{7}", re.sub(r"[\s-]", "", value)):
        raise ValueError("describes a place: no phone or ID number (no run of 7 or more digits)")
    return value


class Location(BaseModel):
    """Where a mobile member (流动党员) lives or works now."""
    model_config = ConfigDict(hide_input_in_errors=True)

    division: DivisionCode | None = None
    description: Annotated[str, StringConstraints(strip_whitespace=True, max_length=200),
                           AfterValidator(no_contact_numbers)] | None = None


# ---- members -------------------------------------------------------------------------------

class PersonalDataCommand(Command):
    # A validation error's text would otherwise quote the input, ID number and all, into logs.
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)


class RegisterMember(PersonalDataCommand):
    name: Name
    id_number: IdNumber
    phone: MobilePhone | None = None
    organization_id: EntityId
    unit_id: EntityId | None = Field(None, description="the unit the member works in")
    stage: Stage = Stage.applicant
    stage_on: date | None = Field(None, description="when the member reached `stage`; default today")
    joined_on: date | None = Field(
        None, description="admission as a probationary member (入党): required for `full` members, at least a year "
                          "before stage_on; a probationary member joined on stage_on")
    override_reason: Text | None = Field(
        None, description="operators and admins only: register a `full` member within a year of joined_on")
    occupation: Occupation = Occupation.other
    mobile: StrictBool = Field(False, description="流动党员: lives or works away from their organization")
    mobile_location: Location | None = None
    online_branch_id: EntityId | None = Field(None, description="云端支部 the mobile member belongs to")

    @model_validator(mode="after")
    def _joined_on_only_for_full_members(self):
        if self.joined_on is not None and self.stage != Stage.full:
            raise ValueError("joined_on is given for full members only; a probationary member joined on stage_on")
        return self


class UpdateMember(PersonalDataCommand):
    """Organization, unit and stage change only through transfers and promotions."""
    name: Name | None = None
    id_number: IdNumber | None = None
    phone: MobilePhone | None = None
    occupation: Occupation | None = None
    mobile: StrictBool | None = None
    mobile_location: Location | None = None
    online_branch_id: EntityId | None = None


class FindMember(PersonalDataCommand):
    id_number: IdNumber


class PromoteMember(Command):
    stage: Stage
    on: date | None = Field(None, description="the date of the step; default today")
    override_reason: Text | None = Field(
        None, description="operators and admins only: promote to full before the probationary year is over")


class RevealIdNumber(Command):
    reason: Text


class AuditOutcome(StrEnum):
    revealed = "revealed"
    refused = "refused"


class AuditRecord(BaseModel):
    """An attempt to see a full ID number (who, as what, when, which member, why, outcome)."""
    id: str
    action: str
    member_id: str
    by: str
    role: str
    reason: str
    # Records from before refusals were kept are all of reveals.
    outcome: AuditOutcome = AuditOutcome.revealed
    at: datetime


class AuditFilter(Command):
    member_id: EntityId | None = None
    outcome: AuditOutcome | None = None


class CheckIn(Command):
    station_id: EntityId


class StageStep(BaseModel):
    stage: Stage
    on: date
    by: str
    recorded_at: datetime
    override_reason: str | None = None


class LastCheckIn(BaseModel):
    station_id: str
    at: datetime


class Member(BaseModel):
    model_config = ConfigDict(hide_input_in_errors=True)  # a member record is personal data

    id: str
    name: str
    id_number: MaskedIdNumber
    phone: MaskedPhone | None = None
    category: Category | None = Field(None, description="full or probationary; none before admission")
    stage: Stage
    stage_history: list[StageStep]
    organization_id: str
    unit_id: str | None = None
    division: str = Field(description="the organization's division, kept for scoping")
    occupation: Occupation
    mobile: bool
    mobile_location: Location | None = None
    online_branch_id: str | None = None
    joined_on: date | None = None
    status: MemberStatus
    open_transfer_id: str | None = None
    last_check_in: LastCheckIn | None = None
    registered_at: datetime
    updated_at: datetime


class MemberFilter(Command):
    organization_id: EntityId | None = None
    division: DivisionPrefix | None = None
    mobile: StrictBool | None = None
    stage: Stage | None = None


class CheckInRecord(BaseModel):
    id: str
    member_id: str
    station_id: str
    organization_id: str
    checked_in_at: datetime
    by: str


# ---- transfers (组织关系转接) ---------------------------------------------------------------

class RequestTransfer(Command):
    member_id: EntityId
    to_organization_id: EntityId
    to_unit_id: EntityId | None = Field(None, description="the unit the member works in afterwards; none if omitted")
    reason: Text


class ApproveTransfer(Command):
    letter_valid_days: int | None = Field(
        None, ge=0, le=365, description="validity of the introduction letter; default TRANSFER_LETTER_VALID_DAYS")


class RejectTransfer(Command):
    reason: Text


class CancelTransfer(Command):
    reason: Text | None = None


class TransferStep(BaseModel):
    status: TransferStatus
    at: datetime
    by: str
    note: str | None = None


class Transfer(BaseModel):
    id: str
    member_id: str
    member_name: str
    from_organization_id: str
    to_organization_id: str
    from_unit_id: str | None = None
    to_unit_id: str | None = None
    from_division: str
    to_division: str
    reason: str
    status: TransferStatus
    letter_expires_on: date | None = Field(None, description="set when the sending side approves")
    requested_by: str
    history: list[TransferStep]
    created_at: datetime
    updated_at: datetime


class TransferFilter(Command):
    status: TransferStatus | None = None
    organization_id: EntityId | None = Field(None, description="either side of the transfer")
    division: DivisionPrefix | None = Field(None, description="either side's division has this prefix")
    member_id: EntityId | None = None
