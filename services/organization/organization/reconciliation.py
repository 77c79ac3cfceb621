"""The coverage reconciliation: the counters and every unit's derived fields recounted from
the facts, and what drifted repaired; one run at a time on all replicas (a lease), from each
replica's timer or on an admin's demand."""

import logging
import time
from collections import defaultdict
from datetime import timedelta

from prometheus_client import Counter, Gauge
from pymongo.errors import PyMongoError

from service_kit.store import utc_now

from . import domain
from .coverage_metrics import publish_gauges
from .domain import ALL, CounterKey
from .repository import Repository

log = logging.getLogger(__name__)

RECONCILIATION_DRIFT = Gauge(
    "coverage_reconciliation_drift",
    "Counters and units the platform's last completed reconciliation found wrong (on any replica; every replica "
    "reports it): under repaired=\"true\" if it repaired them, under repaired=\"false\" if it was report-only and "
    "left them wrong; 0 when consistent",
    ["repaired"],
)
RECONCILIATION_RUNS = Counter(
    "coverage_reconciliation_runs",
    "Coverage reconciliations this replica completed, by trigger: periodic (the timer) or on_demand (an admin's)",
    ["trigger"],
)
PERIODIC, ON_DEMAND = "periodic", "on_demand"
# Every series exposed from the start: a timer that never completes a run shows as stalled.
RECONCILIATION_RUNS.labels(PERIODIC)
RECONCILIATION_RUNS.labels(ON_DEMAND)
RECONCILIATION_DRIFT.labels(repaired="true")
RECONCILIATION_DRIFT.labels(repaired="false")

# What reconciliation reads of a unit, and the fields it derives (and repairs).
RECOUNT_FIELDS = ("status", "division", "industry", "type", "full_members", "instructor_id", "updated_at",
                  "organization_ids", "standalone_organization_ids", "coverage", "standalone", "should_establish")
DERIVED_FIELDS = ("organization_ids", "standalone_organization_ids", "coverage", "standalone", "should_establish")
RECONCILE_LEASE = "coverage-reconciliation"


def load_gauges(repo: Repository) -> None:
    """Every coverage gauge from what is stored: other replicas move the counters and run
    reconciliations too."""
    for district, counts in repo.district_counters():
        publish_gauges(district, counts)
    publish_last_reconciliation(repo)


def publish_last_reconciliation(repo: Repository) -> None:
    """The drift of the platform's last completed reconciliation, whichever replica ran it
    (nothing on record: 0)."""
    last = repo.leases().get(RECONCILE_LEASE).get("last_run", {})
    drift = last.get("drifted_counters", 0) + last.get("drifted_units", 0)
    repaired = last.get("repaired", True)
    RECONCILIATION_DRIFT.labels(repaired="true").set(drift if repaired else 0)
    RECONCILIATION_DRIFT.labels(repaired="false").set(0 if repaired else drift)


class ChangedMeanwhile(Exception):
    """A unit found drifted was changed before its repair: the district is left to the next run."""


def reconcile(store, repair: bool = True, keep_going=lambda: True) -> dict:
    """Recount the counters and every unit's derived fields from the facts; with `repair`,
    correct what drifted.

    Bounded transactions, none over the whole platform, and none that a busy district keeps
    from committing: each district is recounted in a read-only snapshot (its units, the
    organizations covering them, its street and community counters and its own), then its
    corrections are added in a short transaction of their own; then the levels above
    districts are recounted from the district counters the same way. A correction is what
    the snapshot lacked, added rather than set, so commands committed in between (each moves
    the facts and the counters together) do not make it wrong. `keep_going()` is asked
    before each district (the periodic run's lease)."""
    started = time.monotonic()
    # The levels above districts are recounted from the district counters found through the
    # tree: one a replica older than the tree created must be in it first.
    if placed := Repository(store.db).place_unplaced_counters():
        log.info("coverage reconciliation: %d counter document(s) placed in coverage_tree", placed)
    report = {"units": 0, "drifted_counters": 0, "drifted_units": 0, "repaired": repair,
              "districts": 0, "longest_transaction_seconds": 0.0, "complete": False, "districts_left": []}

    def timed(work):
        began = time.monotonic()
        result = store.transaction(work, exclusive=False)  # not holding up the service's writers
        report["longest_transaction_seconds"] = max(report["longest_transaction_seconds"],
                                                    round(time.monotonic() - began, 3))
        return result

    unrepaired: dict[str, dict[str, int]] = {}  # district corrections a dry run leaves undone
    districts = Repository(store.db).reconciliation_districts()
    for district in districts:
        if not keep_going():
            break
        try:
            found = timed(lambda uow: _recount_district(Repository(uow.db, uow.session), district))
            if repair and (found["corrections"] or found["repairs"]):
                timed(lambda uow: _correct_district(uow, Repository(uow.db, uow.session), found))
        except (ChangedMeanwhile, PyMongoError) as exc:  # one district must not stop the others
            log.warning("coverage reconciliation left district %s for the next run: %s", district, exc)
            report["districts_left"].append(district)
            continue
        if not repair:
            unrepaired.update(found["corrections"])
        report["units"] += found["units"]
        report["drifted_counters"] += len(found["corrections"])
        report["drifted_units"] += len(found["repairs"])
        report["districts"] += 1
        own = dict(found["expected"].get(CounterKey(district, ALL, ALL).id, {}))
        publish_gauges(district, own)
    report["complete"] = report["districts"] == len(districts)
    if report["complete"]:
        above = timed(lambda uow: _recount_above_districts(Repository(uow.db, uow.session), unrepaired))
        if repair and above:
            timed(lambda uow: Repository(uow.db, uow.session).increment_counters(above, uow.now))
        report["drifted_counters"] += len(above)
    report["seconds"] = round(time.monotonic() - started, 3)

    drift_size = report["drifted_counters"] + report["drifted_units"]
    if not report["complete"]:
        log.warning("coverage reconciliation incomplete (lease lost, or districts left for the next run): %s",
                    report)
    elif drift_size and repair:
        log.warning("coverage reconciliation found drift and repaired it: %s", report)
    elif drift_size:
        log.warning("coverage reconciliation found drift and left it (repair=false): %s", report)
    else:
        log.info("coverage reconciliation: counters consistent (%s)", report)
    return report


def _recount_district(repo: Repository, district: str) -> dict:
    """What one district should hold, against what it holds, as of one snapshot."""
    units = list(repo.district_units(district, RECOUNT_FIELDS))
    ids = {unit["_id"] for unit in units}
    covering: dict[str, list[dict]] = defaultdict(list)
    for organization in repo.organizations_covering(sorted(ids)):
        for unit_id in organization.get("unit_ids", []):
            if unit_id in ids:
                covering[unit_id].append(organization)

    repairs = {}  # unit id -> (updated_at as read, derived fields as they should be)
    for unit in units:
        stored = {k: unit.get(k) for k in DERIVED_FIELDS}
        organizations = covering.get(unit["_id"], [])
        unit["organization_ids"] = sorted(o["_id"] for o in organizations)
        unit["standalone_organization_ids"] = sorted(o["_id"] for o in organizations
                                                     if o["formation"] == "standalone")
        domain.refresh_unit(unit)
        derived = {k: unit[k] for k in DERIVED_FIELDS}
        if derived != stored:
            repairs[unit["_id"]] = (unit.get("updated_at"), derived)

    expected = domain.expected_counters(units, from_length=domain.DISTRICT_LENGTH)
    return {"units": len(units), "expected": expected, "repairs": repairs,
            "corrections": domain.counter_corrections(expected, repo.counters_under(district))}


def _correct_district(uow, repo: Repository, found: dict) -> None:
    """Add the corrections and repair the units, unless a drifted unit changed since the
    recount: its counters then moved from fields the corrections assume were repaired."""
    if found["repairs"] and not repo.units_unchanged_since({u: read for u, (read, _) in found["repairs"].items()}):
        raise ChangedMeanwhile(f"{len(found['repairs'])} drifted unit(s), one changed since the recount")
    for unit_id, (_, derived) in found["repairs"].items():
        repo.set_unit_fields(unit_id, derived)
    repo.increment_counters(found["corrections"], uow.now)


def _recount_above_districts(repo: Repository, unrepaired: dict[str, dict[str, int]]) -> dict:
    """Corrections of the levels above districts: the sums of the district counters, as a
    repair has left them (a dry run adds what it left undone)."""
    districts = domain.add_counters(repo.counters_at_levels([6]), unrepaired)
    return domain.counter_corrections(domain.rolled_up(districts), repo.counters_at_levels([0, 2, 4]))


def reconcile_leased(store, holder: str, lease_seconds: float, trigger: str, repair: bool = True,
                     done_before=None) -> dict | None:
    """A reconciliation under the lease, so that no two run at once on any replicas: None if
    another holds it (or, with `done_before`, if a periodic one completed since then). The
    lease is renewed before each district and released at the end; it lapses `lease_seconds`
    after the last renewal if its holder dies. A completed run leaves its outcome on the
    lease document, where every replica's gauge refresh reads it."""
    repo = Repository(store.db)
    leases = repo.leases()
    if not leases.take(RECONCILE_LEASE, holder, utc_now(), lease_seconds, done_before):
        return None
    report = None
    try:
        report = reconcile(store, repair=repair, keep_going=lambda: leases.take(
            RECONCILE_LEASE, holder, utc_now(), lease_seconds))
    finally:
        now = utc_now()
        completed = bool(report and report["complete"])
        leases.release(RECONCILE_LEASE, holder, now, record=_outcome(report, trigger, now) if completed else None)
    if report["complete"]:
        RECONCILIATION_RUNS.labels(trigger).inc()
        publish_last_reconciliation(repo)  # here at once; on the other replicas at their next refresh
    return report


def _outcome(report: dict, trigger: str, now) -> dict:
    record = {"last_run": {"trigger": trigger, "completed_at": now, "repaired": report["repaired"],
                           "drifted_counters": report["drifted_counters"], "drifted_units": report["drifted_units"]}}
    if trigger == PERIODIC:
        # The periodic schedule counts periodic runs only: an admin's run, a report-only one
        # above all, must not postpone the next repair.
        record["completed_at"] = now
    return record


def reconcile_periodically(store, holder: str, interval_seconds: float, lease_seconds: float) -> dict | None:
    """Every replica's timer fires; one of them reconciles, once per interval."""
    report = reconcile_leased(store, holder, lease_seconds, PERIODIC,
                              done_before=utc_now() - timedelta(seconds=interval_seconds * 0.9))
    if report is None:
        log.debug("coverage reconciliation: another replica runs it, or ran it lately")
    return report
