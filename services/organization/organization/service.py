"""The nameko service: entrypoints only. Each validates its input against the contract,
then calls a use case inside a transaction (commands) or the repository (queries)."""

import os
import socket
import uuid

from nameko.dependency_providers import Config
from nameko.timer import timer

from platform_contracts.events import MemberPromoted, MemberRegistered, TransferCompleted
from platform_contracts.organization import (
    BULK_MAX_UNITS, AssignInstructor, BreakdownQuery, CoverageQuery, CreateInstructor, CreateOrganization,
    InstructorFilter, OrganizationFilter, RegisterDivision, RegisterUnit, UnitFilter,
    UpdateOrganization, UpdateUnit,
)
from platform_contracts.problems import Rejected, check_page_limit, parse_or_reject
from service_kit.auth import ensure_in_scope, ensure_organization_readable, narrow_division_filter, require_admin
from service_kit.consumer import integration_event_handler
from service_kit.entrypoints import rpc
from service_kit.metrics import EntrypointMetrics
from service_kit.operations import OperationsMixin
from service_kit.cipher_provider import FieldCipherProvider
from service_kit.store import StoreProvider

from . import domain, migrate, reconciliation
from .application import Commands
from .domain import ALL, CounterKey
from .presenter import as_resource, division_resource
from .repository import Repository

RECONCILE_INTERVAL_SECONDS = float(os.environ.get("RECONCILE_INTERVAL_SECONDS", 600))
# Longer than any one district's pass with its retries (a transaction retries for up to 120 s).
RECONCILE_LEASE_SECONDS = float(os.environ.get("RECONCILE_LEASE_SECONDS", 300))
# How often each replica reloads its coverage gauges, and the last reconciliation's drift, from MongoDB.
GAUGE_REFRESH_SECONDS = float(os.environ.get("COVERAGE_GAUGE_REFRESH_SECONDS", 30))
REPLICA = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"  # who holds a lease


def _parse_each(commands: list) -> list[RegisterUnit]:
    parsed, errors = [], []
    for index, command in enumerate(commands):
        try:
            parsed.append(parse_or_reject(RegisterUnit, command))
        except Rejected as rejected:
            errors += [{"loc": ["body", "units", index, *e["loc"][1:]], "msg": e["msg"]}
                       for e in rejected.problem.get("errors", [])]
    if errors:
        raise Rejected.make(422, f"{len(errors)} invalid value(s) in the batch; nothing was registered", errors)
    return parsed


class OrganizationService(OperationsMixin):
    name = "organization"

    store = StoreProvider(serialize_writes=True)  # every write moves the shared coverage counters
    metrics = EntrypointMetrics()
    config = Config()
    cipher = FieldCipherProvider()  # instructors' phones

    @property
    def commands(self) -> Commands:
        return Commands(self.cipher, int(self.config.get("JOINT_ORGANIZATION_MAX_UNITS", 5)))

    @property
    def repo(self) -> Repository:
        return Repository(self.store.db)

    def _execute(self, command_id, work):
        return self.store.execute_command(command_id, work)

    # ---- divisions -----------------------------------------------------------------------

    @rpc
    def register_division(self, command, actor=None, command_id=None):
        require_admin(actor)
        parsed = parse_or_reject(RegisterDivision, command)
        return self._execute(command_id, lambda uow: self.commands.register_division(uow, parsed))

    @rpc
    def list_divisions(self, actor=None):
        return {"items": self.repo.divisions(division_resource)}

    # ---- units ---------------------------------------------------------------------------

    @rpc
    def register_unit(self, command, actor=None, command_id=None):
        parsed = parse_or_reject(RegisterUnit, command)
        return self._execute(command_id, lambda uow: self.commands.register_unit(uow, parsed, actor))

    @rpc
    def register_units(self, commands, actor=None, command_id=None):
        if not isinstance(commands, list) or not 1 <= len(commands) <= BULK_MAX_UNITS:
            raise Rejected.invalid(["body", "units"], f"must be a list of 1 to {BULK_MAX_UNITS} units")
        parsed = _parse_each(commands)
        return {"items": self._execute(
            command_id, lambda uow: self.commands.register_units(uow, parsed, actor))}

    @rpc
    def update_unit(self, unit_id, changes, actor=None, command_id=None):
        parsed = parse_or_reject(UpdateUnit, changes)
        return self._execute(command_id, lambda uow: self.commands.update_unit(uow, unit_id, parsed, actor))

    @rpc
    def deregister_unit(self, unit_id, actor=None, command_id=None):
        return self._execute(command_id, lambda uow: self.commands.deregister_unit(uow, unit_id, actor))

    @rpc
    def get_unit(self, unit_id, actor=None):
        unit = self.repo.unit(unit_id)
        ensure_in_scope(actor, unit["division"], ["path", "unit_id"])
        return as_resource(unit)

    @rpc
    def list_units(self, filters=None, limit=50, cursor=None, actor=None):
        parsed = parse_or_reject(UnitFilter, filters or {}, "query")
        query = {**parsed.model_dump(mode="json"), "division": narrow_division_filter(actor, parsed.division)}
        return self.repo.units(query, check_page_limit(limit), cursor, as_resource)

    # ---- organizations -------------------------------------------------------------------

    @rpc
    def create_organization(self, command, actor=None, command_id=None):
        parsed = parse_or_reject(CreateOrganization, command)
        return self._execute(command_id, lambda uow: self.commands.create_organization(uow, parsed, actor))

    @rpc
    def update_organization(self, organization_id, changes, actor=None, command_id=None):
        parsed = parse_or_reject(UpdateOrganization, changes)
        return self._execute(
            command_id, lambda uow: self.commands.update_organization(uow, organization_id, parsed, actor)
        )

    @rpc
    def get_organization(self, organization_id, actor=None):
        organization = self.repo.organization(organization_id)
        ensure_organization_readable(actor, organization_id, organization["division"], ["path", "organization_id"])
        return as_resource(organization)

    @rpc
    def list_organizations(self, filters=None, limit=50, cursor=None, actor=None):
        parsed = parse_or_reject(OrganizationFilter, filters or {}, "query")
        query = {**parsed.model_dump(mode="json"), "division": narrow_division_filter(actor, parsed.division)}
        return self.repo.organizations(query, check_page_limit(limit), cursor, as_resource)

    @rpc
    def attach_unit(self, organization_id, unit_id, actor=None, command_id=None):
        if not isinstance(unit_id, str) or not unit_id:
            raise Rejected.invalid("unit_id", "must be a unit id")
        return self._execute(
            command_id, lambda uow: self.commands.attach_unit(uow, organization_id, unit_id, actor)
        )

    @rpc
    def detach_unit(self, organization_id, unit_id, actor=None, command_id=None):
        return self._execute(
            command_id, lambda uow: self.commands.detach_unit(uow, organization_id, unit_id, actor)
        )

    @rpc
    def dissolve_organization(self, organization_id, actor=None, command_id=None):
        return self._execute(
            command_id, lambda uow: self.commands.dissolve_organization(uow, organization_id, actor)
        )

    # ---- instructors ---------------------------------------------------------------------

    @rpc
    def create_instructor(self, command, actor=None, command_id=None):
        parsed = parse_or_reject(CreateInstructor, command)
        return self._execute(command_id, lambda uow: self.commands.create_instructor(uow, parsed, actor))

    @rpc
    def get_instructor(self, instructor_id, actor=None):
        instructor = self.repo.instructor(instructor_id)
        ensure_in_scope(actor, instructor["division"], ["path", "instructor_id"])
        return as_resource(instructor)

    @rpc
    def list_instructors(self, filters=None, limit=50, cursor=None, actor=None):
        parsed = parse_or_reject(InstructorFilter, filters or {}, "query")
        query = {"division": narrow_division_filter(actor, parsed.division)}
        return self.repo.instructors(query, check_page_limit(limit), cursor, as_resource)

    @rpc
    def assign_instructor(self, unit_id, instructor_id, actor=None, command_id=None):
        parsed = parse_or_reject(AssignInstructor, {"instructor_id": instructor_id})
        return self._execute(
            command_id, lambda uow: self.commands.assign_instructor(uow, unit_id, parsed, actor)
        )

    @rpc
    def unassign_instructor(self, unit_id, actor=None, command_id=None):
        return self._execute(command_id, lambda uow: self.commands.unassign_instructor(uow, unit_id, actor))

    # ---- coverage ------------------------------------------------------------------------

    @rpc
    def get_coverage(self, query=None, actor=None):
        parsed = parse_or_reject(CoverageQuery, query or {}, "query")
        division = narrow_division_filter(actor, parsed.division)
        key = CounterKey(division or ALL, parsed.industry or ALL, parsed.type or ALL)
        counts, as_of = self.repo.counter(key)
        return domain.figures(counts, key, as_of).model_dump(mode="json")

    @rpc
    def coverage_breakdown(self, query=None, actor=None):
        parsed = parse_or_reject(BreakdownQuery, query or {}, "query")
        division = narrow_division_filter(actor, parsed.division)
        rows = (self.repo.child_counters(division) if parsed.by == "division"
                else self.repo.split_counters(division, parsed.by))
        items = [domain.figures(counts, key, as_of).model_dump(mode="json") for key, counts, as_of in rows]
        return {"by": parsed.by, "division": division, "items": items}

    @rpc
    def coverage_alerts(self, division=None, limit=50, cursor=None, actor=None):
        parsed = parse_or_reject(CoverageQuery, {"division": division} if division else {}, "query")
        return self.repo.alert_units(narrow_division_filter(actor, parsed.division), check_page_limit(limit), cursor,
                                     as_resource)

    @rpc
    def reconcile_coverage(self, actor=None, repair=True):
        require_admin(actor)
        report = reconciliation.reconcile_leased(self.store, REPLICA, RECONCILE_LEASE_SECONDS,
                                                 reconciliation.ON_DEMAND, repair=bool(repair))
        if report is None:
            raise Rejected.conflict("a coverage reconciliation is running already (on this or another replica); "
                                    "try again when it has finished")
        return report

    @timer(interval=RECONCILE_INTERVAL_SECONDS)
    def reconcile_periodically(self):
        if reconciliation.reconcile_periodically(self.store, REPLICA, RECONCILE_INTERVAL_SECONDS,
                                                 RECONCILE_LEASE_SECONDS):
            # During a rolling upgrade, replicas still on a version before encryption stored
            # phones in clear after this one's start-up migration: sweep again.
            migrate.encrypt_instructor_phones(self.store.db, self.cipher)

    @timer(interval=GAUGE_REFRESH_SECONDS, eager=True)
    def refresh_coverage_gauges(self):
        # Other replicas move the counters and run reconciliations too; the gauges follow what is stored.
        reconciliation.load_gauges(self.repo)

    # ---- the member service's events -----------------------------------------------------

    @integration_event_handler("member", "member.registered")
    def on_member_registered(self, event):
        data = MemberRegistered.model_validate(event.data)
        category = data.category or domain.member_category(data.stage)
        self.store.apply_event("on_member_registered", event, lambda uow: self.commands.move_member_counts(
            uow, [(data.unit_id, category, +1)], "member.registered"))

    @integration_event_handler("member", "member.promoted")
    def on_member_promoted(self, event):
        data = MemberPromoted.model_validate(event.data)
        moves = [(data.unit_id, domain.member_category(data.from_stage), -1),
                 (data.unit_id, domain.member_category(data.to_stage), +1)]
        self.store.apply_event("on_member_promoted", event, lambda uow: self.commands.move_member_counts(
            uow, moves, "member.promoted"))

    @integration_event_handler("member", "transfer.completed")
    def on_transfer_completed(self, event):
        data = TransferCompleted.model_validate(event.data)
        moves = [(data.from_unit_id, data.category, -1), (data.to_unit_id, data.category, +1)]
        self.store.apply_event("on_transfer_completed", event, lambda uow: self.commands.move_member_counts(
            uow, moves, "transfer.completed"))
