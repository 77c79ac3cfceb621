"""China's working-day calendar (service_kit.china_calendar): Spring Festival 2026 as the State
Council announced it (every day of it a holiday), the adjusted working Saturdays, deadlines in
working days, admins' overrides for a year the package does not know, and CalendarDataMissing
beyond the data. Cross-checked against the `holidays` package, an independent source."""

from datetime import date, datetime, timedelta, timezone

import chinese_calendar
import holidays as holidays_package
import pytest
from pydantic import ValidationError

from platform_contracts.calendar import CalendarYear
from service_kit.china_calendar import ZONE, CalendarDataMissing, ChinaCalendar, DayKind

# The State Council's 2026 schedule as the package records it: Spring Festival 15–23 February,
# nine days off; Saturday 14 and Saturday 28 February worked in exchange.
SPRING_FESTIVAL_2026 = [date(2026, 2, 15) + timedelta(days=i) for i in range(9)]
ADJUSTED_SATURDAYS_2026 = [date(2026, 2, 14), date(2026, 2, 28)]
PACKAGE_LAST_YEAR = max(chinese_calendar.holidays).year
BEYOND = PACKAGE_LAST_YEAR + 1


def days(first: date, last: date) -> list[date]:
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


@pytest.fixture(scope="module")
def calendar():
    return ChinaCalendar()


# ---- Spring Festival 2026 and its adjusted Saturdays ---------------------------------------------

def test_every_day_of_spring_festival_2026_is_a_holiday(calendar):
    assert SPRING_FESTIVAL_2026[0] == date(2026, 2, 15) and SPRING_FESTIVAL_2026[-1] == date(2026, 2, 23)
    for day in SPRING_FESTIVAL_2026:
        assert calendar.day_kind(day) is DayKind.holiday, day
        assert not calendar.is_working_day(day), day
        # The package's own record of the day: the festival's name.
        assert chinese_calendar.get_holiday_detail(day) == (True, chinese_calendar.Holiday.spring_festival.value)
    # The days either side are working days.
    assert calendar.day_kind(date(2026, 2, 13)) is DayKind.workday
    assert calendar.day_kind(date(2026, 2, 24)) is DayKind.workday


def test_the_adjusted_saturdays_are_working_days(calendar):
    for day in ADJUSTED_SATURDAYS_2026:
        assert day.weekday() == 5
        assert calendar.day_kind(day) is DayKind.adjusted_workday, day
        assert calendar.is_working_day(day)
    # An ordinary Saturday and Sunday are the weekend.
    assert calendar.day_kind(date(2026, 3, 7)) is DayKind.weekend
    assert calendar.day_kind(date(2026, 3, 8)) is DayKind.weekend
    assert not calendar.is_working_day(date(2026, 3, 7))


def test_holidays_between_lists_every_day_of_each_festival(calendar):
    assert calendar.holidays_between(date(2026, 2, 1), date(2026, 2, 28)) == SPRING_FESTIVAL_2026
    assert calendar.holidays_between(date(2026, 9, 30), date(2026, 10, 8)) == days(date(2026, 10, 1), date(2026, 10, 7))
    assert calendar.holidays_between(date(2026, 3, 1), date(2026, 3, 31)) == []
    # Both ends are included.
    assert calendar.holidays_between(date(2026, 2, 23), date(2026, 2, 23)) == [date(2026, 2, 23)]


# ---- cross-check with the holidays package ----------------------------------------------------

def test_every_2026_day_agrees_with_the_holidays_package(calendar):
    """The `holidays` package, built independently from the same notices: working day or not,
    every day of 2026 (and the years since 2010) agrees."""
    china = holidays_package.China(years=range(2009, PACKAGE_LAST_YEAR + 1))
    disagree = [day for day in days(date(2010, 1, 1), date(PACKAGE_LAST_YEAR, 12, 31))
                if calendar.is_working_day(day) != china.is_working_day(day)]
    assert disagree == []
    assert sorted(d for d in china.weekend_workdays if d.year == 2026) == [
        date(2026, 1, 4), *ADJUSTED_SATURDAYS_2026, date(2026, 5, 9), date(2026, 9, 20), date(2026, 10, 10)]


def test_spring_festival_2026_agrees_with_the_holidays_package(calendar):
    """`holidays` names the weekday days off (the festival and the days off in lieu); the
    festival's weekend days are the rest of the nine."""
    china = holidays_package.China(years=2026)
    theirs = sorted(d for d in china if date(2026, 2, 1) <= d <= date(2026, 2, 28))
    assert theirs == [date(2026, 2, 16), date(2026, 2, 17), date(2026, 2, 18), date(2026, 2, 19), date(2026, 2, 20),
                      date(2026, 2, 23)]
    assert set(theirs) <= set(SPRING_FESTIVAL_2026)
    assert all(d.weekday() >= 5 for d in set(SPRING_FESTIVAL_2026) - set(theirs))
    # Every public holiday `holidays` lists in 2026 is a holiday here.
    assert [d for d in china if calendar.day_kind(d) is not DayKind.holiday] == []


# ---- deadlines in working days ---------------------------------------------------------------

def test_add_working_days_across_spring_festival_never_lands_on_a_holiday(calendar):
    for start_day in days(date(2026, 2, 1), date(2026, 3, 5)):
        start = datetime.combine(start_day, datetime.min.time(), tzinfo=ZONE).replace(hour=17, minute=30)
        for n in range(1, 15):
            due = calendar.add_working_days(start, n)
            assert calendar.is_working_day(due.date()), (start, n, due)
            assert (due.hour, due.minute) == (17, 30) and due.utcoffset() == timedelta(hours=8)
            counted = [d for d in days(start_day + timedelta(days=1), due.date()) if calendar.is_working_day(d)]
            assert len(counted) == n, (start, n, due)


def test_add_working_days_counts_an_adjusted_saturday_and_skips_the_festival(calendar):
    friday_evening = datetime(2026, 2, 13, 10, 0, tzinfo=timezone.utc)  # 18:00 in China
    assert calendar.add_working_days(friday_evening, 0) == datetime(2026, 2, 13, 18, 0, tzinfo=ZONE)
    assert calendar.add_working_days(friday_evening, 1) == datetime(2026, 2, 14, 18, 0, tzinfo=ZONE)
    assert calendar.add_working_days(friday_evening, 2) == datetime(2026, 2, 24, 18, 0, tzinfo=ZONE)
    # The China date counts, not the UTC one: 2026-02-14T20:00Z is Sunday the 15th at 04:00.
    assert calendar.add_working_days(datetime(2026, 2, 14, 20, 0, tzinfo=timezone.utc), 1) == \
        datetime(2026, 2, 24, 4, 0, tzinfo=ZONE)


def test_add_working_days_wants_an_aware_start_and_no_negative_count(calendar):
    with pytest.raises(ValueError):
        calendar.add_working_days(datetime(2026, 2, 13, 18, 0), 1)
    with pytest.raises(ValueError):
        calendar.add_working_days(datetime(2026, 2, 13, 18, 0, tzinfo=ZONE), -1)


# ---- beyond the data ---------------------------------------------------------------------------

def test_a_date_beyond_the_data_is_calendar_data_missing_never_a_guess(calendar):
    # The package itself refuses a year it has no notice for, with NotImplementedError.
    with pytest.raises(NotImplementedError, match=f"no available data for year {BEYOND}"):
        chinese_calendar.is_workday(date(BEYOND, 1, 1))
    assert calendar.covered_until() == date(PACKAGE_LAST_YEAR, 12, 31)
    assert calendar.day_kind(date(PACKAGE_LAST_YEAR, 12, 31)) in set(DayKind)
    with pytest.raises(CalendarDataMissing) as missing:
        calendar.day_kind(date(BEYOND, 1, 1))
    assert missing.value.day == date(BEYOND, 1, 1)
    assert f"{PACKAGE_LAST_YEAR}-12-31" in str(missing.value)
    with pytest.raises(CalendarDataMissing):
        calendar.is_working_day(date(BEYOND, 6, 1))
    with pytest.raises(CalendarDataMissing):
        calendar.holidays_between(date(PACKAGE_LAST_YEAR, 12, 1), date(BEYOND, 1, 31))
    with pytest.raises(CalendarDataMissing):
        calendar.add_working_days(datetime(PACKAGE_LAST_YEAR, 12, 28, 9, 0, tzinfo=ZONE), 10)
    with pytest.raises(CalendarDataMissing):
        calendar.day_kind(date(2003, 12, 31))  # before the first notice the package has


# ---- overrides: a year loaded by an admin --------------------------------------------------------

# A made-up schedule for the year after the package's last (not the State Council's): the test is
# of the mechanism.
FUTURE = {"holidays": [date(BEYOND, 1, 1), *days(date(BEYOND, 2, 5), date(BEYOND, 2, 11))],
          "workdays": [d for d in days(date(BEYOND, 1, 1), date(BEYOND, 2, 28)) if d.weekday() == 5][:1]}


def test_an_override_for_a_future_year_extends_the_data():
    calendar = ChinaCalendar({BEYOND: FUTURE})
    assert calendar.covered_until() == date(BEYOND, 12, 31)
    for day in FUTURE["holidays"]:
        assert calendar.day_kind(day) is DayKind.holiday
    assert calendar.day_kind(FUTURE["workdays"][0]) is DayKind.adjusted_workday
    assert calendar.holidays_between(date(BEYOND, 2, 1), date(BEYOND, 2, 28)) == FUTURE["holidays"][1:]
    with pytest.raises(CalendarDataMissing):
        calendar.day_kind(date(BEYOND + 1, 1, 1))
    # The package's years are as before.
    assert calendar.day_kind(date(2026, 2, 18)) is DayKind.holiday


def test_an_override_replaces_the_packages_year_whole():
    calendar = ChinaCalendar({2026: {"holidays": [date(2026, 1, 1)], "workdays": []}})
    assert calendar.day_kind(date(2026, 1, 1)) is DayKind.holiday
    assert calendar.day_kind(date(2026, 2, 18)) is DayKind.workday  # a Wednesday, no longer a holiday
    assert calendar.day_kind(date(2026, 2, 14)) is DayKind.weekend
    assert calendar.day_kind(date(2025, 10, 1)) is DayKind.holiday  # other years untouched


def test_a_year_after_a_gap_does_not_extend_the_covered_span():
    calendar = ChinaCalendar({BEYOND + 1: {"holidays": [date(BEYOND + 1, 1, 1)], "workdays": []}})
    assert calendar.covered_until() == date(PACKAGE_LAST_YEAR, 12, 31)
    assert calendar.day_kind(date(BEYOND + 1, 1, 1)) is DayKind.holiday
    with pytest.raises(CalendarDataMissing):
        calendar.day_kind(date(BEYOND, 7, 1))


def test_overrides_as_the_service_stores_them_iso_strings_and_datetimes():
    calendar = ChinaCalendar({str(BEYOND): {"holidays": [f"{BEYOND}-02-05", datetime(BEYOND, 2, 6)]}})
    assert calendar.holidays_between(date(BEYOND, 2, 1), date(BEYOND, 2, 28)) == [date(BEYOND, 2, 5),
                                                                                date(BEYOND, 2, 6)]


def test_an_inconsistent_override_is_refused():
    with pytest.raises(ValueError, match="not in"):
        ChinaCalendar({BEYOND: {"holidays": [date(PACKAGE_LAST_YEAR, 12, 31)], "workdays": []}})
    with pytest.raises(ValueError, match="both"):
        ChinaCalendar({BEYOND: {"holidays": [date(BEYOND, 1, 2)], "workdays": [date(BEYOND, 1, 2)]}})


# ---- the override's body (platform_contracts.calendar) ------------------------------------------

def test_calendar_year_body_feeds_the_calendar():
    body = CalendarYear.model_validate({"year": BEYOND, "holidays": [d.isoformat() for d in reversed(FUTURE["holidays"])],
                                        "workdays": [d.isoformat() for d in FUTURE["workdays"]]})
    assert body.holidays == FUTURE["holidays"]  # sorted
    calendar = ChinaCalendar({body.year: body.as_override()})
    assert calendar.covered_until() == date(BEYOND, 12, 31)


@pytest.mark.parametrize("body, field, message", [
    ({"year": 2027, "holidays": ["2026-12-31"]}, "holidays", "2026-12-31 is not in 2027"),
    ({"year": 2027, "holidays": ["2027-01-01"], "workdays": ["2028-01-01"]}, "workdays", "is not in 2027"),
    ({"year": 2027, "holidays": ["2027-01-01", "2027-01-01"]}, "holidays", "more than once"),
    ({"year": 2027, "holidays": [], "workdays": ["2027-01-04"]}, "workdays", "is a Monday"),
    ({"year": 2027, "holidays": ["2027-01-02"], "workdays": ["2027-01-02"]}, "workdays", "also listed as a holiday"),
    ({"year": 1999, "holidays": []}, "year", "greater than or equal"),
    ({"year": 2027, "holidays": [], "names": []}, "names", "Extra inputs"),
])
def test_calendar_year_body_is_refused_naming_the_field(body, field, message):
    with pytest.raises(ValidationError) as refused:
        CalendarYear.model_validate(body)
    error = refused.value.errors()[0]
    assert error["loc"] == (field,) and message in error["msg"]
