"""China's working-day calendar: public holidays and adjusted working days (调休), as the State
Council announces them each year. Pure: no database, no messaging.

The data is `chinesecalendar`'s (the State Council's notices, 2004 onwards, one package release
per announcement). Each year's notice comes out in November or December, often after a release
of the package can reach production, so admins load a year the package does not know yet as an
override (`{year: {"holidays": [dates], "workdays": [dates]}}`, kept by the service in its
database); an override year replaces the package's data for that year whole.

A day outside the data is `CalendarDataMissing`, never a guess: the package itself raises
NotImplementedError ("no available data for year …") for a year outside
[min(holidays).year, max(holidays).year], and a guessed calendar would silently open stations in
the middle of Spring Festival or start an appeal's deadline clock on a holiday. Callers report it
loudly (a metric and an alert) and keep what they had.

- `holiday`: a day off of a public holiday, every day of it (Spring Festival 2026 is
  15–23 February, nine days, its weekend days and the days off in lieu included);
- `adjusted_workday`: a Saturday or Sunday worked in exchange (2026-02-14, 2026-02-28);
- `workday` / `weekend`: an ordinary Monday–Friday / Saturday–Sunday.

Times are China's (Asia/Shanghai keeps no daylight saving)."""

from collections.abc import Iterable, Mapping
from datetime import date, datetime, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

import chinese_calendar

ZONE = ZoneInfo("Asia/Shanghai")


class CalendarDataMissing(Exception):
    """A date beyond the calendar's data (the package's and the admins' overrides): the State
    Council has not announced that year, or nobody has loaded it yet."""

    def __init__(self, day: date, covered: tuple[date, date] | None = None):
        self.day = day
        self.covered = covered
        span = f" (data covers {covered[0].isoformat()} to {covered[1].isoformat()})" if covered else ""
        super().__init__(f"no holiday calendar for {day.isoformat()}{span}: load that year's State Council "
                         f"schedule as an override")


class DayKind(StrEnum):
    workday = "workday"
    weekend = "weekend"
    holiday = "holiday"
    adjusted_workday = "adjusted_workday"  # a Saturday or Sunday worked in lieu (调休上班)


def _package_years() -> dict[int, tuple[frozenset[date], frozenset[date]]]:
    """The package's data by year: (holidays, workdays). Its own range check is
    min(holidays).year..max(holidays).year, so that is the range it covers."""
    first = min(chinese_calendar.holidays).year
    last = max(chinese_calendar.holidays).year
    years: dict[int, tuple[set[date], set[date]]] = {year: (set(), set()) for year in range(first, last + 1)}
    for day in chinese_calendar.holidays:
        years[day.year][0].add(day)
    for day in chinese_calendar.workdays:
        if day.year in years:
            years[day.year][1].add(day)
    return {year: (frozenset(h), frozenset(w)) for year, (h, w) in years.items()}


_PACKAGE_YEARS = _package_years()


class ChinaCalendar:
    """The working-day calendar: the package's years, with admins' overrides replacing or adding
    whole years. Immutable once built: build a new one when the overrides change."""

    def __init__(self, overrides: Mapping[int, Mapping[str, Iterable[date]]] | None = None):
        years = dict(_PACKAGE_YEARS)
        for year, data in (overrides or {}).items():
            year = int(year)
            holidays = frozenset(_as_date(d) for d in data.get("holidays", ()))
            workdays = frozenset(_as_date(d) for d in data.get("workdays", ()))
            outside = sorted(d for d in holidays | workdays if d.year != year)
            if outside:
                raise ValueError(f"override {year}: {outside[0].isoformat()} is not in {year}")
            both = sorted(holidays & workdays)
            if both:
                raise ValueError(f"override {year}: {both[0].isoformat()} is both a holiday and a working day")
            years[year] = (holidays, workdays)
        self._years = years
        self._holidays = frozenset().union(*(h for h, _ in years.values()))
        self._workdays = frozenset().union(*(w for _, w in years.values()))
        # The covered span: the package's first year and every year after it without a gap.
        first = min(_PACKAGE_YEARS)
        last = max(_PACKAGE_YEARS)
        while last + 1 in years:
            last += 1
        self._first, self._last = date(first, 1, 1), date(last, 12, 31)

    def covered_until(self) -> date:
        """The last date the data covers without a gap (31 December of the last known year)."""
        return self._last

    def covered_from(self) -> date:
        return self._first

    def covers(self, day: date) -> bool:
        return day.year in self._years

    def day_kind(self, day: date) -> DayKind:
        day = _as_date(day)
        if day.year not in self._years:
            raise CalendarDataMissing(day, (self._first, self._last))
        if day in self._holidays:
            return DayKind.holiday
        weekend = day.weekday() >= 5
        if day in self._workdays:
            return DayKind.adjusted_workday if weekend else DayKind.workday
        return DayKind.weekend if weekend else DayKind.workday

    def is_working_day(self, day: date) -> bool:
        return self.day_kind(day) in (DayKind.workday, DayKind.adjusted_workday)

    def holidays_between(self, start: date, end: date) -> list[date]:
        """Every public-holiday day from `start` to `end`, both included (all days of a festival)."""
        start, end = _as_date(start), _as_date(end)
        days = []
        day = start
        while day <= end:
            if self.day_kind(day) is DayKind.holiday:
                days.append(day)
            day += timedelta(days=1)
        return days

    def add_working_days(self, start: datetime, days: int) -> datetime:
        """The moment `days` working days after `start`, at the same time of day, in Asia/Shanghai:
        the first working day after start's (China) date counts as one, holidays and ordinary
        weekends are skipped, an adjusted working day counts. `days=0` is `start` itself."""
        if start.tzinfo is None or start.utcoffset() is None:
            raise ValueError("start must be an aware datetime")
        if days < 0:
            raise ValueError("days must not be negative")
        local = start.astimezone(ZONE)
        day = local.date()
        counted = 0
        while counted < days:
            day += timedelta(days=1)
            if self.is_working_day(day):
                counted += 1
        return datetime.combine(day, local.time(), tzinfo=ZONE)


_CALENDARS: dict[tuple, ChinaCalendar] = {}


def calendar_of(overrides: list[dict]) -> ChinaCalendar:
    """The calendar with these overrides as a service stores them (`{_id: year, holidays,
    workdays}`), built once per set of overrides (only the newest set is kept)."""
    key = tuple((o["_id"], tuple(o.get("holidays", ())), tuple(o.get("workdays", ()))) for o in
                sorted(overrides, key=lambda o: o["_id"]))
    calendar = _CALENDARS.get(key)
    if calendar is None:
        _CALENDARS.clear()
        calendar = _CALENDARS[key] = ChinaCalendar({o["_id"]: o for o in overrides})
    return calendar


def _as_date(value) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value))
