"""Pure rules of the organization service: coverage, should-establish, the coverage counters
and what may be attached to what. No I/O here: repository.py loads and saves, application.py
composes the two inside a transaction."""

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime

from platform_contracts.codes import division_chain
from platform_contracts.organization import (
    CoverageFigures, CoverageStatus, Formation, OrganizationKind, OrganizationStatus, UnitStatus,
)
from platform_contracts.errors import Conflict, InvalidValue

# 应建尽建: a unit with this many full members and no standalone organization should form one.
SHOULD_ESTABLISH_MIN_FULL_MEMBERS = 3
COUNT_FIELDS = ("units", "organization_covered", "work_covered", "uncovered", "standalone_units", "should_establish")
ALL = "*"  # a counter dimension that is not filtered on


# ---- a unit's own coverage ---------------------------------------------------------------

def coverage_of(organization_ids: list[str], instructor_id: str | None) -> CoverageStatus:
    if organization_ids:
        return CoverageStatus.organization  # takes precedence over an instructor
    if instructor_id:
        return CoverageStatus.work
    return CoverageStatus.none


def should_establish(status: str, full_members: int, standalone: bool) -> bool:
    return status == UnitStatus.active and full_members >= SHOULD_ESTABLISH_MIN_FULL_MEMBERS and not standalone


def refresh_unit(unit: dict) -> dict:
    """Recompute the derived fields of a unit document from the facts it holds."""
    unit["standalone"] = bool(unit.get("standalone_organization_ids"))
    unit["coverage"] = coverage_of(unit.get("organization_ids", []), unit.get("instructor_id")).value
    unit["should_establish"] = should_establish(unit["status"], unit.get("full_members", 0), unit["standalone"])
    return unit


def member_category(stage: str | None) -> str | None:
    """Which member count a pipeline stage belongs to (CONTRACT: category full|probationary)."""
    return stage if stage in ("full", "probationary") else None


def member_count_field(category: str | None) -> str | None:
    return {"full": "full_members", "probationary": "probationary_members"}.get(category or "")


# ---- coverage counters -------------------------------------------------------------------

@dataclass(frozen=True)
class CounterKey:
    division: str  # a division prefix (2..12 digits) or ALL
    industry: str
    type: str

    @property
    def id(self) -> str:
        return f"{self.division}|{self.industry}|{self.type}"

    @classmethod
    def parse(cls, key_id: str) -> "CounterKey":
        return cls(*key_id.split("|"))


def counter_keys(division: str, industry: str, unit_type: str, from_length: int = 0) -> list[CounterKey]:
    """Every counter a unit counts in: each division level (and none), with and without its
    industry and type. A query for any combination then reads one document. `from_length`:
    only the levels of that many digits and more (6: district, street, community)."""
    divisions = (ALL, *division_chain(division)) if not from_length else \
        [d for d in division_chain(division) if len(d) >= from_length]
    return [CounterKey(d, i, t) for d in divisions for i in (ALL, industry) for t in (ALL, unit_type)]


def counts_of(unit: dict | None) -> dict[str, int]:
    """What one unit adds to each counter it belongs to (nothing once deregistered)."""
    if not unit or unit["status"] != UnitStatus.active:
        return {}
    coverage = unit["coverage"]
    return {
        "units": 1,
        "organization_covered": int(coverage == CoverageStatus.organization),
        "work_covered": int(coverage == CoverageStatus.work),
        "uncovered": int(coverage == CoverageStatus.none),
        "standalone_units": int(bool(unit.get("standalone"))),
        "should_establish": int(bool(unit.get("should_establish"))),
    }


def contribution(unit: dict | None, from_length: int = 0) -> dict[str, dict[str, int]]:
    counts = counts_of(unit)
    if not counts:
        return {}
    return {key.id: dict(counts)
            for key in counter_keys(unit["division"], unit["industry"], unit["type"], from_length)}


def counter_delta(before: dict | None, after: dict | None) -> dict[str, dict[str, int]]:
    """The increments that take the counters from a unit's old state to its new one."""
    delta: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(COUNT_FIELDS, 0))
    for sign, unit in ((-1, before), (1, after)):
        for key_id, counts in contribution(unit).items():
            for field, value in counts.items():
                delta[key_id][field] += sign * value
    return {k: v for k, v in delta.items() if any(v.values())}


def merge_deltas(deltas: list[dict[str, dict[str, int]]]) -> dict[str, dict[str, int]]:
    merged: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(COUNT_FIELDS, 0))
    for delta in deltas:
        for key_id, counts in delta.items():
            for field, value in counts.items():
                merged[key_id][field] += value
    return {k: v for k, v in merged.items() if any(v.values())}


def expected_counters(units, from_length: int = 0) -> dict[str, dict[str, int]]:
    """Counters recounted from scratch (reconciliation), of levels from `from_length` digits."""
    totals: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(COUNT_FIELDS, 0))
    for unit in units:
        for key_id, counts in contribution(unit, from_length).items():
            row = totals[key_id]
            for field, value in counts.items():
                row[field] += value
    return totals


DISTRICT_LENGTH = 6


def rolled_up(district_counters: dict[str, dict[str, int]]) -> dict[str, dict[str, int]]:
    """The counters above districts (city, province, all) as the sums of the district ones."""
    totals: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(COUNT_FIELDS, 0))
    for key_id, counts in district_counters.items():
        key = CounterKey.parse(key_id)
        if len(key.division) != DISTRICT_LENGTH:
            continue
        for division in (ALL, key.division[:2], key.division[:4]):
            row = totals[CounterKey(division, key.industry, key.type).id]
            for field in COUNT_FIELDS:
                row[field] += counts.get(field, 0)
    return totals


def counter_corrections(expected: dict[str, dict[str, int]],
                        stored: dict[str, dict[str, int]]) -> dict[str, dict[str, int]]:
    """Counters whose stored values differ from the recount, with what to add to each field.
    Added (not set) after the snapshot they were read in, a correction stays right whatever
    commands committed since: each of those moved the facts and the counters together."""
    corrections = {}
    for key_id in set(expected) | set(stored):
        want, have = expected.get(key_id, {}), stored.get(key_id, {})
        delta = {f: want.get(f, 0) - have.get(f, 0) for f in COUNT_FIELDS}
        if any(delta.values()):
            corrections[key_id] = delta
    return corrections


def add_counters(base: dict[str, dict[str, int]], deltas: dict[str, dict[str, int]]) -> dict[str, dict[str, int]]:
    """`base` with `deltas` added, field by field (neither is changed)."""
    total = {key_id: dict(counts) for key_id, counts in base.items()}
    for key_id, delta in deltas.items():
        row = total.setdefault(key_id, dict.fromkeys(COUNT_FIELDS, 0))
        for field, value in delta.items():
            row[field] = row.get(field, 0) + value
    return total


def figures(counts: dict | None, key: CounterKey, as_of: datetime | None) -> CoverageFigures:
    counts = counts or {}
    units = counts.get("units", 0)

    def rate(n: int) -> float:
        return round(n / units, 6) if units else 0.0

    return CoverageFigures(
        division=None if key.division == ALL else key.division,
        industry=None if key.industry == ALL else key.industry,
        type=None if key.type == ALL else key.type,
        units=units,
        organization_covered=counts.get("organization_covered", 0),
        work_covered=counts.get("work_covered", 0),
        uncovered=counts.get("uncovered", 0),
        organization_rate=rate(counts.get("organization_covered", 0)),
        work_rate=rate(counts.get("work_covered", 0)),
        standalone_units=counts.get("standalone_units", 0),
        standalone_rate=rate(counts.get("standalone_units", 0)),
        should_establish=counts.get("should_establish", 0),
        as_of=as_of,
    )


def scopes_reported(division: str, industry: str, unit_type: str) -> list[CounterKey]:
    """The counters a coverage.changed event reports: the division chain, and the unit's
    industry and type within its district."""
    chain = [CounterKey(d, ALL, ALL) for d in (ALL, *division_chain(division))]
    district = division[:6]
    return chain + [CounterKey(district, industry, ALL), CounterKey(district, ALL, unit_type)]


# ---- organizations -----------------------------------------------------------------------

def is_joint(kind: str, formation: str) -> bool:
    return formation == Formation.joint or kind == OrganizationKind.joint_branch


def check_unit_count(kind: str, formation: str, unit_count: int, joint_cap: int,
                     field: str | tuple = "unit_ids") -> None:
    """`field`: the request field that made the count."""
    if formation == Formation.standalone and unit_count > 1:
        raise InvalidValue(field, "a standalone organization covers exactly one unit, its own")
    if is_joint(kind, formation) and unit_count > joint_cap:
        raise InvalidValue(
            field, f"a joint organization covers at most {joint_cap} units (JOINT_ORGANIZATION_MAX_UNITS)"
        )


def check_organization_active(organization: dict, field: str | tuple = "organization_id") -> None:
    if organization["status"] != OrganizationStatus.active:
        raise Conflict(f"organization {organization['_id']} is dissolved", field, "organization is dissolved")


def check_no_cycle(organization_id: str, ancestors: list[str]) -> None:
    """`ancestors`: the proposed parent, its parent, and so on up to the root."""
    if organization_id in ancestors:
        raise InvalidValue("parent_id", "an organization cannot sit below itself in the tree")


def check_unit_active(unit: dict, field: str | tuple) -> None:
    if unit["status"] != UnitStatus.active:
        raise Conflict(f"unit {unit['_id']} is deregistered", field, "unit is deregistered")


def attach(unit: dict, organization: dict) -> dict:
    """The unit after an organization starts covering it."""
    unit["organization_ids"] = sorted({*unit.get("organization_ids", []), organization["_id"]})
    if organization["formation"] == Formation.standalone:
        unit["standalone_organization_ids"] = sorted(
            {*unit.get("standalone_organization_ids", []), organization["_id"]}
        )
    return refresh_unit(unit)


def detach(unit: dict, organization_id: str) -> dict:
    unit["organization_ids"] = [o for o in unit.get("organization_ids", []) if o != organization_id]
    unit["standalone_organization_ids"] = [
        o for o in unit.get("standalone_organization_ids", []) if o != organization_id
    ]
    return refresh_unit(unit)
