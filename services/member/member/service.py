"""The nameko service: entrypoints only, on the chassis (service_kit.chassis), one line of
intent each. A command that names an organization or unit asks the organization service
about it first (`ask_first`: a repeat is answered from the command log before asking), then
runs its use case (application.py) in one transaction with its events and stored result. Who
is asking is decided before that question, as far as it can be without its answer, so that a
refusal tells nothing of what the command names (its existence, its state)."""

import logging
import os

from nameko.rpc import RpcProxy
from nameko.timer import timer

from platform_contracts.member import (
    ApproveTransfer, AuditFilter, CancelTransfer, CheckIn, FindMember, MemberFilter, PromoteMember, RegisterMember,
    RejectTransfer, RequestTransfer, RevealIdNumber, TransferFilter, UpdateMember,
)
from platform_contracts.errors import NotFound
from platform_contracts.events import StationEvent
from platform_contracts.problems import parse_or_reject
from service_kit.actor_tokens import SigningProxy
from service_kit.chassis.base import ActorSigning, ChassisService, FieldCipherProvider
from service_kit.chassis.entrypoints import command, operation, query
from service_kit.chassis.events import consumes
from service_kit.store import utc_now

from . import access, domain
from .application import DEFAULT_CONFLICTS_OUTSIDE_SCOPE_PER_DAY, Commands
from .migrate import prepare
from .organizations import (active_organization, active_unit, division_of, ensure_active_organization,
                            find_organization, online_branch)
from .presenter import as_resource
from .repository import Repository

log = logging.getLogger(__name__)

EXPIRY_CHECK_SECONDS = float(os.environ.get("TRANSFER_EXPIRY_CHECK_SECONDS", 60))
EXPIRY_BATCH = 500


class MemberService(ChassisService):
    name = "member"
    migrate = staticmethod(prepare)

    cipher = FieldCipherProvider()  # ID numbers and phones
    organization_rpc = RpcProxy("organization")
    signer = ActorSigning()  # the organization service takes this service's actors, signed

    @property
    def organizations(self) -> SigningProxy:
        return SigningProxy(self.organization_rpc, self.signer, audience="organization")

    @property
    def commands(self) -> Commands:
        return Commands(self.cipher, int(self.config.get("TRANSFER_LETTER_VALID_DAYS", 30)),
                        int(self.config.get("ID_NUMBER_CONFLICTS_OUTSIDE_SCOPE_PER_DAY",
                                            DEFAULT_CONFLICTS_OUTSIDE_SCOPE_PER_DAY)))

    @property
    def repo(self) -> Repository:
        return Repository(self.store.db)

    def _visible(self, actor, filters: MemberFilter) -> access.Visibility:
        """What the actor's list may show, once its filters are known to lie inside it."""
        visible = access.visibility(actor)
        # Only a division scope needs to know where a filtered organization is.
        organization_division = (division_of(self.organizations, filters.organization_id)
                                 if filters.organization_id and visible.division is not None else None)
        access.ensure_filters_in_scope(visible, division=filters.division, organization_id=filters.organization_id,
                                       organization_division=organization_division)
        return visible

    def _screen_id_number(self, id_number: str, actor, member_id: str | None = None) -> None:
        """Refuses a taken ID number outside the caller's scope in a transaction of its own, so
        that the audit record of the refusal commits (see Commands.screen_id_number)."""
        refusal = self.store.transaction(
            lambda uow: self.commands.screen_id_number(uow, id_number, actor, member_id))
        if refusal is not None:
            raise refusal

    # ---- members -------------------------------------------------------------------------

    @command(RegisterMember, ask_first=True)
    def register_member(self, command, actor):
        # Who may register members there is decided first, on what the caller may know; only
        # then is the caller told the state of the organization, the unit, the online branch
        # and the ID number (access.organization_to_manage).
        found = access.organization_to_manage(actor, command.organization_id, "organization_id",
                                              lambda: find_organization(self.organizations, command.organization_id))
        organization = ensure_active_organization(found, command.organization_id, "organization_id")
        if command.unit_id:
            active_unit(self.organizations, command.unit_id, "unit_id")
        if command.online_branch_id:
            online_branch(self.organizations, command.online_branch_id)
        self._screen_id_number(command.id_number, actor)
        return lambda uow: self.commands.register_member(uow, command, organization, actor)

    @command(UpdateMember, body="changes", path="member_id", ask_first=True)
    def update_member(self, member_id, changes, actor):
        # Whether the caller may change the member is decided before anything the changes name
        # is looked up, so that a refusal tells nothing of it (an online branch's state).
        member = self.repo.member(member_id)
        access.ensure_may_manage(actor, member["organization_id"], member["division"])
        if changes.online_branch_id:
            online_branch(self.organizations, changes.online_branch_id)
        if changes.id_number:
            self._screen_id_number(changes.id_number, actor, member_id)
        return lambda uow: self.commands.update_member(uow, member_id, changes, actor)

    @query(body=None, path="member_id")
    def get_member(self, member_id, actor=None):
        member = self.repo.member(member_id)
        access.ensure_may_read(actor, member)
        return as_resource(member)

    @query(body=None)
    def find_member_by_id_number(self, id_number, actor=None):
        """Equality lookup through the blind index. Outside the caller's scope it is 404, not
        403, so the answer does not tell who holds an ID number elsewhere."""
        parsed = parse_or_reject(FindMember, {"id_number": id_number})
        member = self.repo.member_by_id_number_index(self.commands.id_number_index(parsed.id_number))
        if member is None or not access.may_read(actor, member):
            raise NotFound("member", "", detail="no member with this ID number in your scope")
        return as_resource(member)

    @query(MemberFilter)
    def list_members(self, filters=None, limit=50, cursor=None, actor=None):
        return self.repo.members(filters.model_dump(mode="json"), self._visible(actor, filters), limit, cursor,
                                 as_resource)

    @command(PromoteMember, path="member_id")
    def promote_member(self, uow, member_id, command, actor):
        return self.commands.promote_member(uow, member_id, command, actor)

    @operation(body=None, path="member_id")
    def reveal_id_number(self, member_id, reason=None, actor=None):
        parsed = parse_or_reject(RevealIdNumber, {"reason": reason})
        # Not a command: its result must never be kept (the command log stores results).
        outcome = self.store.transaction(
            lambda uow: self.commands.reveal_id_number(uow, member_id, parsed.reason, actor))
        if isinstance(outcome, Exception):  # refused, and the attempt on record
            raise outcome
        return outcome

    @query(AuditFilter)
    def list_audit_log(self, filters=None, limit=50, cursor=None, actor=None):
        access.ensure_may_read_audit_log(actor)
        return self.repo.audit_log(filters.model_dump(mode="json"), limit, cursor, as_resource)

    @command(body=None, path="member_id")
    def check_in(self, uow, member_id, station_id, actor):
        # The station must be an active one of the stations read model (stations.py).
        return self.commands.check_in(uow, member_id, parse_or_reject(CheckIn, {"station_id": station_id}), actor)

    # ---- stations (the service-station service's events) ----------------------------------

    @consumes("service-station", "station.registered", StationEvent)
    def on_station_registered(self, uow, station):
        self.commands.keep_station(uow, station)

    @consumes("service-station", "station.updated", StationEvent)
    def on_station_updated(self, uow, station):
        self.commands.keep_station(uow, station)

    @consumes("service-station", "station.closed", StationEvent)
    def on_station_closed(self, uow, station):
        self.commands.keep_station(uow, station)

    # ---- transfers -----------------------------------------------------------------------

    @command(RequestTransfer, ask_first=True)
    def request_transfer(self, command, actor):
        # Who may move the member first: the destination's state is told only to them.
        access.ensure_may_request(actor, self.repo.member(command.member_id, "member_id"))
        to_organization = active_organization(self.organizations, command.to_organization_id, "to_organization_id")
        if command.to_unit_id:
            active_unit(self.organizations, command.to_unit_id, "to_unit_id")
        return lambda uow: self.commands.request_transfer(uow, command, to_organization, actor)

    @query(body=None, path="transfer_id")
    def get_transfer(self, transfer_id, actor=None):
        transfer = self.repo.transfer(transfer_id)
        access.ensure_may_see_transfer(actor, transfer)
        return as_resource(transfer)

    @query(TransferFilter)
    def list_transfers(self, filters=None, limit=50, cursor=None, actor=None):
        # A transfer has two sides: a filter naming the other side (its division, its
        # organization) is how a side finds its transfers with them, so it narrows what the
        # caller may see rather than being refused.
        return self.repo.transfers(filters.model_dump(mode="json"), access.visibility(actor), limit, cursor,
                                   as_resource)

    @command(ApproveTransfer, path="transfer_id")
    def approve_transfer(self, uow, transfer_id, command=None, actor=None):
        return self.commands.approve_transfer(uow, transfer_id, command, actor)

    @command(body=None, path="transfer_id")
    def receive_transfer(self, uow, transfer_id, actor):
        return self.commands.receive_transfer(uow, transfer_id, actor)

    @command(body=None, path="transfer_id", ask_first=True)
    def report_in(self, transfer_id, actor):
        # The member is about to belong to the receiving organization and work in the unit
        # named: both must still be active, or the member would drop out of every count. Who
        # may report in is decided first, on the transfer: the state of its destination is
        # told only to the member and the receiving side.
        transfer = self.repo.transfer(transfer_id)
        access.ensure_may_report_in(actor, transfer)
        active_organization(self.organizations, transfer["to_organization_id"], "to_organization_id")
        if transfer["to_unit_id"]:
            active_unit(self.organizations, transfer["to_unit_id"], "to_unit_id")
        return lambda uow: self.commands.report_in(uow, transfer_id, actor)

    @command(RejectTransfer, path="transfer_id")
    def reject_transfer(self, uow, transfer_id, command, actor):
        return self.commands.reject_transfer(uow, transfer_id, command, actor)

    @command(CancelTransfer, path="transfer_id")
    def cancel_transfer(self, uow, transfer_id, command=None, actor=None):
        return self.commands.cancel_transfer(uow, transfer_id, command, actor)

    @timer(interval=EXPIRY_CHECK_SECONDS)
    def expire_letters(self):
        today = domain.local_date(utc_now()).isoformat()
        for transfer_id in self.repo.letters_expired_before(today, EXPIRY_BATCH):
            try:
                self.store.transaction(lambda uow: self.commands.expire_transfer(uow, transfer_id),
                                       correlationid=transfer_id)
            except Exception:  # one stuck transfer must not hold up the others; next pass retries
                log.exception("could not expire transfer %s", transfer_id)
