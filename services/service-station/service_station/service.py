"""The nameko service: entrypoints only, on the chassis (service_kit.chassis), one line of
intent each. Commands run a use case (application.py) in one transaction with their events and
stored result; a registration (or a move to another division) first asks the organization
service whether the division lies in a registered district (`ask_first`: a repeat is answered
from the command log before asking). Queries read through the repository and the presenter.
Timers keep every station's open intervals current and the gauges fresh; members' check-ins
(member.checked_in) count in the stations' utilisation."""

import logging
import os
from datetime import timedelta

from nameko.rpc import RpcProxy
from nameko.timer import timer

from platform_contracts.calendar import CalendarYear
from platform_contracts.events import MemberCheckedIn
from platform_contracts.station import (AdjustSupply, CancelActivity, RecordVisit, RegisterStation, ScheduleActivity,
                                        SetSupply, SignUp, StationFilter, UpdateStation, UtilisationQuery)
from service_kit.actor_tokens import SigningProxy
from service_kit.chassis import divisions
from service_kit.chassis.base import ActorSigning, ChassisService
from service_kit.chassis.entrypoints import command, query
from service_kit.chassis.events import consumes
from service_kit.store import utc_now

from . import domain
from .application import Commands
from .metrics import CALENDAR_DAYS_LEFT, SUPPLIES_LOW
from .migrate import prepare
from .presenter import activity_resource, station_resource
from .repository import Repository

log = logging.getLogger(__name__)

# How often stations whose open intervals start before today are looked for (and refreshed).
INTERVALS_REFRESH_SECONDS = float(os.environ.get("STATION_INTERVALS_REFRESH_SECONDS", 300))
INTERVALS_BATCH = 500
GAUGE_REFRESH_SECONDS = float(os.environ.get("STATION_GAUGE_REFRESH_SECONDS", 30))
# People signed up for an activity are reminded this long before it starts (once).
REMINDER_LEAD_HOURS = float(os.environ.get("ACTIVITY_REMINDER_LEAD_HOURS", 24))
REMINDER_CHECK_SECONDS = float(os.environ.get("ACTIVITY_REMINDER_CHECK_SECONDS", 60))
REMINDER_BATCH = 200


class ServiceStationService(ChassisService):
    name = "service-station"
    migrate = staticmethod(prepare)

    organization_rpc = RpcProxy("organization")  # the division registry
    signer = ActorSigning()  # the organization service takes this service's actors, signed

    @property
    def organizations(self) -> SigningProxy:
        return SigningProxy(self.organization_rpc, self.signer, audience="organization")

    commands = Commands()

    @property
    def repo(self) -> Repository:
        return Repository(self.store.db)

    # ---- stations ------------------------------------------------------------------------

    @command(RegisterStation, ask_first=True)
    def register_station(self, command, actor):
        divisions.ensure_registered(self.organizations, command.division)
        return lambda uow: self.commands.register_station(uow, command, actor)

    @command(UpdateStation, body="changes", path="station_id", ask_first=True)
    def update_station(self, station_id, changes, actor):
        if changes.division is not None:
            divisions.ensure_registered(self.organizations, changes.division)
        return lambda uow: self.commands.update_station(uow, station_id, changes, actor)

    @command(body=None, path="station_id")
    def close_station(self, uow, station_id, actor):
        return self.commands.close_station(uow, station_id, actor)

    @query(body=None, path="station_id")
    def get_station(self, station_id, actor=None):
        return station_resource(self.repo.station(station_id), utc_now())

    @query(StationFilter)
    def list_stations(self, filters=None, limit=50, cursor=None, actor=None):
        return self.commands.list_stations(self.store.db, filters, limit, cursor, utc_now())

    # ---- supplies ------------------------------------------------------------------------

    @command(SetSupply, path=("station_id", "item"))
    def set_supply(self, uow, station_id, item, command, actor):
        return self.commands.set_supply(uow, station_id, domain.supply_item(item), command, actor)

    @command(AdjustSupply, path=("station_id", "item"))
    def adjust_supply(self, uow, station_id, item, command, actor):
        return self.commands.adjust_supply(uow, station_id, domain.supply_item(item), command, actor)

    # ---- visits and utilisation ----------------------------------------------------------

    @command(RecordVisit, path="station_id")
    def record_visit(self, uow, station_id, command=None, actor=None):
        return self.commands.record_visit(uow, station_id, command, actor)

    @query(UtilisationQuery, body="period", path="station_id")
    def get_utilisation(self, station_id, period=None, actor=None):
        return self.commands.utilisation(self.store.db, station_id, period, actor)

    @consumes("member", "member.checked_in", MemberCheckedIn)
    def on_member_checked_in(self, uow, data):
        self.commands.count_check_in(uow, data)

    # ---- activities ----------------------------------------------------------------------

    @command(ScheduleActivity, path="station_id")
    def schedule_activity(self, uow, station_id, command, actor):
        return self.commands.schedule_activity(uow, station_id, command, actor)

    @query(body=None, path="station_id")
    def list_activities(self, station_id, limit=50, cursor=None, actor=None):
        self.repo.station(station_id)
        return self.repo.activities(station_id, limit, cursor, activity_resource)

    @query(body=None, path=("station_id", "activity_id"))
    def get_activity(self, station_id, activity_id, actor=None):
        return activity_resource(self.repo.activity(station_id, activity_id))

    @command(CancelActivity, path=("station_id", "activity_id"))
    def cancel_activity(self, uow, station_id, activity_id, command, actor):
        return self.commands.cancel_activity(uow, station_id, activity_id, command.reason, actor)

    @command(SignUp, path=("station_id", "activity_id"))
    def sign_up(self, uow, station_id, activity_id, command=None, actor=None):
        return self.commands.sign_up(uow, station_id, activity_id, command, actor)

    @command(body=None, path=("station_id", "activity_id", "sign_up_id"))
    def cancel_sign_up(self, uow, station_id, activity_id, sign_up_id, actor):
        return self.commands.cancel_sign_up(uow, station_id, activity_id, sign_up_id, actor)

    # ---- the holiday calendar ------------------------------------------------------------

    @command(CalendarYear, body="calendar")
    def load_calendar_year(self, uow, calendar, actor):
        return self.commands.load_calendar_year(uow, calendar, actor)

    @query(body=None)
    def get_calendar(self, actor=None):
        return self.commands.calendar_years(self.store.db)

    # ---- timers --------------------------------------------------------------------------

    @timer(interval=INTERVALS_REFRESH_SECONDS, eager=True)
    def refresh_open_intervals(self):
        """Every station's open intervals start today: after midnight, and after a calendar
        change, those behind are computed again, a batch at a time."""
        try:
            while self.commands.refresh_intervals(self.store.db, utc_now(), INTERVALS_BATCH) == INTERVALS_BATCH:
                pass
        except Exception:  # the next pass tries again
            log.exception("could not refresh the stations' open intervals")

    @timer(interval=REMINDER_CHECK_SECONDS, eager=True)
    def remind_of_activities(self):
        """Activities starting within ACTIVITY_REMINDER_LEAD_HOURS: each one's sign-ups reminded
        in a transaction of its own, each once (replicas and later passes find them reminded)."""
        now = utc_now()
        for activity_id in self.repo.activities_to_remind(now, now + timedelta(hours=REMINDER_LEAD_HOURS),
                                                          REMINDER_BATCH):
            try:
                self.store.transaction(lambda uow: self.commands.remind(uow, activity_id), correlationid=activity_id)
            except Exception:  # the next pass tries again
                log.exception("could not send the reminder for activity %s", activity_id)

    @timer(interval=GAUGE_REFRESH_SECONDS, eager=True)
    def refresh_gauges(self):
        try:
            for counter in self.store.db.low_supplies.find({}):
                SUPPLIES_LOW.labels(counter["_id"]).set(counter.get("items", 0))
            calendar = self.commands.calendar(self.store.db)
            CALENDAR_DAYS_LEFT.set((calendar.covered_until() - domain.local_date(utc_now())).days)
        except Exception:
            log.exception("could not refresh the gauges")
