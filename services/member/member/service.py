"""The nameko service: entrypoints only. Each validates its input against the contract,
asks the organization service about any organization it names, then calls a use case inside
a transaction (commands) or the repository (queries)."""

import logging
import os

from nameko.dependency_providers import Config
from nameko.rpc import RpcProxy
from nameko.timer import timer

from platform_contracts.member import (
    ApproveTransfer, AuditFilter, CancelTransfer, CheckIn, FindMember, MemberFilter, PromoteMember, RegisterMember,
    RejectTransfer, RequestTransfer, RevealIdNumber, TransferFilter, UpdateMember,
)
from platform_contracts.problems import Rejected, check_page_limit, parse_or_reject
from service_kit.entrypoints import rpc
from service_kit.metrics import EntrypointMetrics
from service_kit.operations import OperationsMixin
from service_kit.cipher_provider import FieldCipherProvider
from service_kit.store import StoreProvider, utc_now

from . import access, domain
from .application import Commands
from .organizations import active_organization, active_unit, division_of, online_branch
from .presenter import as_resource
from .repository import Repository

log = logging.getLogger(__name__)

EXPIRY_CHECK_SECONDS = float(os.environ.get("TRANSFER_EXPIRY_CHECK_SECONDS", 60))
EXPIRY_BATCH = 500


class MemberService(OperationsMixin):
    name = "member"

    store = StoreProvider()
    metrics = EntrypointMetrics()
    config = Config()
    cipher = FieldCipherProvider()
    organizations = RpcProxy("organization")

    @property
    def commands(self) -> Commands:
        return Commands(self.cipher, int(self.config.get("TRANSFER_LETTER_VALID_DAYS", 30)))

    @property
    def repo(self) -> Repository:
        return Repository(self.store.db)

    def _execute(self, command_id, work):
        return self.store.execute_command(command_id, work)

    def _visible(self, actor, filters: MemberFilter) -> access.Visibility:
        """What the actor's list may show, once its filters are known to lie inside it."""
        visible = access.visibility(actor)
        # Only a division scope needs to know where a filtered organization is.
        organization_division = (division_of(self.organizations, filters.organization_id)
                                 if filters.organization_id and visible.division is not None else None)
        access.ensure_filters_in_scope(visible, division=filters.division, organization_id=filters.organization_id,
                                       organization_division=organization_division)
        return visible

    # ---- members -------------------------------------------------------------------------

    @rpc
    def register_member(self, command, actor=None, command_id=None):
        parsed = parse_or_reject(RegisterMember, command)
        if (previous := self.store.stored_result(command_id)) is not None:
            return previous
        organization = active_organization(self.organizations, parsed.organization_id, "organization_id")
        if parsed.unit_id:
            active_unit(self.organizations, parsed.unit_id, "unit_id")
        if parsed.online_branch_id:
            online_branch(self.organizations, parsed.online_branch_id)
        return self._execute(command_id, lambda uow: self.commands.register_member(uow, parsed, organization, actor))

    @rpc
    def update_member(self, member_id, changes, actor=None, command_id=None):
        parsed = parse_or_reject(UpdateMember, changes)
        if (previous := self.store.stored_result(command_id)) is not None:
            return previous
        if parsed.online_branch_id:
            online_branch(self.organizations, parsed.online_branch_id)
        return self._execute(command_id, lambda uow: self.commands.update_member(uow, member_id, parsed, actor))

    @rpc
    def get_member(self, member_id, actor=None):
        member = self.repo.member(member_id)
        access.ensure_may_read(actor, member)
        return as_resource(member)

    @rpc
    def find_member_by_id_number(self, id_number, actor=None):
        """Equality lookup through the blind index. Outside the caller's scope it is 404, not
        403, so the answer does not tell who holds an ID number elsewhere."""
        parsed = parse_or_reject(FindMember, {"id_number": id_number})
        member = self.repo.member_by_id_number_index(self.commands.id_number_index(parsed.id_number))
        if member is None or not access.may_read(actor, member):
            raise Rejected.make(404, "no member with this ID number in your scope")
        return as_resource(member)

    @rpc
    def list_members(self, filters=None, limit=50, cursor=None, actor=None):
        parsed = parse_or_reject(MemberFilter, filters or {}, "query")
        return self.repo.members(parsed.model_dump(mode="json"), self._visible(actor, parsed),
                                 check_page_limit(limit), cursor, as_resource)

    @rpc
    def promote_member(self, member_id, command, actor=None, command_id=None):
        parsed = parse_or_reject(PromoteMember, command)
        return self._execute(command_id, lambda uow: self.commands.promote_member(uow, member_id, parsed, actor))

    @rpc
    def reveal_id_number(self, member_id, reason=None, actor=None):
        parsed = parse_or_reject(RevealIdNumber, {"reason": reason})
        # Not a command: its result must never be kept (the command log stores results).
        outcome = self.store.transaction(
            lambda uow: self.commands.reveal_id_number(uow, member_id, parsed.reason, actor))
        if isinstance(outcome, Rejected):  # refused, and the attempt on record
            raise outcome
        return outcome

    @rpc
    def list_audit_log(self, filters=None, limit=50, cursor=None, actor=None):
        access.ensure_may_read_audit_log(actor)
        parsed = parse_or_reject(AuditFilter, filters or {}, "query")
        return self.repo.audit_log(parsed.model_dump(mode="json"), check_page_limit(limit), cursor, as_resource)

    @rpc
    def check_in(self, member_id, station_id, actor=None, command_id=None):
        # The station is recorded as given until the service-station service can vouch for it.
        parsed = parse_or_reject(CheckIn, {"station_id": station_id})
        return self._execute(command_id, lambda uow: self.commands.check_in(uow, member_id, parsed, actor))

    # ---- transfers -----------------------------------------------------------------------

    @rpc
    def request_transfer(self, command, actor=None, command_id=None):
        parsed = parse_or_reject(RequestTransfer, command)
        if (previous := self.store.stored_result(command_id)) is not None:
            return previous
        to_organization = active_organization(self.organizations, parsed.to_organization_id, "to_organization_id")
        if parsed.to_unit_id:
            active_unit(self.organizations, parsed.to_unit_id, "to_unit_id")
        return self._execute(
            command_id, lambda uow: self.commands.request_transfer(uow, parsed, to_organization, actor))

    @rpc
    def get_transfer(self, transfer_id, actor=None):
        transfer = self.repo.transfer(transfer_id)
        access.ensure_may_see_transfer(actor, transfer)
        return as_resource(transfer)

    @rpc
    def list_transfers(self, filters=None, limit=50, cursor=None, actor=None):
        # A transfer has two sides: a filter naming the other side (its division, its
        # organization) is how a side finds its transfers with them, so it narrows what the
        # caller may see rather than being refused.
        parsed = parse_or_reject(TransferFilter, filters or {}, "query")
        return self.repo.transfers(parsed.model_dump(mode="json"), access.visibility(actor),
                                   check_page_limit(limit), cursor, as_resource)

    @rpc
    def approve_transfer(self, transfer_id, command=None, actor=None, command_id=None):
        parsed = parse_or_reject(ApproveTransfer, command or {})
        return self._execute(
            command_id, lambda uow: self.commands.approve_transfer(uow, transfer_id, parsed, actor))

    @rpc
    def receive_transfer(self, transfer_id, actor=None, command_id=None):
        return self._execute(command_id, lambda uow: self.commands.receive_transfer(uow, transfer_id, actor))

    @rpc
    def report_in(self, transfer_id, actor=None, command_id=None):
        # The member is about to belong to the receiving organization and work in the unit
        # named: both must still be active, or the member would drop out of every count.
        if (previous := self.store.stored_result(command_id)) is not None:
            return previous
        transfer = self.repo.transfer(transfer_id)
        active_organization(self.organizations, transfer["to_organization_id"], "to_organization_id")
        if transfer["to_unit_id"]:
            active_unit(self.organizations, transfer["to_unit_id"], "to_unit_id")
        return self._execute(command_id, lambda uow: self.commands.report_in(uow, transfer_id, actor))

    @rpc
    def reject_transfer(self, transfer_id, command, actor=None, command_id=None):
        parsed = parse_or_reject(RejectTransfer, command)
        return self._execute(command_id, lambda uow: self.commands.reject_transfer(uow, transfer_id, parsed, actor))

    @rpc
    def cancel_transfer(self, transfer_id, command=None, actor=None, command_id=None):
        parsed = parse_or_reject(CancelTransfer, command or {})
        return self._execute(command_id, lambda uow: self.commands.cancel_transfer(uow, transfer_id, parsed, actor))

    @timer(interval=EXPIRY_CHECK_SECONDS)
    def expire_letters(self):
        today = domain.local_date(utc_now()).isoformat()
        for transfer_id in self.repo.letters_expired_before(today, EXPIRY_BATCH):
            try:
                self.store.transaction(lambda uow: self.commands.expire_transfer(uow, transfer_id),
                                       correlationid=transfer_id)
            except Exception:  # one stuck transfer must not hold up the others; next pass retries
                log.exception("could not expire transfer %s", transfer_id)
