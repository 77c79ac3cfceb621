"""Between Open311 GeoReport v2 and the appeal service's contract (platform_contracts.appeal).
Pure: no HTTP, no database, no broker.

- services: a service (`service_code`) is an appeal category; each has a service definition
  (`metadata` true) of the attributes an Open311 client may send beyond the standard fields:
  `title`, `division` (a street or community inside the jurisdiction), `public`, and for a
  category that takes no anonymous appeals a notice that a name and phone are needed;
- POST requests: the form's fields become a SubmitAppeal command (`submission`), checked against
  the contract here so that a client is told which of *its* fields is wrong;
- GET requests: the Open311 filters become a PublicAppealFilter (`public_filter`);
- a PublicAppeal becomes an Open311 request (`request_document`): status open (submitted,
  accepted, assigned) or closed (resolved, closed, rejected), with status_notes, the department
  as agency_responsible and the deadline as expected_datetime;
- a problem document (RFC 9457) becomes Open311 errors naming Open311's fields (`problem_errors`).

Phones are personal data: they are never quoted back in an error."""

import re
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

from pydantic import ValidationError

from platform_contracts.appeal import (OPEN_STATUSES, AppealCategory, AppealStatus, PublicAppealFilter,
                                       SubmitAppeal)

SPECIFICATION = "http://wiki.open311.org/GeoReport_v2"
DEFAULT_SPAN = timedelta(days=90)  # GET requests: the span of a query, and the default one
MAX_ROWS = 1000  # GET requests: at most this many, newest first
MAX_IDS = 200  # GET requests: service_request_id, comma delimited
TITLE_FROM_DESCRIPTION = 60  # characters of the description's first line that make a title
CHINA_TIME = timezone(timedelta(hours=8), "CST")

Params = list[tuple[str, str]]


class Open311Error(Exception):
    """An Open311 error answer: the HTTP status and the (code, description) errors of its body."""

    def __init__(self, status: int, *descriptions: str, headers: dict[str, str] | None = None):
        super().__init__(f"{status}: {'; '.join(descriptions)}")
        self.status = status
        self.errors = [(status, d) for d in descriptions]
        self.headers = headers


# ---- services ------------------------------------------------------------------------------

# service_name, description, group, keywords of each category.
SERVICES: dict[str, tuple[str, str, str, str]] = {
    AppealCategory.rights: ("权益保障", "劳动报酬、休息休假、平台规则等合法权益受到侵害", "权益", "欠薪,工资,休息,平台规则,罚款"),
    AppealCategory.labour_protection: ("劳动保护", "劳动安全、职业伤害保障、防暑防寒等劳动保护问题", "权益", "工伤,职业伤害,高温,防寒"),
    AppealCategory.legal: ("法律援助", "需要法律咨询或法律援助", "权益", "法律,律师,仲裁,咨询"),
    AppealCategory.housing: ("住房", "住房、宿舍、租房等居住困难", "生活", "住房,宿舍,租房,公寓"),
    AppealCategory.insurance: ("社会保险", "社会保险参保、缴费、待遇等问题", "生活", "社保,医保,养老,参保"),
    AppealCategory.hazard: ("安全隐患", "骑手、快递员等在路上发现的安全隐患（\u201c流动哨兵\u201d）", "城市治理",
                            "隐患,道路,井盖,消防,流动哨兵"),
    AppealCategory.enterprise_difficulty: ("企业难题", "新业态企业经营中遇到的困难和问题", "企业", "企业,经营,政策"),
    AppealCategory.suggestion: ("建言献策", "对党建工作和服务的意见建议", "建议", "建议,意见"),
    AppealCategory.other: ("其他", "其他诉求", "其他", "其他"),
}

# The finer status behind open/closed, the start of every status_notes.
STATUS_NOTES = {
    AppealStatus.submitted: "已提交，待受理",
    AppealStatus.accepted: "已受理",
    AppealStatus.assigned: "已交办",
    AppealStatus.resolved: "已办结",
    AppealStatus.closed: "已关闭",
    AppealStatus.rejected: "不予受理",
}


def service_name(category: str) -> str:
    return SERVICES.get(category, (category,))[0]


def service_document(category: Mapping) -> dict:
    name, description, group, keywords = SERVICES.get(category["category"], (category["category"], None, None, None))
    return {"service_code": category["category"], "service_name": name, "description": description,
            "metadata": True, "type": "realtime", "keywords": keywords, "group": group}


def service_definition(category: Mapping) -> dict:
    attributes = [
        {"variable": True, "code": "title", "datatype": "string", "required": False,
         "datatype_description": "最多 200 字", "order": 1,
         "description": f"诉求标题；不填则取描述的第一行（前 {TITLE_FROM_DESCRIPTION} 字）"},
        {"variable": True, "code": "division", "datatype": "string", "required": False,
         "datatype_description": "GB/T 2260 区划代码：街道 9 位或社区 12 位", "order": 2,
         "description": "发生地所在的街道或社区，须在 jurisdiction_id 所指的区县内；不填则为区县本身"},
        {"variable": True, "code": "public", "datatype": "singlevaluelist", "required": False,
         "datatype_description": None, "order": 3,
         "description": "是否公开诉求内容（描述、地址、图片）；默认公开",
         "values": [{"key": "true", "name": "公开"}, {"key": "false", "name": "不公开"}]},
    ]
    if not category.get("anonymous_allowed", True):
        attributes.append(
            {"variable": False, "code": "contact_required", "datatype": "text", "required": False,
             "datatype_description": None, "order": 4,
             "description": "此类诉求不接受匿名提交：请填写姓名（last_name、first_name）和手机号（phone）"})
    return {"service_code": category["category"], "attributes": attributes}


# ---- form values ---------------------------------------------------------------------------

def value(params: Params, name: str) -> str | None:
    """The parameter's value, stripped; an empty one is no value (Open311: "Optional Arguments")."""
    for key, raw in params:
        if key == name and raw.strip():
            return raw.strip()
    return None


def values(params: Params, name: str) -> list[str]:
    """Every value of a repeatable, comma-delimited parameter."""
    return [part.strip() for key, raw in params if key == name for part in raw.split(",") if part.strip()]


_ATTRIBUTE = re.compile(r"^attribute\[([^\[\]]+)\](\[\])?$")


def attributes(params: Params) -> dict[str, list[str]]:
    """attribute[code]=value and attribute[code][]=value (a multivaluelist), by code."""
    found: dict[str, list[str]] = {}
    for key, raw in params:
        match = _ATTRIBUTE.match(key)
        if match and raw.strip():
            found.setdefault(match.group(1), []).append(raw.strip())
    return found


_NUMBER = re.compile(r"^[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?$")


def _degrees(raw: str, name: str) -> float:
    if not _NUMBER.match(raw):
        raise Open311Error(422, f"{name}: must be a number of decimal degrees (WGS-84)")
    return float(raw)


def mobile_phone(raw: str) -> str:
    """A mainland mobile number as people write it (spaces, dashes, +86) in its 11 digits."""
    digits = re.sub(r"[\s\-().]", "", raw)
    for prefix in ("+86", "0086", "86"):
        if digits.startswith(prefix) and len(digits) == len(prefix) + 11:
            digits = digits[len(prefix):]
    if not re.fullmatch(r"1[3-9][0-9]{9}", digits):
        raise Open311Error(422, "phone: must be a mainland mobile number (11 digits, 1[3-9]...)")
    return digits


def person_name(first: str | None, last: str | None) -> str | None:
    """A Chinese name is family name then given name, with no space; others first then last."""
    parts = [p for p in (last, first) if p]
    if not parts:
        return None
    if all(re.fullmatch(r"[\u3400-\u9fff\u00b7]+", p) for p in parts):
        return "".join(parts)
    return " ".join(p for p in (first, last) if p)


def title_of(description: str) -> str:
    first_line = next((line.strip() for line in description.splitlines() if line.strip()), description.strip())
    return first_line[:TITLE_FROM_DESCRIPTION]


_TRUE, _FALSE = {"true", "1", "yes"}, {"false", "0", "no"}


def submission(params: Params, jurisdiction: str) -> dict:
    """The SubmitAppeal command (as JSON) a POST requests form asks for, in `jurisdiction` (a
    district code); Open311Error 400 for a missing parameter, 422 for an invalid one (naming it).
    `service_code` is known to be a category already."""
    description = value(params, "description")
    if description is None:
        raise Open311Error(400, "description: is required (what the appeal is about, up to 4,000 characters)")
    lat, lng = value(params, "lat"), value(params, "long")
    address = value(params, "address_string")
    if (lat is None) != (lng is None):
        raise Open311Error(400, "lat and long: send both, or neither and address_string")
    if lat is None and address is None:
        raise Open311Error(400, "location: send lat and long, or address_string (address_id is not supported: "
                                "there is no address registry here)")
    attrs = attributes(params)
    command: dict[str, Any] = {
        "category": value(params, "service_code"),
        "title": attrs["title"][0] if "title" in attrs else title_of(description),
        "description": description,
        "division": attrs["division"][0] if "division" in attrs else jurisdiction,
    }
    if "division" in attrs and not command["division"].startswith(jurisdiction):
        raise Open311Error(422, f"attribute[division]: must be a division inside jurisdiction_id {jurisdiction}")
    if lat is not None:
        command["location"] = {"lng": _degrees(lng, "long"), "lat": _degrees(lat, "lat"), "coord_sys": "wgs84"}
    if address is not None:
        command["address"] = address
    if (media_url := value(params, "media_url")) is not None:
        command["media"] = [media_url]
    if (device_id := value(params, "device_id")) is not None:
        command["device_id"] = device_id
    if "public" in attrs:
        public = attrs["public"][0].lower()
        if public not in _TRUE | _FALSE:
            raise Open311Error(422, "attribute[public]: must be true or false")
        command["public"] = public in _TRUE
    phone = value(params, "phone")
    name = person_name(value(params, "first_name"), value(params, "last_name"))
    if phone is None and name is None:
        command["submitter"] = {"kind": "anonymous"}
    else:
        contact = {"name": name} if name else {}
        if phone is not None:
            contact["phone"] = mobile_phone(phone)
        command["submitter"] = {"kind": "worker", "contact": contact}
    try:
        return SubmitAppeal.model_validate(command).model_dump(mode="json")
    except ValidationError as exc:
        given = {"title": "title" in attrs, "division": "division" in attrs}
        raise Open311Error(422, *(f"{open311_field(err['loc'], given)}: {message(err['msg'])}"
                                  for err in exc.errors(include_input=False, include_url=False))) from None


# ---- GET requests --------------------------------------------------------------------------

def w3_datetime(raw: str, name: str) -> datetime:
    """A W3C date-time, with its time zone (Z or an offset), as the specification requires."""
    try:
        parsed = datetime.fromisoformat(raw.replace(" ", "+") if re.search(r"\d \d\d:\d\d$", raw) else raw)
    except ValueError:
        raise Open311Error(400, f"{name}: must be a W3C date-time with its time zone, e.g. 2010-01-01T00:00:00Z")
    if parsed.tzinfo is None:
        raise Open311Error(400, f"{name}: give the time zone (Z or an offset such as +08:00)")
    if not 1970 <= parsed.year <= 9000:  # the 90-day window around it must stay a date
        raise Open311Error(400, f"{name}: must be a time between 1970 and 9000")
    return parsed


def public_filter(params: Params, jurisdiction: str, now: datetime) -> dict | None:
    """The PublicAppealFilter (as JSON) of GET requests' parameters in `jurisdiction`; None when
    nothing can match (every service_request_id asked for is malformed). Open311Error 400 for a
    malformed parameter, 404 for an unknown service_code."""
    ids = values(params, "service_request_id")
    if ids:  # "This overrides all other arguments"
        if len(ids) > MAX_IDS:
            raise Open311Error(400, f"service_request_id: at most {MAX_IDS} at once")
        wellformed = [i for i in dict.fromkeys(ids) if re.fullmatch(r"[A-Za-z0-9_-]{1,64}", i)]
        if not wellformed:
            return None
        return PublicAppealFilter(ids=wellformed, division=jurisdiction, limit=MAX_ROWS).model_dump(mode="json")
    codes = values(params, "service_code")
    unknown = [c for c in codes if c not in AppealCategory.__members__.values()]
    if unknown:
        raise Open311Error(404, f"service_code {', '.join(unknown)}: no such service (GET services lists them)")
    statuses = set(values(params, "status"))
    if statuses - {"open", "closed"}:
        raise Open311Error(400, "status: open, closed, or both (comma delimited)")
    start_raw, end_raw = value(params, "start_date"), value(params, "end_date")
    start = w3_datetime(start_raw, "start_date") if start_raw else None
    end = w3_datetime(end_raw, "end_date") if end_raw else None
    if start is None and end is None:
        end = now
    if start is None:
        start = end - DEFAULT_SPAN
    elif end is None:
        end = start + DEFAULT_SPAN
    if start > end:
        raise Open311Error(400, "start_date: must not be after end_date")
    if end - start > DEFAULT_SPAN:
        raise Open311Error(400, f"start_date, end_date: may not span more than {DEFAULT_SPAN.days} days")
    return PublicAppealFilter(
        category=list(dict.fromkeys(codes)) or None, open=None if len(statuses) != 1 else statuses == {"open"},
        division=jurisdiction, start=start, end=end, limit=MAX_ROWS).model_dump(mode="json", exclude_none=True)


# ---- requests ------------------------------------------------------------------------------

def w3(moment: str | datetime | None) -> str | None:
    """A time as Open311 gives it: W3C date-time, to the second, in China's time (+08:00)."""
    if moment is None:
        return None
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(CHINA_TIME).isoformat(timespec="seconds")


def open311_status(status: str) -> str:
    return "open" if status in OPEN_STATUSES else "closed"


def status_notes(appeal: Mapping) -> str:
    base = STATUS_NOTES.get(appeal["status"], appeal["status"])
    note = appeal.get("status_notes")
    return f"{base}：{note}" if note else base


def request_document(appeal: Mapping) -> dict:
    """A PublicAppeal as an Open311 request (GET requests, GET requests/{id})."""
    location = appeal.get("location") or {}
    media = appeal.get("media") or []
    return {
        "service_request_id": appeal["id"],
        "status": open311_status(appeal["status"]),
        "status_notes": status_notes(appeal),
        "service_name": service_name(appeal["category"]),
        "service_code": appeal["category"],
        "description": appeal.get("description"),
        "agency_responsible": appeal.get("department_name"),
        "service_notice": None,
        "requested_datetime": w3(appeal["submitted_at"]),
        "updated_datetime": w3(appeal["updated_at"]),
        "expected_datetime": w3(appeal.get("due_at")),
        "address": appeal.get("address"),
        "address_id": None,
        "zipcode": None,
        "lat": location.get("lat"),
        "long": location.get("lng"),
        "media_url": media[0] if media else None,
    }


def submitted_document(appeal: Mapping, token: str, sla_working_days: int | None) -> dict:
    """POST requests' answer: the request's id and a token for it (GET tokens/{token})."""
    notice = "诉求已提交，待有关部门受理"
    if sla_working_days:
        notice += f"；受理后 {sla_working_days} 个工作日内办结"
    duplicates = [d.get("id") for d in appeal.get("likely_duplicates") or () if isinstance(d, Mapping) and d.get("id")]
    if duplicates:
        notice += f"；附近已有类似诉求：{', '.join(duplicates[:5])}"
    # No account_id: the specification's "May not be returned" (the submitter has no account here).
    return {"service_request_id": appeal["id"], "token": token, "service_notice": notice}


# ---- problems as Open311 errors --------------------------------------------------------------

# Contract field -> the Open311 parameter it came from.
FIELDS = {"category": "service_code", "description": "description", "address": "address_string",
          "media": "media_url", "device_id": "device_id", "public": "attribute[public]"}


def open311_field(loc: Iterable, given: Mapping[str, bool]) -> str:
    """The Open311 parameter a contract field's location (a problem's `loc`) came from;
    `given` tells whether attribute[title] and attribute[division] were sent."""
    path = [str(p) for p in loc]
    while path and path[0] in ("body", "command", "query", "filters"):
        path = path[1:]
    if not path:
        return "request"
    head = path[0]
    if head == "location":
        return {"lng": "long", "lat": "lat"}.get(path[1] if len(path) > 1 else "", "lat, long")
    if head == "submitter":
        if "phone" in path:
            return "phone"
        if "name" in path:
            return "first_name, last_name"
        return "first_name, last_name, phone"
    if head == "division":
        return "attribute[division]" if given.get("division") else "jurisdiction_id"
    if head == "title":
        return "attribute[title]" if given.get("title") else "description"
    return FIELDS.get(head, ".".join(path))


def message(msg: str) -> str:
    return str(msg).removeprefix("Value error, ")


def problem_errors(problem: Mapping, given: Mapping[str, bool] | None = None) -> Open311Error:
    """A problem document (RFC 9457, from the appeal service or the gateway) as Open311 errors
    with the same HTTP status: one per field it names, or its detail."""
    status = int(problem.get("status", 400))
    fields = problem.get("errors") or []
    if fields:
        return Open311Error(status, *(f"{open311_field(e.get('loc', ()), given or {})}: {message(e.get('msg', ''))}"
                                      for e in fields))
    return Open311Error(status, str(problem.get("detail") or problem.get("title") or "the request failed"))
