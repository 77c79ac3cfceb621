"""Use cases of the organization service. Each runs inside one transaction (a UnitOfWork):
load, apply the domain rules, save, emit events, move the coverage counters."""

import copy
import logging

from platform_contracts.organization import (
    AssignInstructor, CreateInstructor, CreateOrganization, OrganizationStatus, RegisterDivision,
    RegisterIndustry, RegisterUnit, UnitStatus, UpdateOrganization, UpdateUnit,
)
from platform_contracts.actors import Actor
from platform_contracts.errors import Conflict, Field, InvalidValue, NotFound
from platform_contracts.ledgers import BatchOutcome, RejectedRow, RowError, RowProblem
from service_kit.documents import new_id
from service_kit.pii import FieldCipher, mask_phone

from . import domain, projection
from .presenter import as_resource, division_resource, industry_resource
from .repository import Repository

log = logging.getLogger(__name__)

UNIT_ID = "unit_id"
ORGANIZATION_ID = "organization_id"


def protected_phone(cipher: FieldCipher, instructor_id: str, phone: str) -> dict:
    """An instructor's phone as stored: encrypted for this record, and masked for display."""
    return {"phone_encrypted": cipher.encrypt(phone, f"instructor:{instructor_id}:phone"),
            "phone_masked": mask_phone(phone)}


class Commands:
    def __init__(self, cipher: FieldCipher, joint_cap: int):
        self.cipher = cipher
        self.joint_cap = joint_cap

    # ---- helpers -----------------------------------------------------------------------------

    @staticmethod
    def _repo(uow) -> Repository:
        return Repository(uow.db, uow.session)

    @staticmethod
    def _require_known_division(repo: Repository, division: str, field: str = "division") -> None:
        if not repo.division_known(division[:6]):
            raise InvalidValue(
                field, f"unknown division: district {division[:6]} is not registered on this platform"
            )

    @staticmethod
    def _require_known_industry(repo: Repository, industry: str, field: str | Field = "industry") -> None:
        # Every industry adds entries to a unit's six counter documents, rewritten whole on every
        # command: a registry keeps them bounded (free text could grow them to the 16 MB limit).
        if not repo.industry_known(industry):
            raise InvalidValue(field, f"unknown industry: {industry!r} is not registered on this platform "
                                      "(GET /industries lists them; an admin registers more)")

    @staticmethod
    def _emit_unit(uow, type_: str, unit: dict) -> None:
        uow.emit(type_, subject=unit["_id"], division=unit["division"], data=as_resource(unit))

    @staticmethod
    def _emit_organization(uow, type_: str, organization: dict) -> None:
        uow.emit(type_, subject=organization["_id"], division=organization["division"],
                 data=as_resource(organization))

    # ---- divisions ---------------------------------------------------------------------------

    def register_division(self, uow, command: RegisterDivision) -> dict:
        return division_resource(self._repo(uow).add_division(command.code, command.name))

    # ---- industries --------------------------------------------------------------------------

    def register_industry(self, uow, command: RegisterIndustry) -> dict:
        return industry_resource(self._repo(uow).add_industry(command.code, command.name, command.gb4754))

    # ---- units -------------------------------------------------------------------------------

    def register_unit(self, uow, command: RegisterUnit, actor: Actor) -> dict:
        actor.ensure_division(command.division, "division")
        repo = self._repo(uow)
        self._require_known_division(repo, command.division)
        self._require_known_industry(repo, command.industry)
        unit = self._new_unit(uow, command)
        repo.insert_unit(unit)
        self._emit_unit(uow, "unit.registered", unit)
        projection.apply_unit_changes(uow, repo, [(None, unit)], "unit.registered")
        return as_resource(unit)

    def register_units(self, uow, commands: list[RegisterUnit], actor: Actor) -> list[dict]:
        """A ledger import (台账): all of the units or none; one counter update for the batch."""
        repo = self._repo(uow)
        for index, command in enumerate(commands):
            actor.ensure_division(command.division, ("units", index, "division"))
            if not repo.division_known(command.division[:6]):
                raise InvalidValue(("units", index, "division"),
                                       f"unknown division: district {command.division[:6]} is not registered")
            self._require_known_industry(repo, command.industry, ("units", index, "industry"))
        units = [self._new_unit(uow, command) for command in commands]
        repo.insert_units(units)
        for unit in units:
            self._emit_unit(uow, "unit.registered", unit)
        projection.apply_unit_changes(uow, repo, [(None, unit) for unit in units], "unit.registered", report_level=6)
        return [as_resource(unit) for unit in units]

    def import_units(self, uow, import_id: str, rows: list[tuple[int, RegisterUnit]], actor: Actor) -> dict:
        """A batch of a ledger import (台账导入), row by row: imported, already registered (its
        credit code: a file uploaded again imports nothing twice), or rejected with its reasons.
        The good rows are written together, with one counter update for the batch and one
        `unit.imported` per district instead of an event per unit."""
        repo = self._repo(uow)
        outcome = BatchOutcome()
        candidates: list[tuple[int, RegisterUnit]] = []
        for row, command in rows:
            errors = []
            if not actor.covers_division(command.division):
                errors.append(RowError(field="division", problem=RowProblem.outside_scope))
            elif not repo.division_known(command.division[:6]):
                errors.append(RowError(field="division", problem=RowProblem.unknown_division,
                                       detail=f"district {command.division[:6]} is not registered"))
            if not repo.industry_known(command.industry):
                errors.append(RowError(field="industry", problem=RowProblem.unknown_industry))
            if errors:
                outcome.rejected.append(RejectedRow(row=row, errors=errors))
            else:
                candidates.append((row, command))
        registered = repo.registered_credit_codes([command.credit_code for _, command in candidates])
        units, seen = [], set()
        for row, command in candidates:
            if command.credit_code in registered:
                outcome.present.append(row)
            elif command.credit_code in seen:
                outcome.rejected.append(RejectedRow(row=row, errors=[
                    RowError(field="credit_code", problem=RowProblem.duplicate_in_file)]))
            else:
                seen.add(command.credit_code)
                outcome.imported.append(row)
                units.append(self._new_unit(uow, command))
        if units:
            repo.insert_new_units(units)
            by_district: dict[str, list[str]] = {}
            for unit in units:
                by_district.setdefault(unit["division"][:6], []).append(unit["_id"])
            for district, unit_ids in sorted(by_district.items()):
                uow.emit("unit.imported", subject=import_id, division=district, data={
                    "import_id": import_id, "district": district, "count": len(unit_ids), "unit_ids": unit_ids})
            projection.apply_unit_changes(uow, repo, [(None, unit) for unit in units], "unit.imported",
                                          report_level=6)
        return outcome.model_dump(mode="json")

    @staticmethod
    def _new_unit(uow, command: RegisterUnit) -> dict:
        return domain.refresh_unit({
            "_id": new_id(), **command.model_dump(mode="json"),
            "full_members": 0, "probationary_members": 0,
            "organization_ids": [], "standalone_organization_ids": [], "instructor_id": None,
            "status": UnitStatus.active.value, "registered_at": uow.now, "updated_at": uow.now,
        })

    def update_unit(self, uow, unit_id: str, changes: UpdateUnit, actor: Actor) -> dict:
        repo = self._repo(uow)
        before = repo.unit(unit_id)
        actor.ensure_division(before["division"], UNIT_ID)
        domain.check_unit_active(before, UNIT_ID)
        fields = changes.model_dump(mode="json", exclude_unset=True)
        if fields.get("division"):
            actor.ensure_division(fields["division"], "division")
            self._require_known_division(repo, fields["division"])
        if fields.get("industry") not in (None, before["industry"]):  # what is stored stays valid
            self._require_known_industry(repo, fields["industry"])
        unit = domain.refresh_unit({**copy.deepcopy(before), **fields, "updated_at": uow.now})
        repo.save_unit(unit)
        self._emit_unit(uow, "unit.updated", unit)
        projection.apply_unit_changes(uow, repo, [(before, unit)], "unit.updated")
        return as_resource(unit)

    def deregister_unit(self, uow, unit_id: str, actor: Actor) -> dict:
        repo = self._repo(uow)
        before = repo.unit(unit_id)
        actor.ensure_division(before["division"], UNIT_ID)
        domain.check_unit_active(before, UNIT_ID)
        unit = copy.deepcopy(before)
        # A deregistered unit leaves its organizations and its instructor, freeing their places.
        for organization_id in list(unit["organization_ids"]):
            organization = repo.organization(organization_id)
            organization["unit_ids"] = [u for u in organization["unit_ids"] if u != unit_id]
            organization["updated_at"] = uow.now
            repo.save_organization(organization)
            unit = domain.detach(unit, organization_id)
            uow.emit("organization.unit_detached", subject=organization_id, division=organization["division"],
                     data={"organization_id": organization_id, "unit_id": unit_id})
        if unit.get("instructor_id"):
            self._release_instructor(uow, repo, unit)
        unit.update(status=UnitStatus.deregistered.value, updated_at=uow.now)
        domain.refresh_unit(unit)
        repo.save_unit(unit)
        self._emit_unit(uow, "unit.deregistered", unit)
        projection.apply_unit_changes(uow, repo, [(before, unit)], "unit.deregistered")
        return as_resource(unit)

    # ---- organizations -----------------------------------------------------------------------

    @staticmethod
    def _require_parent(repo: Repository, parent_id: str, actor: Actor) -> None:
        """A parent must exist, be active, and lie in the caller's scope: an operator cannot
        hang an organization under one they may not see."""
        parent = repo.organization(parent_id, "parent_id")
        actor.ensure_division(parent["division"], "parent_id")
        domain.check_organization_active(parent, "parent_id")

    def create_organization(self, uow, command: CreateOrganization, actor: Actor) -> dict:
        actor.ensure_division(command.division, "division")
        repo = self._repo(uow)
        self._require_known_division(repo, command.division)
        if command.parent_id:
            self._require_parent(repo, command.parent_id, actor)
        domain.check_unit_count(command.kind, command.formation, len(command.unit_ids), self.joint_cap)
        organization = {
            "_id": new_id(), **command.model_dump(mode="json"),
            "established_on": (command.established_on or uow.now.date()).isoformat(),
            "status": OrganizationStatus.active.value, "dissolved_on": None,
            "created_at": uow.now, "updated_at": uow.now,
        }
        units = []
        for index, unit_id in enumerate(command.unit_ids):
            unit = repo.unit(unit_id, ("unit_ids", index))
            actor.ensure_division(unit["division"], ("unit_ids", index))
            domain.check_unit_active(unit, ("unit_ids", index))
            units.append(unit)
        repo.insert_organization(organization)
        changes = []
        for before in units:
            after = domain.attach(copy.deepcopy(before), organization)
            after["updated_at"] = uow.now
            repo.save_unit(after)
            changes.append((before, after))
        self._emit_organization(uow, "organization.created", organization)
        projection.apply_unit_changes(uow, repo, changes, "organization.created")
        return as_resource(organization)

    def update_organization(self, uow, organization_id: str, changes: UpdateOrganization, actor: Actor) -> dict:
        repo = self._repo(uow)
        organization = repo.organization(organization_id)
        actor.ensure_division(organization["division"], ORGANIZATION_ID)
        domain.check_organization_active(organization)
        fields = changes.model_dump(mode="json", exclude_unset=True)
        if fields.get("parent_id"):
            self._require_parent(repo, fields["parent_id"], actor)
            domain.check_no_cycle(organization_id, repo.ancestor_ids(fields["parent_id"]))
        organization.update(fields, updated_at=uow.now)
        # Only a change of kind can take the existing units over a cap.
        domain.check_unit_count(organization["kind"], organization["formation"],
                                len(organization["unit_ids"]), self.joint_cap, "kind")
        repo.save_organization(organization)
        self._emit_organization(uow, "organization.updated", organization)
        return as_resource(organization)

    def attach_unit(self, uow, organization_id: str, unit_id: str, actor: Actor) -> dict:
        repo = self._repo(uow)
        organization = repo.organization(organization_id)
        actor.ensure_division(organization["division"], ORGANIZATION_ID)
        domain.check_organization_active(organization)
        before = repo.unit(unit_id, "unit_id")
        actor.ensure_division(before["division"], "unit_id")
        domain.check_unit_active(before, "unit_id")
        if unit_id in organization["unit_ids"]:
            raise Conflict(f"unit {unit_id} is already covered by organization {organization_id}", "unit_id",
                           "already attached")
        domain.check_unit_count(organization["kind"], organization["formation"],
                                len(organization["unit_ids"]) + 1, self.joint_cap, "unit_id")
        organization["unit_ids"].append(unit_id)
        organization["updated_at"] = uow.now
        repo.save_organization(organization)
        after = domain.attach(copy.deepcopy(before), organization)
        after["updated_at"] = uow.now
        repo.save_unit(after)
        uow.emit("organization.unit_attached", subject=organization_id, division=organization["division"],
                 data={"organization_id": organization_id, "unit_id": unit_id})
        projection.apply_unit_changes(uow, repo, [(before, after)], "organization.unit_attached")
        return as_resource(organization)

    def detach_unit(self, uow, organization_id: str, unit_id: str, actor: Actor) -> dict:
        repo = self._repo(uow)
        organization = repo.organization(organization_id)
        actor.ensure_division(organization["division"], ORGANIZATION_ID)
        domain.check_organization_active(organization)
        if unit_id not in organization["unit_ids"]:
            raise NotFound(f"unit in organization {organization_id}:", unit_id)
        before = repo.unit(unit_id)
        actor.ensure_division(before["division"], "unit_id")  # a joint one may span districts
        organization["unit_ids"].remove(unit_id)
        organization["updated_at"] = uow.now
        repo.save_organization(organization)
        after = domain.detach(copy.deepcopy(before), organization_id)
        after["updated_at"] = uow.now
        repo.save_unit(after)
        uow.emit("organization.unit_detached", subject=organization_id, division=organization["division"],
                 data={"organization_id": organization_id, "unit_id": unit_id})
        projection.apply_unit_changes(uow, repo, [(before, after)], "organization.unit_detached")
        return as_resource(organization)

    def dissolve_organization(self, uow, organization_id: str, actor: Actor) -> dict:
        repo = self._repo(uow)
        organization = repo.organization(organization_id)
        actor.ensure_division(organization["division"], ORGANIZATION_ID)
        domain.check_organization_active(organization)
        changes = []
        for unit_id in organization["unit_ids"]:
            before = repo.unit(unit_id)
            after = domain.detach(copy.deepcopy(before), organization_id)
            after["updated_at"] = uow.now
            repo.save_unit(after)
            changes.append((before, after))
        # Its units no longer point to it, so neither does it; what it covered stays on record.
        organization.update(status=OrganizationStatus.dissolved.value, dissolved_on=uow.now.date().isoformat(),
                            unit_ids=[], former_unit_ids=organization["unit_ids"], updated_at=uow.now)
        repo.save_organization(organization)
        self._emit_organization(uow, "organization.dissolved", organization)
        projection.apply_unit_changes(uow, repo, changes, "organization.dissolved")
        return as_resource(organization)

    # ---- instructors -------------------------------------------------------------------------

    def create_instructor(self, uow, command: CreateInstructor, actor: Actor) -> dict:
        actor.ensure_division(command.division, "division")
        repo = self._repo(uow)
        self._require_known_division(repo, command.division)
        instructor_id = new_id()
        instructor = {"_id": instructor_id, **command.model_dump(mode="json", exclude={"phone"}),
                      **protected_phone(self.cipher, instructor_id, command.phone),
                      "unit_ids": [], "created_at": uow.now}
        repo.insert_instructor(instructor)
        resource = as_resource(instructor)
        uow.emit("instructor.created", subject=instructor["_id"], division=instructor["division"], data=resource)
        return resource

    def assign_instructor(self, uow, unit_id: str, command: AssignInstructor, actor: Actor) -> dict:
        repo = self._repo(uow)
        before = repo.unit(unit_id)
        actor.ensure_division(before["division"], UNIT_ID)
        domain.check_unit_active(before, UNIT_ID)
        instructor = repo.instructor(command.instructor_id, "instructor_id")
        actor.ensure_division(instructor["division"], "instructor_id")
        if before.get("instructor_id") == instructor["_id"]:
            return as_resource(before)
        unit = copy.deepcopy(before)
        if unit.get("instructor_id"):
            self._release_instructor(uow, repo, unit)
        instructor["unit_ids"] = sorted({*instructor["unit_ids"], unit_id})
        repo.save_instructor(instructor)
        unit.update(instructor_id=instructor["_id"], updated_at=uow.now)
        domain.refresh_unit(unit)
        repo.save_unit(unit)
        uow.emit("instructor.assigned", subject=unit_id, division=unit["division"],
                 data={"instructor_id": instructor["_id"], "unit_id": unit_id})
        projection.apply_unit_changes(uow, repo, [(before, unit)], "instructor.assigned")
        return as_resource(unit)

    def unassign_instructor(self, uow, unit_id: str, actor: Actor) -> dict:
        repo = self._repo(uow)
        before = repo.unit(unit_id)
        actor.ensure_division(before["division"], UNIT_ID)
        if not before.get("instructor_id"):
            raise Conflict(f"unit {unit_id} has no instructor")
        unit = copy.deepcopy(before)
        self._release_instructor(uow, repo, unit)
        unit["updated_at"] = uow.now
        domain.refresh_unit(unit)
        repo.save_unit(unit)
        projection.apply_unit_changes(uow, repo, [(before, unit)], "instructor.unassigned")
        return as_resource(unit)

    @staticmethod
    def _release_instructor(uow, repo: Repository, unit: dict) -> None:
        instructor_id = unit["instructor_id"]
        instructor = repo.instructor(instructor_id)
        instructor["unit_ids"] = [u for u in instructor["unit_ids"] if u != unit["_id"]]
        repo.save_instructor(instructor)
        unit["instructor_id"] = None
        domain.refresh_unit(unit)
        uow.emit("instructor.unassigned", subject=unit["_id"], division=unit["division"],
                 data={"instructor_id": instructor_id, "unit_id": unit["_id"]})

    # ---- member counts (from the member service's events) -----------------------------------

    def move_member_counts(self, uow, increments: list[tuple[str | None, str | None, int]], cause: str) -> None:
        """Apply (unit_id, category, +1/-1) increments to units' member counts."""
        repo = self._repo(uow)
        changed: dict[str, tuple[dict, dict]] = {}
        for unit_id, category, step in increments:
            field = domain.member_count_field(category)
            if not unit_id or not field:
                continue
            if unit_id not in changed:
                unit = repo.db.units.find_one({"_id": unit_id}, session=uow.session)
                if unit is None:
                    # A unit this deployment does not hold (another district's platform).
                    log.info("%s names unit %s, which is not registered here: ignored", cause, unit_id)
                    continue
                changed[unit_id] = (unit, copy.deepcopy(unit))
            after = changed[unit_id][1]
            after[field] = after.get(field, 0) + step
        for before, after in changed.values():
            after["updated_at"] = uow.now
            domain.refresh_unit(after)
            repo.save_unit(after)
            self._emit_unit(uow, "unit.updated", after)
        if changed:
            projection.apply_unit_changes(uow, repo, list(changed.values()), cause)
