"""Use cases of the appeal service. Each command runs inside one transaction (a UnitOfWork):
load, check who is asking (access.py), apply the domain rules, save, emit events. An appeal's
division (a registered district) and an enterprise's unit have been checked with the
organization service before the transaction opened.

Free text (titles, descriptions, addresses, notes) is kept and published with anything that
looks like an ID number or a phone masked (service_kit.pii); contact details are encrypted with
the service's field key and shown masked; events carry ids and usernames only."""

import logging
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta

from platform_contracts import geo
from platform_contracts.actors import Actor, Role
from platform_contracts.appeal import (OPEN_STATUSES, AcceptAppeal, AddNote, AppealFilter, AppealStatus, AssignAppeal,
                                       CategorySettings, CloseAppeal, MergeAppeal, NearbyQuery, NoteVisibility,
                                       PublicAppealFilter, RateAppeal, RegisterDepartment, RejectAppeal,
                                       ReopenAppeal, ResolveAppeal, RoutingRule, SubmitAppeal, SubmitterKind)
from platform_contracts.calendar import CalendarYear
from platform_contracts.errors import InvalidValue
from service_kit import nearby
from service_kit.china_calendar import ZONE, ChinaCalendar, calendar_of
from service_kit.documents import json_ready, new_id, prefix_query
from service_kit.pii import FieldCipher, mask_phone, redact_text

from . import access, domain
from .access import PUBLIC, STAFF
from .metrics import OVERDUE_RAISED, SUBMITTED
from .presenter import appeal_resource, department_resource, public_appeal, route_resource
from .repository import Repository, appeal_query

log = logging.getLogger(__name__)

SYSTEM = "system"


@dataclass(frozen=True)
class Settings:
    duplicate_radius_m: float = 250
    duplicate_window_days: int = 30
    feedback_window_days: int = 15  # rating or reopening after resolution; then closed
    questionnaire_after_days: int = 3  # asked to rate, if they have not


def _masked(text: str | None) -> str | None:
    return redact_text(text) if text else text


class Commands:

    def __init__(self, cipher: FieldCipher, settings: Settings):
        self.cipher = cipher
        self.settings = settings

    @staticmethod
    def _repo(uow) -> Repository:
        return Repository(uow.db, uow.session)

    # ---- the calendar and categories -----------------------------------------------------

    @staticmethod
    def calendar(repo: Repository) -> ChinaCalendar:
        """The working-day calendar with the years admins loaded (calendar.year_loaded)."""
        return calendar_of(repo.calendar_overrides())

    @staticmethod
    def category(repo: Repository, category: str) -> dict:
        stored = repo.categories().get(category)
        return stored or {"_id": category, "sla_working_days": domain.DEFAULT_SLA_WORKING_DAYS[category],
                          "anonymous_allowed": category in domain.ANONYMOUS_BY_DEFAULT, "updated_at": None}

    def list_categories(self, db) -> dict:
        repo = Repository(db)
        return {"items": [json_ready({**{k: v for k, v in self.category(repo, c).items() if k != "_id"},
                                      "category": c}) for c in domain.DEFAULT_SLA_WORKING_DAYS]}

    @staticmethod
    def set_category(uow, category: str, settings: CategorySettings, actor: Actor) -> dict:
        actor.require_admin()
        record = {"_id": category, **settings.model_dump(), "updated_at": uow.now}
        Repository(uow.db, uow.session).set_category(record)
        return {"category": category, **settings.model_dump(), "updated_at": uow.now.isoformat()}

    def load_calendar_year(self, uow, year: CalendarYear) -> None:
        """A year an admin loaded at the service-station service (calendar.year_loaded): kept; the
        provisional deadlines it now covers are counted again by `recount_deadlines`."""
        self._repo(uow).set_calendar_override({"_id": year.year, "holidays": [d.isoformat() for d in year.holidays],
                                               "workdays": [d.isoformat() for d in year.workdays]})

    def recount_deadlines(self, uow, batch: int) -> int:
        """Count again, with the calendar as it now is, up to `batch` provisional deadlines whose
        day it has come to cover (earliest first). A deadline that moves later clears an overdue
        flag the provisional count raised. The number recounted."""
        repo = self._repo(uow)
        calendar = self.calendar(repo)
        recounted = 0
        for appeal in repo.provisional(batch):
            if not calendar.covers(domain.local_date(appeal["due_at"])):
                break  # the rest are later still
            appeal["due_at"], appeal["due_provisional"] = domain.deadline(
                calendar, appeal["clock_started_at"], appeal["sla_working_days"])
            if domain.is_open(appeal) and appeal["due_at"] > uow.now and appeal.get("overdue"):
                self._leave_overdue(repo, appeal)
                appeal.update(overdue=False, escalated_to=None)
            if domain.is_open(appeal) and not appeal.get("overdue"):
                appeal["overdue_at"] = appeal["due_at"]
            domain.record(appeal, "deadline_recounted", actor=SYSTEM, at=uow.now, visibility=NoteVisibility.internal,
                          note=f"the holiday calendar for {appeal['due_at'].astimezone(ZONE).year} arrived")
            repo.save_appeal(appeal)
            recounted += 1
        return recounted

    # ---- events --------------------------------------------------------------------------

    @staticmethod
    def _emit(uow, event_type: str, appeal: dict, department: dict | None, **extra) -> None:
        uow.emit(event_type, subject=appeal["_id"], division=appeal["division"], data={
            "appeal_id": appeal["_id"], "category": appeal["category"], "division": appeal["division"],
            "status": appeal["status"], "department": appeal.get("department"),
            "supervisor": department.get("supervisor") if department else None, "handler": appeal.get("handler"),
            "due_at": appeal.get("due_at"), "overdue": appeal.get("overdue", False),
            "escalated_to": appeal.get("escalated_to"), "raised_by": appeal.get("raised_by"),
            "also_raised_by": appeal.get("also_raised_by", []),
            "duplicate_of": appeal.get("duplicate_of"), "version": appeal["version"], **extra})

    @staticmethod
    def _name(department: dict | None) -> str | None:
        return department["name"] if department else None

    def _resource(self, appeal: dict, view: str, department: dict | None) -> dict:
        return appeal_resource(appeal, view, self._name(department))

    # ---- submitting ----------------------------------------------------------------------

    def _contact(self, appeal_id: str, command: SubmitAppeal) -> dict:
        contact = command.submitter.contact
        if contact is None or (contact.name is None and contact.phone is None):
            return {"contact": None, "contact_masked": None}
        sealed = {field: self.cipher.encrypt(value, f"appeal:{appeal_id}:{field}")
                  for field, value in (("name", contact.name), ("phone", contact.phone)) if value}
        return {"contact": sealed, "contact_masked": {"name": domain.mask_name(contact.name),
                                                      "phone": mask_phone(contact.phone)}}

    def submit(self, uow, command: SubmitAppeal, actor: Actor) -> dict:
        access.ensure_may_submit(actor)
        repo = self._repo(uow)
        settings = self.category(repo, command.category)
        kind = command.submitter.kind
        if kind == SubmitterKind.anonymous and not settings["anonymous_allowed"]:
            raise InvalidValue(("submitter", "kind"), f"appeals of category {command.category} may not be anonymous")
        if kind == SubmitterKind.worker and actor.role != Role.worker and command.submitter.contact is None \
                and actor.role != Role.open311_client:
            raise InvalidValue(("submitter", "contact"), "a worker's appeal raised for them names how to reach them")
        appeal_id = new_id()
        located = {}
        if command.location is not None:
            lng, lat = command.location.wgs84()
            located = {nearby.LOCATION_FIELD: geo.geojson_point(lng, lat), **nearby.cell_fields(lng, lat)}
        fields = {
            "category": command.category.value, "title": _masked(command.title),
            "description": _masked(command.description), "division": command.division,
            "address": _masked(command.address), "media": [str(url) for url in command.media],
            "public": command.public, "channel": "open311" if actor.role == Role.open311_client else "api",
            "submitter": {"kind": kind.value, "unit_id": command.submitter.unit_id,
                          "member_id": actor.scope if kind == SubmitterKind.worker and actor.role == Role.worker
                          else None},
            **self._contact(appeal_id, command), **located,
        }
        raised_by = None if kind == SubmitterKind.anonymous or actor.role == Role.open311_client else actor.username
        appeal = domain.new_appeal(fields, appeal_id=appeal_id, raised_by=raised_by, now=uow.now,
                                   actor="anonymous" if raised_by is None else actor.username)
        rules = [domain.Rule(r.get("category"), r.get("division"), r["department_id"]) for r in repo.routes()]
        department = repo.find_department(domain.route(rules, appeal["category"], appeal["division"]))
        if department is not None:
            appeal["department"] = department["_id"]
            domain.record(appeal, "routed", actor=SYSTEM, at=uow.now, department=department["_id"],
                          visibility=NoteVisibility.internal)
        duplicates = self._likely_duplicates(repo, appeal, uow.now)
        repo.insert_appeal(appeal)
        self._emit(uow, "appeal.submitted", appeal, department)
        channel, category = fields["channel"], fields["category"]
        uow.on_commit.append(lambda: SUBMITTED.labels(category, channel).inc())
        view = access.view(actor, appeal, department) or PUBLIC  # anonymous and Open311: the public view
        return {**self._resource(appeal, view, department), "likely_duplicates": duplicates}

    def _likely_duplicates(self, repo: Repository, appeal: dict, now: datetime) -> list[dict]:
        point = nearby.document_point(appeal)
        if point is None:
            return []
        since = now - timedelta(days=self.settings.duplicate_window_days)
        found = domain.nearby_duplicates(repo.near(*point, self.settings.duplicate_radius_m, since), *point,
                                         self.settings.duplicate_radius_m, appeal_id=appeal["_id"],
                                         category=appeal["category"], since=since, limit=10)
        return [appeal_resource(a, PUBLIC, None, metres) for a, metres in found]

    # ---- reading -------------------------------------------------------------------------

    def get(self, db, appeal_id: str, actor: Actor) -> dict:
        repo = Repository(db)
        appeal = repo.appeal(appeal_id)
        department = repo.find_department(appeal.get("department"))
        return self._resource(appeal, access.ensure_readable(actor, appeal, department), department)

    def list_appeals(self, db, filters: AppealFilter, limit: int, cursor: str | None, actor: Actor, now: datetime) -> dict:
        wanted = filters.model_dump(mode="python", exclude_none=True)
        scope = access.list_scope(actor) if not wanted.pop("mine", False) else {"raised_by": actor.username}
        if "division" in scope:
            scope["division"] = actor.narrow_division(wanted.get("division"))
            wanted.pop("division", None)
        if "departments" in scope and wanted.get("department") and wanted["department"] not in scope["departments"]:
            raise access.Forbidden(f"department {wanted['department']} is not one of yours", "department",
                                   "outside your scope")
        for status_field in ("status", "category"):
            if status_field in wanted:
                wanted[status_field] = str(wanted[status_field])
        repo = Repository(db)
        names: dict[str, dict | None] = {}

        def present(appeal: dict) -> dict:
            dept_id = appeal.get("department")
            if dept_id not in names:
                names[dept_id] = repo.find_department(dept_id)
            view = access.view(actor, appeal, names[dept_id]) or PUBLIC
            return self._resource(appeal, view, names[dept_id])

        return repo.appeals(appeal_query({**wanted, **scope}, now), limit, cursor, present)

    def nearby(self, db, query: NearbyQuery, actor: Actor, now: datetime) -> dict:
        """FixMyStreet's "nearby reports": open appeals around a point, public view, nearest first."""
        lng, lat = geo.to_wgs84(*geo.parse_near(query.near), query.coord_sys)
        since = now - timedelta(days=query.days)
        repo = Repository(db)
        found = domain.nearby_duplicates(repo.near(lng, lat, query.radius_m, since), lng, lat, query.radius_m,
                                         appeal_id=None, category=query.category, since=since, limit=query.limit)
        return {"items": [appeal_resource(a, PUBLIC, None, metres) for a, metres in found], "next_cursor": None}

    def public_list(self, db, filters: PublicAppealFilter, now: datetime) -> dict:
        """Open311's GET requests: the ids asked for, or a time window (the last 90 days by
        default) looked up alone through its index, then the other conditions, newest first."""
        if filters.ids:
            first = {"_id": {"$in": list(filters.ids)}}
        else:
            start = filters.start or (filters.end or now) - timedelta(days=90)
            first = {"submitted_at": {"$gte": start, **({"$lt": filters.end} if filters.end else {})}}
        rest: dict = {}
        if filters.category:
            rest["category"] = {"$in": [c.value for c in filters.category]}
        if filters.open is not None:
            open_ = [s.value for s in OPEN_STATUSES]
            rest["status"] = {"$in": open_} if filters.open else {"$nin": open_}
        if filters.division:
            rest["division"] = prefix_query(filters.division)
        repo = Repository(db)
        departments: dict = {}

        def name(dept_id):
            if dept_id not in departments:
                departments[dept_id] = self._name(repo.find_department(dept_id))
            return departments[dept_id]

        return {"items": [public_appeal(a, name(a.get("department")))
                          for a in repo.public_appeals(first, rest, filters.limit)]}

    def public_get(self, db, appeal_id: str) -> dict:
        repo = Repository(db)
        appeal = repo.appeal(appeal_id)
        return public_appeal(appeal, self._name(repo.find_department(appeal.get("department"))))

    # ---- the workflow --------------------------------------------------------------------

    def _load(self, uow, appeal_id: str) -> tuple[Repository, dict, dict | None]:
        repo = self._repo(uow)
        appeal = repo.appeal(appeal_id)
        return repo, appeal, repo.find_department(appeal.get("department"))

    def _finish(self, uow, repo: Repository, appeal: dict, department: dict | None,
                event_type: str | None, **extra) -> dict:
        repo.save_appeal(appeal)
        if event_type:
            self._emit(uow, event_type, appeal, department, **extra)
        return self._resource(appeal, STAFF, department)

    def _leave_overdue(self, repo: Repository, appeal: dict) -> None:
        """An overdue appeal stops being waited for (resolved, rejected, merged, a new deadline)."""
        if appeal.get("overdue") and appeal.get("overdue_counted"):
            repo.count_overdue(appeal.get("department"), appeal["division"][:6], -1)
            appeal["overdue_counted"] = False

    @staticmethod
    def _other_department(repo: Repository, appeal: dict, current: dict | None, department_id: str,
                          actor: Actor) -> dict:
        """The department an appeal is passed to: by those who may pass it, one serving its division."""
        access.ensure_may_reroute(actor, appeal, current)
        department = repo.department(department_id, "department_id")
        access.ensure_serves(department, appeal["division"])
        return department

    def accept(self, uow, appeal_id: str, command: AcceptAppeal, actor: Actor) -> dict:
        repo, appeal, department = self._load(uow, appeal_id)
        access.ensure_staff(actor, appeal, department)
        domain.ensure_may(appeal, "accept")
        if command.department_id and command.department_id != appeal.get("department"):
            department = self._other_department(repo, appeal, department, command.department_id, actor)
            appeal["department"] = department["_id"]
        if department is None:
            raise InvalidValue("department_id", "the appeal was routed to no department: name the one that takes it")
        appeal["status"] = AppealStatus.accepted.value
        appeal["accepted_at"] = uow.now
        domain.start_clock(appeal, self.calendar(repo), self.category(repo, appeal["category"])["sla_working_days"],
                           uow.now)
        domain.record(appeal, "accepted", actor=actor.username, at=uow.now, note=_masked(command.note),
                      department=department["_id"])
        return self._finish(uow, repo, appeal, department, "appeal.accepted")

    def assign(self, uow, appeal_id: str, command: AssignAppeal, actor: Actor) -> dict:
        repo, appeal, department = self._load(uow, appeal_id)
        access.ensure_staff(actor, appeal, department)
        domain.ensure_may(appeal, "assign")
        if command.department_id and command.department_id != appeal.get("department"):
            department = self._other_department(repo, appeal, department, command.department_id, actor)
            self._leave_overdue(repo, appeal)
            appeal.update(department=department["_id"], handler=None)
            if appeal["status"] == AppealStatus.assigned:
                appeal["status"] = AppealStatus.accepted.value
            if appeal.get("overdue"):  # counted again under its new department
                repo.count_overdue(department["_id"], appeal["division"][:6], 1)
                appeal["overdue_counted"] = True
            domain.record(appeal, "rerouted", actor=actor.username, at=uow.now, note=_masked(command.note),
                          department=department["_id"], visibility=NoteVisibility.internal)
        if command.handler:
            if appeal["status"] == AppealStatus.submitted:
                raise domain.Conflict(f"appeal {appeal_id} has not been accepted: accept it before assigning a "
                                      "handler", "handler", "not accepted yet")
            appeal.update(handler=command.handler, status=AppealStatus.assigned.value)
            domain.record(appeal, "assigned", actor=actor.username, at=uow.now, note=_masked(command.note),
                          handler=command.handler, visibility=NoteVisibility.internal)
        return self._finish(uow, repo, appeal, department, "appeal.assigned")

    def _stop_waiting(self, uow, appeal_id: str, actor: Actor, action: str) -> tuple[Repository, dict, dict | None]:
        """The start of a resolution or a rejection: staff only, from a status that allows it;
        the appeal leaves the overdue count and its clock stops."""
        repo, appeal, department = self._load(uow, appeal_id)
        access.ensure_staff(actor, appeal, department)
        domain.ensure_may(appeal, action)
        self._leave_overdue(repo, appeal)
        domain.stop_clock(appeal)
        return repo, appeal, department

    def resolve(self, uow, appeal_id: str, command: ResolveAppeal, actor: Actor) -> dict:
        repo, appeal, department = self._stop_waiting(uow, appeal_id, actor, "resolve")
        appeal.update(status=AppealStatus.resolved.value, resolved_at=uow.now, satisfaction=None,
                      questionnaire_at=uow.now + timedelta(days=self.settings.questionnaire_after_days),
                      closes_at=uow.now + timedelta(days=self.settings.feedback_window_days))
        domain.record(appeal, "resolved", actor=actor.username, at=uow.now, note=_masked(command.resolution))
        return self._finish(uow, repo, appeal, department, "appeal.resolved")

    def reject(self, uow, appeal_id: str, command: RejectAppeal, actor: Actor) -> dict:
        repo, appeal, department = self._stop_waiting(uow, appeal_id, actor, "reject")
        appeal.update(status=AppealStatus.rejected.value, closed_at=uow.now)
        domain.record(appeal, "rejected", actor=actor.username, at=uow.now, note=_masked(command.reason))
        return self._finish(uow, repo, appeal, department, "appeal.rejected")

    def close(self, uow, appeal_id: str, command: CloseAppeal, actor: Actor | None) -> dict:
        repo, appeal, department = self._load(uow, appeal_id)
        if actor is not None:
            access.ensure_staff(actor, appeal, department)
        domain.ensure_may(appeal, "close")
        appeal.update(status=AppealStatus.closed.value, closed_at=uow.now, questionnaire_at=None, closes_at=None)
        domain.record(appeal, "closed", actor=actor.username if actor else SYSTEM, at=uow.now,
                      note=_masked(command.note))
        return self._finish(uow, repo, appeal, department, "appeal.closed")

    def rate(self, uow, appeal_id: str, command: RateAppeal, actor: Actor) -> dict:
        repo, appeal, department = self._load(uow, appeal_id)
        access.ensure_may_rate(actor, appeal)
        domain.ensure_may(appeal, "rate")
        domain.ensure_not_rated(appeal)
        domain.ensure_within_window(appeal, uow.now, self.settings.feedback_window_days, "rated")
        comment = _masked(command.comment)
        appeal["satisfaction"] = {"rating": command.rating, "solved": command.solved, "comment": comment,
                                  "rated_at": uow.now}
        appeal.update(questionnaire_at=None)
        domain.record(appeal, "rated", actor=actor.username, at=uow.now, note=comment)
        self._emit(uow, "appeal.rated", appeal, department, rating=command.rating, solved=command.solved)
        if domain.reopens(command.rating, command.solved):
            appeal["closes_at"] = None
            domain.reopen(appeal, self.calendar(repo), uow.now, actor=SYSTEM,
                          reason=f"rated {command.rating} of 5{'' if command.solved else ', not solved'}")
            return self._finish(uow, repo, appeal, department, "appeal.reopened")
        if appeal["status"] == AppealStatus.resolved:  # satisfied: closed by the rating
            appeal.update(status=AppealStatus.closed.value, closed_at=uow.now, closes_at=None)
            domain.record(appeal, "closed", actor=SYSTEM, at=uow.now)
            return self._finish(uow, repo, appeal, department, "appeal.closed")
        return self._finish(uow, repo, appeal, department, None)

    def reopen(self, uow, appeal_id: str, command: ReopenAppeal, actor: Actor) -> dict:
        repo, appeal, department = self._load(uow, appeal_id)
        access.ensure_may_reopen(actor, appeal, department)
        domain.ensure_may(appeal, "reopen")
        if appeal.get("duplicate_of"):
            raise domain.Conflict(f"appeal {appeal_id} was merged into {appeal['duplicate_of']}: reopen that one",
                                  None, "merged into another appeal")
        if not access.is_staff(actor, appeal, department):
            domain.ensure_within_window(appeal, uow.now, self.settings.feedback_window_days, "reopened")
        appeal["closes_at"] = None
        domain.reopen(appeal, self.calendar(repo), uow.now, actor=actor.username, reason=_masked(command.reason))
        return self._finish(uow, repo, appeal, department, "appeal.reopened")

    def merge(self, uow, appeal_id: str, command: MergeAppeal, actor: Actor) -> dict:
        repo, appeal, department = self._load(uow, appeal_id)
        access.ensure_staff(actor, appeal, department)
        into = repo.appeal(command.into, "into")
        into_department = repo.find_department(into.get("department"))
        access.ensure_staff(actor, into, into_department)
        self._leave_overdue(repo, appeal)
        domain.merge(appeal, into, actor=actor.username, now=uow.now, note=_masked(command.note))
        repo.save_appeal(into)
        # Whoever raised the duplicate: told at once if the appeal it joins is resolved already.
        self._emit(uow, "appeal.merged", into, into_department, duplicate_id=appeal["_id"],
                   merged_raisers=[u for u in (appeal.get("raised_by"), *appeal.get("also_raised_by", ())) if u])
        return self._finish(uow, repo, appeal, department, "appeal.closed")

    def add_note(self, uow, appeal_id: str, command: AddNote, actor: Actor) -> dict:
        repo, appeal, department = self._load(uow, appeal_id)
        access.ensure_staff(actor, appeal, department)
        domain.record(appeal, "note", actor=actor.username, at=uow.now, note=_masked(command.text),
                      visibility=command.visibility)
        return self._finish(uow, repo, appeal, department, None)

    # ---- timers --------------------------------------------------------------------------

    def raise_overdue(self, uow, appeal_ids: list[str]) -> int:
        """Flag the appeals among `appeal_ids` that are past their deadline: `appeal.overdue` and
        `appeal.escalated`, once per deadline (the flags and the events commit together; another
        replica's pass, or this one's after a crash, finds them flagged). Each write is just the
        fields that change, and the counters move once per department and district. The number
        flagged."""
        repo = self._repo(uow)
        departments: dict = {}
        counts: Counter = Counter()
        same_flag: dict[tuple, tuple[dict, list[dict], list[str]]] = {}
        for appeal in repo.appeals_by_id(appeal_ids):
            if not domain.is_overdue(appeal, uow.now):
                if appeal.get("overdue_at") is not None and appeal["overdue_at"] <= uow.now:  # closed meanwhile
                    repo.clear_timer(appeal["_id"], "overdue_at")
                continue
            dept_id = appeal.get("department")
            if dept_id not in departments:
                departments[dept_id] = repo.find_department(dept_id)
            department = departments[dept_id]
            changes, entries = domain.mark_overdue(appeal, department, uow.now)
            key = (dept_id, appeal["status"], changes["escalated_to"])
            same_flag.setdefault(key, ({**changes, "overdue_counted": True}, entries, []))[2].append(appeal["_id"])
            self._emit(uow, "appeal.overdue", appeal, department)
            self._emit(uow, "appeal.escalated", appeal, department)
            counts[(dept_id, appeal["division"][:6])] += 1
        for changes, entries, ids in same_flag.values():
            for appeal_id in ids:
                repo.flag_overdue(appeal_id, changes, entries, domain.OVERDUE_STEPS)
        for (dept_id, district), flagged in counts.items():
            repo.count_overdue(dept_id, district, flagged)
        uow.on_commit.append(lambda: [OVERDUE_RAISED.labels(district).inc(n) for (_, district), n in counts.items()])
        return sum(counts.values())

    def ask_for_feedback(self, uow, appeal_id: str) -> bool:
        """A resolved appeal nobody rated: the person who raised it is asked (once)."""
        repo = self._repo(uow)
        appeal = repo.appeal(appeal_id)
        if appeal.get("questionnaire_at") is None or appeal["questionnaire_at"] > uow.now:
            return False
        appeal["questionnaire_at"] = None
        appeal["questionnaire_sent_at"] = uow.now
        domain.record(appeal, "feedback_requested", actor=SYSTEM, at=uow.now, visibility=NoteVisibility.internal)
        asked = appeal["status"] == AppealStatus.resolved and appeal.get("raised_by") is not None
        repo.save_appeal(appeal)
        if asked:
            self._emit(uow, "appeal.feedback_requested", appeal, repo.find_department(appeal.get("department")))
        return asked

    def close_unrated(self, uow, appeal_id: str) -> bool:
        """A resolved appeal whose feedback window passed: closed by the system."""
        repo = self._repo(uow)
        appeal = repo.appeal(appeal_id)
        if appeal.get("closes_at") is None or appeal["closes_at"] > uow.now:
            return False
        if appeal["status"] != AppealStatus.resolved:
            appeal["closes_at"] = None
            repo.save_appeal(appeal)
            return False
        self.close(uow, appeal_id, CloseAppeal(note=None), None)
        return True

    # ---- departments and routing ---------------------------------------------------------

    @staticmethod
    def register_department(uow, command: RegisterDepartment, actor: Actor) -> dict:
        access.ensure_may_manage_department(actor, command.division)
        department = {"_id": new_id(), **command.model_dump(), "created_at": uow.now, "created_by": actor.username}
        Repository(uow.db, uow.session).insert_department(department)
        return department_resource(department)

    @staticmethod
    def get_department(db, department_id: str, actor: Actor) -> dict:
        department = Repository(db).department(department_id)
        serves_them = actor.role == Role.operator and isinstance(actor.scope, str) and access.serves(department,
                                                                                                     actor.scope)
        if not (actor.covers_division(department["division"]) or serves_them or actor.handles_department(department_id)
                or access.supervises(actor, department)):
            raise access.Forbidden(f"department {department_id} is outside your scope")
        return department_resource(department)

    @staticmethod
    def list_departments(db, division: str | None, limit: int, cursor: str | None, actor: Actor) -> dict:
        """Departments are the platform's public organisation chart, but listed in scope:
        operators their division's and those above it that serve it, handlers their own."""
        query: dict = {}
        if actor.role == Role.handler:
            query["_id"] = {"$in": list(actor.scope or ())}
        elif not actor.is_admin:
            scope = actor.division_scope()
            division = actor.narrow_division(division)
            # the departments at or above the operator's division (a district department serves streets)
            query["division"] = {"$in": [scope[:n] for n in (6, 9, 12) if n <= len(scope)]} \
                if division == scope else division
        if division and actor.is_admin:
            query["division"] = division
        return Repository(db).departments(query, limit, cursor, department_resource)

    @staticmethod
    def set_route(uow, rule: RoutingRule, actor: Actor) -> dict:
        access.ensure_may_route(actor, rule.division)
        repo = Repository(uow.db, uow.session)
        department = repo.department(rule.department_id, "department_id")
        if rule.division is not None:
            access.ensure_serves(department, rule.division)
        route = {"_id": f"{rule.category or '*'}|{rule.division or '*'}", "category": rule.category,
                 "division": rule.division, "department_id": rule.department_id, "updated_at": uow.now,
                 "updated_by": actor.username}
        repo.set_route(route)
        return route_resource(route)

    @staticmethod
    def list_routes(db, actor: Actor) -> dict:
        actor.require(Role.admin, Role.operator, detail="only operators and admins read the routing table")
        scope = actor.division_scope()
        routes = [r for r in Repository(db).routes()
                  if scope is None or r.get("division") is None or r["division"].startswith(scope)
                  or scope.startswith(r["division"])]
        return {"items": [route_resource(r) for r in routes]}
