"""The scope matrix (issue 16, item 7): every operation of the running gateway's /openapi.json
under /api/v1, called as every caller of tests/scope_matrix.py (an admin; an operator, a
secretary, a station manager and a worker each inside and outside the data's scope; a handler),
on a data set made once by the admin through the API; then the lists of each narrowed caller,
calls that name someone else's record in the body or the query, calls on targets in a state that
stops them (deregistered, dissolved, closed, ended: a refusal must come first), calls without a
token, and the live stream over the WebSocket.

The expectation of each (operation, caller) is a row of tests/scope_matrix.py: a new route joins
by a row there, and an operation without one fails `test_every_operation_has_a_row`, by name.

Known authorization bugs stay visible as strict xfails (KNOWN_BUGS below): the case fails until
the bug is fixed, then the xfail itself fails and is removed."""

import json
import re
import threading
import uuid
from datetime import date, datetime, timedelta, timezone

import chinese_calendar
import httpx
import pytest

from platform_testing import credit_code, new_id_number, new_phone, wait_for
from tests import scope_matrix as M

pytestmark = pytest.mark.slow

PASSWORD = "scope-matrix-pass"
DATA_DISTRICT, OTHER_DISTRICT = "370112", "370113"  # Licheng: the data's; Changqing: the "_out" callers'
STREET = "701"  # streets of their own in both districts, which no other test uses
CALENDAR_YEAR = 2004  # the package's own data for it is loaded again: nothing changes
APPEAL_CATEGORY = "rights"  # the data's appeals, routed in each district to its department

# Authorization bugs the matrix found, as strict xfails: (test, case key, caller) -> the bug. A fix
# makes its cases pass, so that their xfail fails and is removed with it.
# None at present: the four the matrix found (report-in, member registration and a member's
# online_branch_id checking the named organization before the caller; sign-ups a closed station
# before the caller) are fixed, each with a regression test in its service's tests.
KNOWN_BUGS: dict[tuple[str, str, str], str] = {}


# ---- fresh valid values --------------------------------------------------------------------

def fresh_name(prefix: str = "矩阵") -> str:
    return f"{prefix}{uuid.uuid4().hex[:6]}"


def in_two_days() -> datetime:
    return datetime.now(timezone.utc).replace(microsecond=0) + timedelta(days=2)


# Required body fields, filled by name: what the request schema cannot say (a check character, a
# record that exists, a district registered here). Anything else is derived from its schema.
FIELD_VALUES = {
    "division": lambda d: d["street"],
    "credit_code": lambda d: credit_code(d["district"]),
    "id_number": lambda d: new_id_number(d["district"]),
    "phone": lambda d: new_phone(),
    "name": lambda d: fresh_name(),
    "industry": lambda d: "delivery",
    "organization_id": lambda d: d["organization"],
    "to_organization_id": lambda d: d["to_organization"],
    "unit_id": lambda d: d["unit"],
    "instructor_id": lambda d: d["instructor"],
    "member_id": lambda d: d["member"],
    "station_id": lambda d: d["station"],
    "reason": lambda d: "范围矩阵检查",
    "location": lambda d: {"lng": 117.05, "lat": 36.68},
    "address": lambda d: "济南市",
    "opening_hours": lambda d: "24/7",
    "title": lambda d: "矩阵活动",
    "description": lambda d: "范围矩阵检查的活动",
    "starts_at": lambda d: in_two_days().isoformat(),
    "ends_at": lambda d: (in_two_days() + timedelta(hours=2)).isoformat(),
    "capacity": lambda d: 100,
    "quantity": lambda d: 50,
    "low_threshold": lambda d: 10,
    "delta": lambda d: 1,
    "username": lambda d: fresh_name("matrix"),
    "password": lambda d: PASSWORD,
    "year": lambda d: d["calendar_year"],
    "department_id": lambda d: d["department"],
    "into": lambda d: d["main_appeal"],  # not a fresh target's own "appeal": none is merged into itself
    "value": lambda d: fresh_name("matrix-device-"),
}


# ---- filling a call from the data set --------------------------------------------------------

def resolve(value, data: dict):
    """ "{key}" is data[key] as it is; "a{key}b" a string; dicts and lists element by element."""
    if isinstance(value, str):
        whole = re.fullmatch(r"\{(\w+)\}", value)
        if whole:
            return data[whole.group(1)]
        return value.format(**data) if "{" in value else value
    if isinstance(value, dict):
        return {k: resolve(v, data) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve(v, data) for v in value]
    return value


class Schemas:
    def __init__(self, document: dict):
        self.components = document.get("components", {}).get("schemas", {})

    def deref(self, schema: dict) -> dict:
        while "$ref" in schema:
            schema = self.components[schema["$ref"].rsplit("/", 1)[-1]]
        return schema

    def example(self, schema: dict, name: str | None, data: dict):
        """A minimal valid value: required fields only; by field name when FIELD_VALUES knows it."""
        if name in FIELD_VALUES:
            return FIELD_VALUES[name](data)
        schema = self.deref(schema)
        if "anyOf" in schema:
            choices = [s for s in schema["anyOf"] if self.deref(s).get("type") != "null"]
            return self.example(choices[0], None, data) if choices else None
        if "enum" in schema:
            return schema["enum"][0]
        kind = schema.get("type")
        if kind == "object" or "properties" in schema:
            properties = schema.get("properties", {})
            return {key: self.example(properties[key], key, data) for key in schema.get("required", [])}
        if kind == "array":
            return [self.example(schema["items"], None, data) for _ in range(schema.get("minItems", 0))]
        if kind == "integer":
            return max(int(schema.get("minimum", 1)), 1)
        if kind == "boolean":
            return False
        if schema.get("format") == "date":
            return date.today().isoformat()
        if schema.get("format") == "date-time":
            return in_two_days().isoformat()
        if kind == "string":
            return "scope-matrix"
        raise AssertionError(f"no example for field {name!r}: {schema}")


def merge(base, over):
    if isinstance(base, dict) and isinstance(over, dict):
        merged = dict(base)
        for key, value in over.items():
            merged[key] = merge(base.get(key), value) if key in base else value
        return merged
    return over


class Operation:
    def __init__(self, operation_id: str, method: str, path: str, spec: dict):
        self.id, self.method, self.path, self.spec = operation_id, method.upper(), path, spec
        self.path_parameters = [p["name"] for p in spec.get("parameters", []) if p["in"] == "path"]
        content = spec.get("requestBody", {}).get("content", {})
        self.body_schema = content.get("application/json", {}).get("schema")

    def url(self, row: M.Row, data: dict) -> str:
        values = {}
        for name in self.path_parameters:
            source = row.path.get(name) or "{" + M.PATH_PARAMETERS.get(name, name.removesuffix("_id")) + "}"
            values[name] = resolve(source, data)
        return self.path.format(**values)

    def body(self, schemas: Schemas, row_body: dict, data: dict):
        if self.body_schema is None:
            assert not row_body, f"{self.id} takes no body, but its row gives one"
            return None
        return merge(schemas.example(self.body_schema, None, data), resolve(row_body, data))


def operations_of(document: dict) -> dict[str, Operation]:
    return {spec["operationId"]: Operation(spec["operationId"], method, path, spec)
            for path, methods in document["paths"].items() for method, spec in methods.items()}


def short(operation_id: str) -> str:
    return operation_id.split("_api_v1")[0]


# ---- the data set, the callers, fresh targets -------------------------------------------------

def created(response: httpx.Response) -> dict:
    assert response.status_code == 201, (response.request.method, str(response.request.url), response.text)
    return response.json()


def ok(response: httpx.Response) -> dict:
    assert response.status_code == 200, (response.request.method, str(response.request.url), response.text)
    return response.json()


class World:
    """One platform, two districts' data, one account per caller; made once for the module."""

    def __init__(self, platform):
        self.platform = platform
        self.document = httpx.get(f"{platform.gateway_url}/openapi.json", timeout=10).json()
        self.operations = operations_of(self.document)
        self.schemas = Schemas(self.document)
        self.admin = platform.client()
        self.clients: dict[str, httpx.Client] = {}
        self.usernames: dict[str, str] = {}
        self.scopes: dict[str, tuple[str, object]] = {M.ADMIN: ("admin", None)}
        self.tokens: dict[str, str] = {M.ADMIN: platform.admin_token()}
        self._shared: dict[str, tuple[dict, dict, dict]] = {}  # operation -> a target the refused share
        self._stale: dict[str, tuple[dict, dict, dict]] = {}  # STALE key -> its stopped target
        for caller in M.NARROWED_CALLERS:
            self.usernames[caller] = f"{caller.replace('_', '')}{uuid.uuid4().hex[:6]}"
        self.data = self.district(DATA_DISTRICT)
        self.other = self.district(OTHER_DISTRICT)
        self.data.update({f"other_{k}": v for k, v in self.other.items()})
        for caller, role, scope in (
                (M.OPERATOR_IN, "operator", DATA_DISTRICT), (M.OPERATOR_OUT, "operator", OTHER_DISTRICT),
                (M.SECRETARY_IN, "secretary", [self.data["organization"]]),
                (M.SECRETARY_OUT, "secretary", [self.other["organization"]]),
                (M.MANAGER_IN, "station_manager", [self.data["station"]]),
                (M.MANAGER_OUT, "station_manager", [self.other["station"]]),
                (M.WORKER_IN, "worker", self.data["member"]), (M.WORKER_OUT, "worker", self.other["member"]),
                (M.HANDLER, "handler", ["department-of-nothing-here"])):
            self.tokens[caller] = self.account(role, scope, self.usernames[caller])
            self.scopes[caller] = (role, scope)
        # A station names an existing account as its manager: the managers' accounts are scoped
        # to the stations, so the stations come first and name them now.
        for data, caller in ((self.data, M.MANAGER_IN), (self.other, M.MANAGER_OUT)):
            ok(self.admin.patch(f"/stations/{data['station']}", json={"manager": self.usernames[caller]}))
        self.data["user"] = created(self.admin.post("/users", json={  # an account for /users/{user_id}
            "username": fresh_name("spare"), "password": PASSWORD, "role": "worker",
            "scope": self.data["member"]}))["id"]
        # The data's notification: the transfer awaits the sending side's approval. The organization
        # service counts the full members from their events: the unit's alert.
        for data in (self.data, self.other):
            wait_for(lambda: data["unit"] in {u["id"] for u in ok(self.admin.get(
                "/coverage/alerts", params={"division": data["street"], "limit": 500}))["items"]},
                what="the data's unit on the coverage alerts")
            data["notification"] = wait_for(lambda: next(
                (n["id"] for n in ok(self.admin.get("/notifications", params={"limit": 500}))["items"]
                 if n["subject"] == data["transfer"] and n["type"] == "transfer.awaiting_approval"), None),
                what="the transfer's notification to the sending side")
        self.data["other_notification"] = self.other["notification"]
        # Appeals: each district's raised by its worker, routed to its department (district()),
        # whose handler is an account of its own; one blocklist entry for the path.
        for data, worker in ((self.data, M.WORKER_IN), (self.other, M.WORKER_OUT)):
            data["appeal"] = data["main_appeal"] = self.appeal(data["street"], worker)
            data["dept_handler"] = fresh_name("depthandler")
            self.account("handler", [data["department"]], data["dept_handler"])
        self.data["other_appeal"] = self.other["appeal"]
        self.data["block_entry"] = self.block_entry()
        self.data["import"] = self.ledger_import(self.data["street"])

    def close(self):
        for client in [self.admin, *self.clients.values()]:
            client.close()

    def account(self, role: str, scope, username: str | None = None) -> str:
        username = username or fresh_name(role.replace("_", ""))
        created(self.admin.post("/users", json={"username": username, "password": PASSWORD, "role": role,
                                                "scope": scope}))
        return self.platform.token(username, PASSWORD)

    def client(self, token: str | None) -> httpx.Client:
        key = token or ""
        if key not in self.clients:
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            self.clients[key] = httpx.Client(base_url=f"{self.platform.gateway_url}/api/v1", headers=headers,
                                             timeout=15)
        return self.clients[key]

    # -- records, as the admin makes them --

    def unit(self, street: str) -> str:
        return created(self.admin.post("/units", json={
            "credit_code": credit_code(street[:6]), "name": fresh_name("矩阵单位"), "type": "platform_company",
            "industry": "delivery", "division": street}))["id"]

    def organization(self, street: str, unit_ids=()) -> str:
        return created(self.admin.post("/organizations", json={
            "name": fresh_name("矩阵联合支部"), "kind": "joint_branch", "formation": "joint", "division": street,
            "unit_ids": list(unit_ids), "secretary": "李书记"}))["id"]

    def member(self, organization: str, unit: str, district: str, **fields) -> tuple[str, str]:
        id_number = new_id_number(district)
        member = created(self.admin.post("/members", json={
            "name": "王骑手", "id_number": id_number, "phone": new_phone(), "organization_id": organization,
            "unit_id": unit, "occupation": "rider", **fields}))
        return member["id"], id_number

    def transfer(self, member: str, to_organization: str) -> str:
        return created(self.admin.post("/transfers", json={
            "member_id": member, "to_organization_id": to_organization, "reason": "工作调动"}))["id"]

    def station(self, street: str, manager: str | None) -> str:
        return created(self.admin.post("/stations", json={
            "kind": "warm_station", "name": fresh_name("矩阵驿站"), "division": street, "address": "济南市",
            "location": {"lng": 117.05, "lat": 36.68}, "opening_hours": "24/7", "manager": manager}))["id"]

    def activity(self, station: str) -> str:
        start = in_two_days()
        return created(self.admin.post(f"/stations/{station}/activities", json={
            "title": "矩阵活动", "description": "范围矩阵", "starts_at": start.isoformat(),
            "ends_at": (start + timedelta(hours=2)).isoformat(), "capacity": 100}))["id"]

    def appeal(self, street: str, worker: str = M.WORKER_IN) -> str:
        """An appeal raised by a worker (the data's, by default) in `street`, routed to its department."""
        return created(self.client(self.tokens[worker]).post("/appeals", json={
            "category": APPEAL_CATEGORY, "title": "矩阵诉求", "description": "范围矩阵检查的诉求", "division": street,
            "location": {"lng": 117.05, "lat": 36.68}}))["id"]

    def ledger_import(self, street: str) -> str:
        """The admin's import of a units ledger with one good row and one bad one (an errors workbook)."""
        rows = [f"{credit_code(street)},矩阵单位,非公企业,express,{street}001",
                f"{credit_code(street)},,非公企业,express,{street}001"]
        content = "\n".join(["统一社会信用代码,单位名称,单位类型,所属行业,区划代码", *rows]).encode()
        response = self.admin.post("/imports", data={"ledger": "units"}, files={"file": ("units.csv", content)})
        assert response.status_code == 202, response.text
        import_id = response.json()["id"]
        wait_for(lambda: ok(self.admin.get(f"/imports/{import_id}"))["status"] == "done", what="the data's import")
        return import_id

    def block_entry(self) -> str:
        return created(self.admin.post("/appeal-blocklist", json={"kind": "device",
                                                                  "value": fresh_name("matrix-device-")}))["id"]

    def district(self, district: str) -> dict:
        street = district + STREET
        unit = self.unit(street)
        organization = self.organization(street, [unit])
        to_organization = self.organization(street)
        instructor = created(self.admin.post("/instructors", json={
            "name": "张指导员", "phone": new_phone(), "division": street}))["id"]
        member, id_number = self.member(organization, unit, district)
        transfer = self.transfer(member, to_organization)
        for _ in range(3):  # the unit should establish an organization of its own: an alert
            self.member(organization, unit, district, stage="full", joined_on="2015-07-01", stage_on="2016-07-01")
        station = self.station(street, None)  # its manager is named once the account exists (below)
        ok(self.admin.put(f"/stations/{station}/supplies/water", json={"quantity": 50, "low_threshold": 10}))
        activity = self.activity(station)
        sign_up = created(self.admin.post(f"/stations/{station}/activities/{activity}/sign-ups", json={}))["id"]
        # The member service learns of the station from its event: wait until a check-in names it.
        wait_for(lambda: self.admin.post(f"/members/{member}/check-ins", json={"station_id": station}
                                         ).status_code == 201, what="the member service knowing the station")
        department = created(self.admin.post("/departments", json={
            "name": fresh_name("矩阵部门"), "division": district}))["id"]
        ok(self.admin.put("/appeal-routing", json={"category": APPEAL_CATEGORY, "division": district,
                                                   "department_id": department}))
        holidays = sorted(d.isoformat() for d in chinese_calendar.holidays if d.year == CALENDAR_YEAR)
        workdays = sorted(d.isoformat() for d in chinese_calendar.workdays if d.year == CALENDAR_YEAR)
        return {"district": district, "street": street, "unit": unit, "organization": organization,
                "to_organization": to_organization, "instructor": instructor, "member": member,
                "id_number": id_number, "transfer": transfer, "station": station, "supply_item": "water",
                "activity": activity, "sign_up": sign_up, "today": date.today().isoformat(),
                "calendar_year": CALENDAR_YEAR,
                "calendar_holidays": holidays, "calendar_workdays": workdays,
                "spare_division": district + "799", "department": department, "category": APPEAL_CATEGORY}

    # -- fresh targets: (data overrides, {caller: (role, scope)} bound to them) --

    def fresh(self, maker: str) -> tuple[dict, dict]:
        d, street = self.data, self.data["street"]
        if maker == "unit":
            return {"unit": self.unit(street)}, {}
        if maker == "unit_with_instructor":
            unit = self.unit(street)
            ok(self.admin.put(f"/units/{unit}/instructor", json={"instructor_id": d["instructor"]}))
            return {"unit": unit}, {}
        if maker in ("organization", "organization_and_unit", "organization_with_unit"):
            unit = self.unit(street)
            organization = self.organization(street, [unit] if maker == "organization_with_unit" else [])
            return {"organization": organization, "unit": unit}, {M.SECRETARY_IN: ("secretary", [organization])}
        if maker.startswith(("member", "transfer_")):
            member, id_number = self.member(d["organization"], d["unit"], d["district"])
            overrides = {"member": member, "id_number": id_number}
            if maker != "member":
                overrides["transfer"] = transfer = self.transfer(member, d["to_organization"])
                if maker in ("transfer_approved", "transfer_received"):
                    ok(self.admin.post(f"/transfers/{transfer}/approve", json={}))
                if maker == "transfer_received":
                    ok(self.admin.post(f"/transfers/{transfer}/receive"))
            return overrides, {M.WORKER_IN: ("worker", member)}
        if maker == "station":
            station = self.station(street, None)
            return {"station": station}, {M.MANAGER_IN: ("station_manager", [station])}
        if maker in ("activity", "sign_up"):
            activity = self.activity(d["station"])
            overrides = {"activity": activity}
            if maker == "sign_up":  # the data's member, signed up by the admin
                overrides["sign_up"] = created(self.admin.post(
                    f"/stations/{d['station']}/activities/{activity}/sign-ups", json={"member_id": d["member"]}))["id"]
            return overrides, {}
        if maker in ("appeal", "accepted_appeal", "resolved_appeal"):
            appeal = self.appeal(street)
            if maker != "appeal":
                ok(self.admin.post(f"/appeals/{appeal}/accept", json={}))
            if maker == "resolved_appeal":
                ok(self.admin.post(f"/appeals/{appeal}/resolve", json={"resolution": "矩阵已办结"}))
            return {"appeal": appeal}, {}
        if maker == "block_entry":
            return {"block_entry": self.block_entry()}, {}
        raise AssertionError(f"no maker of fresh targets named {maker!r}")

    def stale(self, maker: str) -> tuple[dict, dict]:
        """A target in a state that stops the operations on it: (data overrides, bound callers)."""
        d, admin = self.data, self.admin
        if maker == "deregistered_unit":
            overrides, binds = self.fresh("unit_with_instructor")
            ok(admin.post(f"/units/{overrides['unit']}/deregister"))
            return overrides, binds
        if maker == "dissolved_organization":
            overrides, binds = self.fresh("organization_with_unit")
            ok(admin.post(f"/organizations/{overrides['organization']}/dissolve"))
            return overrides, binds
        if maker == "full_member":
            member, id_number = self.member(d["organization"], d["unit"], d["district"], stage="full",
                                            joined_on="2015-07-01", stage_on="2016-07-01")
            return {"member": member, "id_number": id_number}, {M.WORKER_IN: ("worker", member)}
        if maker == "cancelled_transfer":
            overrides, binds = self.fresh("transfer_requested")
            ok(admin.post(f"/transfers/{overrides['transfer']}/cancel", json={}))
            return overrides, binds
        if maker == "received_transfer_to_a_dissolved_organization":
            member, id_number = self.member(d["organization"], d["unit"], d["district"])
            receiving = self.organization(d["street"])
            transfer = self.transfer(member, receiving)
            ok(admin.post(f"/transfers/{transfer}/approve", json={}))
            ok(admin.post(f"/transfers/{transfer}/receive"))
            ok(admin.post(f"/organizations/{receiving}/dissolve"))
            return {"member": member, "id_number": id_number, "transfer": transfer}, {M.WORKER_IN: ("worker", member)}
        if maker == "received_transfer_to_a_deregistered_unit":
            member, id_number = self.member(d["organization"], d["unit"], d["district"])
            unit = self.unit(d["street"])
            transfer = created(admin.post("/transfers", json={
                "member_id": member, "to_organization_id": d["to_organization"], "to_unit_id": unit,
                "reason": "工作调动"}))["id"]
            ok(admin.post(f"/transfers/{transfer}/approve", json={}))
            ok(admin.post(f"/transfers/{transfer}/receive"))
            ok(admin.post(f"/units/{unit}/deregister"))
            return {"member": member, "id_number": id_number, "transfer": transfer}, {M.WORKER_IN: ("worker", member)}
        if maker == "closed_station":
            overrides, binds = self.fresh("station")
            station = overrides["station"]
            ok(admin.put(f"/stations/{station}/supplies/water", json={"quantity": 50, "low_threshold": 10}))
            overrides["activity"] = self.activity(station)  # cancelled by the close
            ok(admin.post(f"/stations/{station}/close"))
            return overrides, binds
        if maker == "cancelled_activity":
            overrides, binds = self.fresh("activity")
            ok(admin.post(f"/stations/{d['station']}/activities/{overrides['activity']}/cancel",
                          json={"reason": "矩阵"}))
            return overrides, binds
        if maker == "cancelled_sign_up":
            overrides, binds = self.fresh("sign_up")
            ok(admin.delete(f"/stations/{d['station']}/activities/{overrides['activity']}/sign-ups/"
                            f"{overrides['sign_up']}"))
            return overrides, binds
        if maker == "rejected_appeal":
            overrides, binds = self.fresh("appeal")
            ok(admin.post(f"/appeals/{overrides['appeal']}/reject", json={"reason": "矩阵不予受理"}))
            return overrides, binds
        raise AssertionError(f"no maker of stale targets named {maker!r}")

    def stale_target(self, key: str, caller: str) -> tuple[dict, str]:
        """One stale target per case key, shared by the callers it refuses."""
        if key not in self._stale:
            maker = M.STALE[key]["target"]
            self._stale[key] = (*(self.stale(maker) if maker else ({}, {})), {})
        overrides, binds, tokens = self._stale[key]
        if caller in binds and caller not in tokens:
            tokens[caller] = self.account(*binds[caller])
        return {**self.data, **overrides}, tokens.get(caller, self.tokens[caller])

    def target(self, operation_id: str, row: M.Row, caller: str, expected: str) -> tuple[dict, str]:
        """The data and the token for one call: a fresh target of its own for a call that is to
        succeed; the one the refused share (made on first use, again after a call changed it)."""
        if row.fresh is None:
            return self.data, self.tokens[caller]
        if expected == "refused" and operation_id in self._shared:
            overrides, binds, tokens = self._shared[operation_id]
        else:
            overrides, binds = self.fresh(row.fresh)
            tokens = {}
            if expected == "refused":
                self._shared[operation_id] = (overrides, binds, tokens)
        if caller in binds and caller not in tokens:
            tokens[caller] = self.account(*binds[caller])
        return {**self.data, **overrides}, tokens.get(caller, self.tokens[caller])

    def spent(self, operation_id: str) -> None:
        self._shared.pop(operation_id, None)

    def call(self, operation_id: str, row: M.Row, data: dict, token: str | None, *, query=None, body=None):
        operation = self.operations[operation_id]
        params = {k: v for k, v in resolve({**row.query, **(query or {})}, data).items() if v is not None}
        payload = operation.body(self.schemas, merge(row.body, body or {}), data)
        kwargs = {"params": params}
        if payload is not None:
            kwargs["json"] = payload
        return self.client(token).request(operation.method, operation.url(row, data).removeprefix("/api/v1"),
                                          **kwargs)


@pytest.fixture(scope="module")
def world(platform):
    made = World(platform)
    yield made
    made.close()


# ---- every operation has a row ---------------------------------------------------------------

def test_every_operation_has_a_row(world):
    documented = set(world.operations)
    missing = sorted(documented - set(M.MATRIX) - set(M.EXCLUDED))
    assert not missing, ("operations of /openapi.json with no row in tests/scope_matrix.py MATRIX (say who may "
                         "call each, or exclude it with its reason): " + ", ".join(missing))
    stale = sorted((set(M.MATRIX) | set(M.EXCLUDED)) - documented)
    assert not stale, "rows for operations /openapi.json no longer has: " + ", ".join(stale)
    outside = sorted(op.id for op in world.operations.values()
                     if op.id in M.MATRIX and not op.path.startswith("/api/v1/"))
    assert not outside, f"rows for operations outside /api/v1: {outside}"
    assert not set(M.MATRIX) & set(M.EXCLUDED)
    for key in [*M.MIXED, *M.STALE]:
        assert key.split("#")[0] in M.MATRIX, key
    cases = {(test, *param.values) for test, params in (("matrix", MATRIX_CASES), ("list", LIST_CASES),
                                                           ("mixed", MIXED_CASES), ("stale", STALE_CASES))
             for param in params}
    assert set(KNOWN_BUGS) <= cases, f"known bugs of no case: {sorted(set(KNOWN_BUGS) - cases)}"


# ---- the matrix ------------------------------------------------------------------------------

def expectation(row: M.Row, caller: str) -> str:
    return "ok" if caller in row.ok else "narrowed" if caller in row.narrowed else "refused"


def data_ids(data: dict) -> set[str]:
    return {v for k, v in data.items() if k in ("unit", "organization", "instructor", "member", "transfer",
                                                   "notification", "appeal", "department") and isinstance(v, str)}


def judge(response: httpx.Response, expected: str, what: str, data: dict) -> None:
    status = response.status_code
    said = f"{what}: expected {expected}, got {status} {response.text[:400]}"
    assert status < 500, said
    if expected == "ok":
        assert 200 <= status < 300, said
    elif expected == "narrowed":
        assert 200 <= status < 300, said
        leaked = sorted(i for i in data_ids(data) if i in response.text)
        assert not leaked, f"{what}: answered with the data's records {leaked}: {response.text[:400]}"
    else:
        assert status in (403, 404), said


def with_known_bugs(test: str, cases) -> list:
    return [pytest.param(*case, id=ident, marks=pytest.mark.xfail(strict=True, reason=KNOWN_BUGS[key])
                         if (key := (test, *case)) in KNOWN_BUGS else ()) for case, ident in cases]


MATRIX_CASES = with_known_bugs("matrix", [((operation_id, caller), f"{short(operation_id)}-{caller}")
                                          for operation_id in M.MATRIX for caller in M.CALLERS])


@pytest.mark.parametrize("operation_id,caller", MATRIX_CASES)
def test_scope_matrix(world, operation_id, caller):
    assert operation_id in world.operations, f"{operation_id} is no longer in /openapi.json"
    row = M.MATRIX[operation_id]
    expected = expectation(row, caller)
    data, token = world.target(operation_id, row, caller, expected)
    response = world.call(operation_id, row, data, token)
    if expected == "refused" and response.is_success:
        world.spent(operation_id)  # what the refused share has changed: the next one gets a new target
    operation = world.operations[operation_id]
    judge(response, expected, f"{operation.method} {operation.path} as {caller}", data)


@pytest.mark.parametrize("operation_id", [pytest.param(op, id=short(op)) for op in M.MATRIX])
def test_no_token_is_401(world, operation_id):
    for token in (None, "not-a-token", world.tokens[M.ADMIN][:-4] + "AAAA"):  # none, garbage, a forged signature
        response = world.call(operation_id, M.MATRIX[operation_id], world.data, token)
        assert response.status_code == 401, (operation_id, token, response.status_code, response.text[:300])
        assert response.headers["content-type"].startswith("application/problem+json")


# ---- lists are narrowed to the caller's scope -------------------------------------------------

def in_scope(kind: str | None, role: str, scope, item: dict) -> bool:
    if kind is None or role == "admin":
        return True
    if kind == "division":
        return role == "operator" and item["division"].startswith(scope)
    if kind == "member":
        return {"operator": lambda: item["division"].startswith(scope),
                "secretary": lambda: item["organization_id"] in scope,
                "worker": lambda: item["id"] == scope}[role]()
    if kind == "transfer":
        return {"operator": lambda: item["from_division"].startswith(scope) or item["to_division"].startswith(scope),
                "secretary": lambda: item["from_organization_id"] in scope or item["to_organization_id"] in scope,
                "worker": lambda: item["member_id"] == scope}[role]()
    raise AssertionError(f"no scope check named {kind!r}")


LIST_CASES = with_known_bugs("list", [((operation_id, caller), f"{short(operation_id)}-{caller}")
                                      for operation_id, row in M.MATRIX.items() if row.sees is not None or row.items
                                      for caller in M.CALLERS if caller in row.ok | row.narrowed])


@pytest.mark.parametrize("operation_id,caller", LIST_CASES)
def test_unfiltered_lists_hold_only_the_callers_records(world, operation_id, caller):
    """Without a filter, a list shows the caller's scope: the data's record only to those who
    `sees` it, and every record within the caller's own scope (an operator of 370112 listing
    /units never sees 370113's)."""
    row = M.MATRIX[operation_id]
    listing = M.Row(row.ok, path=row.path)  # no query: the service narrows on its own
    items, cursor = [], None
    for _ in range(20):
        response = world.call(operation_id, listing, world.data, world.tokens[caller],
                              query={"limit": 500, "cursor": cursor})
        assert response.status_code == 200, (operation_id, caller, response.text[:300])
        page = response.json()
        items += page["items"]
        if not (cursor := page.get("next_cursor")):
            break
    role, scope = world.scopes[caller]
    ids = {item.get("id") for item in items}
    if row.record is not None:
        record, other_record = world.data[row.record], world.other[row.record]
        if caller in row.sees:
            assert record in ids, f"{caller} does not find the data's {row.record} {record} in {operation_id}"
        else:
            assert record not in ids, \
                f"{caller} ({role} {scope}) sees the data's {row.record} {record} in {operation_id}"
        if caller in (M.OPERATOR_IN, M.SECRETARY_IN, M.WORKER_IN) and row.sees != M.EVERYONE:
            assert other_record not in ids, f"{caller} sees 370113's {row.record} {other_record} in {operation_id}"
    strangers = [item for item in items if not in_scope(row.items, role, scope, item)]
    assert not strangers, f"{caller} ({role} {scope}) is shown records outside their scope: {strangers[:3]}"


# ---- a body or a filter naming a record that is not the caller's ----------------------------

def case_id(key: str, *more: str) -> str:
    return "-".join(filter(None, (short(key.split("#")[0]), key.partition("#")[2], *more)))


MIXED_CASES = with_known_bugs("mixed", [((key, mix.get("caller", M.OPERATOR_IN)), case_id(key))
                                        for key, mix in M.MIXED.items()])


@pytest.mark.parametrize("operation_id,caller", MIXED_CASES)
def test_a_record_not_the_callers_in_the_call_is_refused(world, operation_id, caller):
    """A caller on their own records with one record (or filter) that is not theirs in the body
    or the query (370113's, mostly): refused, although the same call without it succeeds (the
    matrix's `ok`)."""
    base_id = operation_id.split("#")[0]
    row, mix = M.MATRIX[base_id], M.MIXED[operation_id]
    assert caller in row.ok, f"{operation_id}: {caller} may not make the call unmixed either"
    data, token = world.target(base_id, row, caller, "ok")
    response = world.call(base_id, row, data, token, query=mix.get("query"), body=mix.get("body"))
    judge(response, "refused", f"{operation_id} as {caller} naming a record not theirs", data)


# ---- a refusal comes before the state of what is asked for ------------------------------------

STALE_CASES = with_known_bugs("stale", [((key, caller), case_id(key, caller)) for key in M.STALE
                                        for caller in M.CALLERS
                                        if expectation(M.MATRIX[key.split("#")[0]], caller) == "refused"])


@pytest.mark.parametrize("operation_id,caller", STALE_CASES)
def test_refused_whatever_the_state_of_the_target(world, operation_id, caller):
    """The refused callers of each operation, on a target that is deregistered, dissolved,
    closed, cancelled or ended: still 403 or 404, not the 409 or 422 its state gives those who
    may act on it (which tells them the state, and the records behind it)."""
    base_id = operation_id.split("#")[0]
    row = M.MATRIX[base_id]
    data, token = world.stale_target(operation_id, caller)
    response = world.call(base_id, row, data, token, body=M.STALE[operation_id].get("body"))
    judge(response, "refused", f"{operation_id} on a stopped target as {caller}", data)


# ---- the WebSocket ---------------------------------------------------------------------------

class Socket:
    """A WebSocket client of the live stream, reading in a thread."""

    def __init__(self, url: str, token: str):
        from websockets.sync.client import connect

        self.messages: list[dict] = []
        self.error: Exception | None = None
        self.connection = connect(f"{url}/api/v1/events/ws?access_token={token}", open_timeout=10)
        self.connection.send(json.dumps({"subscribe": {"types": ["*"]}}))
        first = json.loads(self.connection.recv(timeout=10))
        assert "subscribed" in first, first
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        try:
            for text in self.connection:
                self.messages.append(json.loads(text))
        except Exception as exc:  # closed at the end, or an error the waits report
            self.error = exc

    def events(self) -> list[dict]:
        return [m["event"] for m in list(self.messages) if "event" in m]

    def close(self):
        self.connection.close()


def addressed(audience: dict, role: str, scope, username: str) -> bool:
    """Whether a notification's audience names this caller (the rule CONTRACT.md states)."""
    if audience.get("username") == username:
        return True
    if audience.get("role") not in (None, role):
        return False
    if role == "operator":
        return (audience.get("division") or "").startswith(scope)
    if role == "secretary":
        return bool(set(audience.get("organization_ids") or ()) & set(scope))
    if role == "worker":
        return audience.get("member_id") == scope
    return False


def test_websocket_shows_no_narrowed_caller_another_districts_unit(world):
    """Each narrowed caller subscribes to every type; units, stations and transfers are made in
    both districts meanwhile. An operator receives their own district's unit and not the other's;
    the others receive neither (units are division-scoped records); and nobody receives an event
    outside their scope or a notification not addressed to them. Events reach a socket in log
    order, so a notification addressed to each caller after all that (a supply running low at a
    station they are named the manager of) tells that what came before was sent or filtered."""
    url = world.platform.gateway_url.replace("http://", "ws://")
    sockets = {caller: Socket(url, world.tokens[caller]) for caller in M.NARROWED_CALLERS}
    try:
        units = {DATA_DISTRICT: world.unit(DATA_DISTRICT + STREET), OTHER_DISTRICT: world.unit(OTHER_DISTRICT + STREET)}
        for data in (world.data, world.other):  # a transfer awaiting each side's approval
            member, _ = world.member(data["organization"], data["unit"], data["district"])
            world.transfer(member, data["to_organization"])
        beacons = {}
        for caller in M.NARROWED_CALLERS:
            # An operator's stream shows their division only, notifications addressed to them included.
            district = OTHER_DISTRICT if caller == M.OPERATOR_OUT else DATA_DISTRICT
            beacons[caller] = world.station(district + STREET, world.usernames[caller])
            ok(world.admin.put(f"/stations/{beacons[caller]}/supplies/water", json={"quantity": 0, "low_threshold": 5}))
        for caller, socket in sockets.items():
            wait_for(lambda: socket.error or any(
                e["type"] == "notification.created" and e["data"]["subject"] == beacons[caller]
                for e in socket.events()), what=f"{caller}'s low-supply notification on the WebSocket")
            assert socket.error is None, (caller, socket.error)
        own = {M.OPERATOR_IN: DATA_DISTRICT, M.OPERATOR_OUT: OTHER_DISTRICT}
        for caller, socket in sockets.items():
            about_units = {(e["type"], e["subject"]) for e in socket.events() if e["subject"] in units.values()}
            expected = {("unit.registered", units[own[caller]])} if caller in own else set()
            assert about_units == expected, f"{caller} received {about_units} about the two districts' units"
            role, scope = world.scopes[caller]
            for event in socket.events():
                if event["type"] == "notification.created":
                    assert addressed(event["data"]["audience"], role, scope, world.usernames[caller]), \
                        f"{caller} ({role} {scope}) received a notification not theirs: {event}"
                else:
                    sides = [event.get("division") or "", event.get("otherdivision") or ""]
                    assert role == "operator" and any(d.startswith(scope) for d in sides), \
                        f"{caller} ({role} {scope}) received an event outside their scope: {event}"
    finally:
        for socket in sockets.values():
            socket.close()


def test_websocket_filter_outside_the_operators_division_is_refused(world):
    """An operator who asks the socket for another district's events is told 403, and what they
    already subscribed to goes on (their own district only)."""
    url = world.platform.gateway_url.replace("http://", "ws://")
    socket = Socket(url, world.tokens[M.OPERATOR_IN])
    try:
        socket.connection.send(json.dumps({"subscribe": {"types": ["*"], "division": OTHER_DISTRICT}}))
        refusal = wait_for(lambda: socket.error or next((m["error"] for m in list(socket.messages) if "error" in m),
                                                        None), what="the refusal of the subscription")
        assert isinstance(refusal, dict) and refusal["status"] == 403, refusal
        other, mine = world.unit(OTHER_DISTRICT + STREET), world.unit(DATA_DISTRICT + STREET)
        wait_for(lambda: socket.error or any(e["subject"] == mine for e in socket.events()),
                 what="the operator's own district's unit on the socket")
        assert socket.error is None, socket.error
        assert not [e for e in socket.events() if e["subject"] == other]
    finally:
        socket.close()


@pytest.mark.parametrize("caller", [M.OPERATOR_IN, M.OPERATOR_OUT])
def test_an_operators_unfiltered_figures_are_their_districts(world, caller):
    """GET /coverage without a division gives an operator their own district's figures, not the
    platform's."""
    client = world.client(world.tokens[caller])
    district = world.scopes[caller][1]
    unfiltered = ok(client.get("/coverage"))
    filtered = ok(client.get("/coverage", params={"division": district}))
    assert unfiltered["division"] == district, unfiltered
    assert {k: v for k, v in unfiltered.items() if k != "as_of"} == {k: v for k, v in filtered.items() if k != "as_of"}

