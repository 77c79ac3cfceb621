"""Opening hours (OpenStreetMap `opening_hours` syntax) evaluated right in China. Pure: no I/O.

The parser and evaluator are `opening-hours-py` (module `opening_hours`, the Rust
`opening-hours` crate). What it gets wrong here is the holidays: its Chinese calendar marks only
the first day of each festival and knows no adjusted working days (调休), so
`Mo-Su 08:00-20:00; PH off` reads *open* on 2026-02-18, in the middle of Spring Festival, and
`Mo-Fr 08:00-20:00; Sa,Su off` reads *closed* on Saturday 2026-02-14, a working day. So the
evaluator is given no country (its `PH` then matches no day) and the expression is rewritten for
the days being evaluated so that it says what the State Council's calendar
(service_kit.china_calendar) says:

- every rule whose day selector has a weekday part (`Mo-Fr`, `Sa,Su`, `PH`, `Mo-Fr,PH`,
  `PH +1 day`…) gets, in place of that selector, the explicit dates it matches in the window
  (`2026 Feb 15-2026 Feb 23 closed`), where `PH` matches exactly the calendar's holiday dates, every
  day of a festival. The rule keeps its place, its operator (`;` `,` `||`), its times, state and
  comment, so OSM's precedence (a later rule overrides an earlier one on the days it matches,
  with the evaluator's treatment of times past midnight) is the evaluator's own, unchanged;
- rules without a weekday part (`24/7`, `10:00-18:00`, `Dec off`) are left as they are.

Windows without a holiday or an adjusted working day near them are evaluated as written: the
rewrite only happens where the calendar changes the answer.

**An adjusted working day (a Saturday or Sunday worked in exchange) takes Friday's hours**: the
weekday part of each rule is matched as though the day were the Friday of its week (the year,
month and week parts are still matched on the real date). Why Friday: an adjusted working day
is a working day, so it takes a working day's hours, and of Monday–Friday Friday is the one a
station is least likely to be shut on — Monday is the day cultural venues in China close
(`Tu-Su 09:00-17:00; Mo off`, 周一闭馆), and such a venue is open on a working Saturday.
`Mo-Fr 08:00-20:00; Sa,Su off` is thus open 08:00–20:00 on 2026-02-14 and 2026-02-28.

Times are read in Asia/Shanghai; intervals are handed back as aware UTC datetimes. `unknown`
(the syntax's third state) is not open. A day beyond the calendar's data is CalendarDataMissing
for every expression, whether it mentions `PH` or not: the caller reports it loudly."""

import re
from datetime import date, datetime, time, timedelta, timezone
from functools import lru_cache
from typing import NamedTuple

import opening_hours as oh

from platform_contracts.errors import InvalidValue
from service_kit.china_calendar import ZONE, ChinaCalendar, DayKind

FIELD = "opening_hours"
# The weekday an adjusted working day is read as (Monday = 0): Friday, see the module's doc.
ADJUSTED_WORKDAY_AS = 4
_SPECIAL = (DayKind.holiday, DayKind.adjusted_workday)
# A date no window reaches: the day selector of a rule that matches no day of the window (the
# rule is kept, so a `||` fallback after it behaves as written).
_NO_DAY = "1900 Jan 01"
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")

# ---- the expression's rules ------------------------------------------------------------------

_RULE_SEPARATORS = ("; ", ", ", " || ")
_TIME_START = re.compile(r"^(\d{1,2}:\d{2}|\(|sunrise|sunset|dawn|dusk)")
_KINDS = {"open", "closed", "unknown"}
_WDAY = r"(Mo|Tu|We|Th|Fr|Sa|Su)"
_FIXED_ITEM = rf"{_WDAY}(-{_WDAY})?(\[-?\d(-\d)?(,-?\d(-\d)?)*\])?( [+-]\d+ days?)?"
_HOLIDAY_ITEM = r"(PH|SH)( [+-]\d+ days?)?"
_WEEKDAY_PART = re.compile(rf"({_FIXED_ITEM}|{_HOLIDAY_ITEM})(,({_FIXED_ITEM}|{_HOLIDAY_ITEM}))*")
_PH_OFFSET = re.compile(r"^PH(?: ([+-]\d+) days?)?$")
_SEPARATOR_OR_QUOTE = re.compile(r'"[^"]*"|; | \|\| |, ')
_TOKEN = re.compile(r'(?:"[^"]*"|[^ "])+')


class _Unsupported(ValueError):
    pass


class _Rule(NamedTuple):
    separator: str  # "" for the first rule, else one of _RULE_SEPARATORS
    text: str  # the rule as the parser writes it
    weekday: bool  # has a weekday part: rewritten on special days
    wide: "oh.OpeningHours | None"  # year/month/week part alone (open on the days it matches)
    fixed: "oh.OpeningHours | None"  # the weekdays of the weekday part alone
    ph_offsets: tuple[int, ...]  # PH items: matches day X when X - offset is a holiday
    rest: str  # times, state, comment


class _Expression(NamedTuple):
    canonical: str
    plain: "oh.OpeningHours"
    rules: tuple[_Rule, ...]
    reach: int  # how many days before a window the PH offsets look


def _outside_quotes(text: str, edit) -> str:
    parts = text.split('"')
    return '"'.join(edit(part) if i % 2 == 0 else part for i, part in enumerate(parts))


def _signed_offsets(part: str) -> str:
    # The parser writes `PH +1 day` as `PH 1 days`, which it does not read back.
    return re.sub(r"\b(PH|SH) (\d+) days\b",
                  lambda m: f"{m[1]} +{m[2]} day{'s' if int(m[2]) > 1 else ''}", part)


def _canonical(parsed) -> tuple[str, "oh.OpeningHours"]:
    """The expression as the parser writes it, and that text parsed (it must read back the same)."""
    text = _outside_quotes(str(parsed), _signed_offsets)
    again = oh.OpeningHours(text)
    if _outside_quotes(str(again), _signed_offsets) != text:
        raise _Unsupported(f"cannot be read back after normalising ({text!r}): please write it more simply")
    return text, again


def _split_rules(canonical: str) -> list[tuple[str, str]]:
    rules, separator, start = [], "", 0
    for match in _SEPARATOR_OR_QUOTE.finditer(canonical):
        if match[0] in _RULE_SEPARATORS:
            rules.append((separator, canonical[start:match.start()]))
            separator, start = match[0], match.end()
    rules.append((separator, canonical[start:]))
    return rules


def _tokens(rule: str) -> list[str]:
    return _TOKEN.findall(rule)


def _split_items(weekday_part: str) -> list[str]:
    items, depth, current = [], 0, ""
    for char in weekday_part:
        depth += {"[": 1, "]": -1}.get(char, 0)
        if char == "," and depth == 0:
            items.append(current)
            current = ""
        else:
            current += char
    items.append(current)
    return items


@lru_cache(maxsize=4096)
def _probe(selector: str):
    """A day selector alone: open all day on the days it matches."""
    parsed = oh.OpeningHours(selector)
    if str(parsed) != selector and _outside_quotes(str(parsed), _signed_offsets) != selector:
        raise _Unsupported(f"cannot evaluate the day selector {selector!r} against the holiday calendar")
    return parsed


def _rule(separator: str, text: str) -> _Rule:
    tokens = _tokens(text)
    if tokens and tokens[0] == "24/7":
        return _Rule(separator, text, False, None, None, (), text)
    cut = next((i for i, t in enumerate(tokens) if _TIME_START.match(t) or t in _KINDS or t.startswith('"')),
               len(tokens))
    day, rest = tokens[:cut], " ".join(tokens[cut:])
    split = next((j for j in range(len(day)) if re.match(rf"^({_WDAY}|PH|SH)", day[j])
                  and _WEEKDAY_PART.fullmatch(" ".join(day[j:]))), None)
    if split is None:
        if any(t.startswith(("PH", "SH")) for t in day):
            raise _Unsupported(f"cannot evaluate {text!r} against the holiday calendar: please write it more simply")
        return _Rule(separator, text, False, None, None, (), rest)
    wide, items = " ".join(day[:split]), _split_items(" ".join(day[split:]))
    fixed = [item for item in items if not item.startswith(("PH", "SH"))]
    offsets = tuple(int(m[1] or 0) for m in map(_PH_OFFSET.match, items) if m)
    # SH: no school-holiday data, so it matches no day (as the evaluator without a country).
    return _Rule(separator, text, True, _probe(wide) if wide else None, _probe(",".join(fixed)) if fixed else None,
                 offsets, rest)


@lru_cache(maxsize=65536)
def _expression(expression: str) -> _Expression:
    canonical, parsed = _canonical(oh.OpeningHours(expression))
    rules = tuple(_rule(separator, text) for separator, text in _split_rules(canonical))
    if "".join(r.separator + r.text for r in rules) != canonical:
        raise _Unsupported("cannot split the expression into its rules")
    reach = max((abs(k) for r in rules for k in r.ph_offsets), default=0)
    return _Expression(canonical, parsed, rules, reach)


def _parse(expression: str) -> _Expression:
    if not isinstance(expression, str) or not expression.strip():
        raise InvalidValue(FIELD, "must not be empty")
    try:
        return _expression(expression.strip())
    except oh.ParserError as error:
        raise InvalidValue(FIELD, str(error).strip()) from None
    except _Unsupported as error:
        raise InvalidValue(FIELD, str(error)) from None


def validate(expression: str) -> str:
    """The expression as the parser writes it (`mo-fr 8:00-20:00; PH off` is
    `Mo-Fr 08:00-20:00; PH closed`); InvalidValue("opening_hours", the parser's message) if it
    is not valid."""
    return _parse(expression).canonical


# ---- evaluation ------------------------------------------------------------------------------

def _noon(day: date) -> datetime:
    return datetime.combine(day, time(12))


def _matches(rule: _Rule, day: date, kinds: dict[date, DayKind]) -> bool:
    if rule.wide is not None and not rule.wide.is_open(_noon(day)):
        return False
    if rule.fixed is not None:
        as_day = day
        if kinds[day] is DayKind.adjusted_workday:
            as_day = day - timedelta(days=day.weekday() - ADJUSTED_WORKDAY_AS)
        if rule.fixed.is_open(_noon(as_day)):
            return True
    return any(kinds[day - timedelta(days=k)] is DayKind.holiday for k in rule.ph_offsets)


def _dates(days: list[date]) -> str:
    if not days:
        return _NO_DAY
    runs, first = [], days[0]
    for previous, day in zip(days, days[1:] + [None]):
        if day is None or day != previous + timedelta(days=1):
            name = f"{first.year} {_MONTHS[first.month - 1]} {first.day:02d}"
            runs.append(name if first == previous
                        else f"{name}-{previous.year} {_MONTHS[previous.month - 1]} {previous.day:02d}")
            if day is not None:
                first = day
    return ",".join(runs)


def rewritten(expression: str, first: date, last: date, calendar: ChinaCalendar) -> str:
    """The expression the evaluator is given for the days `first`..`last` (China): for reading
    and tests; CalendarDataMissing beyond the calendar's data."""
    parsed = _parse(expression)
    return _rewrite(parsed, first, last, _kinds(parsed, first, last, calendar))


def _kinds(parsed: _Expression, first: date, last: date, calendar: ChinaCalendar) -> dict[date, DayKind]:
    # The window, the day before it (its times past midnight) and as far back as PH offsets look.
    day, kinds = first - timedelta(days=1 + parsed.reach), {}
    while day <= last + timedelta(days=parsed.reach):
        kinds[day] = calendar.day_kind(day)
        day += timedelta(days=1)
    return kinds


def _rewrite(parsed: _Expression, first: date, last: date, kinds: dict[date, DayKind]) -> str:
    if not any(r.weekday for r in parsed.rules) or not any(k in _SPECIAL for k in kinds.values()):
        return parsed.canonical
    window = [first + timedelta(days=i) for i in range(-1, (last - first).days + 1)]
    text = []
    for rule in parsed.rules:
        if rule.weekday:
            days = [day for day in window if _matches(rule, day, kinds)]
            text.append(rule.separator + " ".join(part for part in (_dates(days), rule.rest) if part))
        else:
            text.append(rule.separator + rule.text)
    return "".join(text)


@lru_cache(maxsize=4096)
def _evaluator(text: str):
    return oh.OpeningHours(text)


@lru_cache(maxsize=65536)
def _local_open(expression: str, first: date, last: date, kinds: tuple) -> tuple[tuple[datetime, datetime], ...]:
    parsed = _expression(expression)
    text = _rewrite(parsed, first, last, dict(kinds))
    evaluator = parsed.plain if text == parsed.canonical else _evaluator(text)
    start, end = datetime.combine(first, time()), datetime.combine(last + timedelta(days=1), time())
    return tuple((s, e) for s, e, state, _ in evaluator.intervals(start, end) if state == oh.State.OPEN)


def open_intervals(expression: str, start: datetime, days: int,
                   calendar: ChinaCalendar) -> list[tuple[datetime, datetime]]:
    """The open intervals from `start` for `days` days (24-hour days from `start`), as aware UTC
    datetimes, merged and in order, evaluated in Asia/Shanghai. CalendarDataMissing if any of
    those days (or the day before, whose times may run past midnight) is beyond the calendar's
    data; InvalidValue if the expression is not valid."""
    if start.tzinfo is None or start.utcoffset() is None:
        raise ValueError("start must be an aware datetime")
    if days < 1:
        return []
    local_start = start.astimezone(ZONE).replace(tzinfo=None)
    local_end = local_start + timedelta(days=days)
    first, last = local_start.date(), (local_end - timedelta(microseconds=1)).date()
    parsed = _parse(expression)
    kinds = _kinds(parsed, first, last, calendar)
    merged: list[list[datetime]] = []
    for s, e in _local_open(expression.strip(), first, last, tuple(kinds.items())):
        s, e = max(s, local_start), min(e, local_end)
        if s >= e:
            continue
        if merged and merged[-1][1] >= s:
            merged[-1][1] = max(merged[-1][1], e)
        else:
            merged.append([s, e])
    return [(s.replace(tzinfo=ZONE).astimezone(timezone.utc), e.replace(tzinfo=ZONE).astimezone(timezone.utc))
            for s, e in merged]


def is_open(expression: str, at: datetime, calendar: ChinaCalendar) -> bool:
    """Whether the station is open at `at` (an aware datetime), read in Asia/Shanghai."""
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError("at must be an aware datetime")
    local = at.astimezone(ZONE)
    midnight = datetime.combine(local.date(), time(), tzinfo=ZONE)
    return any(s <= at < e for s, e in open_intervals(expression, midnight, 1, calendar))
