"""Request and response models the gateway owns (the domain's are in platform_contracts)."""

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Generic, Literal, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictBool, StringConstraints

from platform_contracts.actors import ROLES
from platform_contracts.organization import Changes, CoverageFigures, Kept

from .problems import ApiProblem

T = TypeVar("T")

Username = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64,
                                            pattern=r"^[A-Za-z0-9_.@-]+$")]
Password = Annotated[str, StringConstraints(min_length=8, max_length=256)]
Scope = str | list[str] | None
# The roles an account may hold: every role but open311_client, which API keys hold (Open311),
# so that it is neither accepted nor offered for accounts.
AccountRole = StrEnum("AccountRole", [(role.name, role.value) for role in ROLES])


def _true_or_false(value):
    if isinstance(value, str) and value not in ("true", "false"):
        raise ValueError("must be true or false")
    return value


# A query's boolean: `true` or `false`, as the document says (pydantic alone also takes 1, yes, on).
QueryBool = Annotated[bool, BeforeValidator(_true_or_false)]


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = None


class TokenRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    username: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    password: Annotated[str, StringConstraints(min_length=1, max_length=256)]


class Token(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int


class CreateUser(BaseModel):
    model_config = ConfigDict(extra="forbid")
    username: Username
    password: Password
    role: AccountRole
    scope: Scope = Field(None, description="operator: a division prefix; secretary: organization ids; "
                                           "station_manager: station ids; worker: the member id; handler: "
                                           "department ids; admin: none")


class UpdateUser(Changes):
    """Only the fields sent change; `scope` may be null (an admin's is), the others not."""
    role: Annotated[AccountRole, Kept] = None
    scope: Scope = None
    active: Annotated[StrictBool, Kept] = None
    password: Annotated[Password, Kept] = None


class User(BaseModel):
    id: str
    username: str
    role: AccountRole
    scope: Scope = None
    active: bool
    created_at: datetime
    updated_at: datetime


class ItemList(BaseModel, Generic[T]):
    items: list[T]


class CoverageBreakdown(BaseModel):
    by: str
    division: str | None = None
    items: list[CoverageFigures]


class ReplayDeadLetters(BaseModel):
    model_config = ConfigDict(extra="forbid")
    message_ids: list[Annotated[str, StringConstraints(min_length=1, max_length=200)]] | None = Field(
        None, description="the dead letters to replay; omitted or null: all of them")


class Replayed(BaseModel):
    replayed: int


class Report(BaseModel):
    """A free-form report from a service (e.g. the coverage reconciliation's drift)."""
    model_config = ConfigDict(extra="allow")



def changed_fields(changes: BaseModel) -> dict:
    """Only the fields a PATCH sent. An explicit null clears a nullable field; the models
    refuse null (422) for fields that cannot be cleared (see platform_contracts Kept)."""
    fields = changes.model_dump(mode="json", exclude_unset=True)
    if not fields:
        raise ApiProblem.invalid(["body"], "name at least one field to change")
    return fields


class NotificationItem(BaseModel):
    id: str
    type: str
    title: str
    body: str
    subject: str | None = None
    created_at: datetime
    read: bool
