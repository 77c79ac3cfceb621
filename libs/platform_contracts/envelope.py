"""The CloudEvents 1.0 envelope every integration event travels in (JSON format)."""

import uuid
from datetime import datetime, timezone
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


class CloudEvent(BaseModel):
    # Unknown extension attributes are kept, as CloudEvents requires of intermediaries.
    model_config = ConfigDict(extra="allow")

    specversion: str = Field("1.0", pattern=r"^1\.0$")
    id: str = Field(default_factory=lambda: uuid.uuid4().hex, min_length=1)
    source: str = Field(min_length=1, description="the service that emitted the event")
    type: str = Field(min_length=1, description="e.g. organization.created; also the routing key")
    time: datetime = Field(default_factory=utc_now)
    subject: str | None = Field(None, description="the id of the entity the event is about")
    datacontenttype: str = "application/json"
    data: dict[str, Any] = Field(default_factory=dict)
    division: str | None = Field(None, description="division code of the entity, for filtering")
    otherdivision: str | None = Field(None, description=(
        "a second division the event concerns, for filtering: the other side of a transfer"))
    correlationid: str | None = None
    causationid: str | None = None
    traceparent: str | None = Field(None, pattern=r"^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$", description=(
        "W3C trace context of the work that emitted the event (CloudEvents distributed-tracing extension)"))

    def to_json_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")
