"""Each station's open intervals for the coming days, so that `open_now`/`open_at` is an
indexed filter and `open_now` a comparison, never a parse per station per request.

They are computed from the opening hours (opening_hours.py) with the holiday calendar
(service_kit.china_calendar, with the admins' overrides from this service's database) for
today and the seven days after it (Asia/Shanghai), on every change of a station and by a timer
each day for every station. A day beyond the calendar's data is never guessed: the window is
cut short before it (the station is not found open then), counted in
`station_calendar_data_missing` and logged, and `station_calendar_days_left` tells how close
that is."""

import logging
from datetime import datetime, timedelta

from platform_contracts.station import OPEN_INTERVAL_DAYS
from service_kit.china_calendar import CalendarDataMissing, ChinaCalendar

from . import domain, opening_hours
from .metrics import CALENDAR_DATA_MISSING, CALENDAR_DAYS_LEFT

log = logging.getLogger(__name__)

def window_start(now: datetime) -> tuple[datetime, str]:
    """Midnight of today in China, and today's date as the stations record it."""
    today = domain.local_date(now)
    return domain.local_day_start(today), today.isoformat()


def compute(expression: str, now: datetime, calendar: ChinaCalendar) -> tuple[list[dict], str]:
    """The open intervals from today's start for OPEN_INTERVAL_DAYS days, as stored
    ([{start, end}] in UTC), and the day they start from. Cut short, loudly, before a day the
    calendar has no data for."""
    start, today = window_start(now)
    CALENDAR_DAYS_LEFT.set((calendar.covered_until() - domain.local_date(now)).days)
    for days in range(OPEN_INTERVAL_DAYS, 0, -1):
        try:
            spans = opening_hours.open_intervals(expression, start, days, calendar)
        except CalendarDataMissing as missing:
            if days == OPEN_INTERVAL_DAYS:
                CALENDAR_DATA_MISSING.inc()
                log.error("open intervals cut short: %s", missing)
            continue
        return [{"start": s, "end": e} for s, e in spans], today
    return [], today


def window_end(now: datetime) -> datetime:
    return window_start(now)[0] + timedelta(days=OPEN_INTERVAL_DAYS)
