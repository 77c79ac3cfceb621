"""Opening hours evaluated right in China (service_station.opening_hours): every day of Spring
Festival 2026 closed under `PH off` (where the parser's own Chinese holidays say open), the
adjusted working Saturdays open as a working day (Friday's hours), a range past midnight,
`24/7`, invalid syntax, China's time against UTC at a day boundary, CalendarDataMissing beyond
the data, and the rewrite checked against the evaluator's own `PH` on a calendar it knows."""

from datetime import date, datetime, time, timedelta, timezone

import opening_hours as evaluator
import pytest

from platform_contracts.errors import InvalidValue
from service_kit.china_calendar import ZONE, CalendarDataMissing, ChinaCalendar, DayKind
from service_station.opening_hours import is_open, open_intervals, rewritten, validate

SPRING_FESTIVAL_2026 = [date(2026, 2, 15) + timedelta(days=i) for i in range(9)]
UTC = timezone.utc


@pytest.fixture(scope="module")
def calendar():
    return ChinaCalendar()


def china(day: date, hour: int = 0, minute: int = 0) -> datetime:
    return datetime.combine(day, time(hour, minute), tzinfo=ZONE)


def local(intervals) -> list[tuple[datetime, datetime]]:
    return [(s.astimezone(ZONE), e.astimezone(ZONE)) for s, e in intervals]


def daily(days, opens: int, closes: int) -> list[tuple[datetime, datetime]]:
    return [(china(d, opens), china(d, closes)) for d in days]


# ---- Spring Festival 2026 ----------------------------------------------------------------------

def test_every_day_of_spring_festival_is_closed_under_ph_off(calendar):
    expression = "Mo-Su 08:00-20:00; PH off"
    for day in SPRING_FESTIVAL_2026:
        for hour, minute in ((8, 0), (12, 0), (19, 59)):
            assert not is_open(expression, china(day, hour, minute), calendar), (day, hour)
    # Over the fortnight: open the days before and after, nothing from the 15th to the 23rd.
    got = local(open_intervals(expression, china(date(2026, 2, 12)), 14, calendar))
    assert got == daily([date(2026, 2, 12), date(2026, 2, 13), date(2026, 2, 14),
                         date(2026, 2, 24), date(2026, 2, 25)], 8, 20)


def test_the_parsers_own_chinese_holidays_say_open_in_the_middle_of_spring_festival(calendar):
    """Without the calendar's rewrite, the evaluator is wrong: its Chinese holidays mark one day
    of the festival (the 17th), so 2026-02-18 at noon reads open."""
    expression = "Mo-Su 08:00-20:00; PH off"
    builtin = evaluator.OpeningHours(expression, country="CN")
    assert builtin.is_open(datetime(2026, 2, 18, 12, 0)) is True  # wrong
    assert [d for d in SPRING_FESTIVAL_2026 if not builtin.is_open(datetime.combine(d, time(12)))] == \
        [date(2026, 2, 17)]
    assert is_open(expression, china(date(2026, 2, 18), 12), calendar) is False  # right


def test_the_rewrite_gives_ph_the_calendars_dates(calendar):
    assert rewritten("Mo-Su 08:00-20:00; PH off", date(2026, 2, 14), date(2026, 2, 24), calendar) == \
        "2026 Feb 13-2026 Feb 24 08:00-20:00; 2026 Feb 15-2026 Feb 23 closed"
    # No holiday or adjusted working day near the window: the expression as written.
    assert rewritten("Mo-Su 08:00-20:00; PH off", date(2026, 3, 9), date(2026, 3, 16), calendar) == \
        "Mo-Su 08:00-20:00; PH closed"


def test_holidays_take_the_ph_rule_and_weekend_days_of_the_festival_too(calendar):
    expression = "Mo-Fr 08:00-20:00; Sa,Su 10:00-18:00; PH 10:00-14:00"
    got = local(open_intervals(expression, china(date(2026, 2, 15)), 9, calendar))
    assert got == daily(SPRING_FESTIVAL_2026, 10, 14)


# ---- adjusted working days ----------------------------------------------------------------------

@pytest.mark.parametrize("saturday", [date(2026, 2, 14), date(2026, 2, 28)])
def test_an_adjusted_saturday_is_open_as_a_working_day(calendar, saturday):
    assert calendar.day_kind(saturday) is DayKind.adjusted_workday
    expression = "Mo-Fr 08:00-20:00; Sa,Su off"
    assert local(open_intervals(expression, china(saturday), 1, calendar)) == daily([saturday], 8, 20)
    assert is_open(expression, china(saturday, 8), calendar)
    assert not is_open(expression, china(saturday, 7, 59), calendar)
    assert not is_open(expression, china(saturday, 20), calendar)
    # The Sunday after is an ordinary weekend day (the 15th a holiday): closed.
    assert not is_open(expression, china(saturday + timedelta(days=1), 12), calendar)


def test_an_ordinary_saturday_stays_closed(calendar):
    assert calendar.day_kind(date(2026, 3, 7)) is DayKind.weekend
    assert open_intervals("Mo-Fr 08:00-20:00; Sa,Su off", china(date(2026, 3, 7)), 2, calendar) == []


def test_an_adjusted_working_day_takes_fridays_hours(calendar):
    expression = "Mo-Th 08:00-20:00; Fr 08:00-12:00; Sa,Su 10:00-16:00; PH off"
    assert local(open_intervals(expression, china(date(2026, 2, 14)), 1, calendar)) == \
        daily([date(2026, 2, 14)], 8, 12)
    # A venue shut on Mondays (周一闭馆) is open on the adjusted Sunday 2026-01-04 and Saturday 2026-02-28.
    museum = "Tu-Su 09:00-17:00; Mo off"
    assert calendar.day_kind(date(2026, 1, 4)) is DayKind.adjusted_workday
    for day in (date(2026, 1, 4), date(2026, 2, 28)):
        assert local(open_intervals(museum, china(day), 1, calendar)) == daily([day], 9, 17)


# ---- past midnight ------------------------------------------------------------------------------

def test_a_range_past_midnight_is_open_at_one_the_next_day(calendar):
    expression = "18:00-02:00"
    assert is_open(expression, china(date(2026, 3, 11), 1, 0), calendar)
    assert not is_open(expression, china(date(2026, 3, 11), 2, 0), calendar)
    assert not is_open(expression, china(date(2026, 3, 10), 17, 59), calendar)
    assert is_open(expression, china(date(2026, 3, 10), 18, 0), calendar)
    got = local(open_intervals(expression, china(date(2026, 3, 10)), 2, calendar))
    assert got == [(china(date(2026, 3, 10)), china(date(2026, 3, 10), 2)),
                   (china(date(2026, 3, 10), 18), china(date(2026, 3, 11), 2)),
                   (china(date(2026, 3, 11), 18), china(date(2026, 3, 12)))]


def test_a_range_past_midnight_next_to_a_holiday(calendar):
    """The evaluator's reading of nights, which the rewrite leaves as it is: a later rule that
    matches a day decides that whole day (`PH off` on the 15th closes the night begun on the
    working Saturday at midnight), and a rule's night past midnight is read with the day it ends
    on (so the night begun on the 23rd, a holiday, still shows 00:00-02:00 on the 24th, as
    `Mo-Su 18:00-02:00; Sa off` shows it on a Sunday)."""
    expression = "Mo-Su 18:00-02:00; PH off"
    got = local(open_intervals(expression, china(date(2026, 2, 14)), 11, calendar))
    assert got == [(china(date(2026, 2, 14)), china(date(2026, 2, 14), 2)),
                   (china(date(2026, 2, 14), 18), china(date(2026, 2, 15))),
                   (china(date(2026, 2, 24)), china(date(2026, 2, 24), 2)),
                   (china(date(2026, 2, 24), 18), china(date(2026, 2, 25)))]
    assert not is_open(expression, china(date(2026, 2, 15), 1), calendar)
    assert not is_open(expression, china(date(2026, 2, 23), 19), calendar)
    # Friday's night runs into Saturday the 14th, an adjusted working day, which itself takes
    # Friday's hours: open again from 18:00 into Sunday the 15th (that night's end is read with
    # the 15th: a holiday, but no rule of this expression mentions PH).
    friday = "Fr 18:00-02:00"
    assert is_open(friday, china(date(2026, 2, 14), 1, 30), calendar)
    assert not is_open(friday, china(date(2026, 2, 14), 3), calendar)
    assert is_open(friday, china(date(2026, 2, 14), 19), calendar)
    assert is_open(friday, china(date(2026, 2, 15), 1), calendar)
    assert not is_open(friday, china(date(2026, 2, 21), 19), calendar)  # a holiday Saturday: just Saturday


# ---- 24/7 ---------------------------------------------------------------------------------------

def test_a_station_open_24_7(calendar):
    start = datetime(2026, 2, 13, 5, 17, tzinfo=UTC)
    assert open_intervals("24/7", start, 8, calendar) == [(start, start + timedelta(days=8))]
    for day in SPRING_FESTIVAL_2026:
        assert is_open("24/7", china(day, 3), calendar)
    assert validate("Mo-Su 00:00-24:00") == "Mo-Su"
    assert open_intervals("24/7; PH off", china(date(2026, 2, 14)), 3, calendar) == \
        [(china(date(2026, 2, 14)).astimezone(UTC), china(date(2026, 2, 15)).astimezone(UTC))]


# ---- validation ---------------------------------------------------------------------------------

def test_invalid_syntax_names_the_field_with_the_parsers_message():
    with pytest.raises(evaluator.ParserError) as parser:
        evaluator.OpeningHours("Mo-Fx 08:00-20:00")
    with pytest.raises(InvalidValue) as refused:
        validate("Mo-Fx 08:00-20:00")
    assert refused.value.field == ("opening_hours",)
    assert refused.value.msg == str(parser.value).strip()
    assert "expected wday" in refused.value.msg
    for bad in ("", "   ", "Mo-Fr 25:00-26:00", "always"):
        with pytest.raises(InvalidValue) as refused:
            validate(bad)
        assert refused.value.field == ("opening_hours",)


def test_validate_gives_the_expression_as_the_parser_writes_it():
    assert validate("mo-fr 8:00-20:00; sa,su 10:00-18:00; PH off") == \
        "Mo-Fr 08:00-20:00; Sa,Su 10:00-18:00; PH closed"
    assert validate("  Mo-Fr,PH +1 day 10:00-12:00 ") == "Mo-Fr,PH +1 day 10:00-12:00"
    assert validate("Mo-Fr 08:00-20:00 || \"by appointment\"") == 'Mo-Fr 08:00-20:00 || 24/7 "by appointment"'
    assert validate(validate("Mo-Fr 08:00-20:00; PH off")) == "Mo-Fr 08:00-20:00; PH closed"


# ---- China's time, not UTC ----------------------------------------------------------------------

def test_asia_shanghai_not_utc_at_a_day_boundary(calendar):
    expression = "Mo-Su 00:00-24:00; PH off"
    # 2026-02-14T17:00Z is 01:00 on Sunday the 15th in China: a holiday, though the UTC date is
    # the working Saturday.
    assert not is_open(expression, datetime(2026, 2, 14, 17, 0, tzinfo=UTC), calendar)
    assert is_open(expression, datetime(2026, 2, 14, 15, 59, tzinfo=UTC), calendar)
    # 2026-02-23T17:00Z is 01:00 on Tuesday the 24th: a working day, though the UTC date is a holiday.
    assert is_open(expression, datetime(2026, 2, 23, 17, 0, tzinfo=UTC), calendar)
    got = open_intervals(expression, datetime(2026, 2, 14, 0, 0, tzinfo=UTC), 1, calendar)
    assert got == [(datetime(2026, 2, 14, 0, 0, tzinfo=UTC), datetime(2026, 2, 14, 16, 0, tzinfo=UTC))]
    assert all(s.tzinfo is UTC and e.tzinfo is UTC for s, e in got)
    with pytest.raises(ValueError):
        is_open(expression, datetime(2026, 2, 14, 12, 0), calendar)


# ---- beyond the data ----------------------------------------------------------------------------

def test_calendar_data_missing_beyond_the_data(calendar):
    last = calendar.covered_until()
    beyond = last + timedelta(days=1)
    for expression in ("Mo-Su 08:00-20:00; PH off", "24/7"):
        with pytest.raises(CalendarDataMissing):
            open_intervals(expression, china(last - timedelta(days=3)), 8, calendar)
        with pytest.raises(CalendarDataMissing):
            is_open(expression, china(beyond, 12), calendar)
    # A window that ends on the last covered day is fine.
    assert open_intervals("24/7", china(last - timedelta(days=7)), 8, calendar) == \
        [(china(last - timedelta(days=7)).astimezone(UTC), china(beyond).astimezone(UTC))]
    # Loaded as an override, the next year is evaluated.
    loaded = ChinaCalendar({beyond.year: {"holidays": [beyond], "workdays": []}})
    assert not is_open("Mo-Su 08:00-20:00; PH off", china(beyond, 12), loaded)
    assert is_open("Mo-Su 08:00-20:00; PH off", china(beyond + timedelta(days=1), 12), loaded)


# ---- the rewrite against the evaluator's own PH, on a calendar it knows ----------------------------

class _EvaluatorsCalendar:
    """The evaluator's own public holidays for a country as a calendar (no adjusted days): the
    rewrite must then say exactly what the evaluator says with its own PH."""

    def __init__(self, country: str):
        self._ph = evaluator.OpeningHours("PH", country=country)

    def day_kind(self, day: date) -> DayKind:
        if self._ph.is_open(datetime.combine(day, time(12))):
            return DayKind.holiday
        return DayKind.weekend if day.weekday() >= 5 else DayKind.workday


@pytest.mark.parametrize("expression", [
    "Mo-Su 08:00-20:00; PH off",
    "Mo-Fr 08:00-20:00; Sa,Su 10:00-18:00; PH off",
    "Mo-Su 18:00-02:00; PH off",
    "Mo-Fr,PH 18:00-02:00; Sa 10:00-12:00",
    "Mo-Fr 09:00-17:00, PH 10:00-11:00",
    "Mo-Fr 09:00-17:00; PH +1 day 09:00-12:00; PH -1 day 14:00-16:00",
    "May Mo-Fr 08:00-12:00; Jun Mo-Sa 13:00-17:00; PH off",
    "Mo-Fr 08:00-20:00 || PH 10:00-12:00",
    "PH 10:00-14:00 \"holiday hours\"; Mo-Fr 08:00-20:00",
    "24/7; Sa,Su,PH off",
    "Mo-Fr 08:00-20:00; PH 22:00-03:00 unknown",
])
def test_the_rewrite_says_what_the_evaluator_says_with_a_calendar_it_knows(expression):
    country = _EvaluatorsCalendar("FR")  # France: 1, 8, 14 and 25 May, 14 July 2026 among them
    own = evaluator.OpeningHours(expression, country="FR")
    first = date(2026, 4, 28)
    while first <= date(2026, 7, 20):
        start = china(first)
        ours = [(s.astimezone(ZONE).replace(tzinfo=None), e.astimezone(ZONE).replace(tzinfo=None))
                for s, e in open_intervals(expression, start, 8, country)]
        theirs = [(s, e) for s, e, state, _ in own.intervals(start.replace(tzinfo=None),
                                                            (start + timedelta(days=8)).replace(tzinfo=None))
                  if state == evaluator.State.OPEN]
        assert ours == _merged(theirs), (expression, first)
        first += timedelta(days=3)


def _merged(intervals):
    merged = []
    for s, e in intervals:
        if merged and merged[-1][1] >= s:
            merged[-1] = (merged[-1][0], max(merged[-1][1], e))
        else:
            merged.append((s, e))
    return merged
