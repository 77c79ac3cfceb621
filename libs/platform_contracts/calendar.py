"""The working-day calendar's override: one year of the State Council's holiday schedule, loaded
by an admin when it is announced and before a release of the calendar package knows it
(service_kit.china_calendar). The gateway validates the body with it and the service stores it."""

from datetime import date

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator


class CalendarYear(BaseModel):
    """A whole year: it replaces whatever the package says of that year."""

    model_config = ConfigDict(extra="forbid")

    year: int = Field(ge=2004, le=2100, description="the year the schedule is for")
    holidays: list[date] = Field(
        description="every day off of the year's public holidays, each festival's weekend days and days off in "
                    "lieu included (Spring Festival 2026: 2026-02-15 to 2026-02-23, nine dates)")
    workdays: list[date] = Field(
        default_factory=list,
        description="the Saturdays and Sundays worked in exchange (调休上班), e.g. 2026-02-14 and 2026-02-28")

    # Field validators, so a refusal names its field (holidays or workdays) in the 422.
    @field_validator("holidays", "workdays")
    @classmethod
    def _in_year_once(cls, days: list[date], info: ValidationInfo) -> list[date]:
        year = info.data.get("year")
        outside = [d for d in days if year is not None and d.year != year]
        if outside:
            raise ValueError(f"{outside[0].isoformat()} is not in {year}")
        if len(set(days)) != len(days):
            raise ValueError("a date is listed more than once")
        if info.field_name == "workdays":
            weekdays = [d for d in days if d.weekday() < 5]
            if weekdays:
                raise ValueError(f"{weekdays[0].isoformat()} is a {weekdays[0].strftime('%A')}: only a Saturday "
                                 f"or Sunday is worked in exchange")
            both = sorted(set(info.data.get("holidays") or ()) & set(days))
            if both:
                raise ValueError(f"{both[0].isoformat()} is also listed as a holiday")
        return sorted(days)

    def as_override(self) -> dict:
        """The form ChinaCalendar(overrides={year: ...}) takes."""
        return {"holidays": list(self.holidays), "workdays": list(self.workdays)}
