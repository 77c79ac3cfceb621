"""The nameko service: entrypoints only, on the chassis (service_kit.chassis), one line of
intent each. Commands run a use case (application.py) in one transaction with their events
and stored result; queries read through the repository and the presenter."""

import os
import socket
import uuid

from nameko.timer import timer

from platform_contracts.errors import Conflict, InvalidValue
from platform_contracts.events import MemberPromoted, MemberRegistered, TransferCompleted
from platform_contracts.organization import (
    BULK_MAX_UNITS, AssignInstructor, BreakdownQuery, CoverageQuery, CreateInstructor, CreateOrganization,
    InstructorFilter, OrganizationFilter, RegisterDivision, RegisterIndustry, RegisterUnit, UnitFilter,
    UpdateOrganization, UpdateUnit,
)
from platform_contracts.ledgers import IMPORT_BATCH_MAX_ROWS
from platform_contracts.problems import parse_or_reject
from service_kit.chassis.base import ChassisService, FieldCipherProvider, StoreProvider
from service_kit.chassis.entrypoints import command, operation, parse_each, parse_rows, query
from service_kit.chassis.events import consumes

from . import domain, reconciliation
from .application import Commands
from .domain import ALL, CounterKey
from .migrate import encrypt_instructor_phones, prepare
from .presenter import as_resource, division_resource, industry_resource
from .repository import Repository

RECONCILE_INTERVAL_SECONDS = float(os.environ.get("RECONCILE_INTERVAL_SECONDS", 600))
# Longer than any one district's pass with its retries (a transaction retries for up to 120 s).
RECONCILE_LEASE_SECONDS = float(os.environ.get("RECONCILE_LEASE_SECONDS", 300))
# How often each replica reloads its coverage gauges, and the last reconciliation's drift, from MongoDB.
GAUGE_REFRESH_SECONDS = float(os.environ.get("COVERAGE_GAUGE_REFRESH_SECONDS", 30))
REPLICA = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"  # who holds a lease


class OrganizationService(ChassisService):
    name = "organization"
    migrate = staticmethod(prepare)

    store = StoreProvider(serialize_writes=True)  # every write moves the shared coverage counters
    cipher = FieldCipherProvider()  # instructors' phones

    @property
    def commands(self) -> Commands:
        return Commands(self.cipher, int(self.config.get("JOINT_ORGANIZATION_MAX_UNITS", 5)))

    @property
    def repo(self) -> Repository:
        return Repository(self.store.db)

    # ---- divisions -----------------------------------------------------------------------

    @command(RegisterDivision)
    def register_division(self, uow, command, actor):
        actor.require_admin()
        return self.commands.register_division(uow, command)

    @query(body=None)
    def list_divisions(self, actor=None):
        return {"items": self.repo.divisions(division_resource)}

    # ---- industries ----------------------------------------------------------------------

    @command(RegisterIndustry)
    def register_industry(self, uow, command, actor):
        actor.require_admin()
        return self.commands.register_industry(uow, command)

    @query(body=None)
    def list_industries(self, actor=None):
        return {"items": self.repo.industries(industry_resource)}

    # ---- units ---------------------------------------------------------------------------

    @command(RegisterUnit)
    def register_unit(self, uow, command, actor):
        return self.commands.register_unit(uow, command, actor)

    @command(body=None, ask_first=False)
    def register_units(self, uow, commands, actor):
        return {"items": self.commands.register_units(uow, parse_each(RegisterUnit, commands, "units", BULK_MAX_UNITS),
                                                      actor)}

    @command(body=None)
    def import_units(self, uow, import_id, rows, actor):
        parsed, rejected = parse_rows(RegisterUnit, rows, IMPORT_BATCH_MAX_ROWS)
        outcome = self.commands.import_units(uow, str(import_id), parsed, actor)
        return {**outcome, "rejected": rejected + outcome["rejected"]}

    @command(UpdateUnit, body="changes", path="unit_id")
    def update_unit(self, uow, unit_id, changes, actor):
        return self.commands.update_unit(uow, unit_id, changes, actor)

    @command(body=None, path="unit_id")
    def deregister_unit(self, uow, unit_id, actor):
        return self.commands.deregister_unit(uow, unit_id, actor)

    @query(body=None, path="unit_id")
    def get_unit(self, unit_id, actor=None):
        unit = self.repo.unit(unit_id)
        actor.ensure_division(unit["division"], "unit_id")
        return as_resource(unit)

    @query(UnitFilter)
    def list_units(self, filters=None, limit=50, cursor=None, actor=None):
        query = {**filters.model_dump(mode="json"), "division": actor.narrow_division(filters.division)}
        return self.repo.units(query, limit, cursor, as_resource)

    # ---- organizations -------------------------------------------------------------------

    @command(CreateOrganization)
    def create_organization(self, uow, command, actor):
        return self.commands.create_organization(uow, command, actor)

    @command(UpdateOrganization, body="changes", path="organization_id")
    def update_organization(self, uow, organization_id, changes, actor):
        return self.commands.update_organization(uow, organization_id, changes, actor)

    @query(body=None, path="organization_id")
    def get_organization(self, organization_id, actor=None):
        organization = self.repo.organization(organization_id)
        actor.ensure_organization_readable(organization_id, organization["division"], "organization_id")
        return as_resource(organization)

    @query(OrganizationFilter)
    def list_organizations(self, filters=None, limit=50, cursor=None, actor=None):
        query = {**filters.model_dump(mode="json"), "division": actor.narrow_division(filters.division)}
        return self.repo.organizations(query, limit, cursor, as_resource)

    @command(body=None, path="organization_id")
    def attach_unit(self, uow, organization_id, unit_id, actor):
        if not isinstance(unit_id, str) or not unit_id:
            raise InvalidValue("unit_id", "must be a unit id")
        return self.commands.attach_unit(uow, organization_id, unit_id, actor)

    @command(body=None, path=("organization_id", "unit_id"))
    def detach_unit(self, uow, organization_id, unit_id, actor):
        return self.commands.detach_unit(uow, organization_id, unit_id, actor)

    @command(body=None, path="organization_id")
    def dissolve_organization(self, uow, organization_id, actor):
        return self.commands.dissolve_organization(uow, organization_id, actor)

    # ---- instructors ---------------------------------------------------------------------

    @command(CreateInstructor)
    def create_instructor(self, uow, command, actor):
        return self.commands.create_instructor(uow, command, actor)

    @query(body=None, path="instructor_id")
    def get_instructor(self, instructor_id, actor=None):
        instructor = self.repo.instructor(instructor_id)
        actor.ensure_division(instructor["division"], "instructor_id")
        return as_resource(instructor)

    @query(InstructorFilter)
    def list_instructors(self, filters=None, limit=50, cursor=None, actor=None):
        return self.repo.instructors({"division": actor.narrow_division(filters.division)}, limit, cursor,
                                     as_resource)

    @command(body=None, path="unit_id")
    def assign_instructor(self, uow, unit_id, instructor_id, actor):
        command = parse_or_reject(AssignInstructor, {"instructor_id": instructor_id})
        return self.commands.assign_instructor(uow, unit_id, command, actor)

    @command(body=None, path="unit_id")
    def unassign_instructor(self, uow, unit_id, actor):
        return self.commands.unassign_instructor(uow, unit_id, actor)

    # ---- coverage ------------------------------------------------------------------------

    @query(CoverageQuery, body="query")
    def get_coverage(self, query=None, actor=None):
        key = CounterKey(actor.narrow_division(query.division) or ALL, query.industry or ALL, query.type or ALL)
        counts, as_of = self.repo.counter(key)
        return domain.figures(counts, key, as_of).model_dump(mode="json")

    @query(BreakdownQuery, body="query")
    def coverage_breakdown(self, query=None, actor=None):
        division = actor.narrow_division(query.division)
        rows = (self.repo.child_counters(division) if query.by == "division"
                else self.repo.split_counters(division, query.by))
        items = [domain.figures(counts, key, as_of).model_dump(mode="json") for key, counts, as_of in rows]
        return {"by": query.by, "division": division, "items": items}

    @query(body=None)
    def coverage_alerts(self, division=None, limit=50, cursor=None, actor=None):
        parsed = parse_or_reject(CoverageQuery, {"division": division} if division else {}, "query")
        return self.repo.alert_units(actor.narrow_division(parsed.division), limit, cursor, as_resource)

    @operation(body=None)
    def reconcile_coverage(self, actor=None, repair=True):
        actor.require_admin()
        report = reconciliation.reconcile_leased(self.store, REPLICA, RECONCILE_LEASE_SECONDS,
                                                 reconciliation.ON_DEMAND, repair=bool(repair))
        if report is None:
            raise Conflict("a coverage reconciliation is running already (on this or another replica); "
                           "try again when it has finished")
        return report

    @timer(interval=RECONCILE_INTERVAL_SECONDS)
    def reconcile_periodically(self):
        if reconciliation.reconcile_periodically(self.store, REPLICA, RECONCILE_INTERVAL_SECONDS,
                                                 RECONCILE_LEASE_SECONDS):
            # During a rolling upgrade, replicas still on a version before encryption stored
            # phones in clear after this one's start-up migration: sweep again.
            encrypt_instructor_phones(self.store.db, self.cipher)

    @timer(interval=GAUGE_REFRESH_SECONDS, eager=True)
    def refresh_coverage_gauges(self):
        # Other replicas move the counters and run reconciliations too; the gauges follow what is stored.
        reconciliation.load_gauges(self.repo)

    # ---- the member service's events -----------------------------------------------------

    @consumes("member", "member.registered", MemberRegistered)
    def on_member_registered(self, uow, data):
        category = data.category or domain.member_category(data.stage)
        self.commands.move_member_counts(uow, [(data.unit_id, category, +1)], "member.registered")

    @consumes("member", "member.promoted", MemberPromoted)
    def on_member_promoted(self, uow, data):
        self.commands.move_member_counts(uow, [(data.unit_id, domain.member_category(data.from_stage), -1),
                                               (data.unit_id, domain.member_category(data.to_stage), +1)],
                                         "member.promoted")

    @consumes("member", "transfer.completed", TransferCompleted)
    def on_transfer_completed(self, uow, data):
        self.commands.move_member_counts(uow, [(data.from_unit_id, data.category, -1),
                                               (data.to_unit_id, data.category, +1)], "transfer.completed")
