"""Pure rules about members: the development pipeline (发展党员) with the probationary year,
and what a mobile member carries. No I/O: repository.py loads and saves, application.py
composes the two inside a transaction."""

from datetime import date, datetime, timedelta, timezone

from platform_contracts.member import Stage
from platform_contracts.errors import Conflict, InvalidValue

# Stage dates and letter expiry are Beijing calendar dates (China keeps no daylight saving).
CHINA_TIME = timezone(timedelta(hours=8))
STAGES = list(Stage)
ADMITTED = (Stage.probationary, Stage.full)


def local_date(now: datetime) -> date:
    return now.astimezone(CHINA_TIME).date()


def category_of(stage: str) -> str | None:
    """CONTRACT: category is full or probationary, and nothing before admission."""
    return stage if stage in ADMITTED else None


def full_membership_from(joined_on: date) -> date:
    """A probationary member may become full one year after admission."""
    try:
        return joined_on.replace(year=joined_on.year + 1)
    except ValueError:  # admitted on 29 February
        return date(joined_on.year + 1, 3, 1)


def check_step(current: str, requested: str) -> None:
    """Only the next stage: a repeated step is a conflict, a skipped or backward one is invalid."""
    if requested == current:
        raise Conflict(f"the member is already at stage {current}", "stage", "already at this stage")
    position = STAGES.index(Stage(current))
    if position + 1 == len(STAGES):
        raise InvalidValue("stage", f"{current} is the last stage of the pipeline")
    following = STAGES[position + 1]
    if requested != following:
        raise InvalidValue("stage", f"from {current} the next stage is {following.value}, not {requested}")


def check_not_future(on: date, today: date, field: str) -> None:
    if on > today:
        raise InvalidValue(field, f"{on} is in the future")


def check_mobility(member: dict) -> None:
    """Where a member is now, and their online branch, belong to mobile members only."""
    if member["mobile"]:
        return
    for field in ("mobile_location", "online_branch_id"):
        if member.get(field):
            raise InvalidValue(field, "only mobile members have one; set mobile to true")


def new_member(fields: dict, *, stage_on: date | None, joined_on: date | None, override_reason: str | None,
               member_id: str, by: str, now: datetime) -> dict:
    """A member document from a validated RegisterMember (personal data already protected).

    An admitted member has an admission date: a probationary one joined on `stage_on`, a full
    one gives `joined_on`. Registering someone directly as full must not skip the probationary
    year that `promote` enforces: the same year, and the same override (the caller has checked
    the actor may give one), kept in the first step."""
    today = local_date(now)
    stage_on = stage_on or today
    check_not_future(stage_on, today, "stage_on")
    stage = fields["stage"]
    if override_reason and stage != Stage.full:
        raise InvalidValue("override_reason", "only the probationary year can be overridden")
    if stage == Stage.probationary:
        joined_on = stage_on
    if stage == Stage.full:
        check_full_on_registration(joined_on, stage_on, override_reason)
    step = {"stage": stage, "on": stage_on.isoformat(), "by": by, "recorded_at": now}
    if override_reason:
        step["override_reason"] = override_reason
    member = {
        "_id": member_id, **fields, "category": category_of(stage),
        "joined_on": joined_on.isoformat() if joined_on else None,
        "stage_history": [step],
        "status": "active", "open_transfer_id": None, "last_check_in": None,
        "registered_at": now, "updated_at": now,
    }
    check_mobility(member)
    return member


def check_full_on_registration(joined_on: date | None, stage_on: date, override_reason: str | None) -> None:
    if joined_on is None:
        raise InvalidValue("joined_on", "a full member's admission date (入党) is required")
    if joined_on > stage_on:
        raise InvalidValue("joined_on", "admission cannot come after becoming a full member")
    earliest = full_membership_from(joined_on)
    if stage_on < earliest and not override_reason:
        raise InvalidValue(
            "stage_on", f"a member becomes full no earlier than {earliest}, one year after joined_on, "
                        "without override_reason")


def promote(member: dict, stage: str, *, on: date | None, override_reason: str | None,
            by: str, now: datetime) -> dict:
    """The member one step further along the pipeline, the step on record.

    Probationary to full needs a year since admission; before that only an override (the
    caller has checked the actor may give one) lets it through, and the reason is kept."""
    check_step(member["stage"], stage)
    if override_reason and stage != Stage.full:
        raise InvalidValue("override_reason", "only the probationary year can be overridden")
    today = local_date(now)
    on = on or today
    check_not_future(on, today, "on")
    reached = date.fromisoformat(member["stage_history"][-1]["on"])
    if on < reached:
        raise InvalidValue("on", f"the member reached {member['stage']} on {reached}; a later step cannot precede it")
    if stage == Stage.full and member.get("joined_on"):
        earliest = full_membership_from(date.fromisoformat(member["joined_on"]))
        if on < earliest and not override_reason:
            raise Conflict(f"a probationary member becomes full no earlier than {earliest}, one year after admission",
                           "stage", f"not before {earliest} without override_reason")
    step = {"stage": stage, "on": on.isoformat(), "by": by, "recorded_at": now}
    if override_reason:
        step["override_reason"] = override_reason
    member["stage_history"].append(step)
    member.update(stage=stage, category=category_of(stage), updated_at=now)
    if stage == Stage.probationary:
        member["joined_on"] = on.isoformat()
    return member


NOT_NULL = ("name", "occupation", "mobile")


def apply_changes(member: dict, fields: dict, now: datetime) -> list[str]:
    """Apply an update's fields (personal data already protected); the names of those changed."""
    for field in NOT_NULL:
        if field in fields and fields[field] is None:
            raise InvalidValue(field, "cannot be null")
    check_mobility({**member, **fields})
    changed = sorted(k for k, v in fields.items() if member.get(k) != v)
    member.update(fields)
    if changed:
        member["updated_at"] = now
    return changed
