"""The nameko service: entrypoints only, on the chassis (service_kit.chassis), one line of
intent each. Commands run a use case (application.py) in one transaction with their events and
stored result; a submission first asks the organization service whether its division lies in a
registered district and an enterprise's unit exists (`ask_first`: a repeat is answered from the
command log before asking). Timers flag appeals past their deadline (once each), ask for
feedback, close resolved appeals nobody rated, and keep the overdue gauge; the holiday
calendar's new years come from the service-station service (calendar.year_loaded)."""

import logging
import os

import eventlet
from nameko.exceptions import UnknownService
from nameko.rpc import RpcProxy
from nameko.timer import timer

from platform_contracts.appeal import (AcceptAppeal, AddNote, AppealCategory, AppealFilter, AssignAppeal,
                                       CategorySettings, CloseAppeal, MergeAppeal, NearbyQuery, PublicAppealFilter,
                                       RateAppeal, RegisterDepartment, RejectAppeal, ReopenAppeal, ResolveAppeal,
                                       RoutingRule, SubmitAppeal, SubmitterKind)
from platform_contracts.calendar import CalendarYear
from platform_contracts.errors import InvalidValue, Unavailable
from platform_contracts.problems import Rejected
from service_kit.actor_tokens import SigningProxy
from service_kit.chassis import divisions
from service_kit.chassis.base import ActorSigning, ChassisService
from service_kit.chassis.entrypoints import command, query
from service_kit.chassis.events import consumes
from service_kit.chassis.providers import FieldCipherProvider
from service_kit.store import utc_now

from .application import Commands, Settings
from .metrics import OVERDUE_OPEN
from .migrate import prepare
from .repository import Repository

log = logging.getLogger(__name__)

OVERDUE_CHECK_SECONDS = float(os.environ.get("APPEAL_OVERDUE_CHECK_SECONDS", 60))
FEEDBACK_CHECK_SECONDS = float(os.environ.get("APPEAL_FEEDBACK_CHECK_SECONDS", 300))
GAUGE_REFRESH_SECONDS = float(os.environ.get("APPEAL_GAUGE_REFRESH_SECONDS", 30))
# Appeals flagged per transaction: each flag and its two events commit together.
OVERDUE_BATCH = int(os.environ.get("APPEAL_OVERDUE_BATCH", 200))
FEEDBACK_BATCH = 200
SCAN = 50_000  # due appeals' ids read at once by a timer


def _ensure_unit(proxy, unit_id: str) -> None:
    """InvalidValue naming submitter.unit_id unless the organization service knows the unit."""
    try:
        with eventlet.Timeout(divisions.RPC_TIMEOUT_SECONDS):
            proxy.get_unit(unit_id=unit_id, actor=divisions.SYSTEM_ACTOR)
    except eventlet.Timeout:
        raise Unavailable("the organization service did not answer in time; nothing was changed, "
                          "try again shortly") from None
    except UnknownService:
        raise Unavailable("the organization service is not running; nothing was changed, try again shortly") from None
    except Rejected as refused:
        if refused.status == 404:
            raise InvalidValue(("submitter", "unit_id"), f"unknown unit {unit_id}") from None
        raise


class AppealService(ChassisService):
    name = "appeal"
    migrate = staticmethod(prepare)

    cipher = FieldCipherProvider()  # contact details
    organization_rpc = RpcProxy("organization")  # the division registry and units
    signer = ActorSigning()

    @property
    def organizations(self) -> SigningProxy:
        return SigningProxy(self.organization_rpc, self.signer, audience="organization")

    @property
    def commands(self) -> Commands:
        config = self.config
        return Commands(self.cipher, Settings(
            duplicate_radius_m=float(config.get("APPEAL_DUPLICATE_RADIUS_M", 250)),
            duplicate_window_days=int(config.get("APPEAL_DUPLICATE_WINDOW_DAYS", 30)),
            feedback_window_days=int(config.get("APPEAL_FEEDBACK_WINDOW_DAYS", 15)),
            questionnaire_after_days=int(config.get("APPEAL_QUESTIONNAIRE_AFTER_DAYS", 3))))

    # ---- appeals -------------------------------------------------------------------------

    @command(SubmitAppeal, ask_first=True)
    def submit_appeal(self, command, actor):
        divisions.ensure_registered(self.organizations, command.division)
        if command.submitter.kind == SubmitterKind.enterprise:
            _ensure_unit(self.organizations, command.submitter.unit_id)
        return lambda uow: self.commands.submit(uow, command, actor)

    @query(body=None, path="appeal_id")
    def get_appeal(self, appeal_id, actor=None):
        return self.commands.get(self.store.db, appeal_id, actor)

    @query(AppealFilter)
    def list_appeals(self, filters=None, limit=50, cursor=None, actor=None):
        return self.commands.list_appeals(self.store.db, filters, limit, cursor, actor, utc_now())

    @query(NearbyQuery, body="query")
    def nearby_appeals(self, query=None, actor=None):
        return self.commands.nearby(self.store.db, query, actor, utc_now())

    @command(AcceptAppeal, path="appeal_id")
    def accept_appeal(self, uow, appeal_id, command=None, actor=None):
        return self.commands.accept(uow, appeal_id, command, actor)

    @command(AssignAppeal, path="appeal_id")
    def assign_appeal(self, uow, appeal_id, command, actor):
        return self.commands.assign(uow, appeal_id, command, actor)

    @command(ResolveAppeal, path="appeal_id")
    def resolve_appeal(self, uow, appeal_id, command, actor):
        return self.commands.resolve(uow, appeal_id, command, actor)

    @command(RejectAppeal, path="appeal_id")
    def reject_appeal(self, uow, appeal_id, command, actor):
        return self.commands.reject(uow, appeal_id, command, actor)

    @command(CloseAppeal, path="appeal_id")
    def close_appeal(self, uow, appeal_id, command=None, actor=None):
        return self.commands.close(uow, appeal_id, command, actor)

    @command(RateAppeal, path="appeal_id")
    def rate_appeal(self, uow, appeal_id, command, actor):
        return self.commands.rate(uow, appeal_id, command, actor)

    @command(ReopenAppeal, path="appeal_id")
    def reopen_appeal(self, uow, appeal_id, command, actor):
        return self.commands.reopen(uow, appeal_id, command, actor)

    @command(MergeAppeal, path="appeal_id")
    def merge_appeal(self, uow, appeal_id, command, actor):
        return self.commands.merge(uow, appeal_id, command, actor)

    @command(AddNote, path="appeal_id")
    def add_note(self, uow, appeal_id, command, actor):
        return self.commands.add_note(uow, appeal_id, command, actor)

    # ---- Open311's public view -----------------------------------------------------------

    @query(PublicAppealFilter)
    def list_public_appeals(self, filters=None, actor=None):
        return self.commands.public_list(self.store.db, filters, utc_now())

    @query(body=None, path="appeal_id")
    def get_public_appeal(self, appeal_id, actor=None):
        return self.commands.public_get(self.store.db, appeal_id)

    # ---- departments, routing, categories ------------------------------------------------

    @command(RegisterDepartment, ask_first=True)
    def register_department(self, command, actor):
        divisions.ensure_registered(self.organizations, command.division)
        return lambda uow: self.commands.register_department(uow, command, actor)

    @query(body=None, path="department_id")
    def get_department(self, department_id, actor=None):
        return self.commands.get_department(self.store.db, department_id, actor)

    @query(body=None)
    def list_departments(self, division=None, limit=50, cursor=None, actor=None):
        return self.commands.list_departments(self.store.db, division, limit, cursor, actor)

    @command(RoutingRule, body="rule")
    def set_route(self, uow, rule, actor):
        return self.commands.set_route(uow, rule, actor)

    @query(body=None)
    def list_routes(self, actor=None):
        return self.commands.list_routes(self.store.db, actor)

    @command(CategorySettings, body="settings", path="category")
    def set_category(self, uow, category, settings, actor):
        try:
            category = AppealCategory(category)
        except ValueError:
            raise InvalidValue("category", f"unknown category {category!r}") from None
        return self.commands.set_category(uow, category, settings, actor)

    @query(body=None)
    def list_categories(self, actor=None):
        return self.commands.list_categories(self.store.db)

    # ---- the holiday calendar ------------------------------------------------------------

    @consumes("service-station", "calendar.year_loaded", CalendarYear)
    def on_calendar_year_loaded(self, uow, year):
        self.commands.load_calendar_year(uow, year)
        log.info("the %s holiday calendar arrived: provisional deadlines it covers are counted again", year.year)

    # ---- timers --------------------------------------------------------------------------

    def _each_batch(self, key: str, batch: int, work, what: str) -> None:
        """Run `work(uow, ids)` over the appeals whose timer `key` has come, a batch per
        transaction, until none is left; a failure is logged and left to the next pass. The ids
        are read SCAN at a time: SecantusDB reads every match of a range before it applies a
        limit (100,000 due appeals: about 5 s a read), so a read per batch would cost that each."""
        try:
            while True:
                ids = Repository(self.store.db).due(key, utc_now(), SCAN)
                for start in range(0, len(ids), batch):
                    chunk = ids[start:start + batch]
                    self.store.transaction(lambda uow: work(uow, chunk), correlationid=f"{what}:{chunk[0]}")
                if len(ids) < SCAN:
                    return
        except Exception:
            log.exception("could not %s", what)

    @timer(interval=OVERDUE_CHECK_SECONDS, eager=True)
    def raise_overdue(self):
        """Appeals past their deadline: flagged, escalated and announced, each once."""
        self._each_batch("overdue_at", OVERDUE_BATCH, self.commands.raise_overdue, "flag overdue appeals")

    @timer(interval=OVERDUE_CHECK_SECONDS, eager=True)
    def recount_deadlines(self):
        """Provisional deadlines (counted past the calendar's data) that a newly loaded year
        covers: counted again, a batch per transaction."""
        try:
            while self.store.transaction(lambda uow: self.commands.recount_deadlines(uow, FEEDBACK_BATCH),
                                         correlationid="recount-deadlines") == FEEDBACK_BATCH:
                pass
        except Exception:
            log.exception("could not count deadlines again")

    @timer(interval=FEEDBACK_CHECK_SECONDS, eager=True)
    def follow_up_resolutions(self):
        """Resolved appeals: the questionnaire after a few days, closed when the window passes."""
        commands = self.commands
        self._each_batch("questionnaire_at", FEEDBACK_BATCH,
                         lambda uow, ids: [commands.ask_for_feedback(uow, i) for i in ids], "ask for feedback")
        self._each_batch("closes_at", FEEDBACK_BATCH,
                         lambda uow, ids: [commands.close_unrated(uow, i) for i in ids], "close unrated appeals")

    @timer(interval=GAUGE_REFRESH_SECONDS, eager=True)
    def refresh_gauges(self):
        try:
            for counter in Repository(self.store.db).overdue_counts():
                OVERDUE_OPEN.labels(counter["department"], counter["district"]).set(max(counter.get("count", 0), 0))
        except Exception:
            log.exception("could not refresh the gauges")
