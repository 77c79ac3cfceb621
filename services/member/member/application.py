"""Use cases of the member service. Each runs inside one transaction (a UnitOfWork): load,
check who is asking, apply the domain rules, save, emit events. Organizations named by a
command have been checked with the organization service before the transaction opened.

Personal data is protected here, on the way in: encrypted, indexed with a keyed hash, masked.
Nothing below this layer sees a plaintext ID number or phone, and nothing returned does,
except the audited reveal."""

from platform_contracts.member import (
    ApproveTransfer, AuditOutcome, CancelTransfer, CheckIn, PromoteMember, RegisterMember, RejectTransfer,
    RequestTransfer, UpdateMember,
)
from datetime import timedelta

from platform_contracts.actors import Actor
from platform_contracts.errors import DomainError, Forbidden, InvalidValue, TooManyRequests
from platform_contracts.events import StationEvent
from service_kit.documents import new_id
from service_kit.pii import FieldCipher, mask_id_number, mask_phone, redact_text

from . import access, domain, stations, transfers
from .metrics import ID_NUMBER_CONFLICTS_OUTSIDE_SCOPE
from .presenter import as_resource
from .repository import Repository, duplicate_id_number

ID_NUMBER_INDEX = "member.id_number"  # the blind index's context: the same for every member
ID_NUMBER_CONFLICT = "id_number_conflict"  # the audit log's action for an answer outside the caller's scope
DEFAULT_CONFLICTS_OUTSIDE_SCOPE_PER_DAY = 5
MOBILITY_FIELDS = ("mobile", "mobile_location", "online_branch_id")
MEMBER_EVENT_FIELDS = ("organization_id", "unit_id", "division", "name", "id_number", "phone", "occupation",
                       *MOBILITY_FIELDS, "stage", "category")
STORED_AS = {"id_number_encrypted": "id_number", "id_number_index": "id_number", "id_number_masked": "id_number",
             "phone_encrypted": "phone", "phone_masked": "phone"}


def _free_text(text: str | None) -> str | None:
    """A reason as kept and published: ID numbers and phones typed into it masked, since it goes
    to the event log, the streams of both sides and the audit log."""
    return redact_text(text) if text else text


def _member_data(resource: dict, **extra) -> dict:
    return {"member_id": resource["id"], **{k: resource.get(k) for k in MEMBER_EVENT_FIELDS}, **extra}


def _mobility(member: dict) -> dict:
    return {k: member.get(k) for k in MOBILITY_FIELDS}


def _transfer_data(transfer: dict, **extra) -> dict:
    last = transfer["history"][-1]
    return {
        "transfer_id": transfer["_id"],
        **{k: transfer[k] for k in ("member_id", "from_organization_id", "to_organization_id", "from_unit_id",
                                    "to_unit_id", "from_division", "to_division", "status", "letter_expires_on")},
        "by": last["by"], "note": last["note"], **extra,
    }


class Commands:
    def __init__(self, cipher: FieldCipher, letter_valid_days: int,
                 conflicts_outside_scope_per_day: int = DEFAULT_CONFLICTS_OUTSIDE_SCOPE_PER_DAY):
        self.cipher = cipher
        self.letter_valid_days = letter_valid_days
        self.conflicts_outside_scope_per_day = conflicts_outside_scope_per_day

    @staticmethod
    def _repo(uow) -> Repository:
        return Repository(uow.db, uow.session)

    # ---- personal data ---------------------------------------------------------------------

    def id_number_index(self, id_number: str) -> str:
        return self.cipher.blind_index(id_number, ID_NUMBER_INDEX)

    def _protected_id_number(self, member_id: str, id_number: str) -> dict:
        return {
            "id_number_encrypted": self.cipher.encrypt(id_number, f"member:{member_id}:id_number"),
            "id_number_index": self.id_number_index(id_number),
            "id_number_masked": mask_id_number(id_number),
        }

    def screen_id_number(self, uow, id_number: str, actor: Actor, member_id: str | None = None) -> DomainError | None:
        """Before a registration, or a change of `member_id`'s ID number: the refusal to raise
        once this transaction has committed, if any.

        That an ID number is taken tells that its holder is a party member. Inside the caller's
        scope that is theirs to know, and the 409 is answered as ever. Outside it the 409 is
        still answered (the person must be transferred, not registered twice), but each such
        answer is written to the audit log (which member, who asked) and counted, and a caller
        gets at most `conflicts_outside_scope_per_day` of them in 24 hours. Past that, every
        registration and ID number change of theirs is refused with 429 until the oldest answer
        is a day old, whether the number is taken or not, so the refusal tells nothing either."""
        repo = self._repo(uow)
        if member_id is not None:  # a member the caller may not change is refused as such first
            member = repo.member(member_id)
            access.ensure_may_manage(actor, member["organization_id"], member["division"])
        existing = repo.member_by_id_number_index(self.id_number_index(id_number))
        outside_scope = (existing is not None and existing["_id"] != member_id
                         and not access.may_read(actor, existing))
        answered = repo.count_audit(by=actor.username, action=ID_NUMBER_CONFLICT,
                                    outcome=AuditOutcome.revealed.value, since=uow.now - timedelta(days=1))
        if answered >= self.conflicts_outside_scope_per_day:
            refusal = TooManyRequests(
                f"{answered} registrations or ID number changes of yours in the last 24 hours named an ID number "
                "registered outside your scope: no more are accepted from you until a day has passed since the "
                "first of them; an administrator can register the member", "id_number", "try again later")
            if outside_scope:
                self._audit_conflict(uow, existing, actor, AuditOutcome.refused)
            return refusal
        if not outside_scope:
            return None  # unknown here, or the caller's own: the transaction itself decides
        self._audit_conflict(uow, existing, actor, AuditOutcome.revealed)
        return duplicate_id_number()

    def _audit_conflict(self, uow, existing: dict, actor: Actor, outcome: AuditOutcome) -> None:
        self._repo(uow).insert_audit({
            "_id": new_id(), "action": ID_NUMBER_CONFLICT, "member_id": existing["_id"], "by": actor.username,
            "role": actor.role.value, "reason": "registration or ID number change naming a member outside the scope",
            "outcome": outcome.value, "at": uow.now})
        uow.on_commit.append(lambda: ID_NUMBER_CONFLICTS_OUTSIDE_SCOPE.labels(outcome.value).inc())

    def _protected_phone(self, member_id: str, phone: str | None) -> dict:
        if phone is None:
            return {"phone_encrypted": None, "phone_masked": None}
        return {"phone_encrypted": self.cipher.encrypt(phone, f"member:{member_id}:phone"),
                "phone_masked": mask_phone(phone)}

    def _phone_of(self, member: dict) -> str | None:
        encrypted = member.get("phone_encrypted")
        return self.cipher.decrypt(encrypted, f"member:{member['_id']}:phone") if encrypted else None

    # ---- members -----------------------------------------------------------------------------

    def register_member(self, uow, command: RegisterMember, organization: dict, actor: Actor) -> dict:
        access.ensure_may_manage(actor, organization["id"], organization["division"])
        if command.override_reason:
            access.ensure_may_override(actor)
        member_id = new_id()
        fields = command.model_dump(mode="json",
                                    exclude={"id_number", "phone", "stage_on", "joined_on", "override_reason"})
        member = domain.new_member(
            {**fields, "division": organization["division"],
             **self._protected_id_number(member_id, command.id_number),
             **self._protected_phone(member_id, command.phone)},
            stage_on=command.stage_on, joined_on=command.joined_on, override_reason=_free_text(command.override_reason),
            member_id=member_id, by=actor.username, now=uow.now,
        )
        self._repo(uow).insert_member(member)
        resource = as_resource(member)
        uow.emit("member.registered", subject=member_id, division=member["division"], data=_member_data(resource))
        return resource

    def update_member(self, uow, member_id: str, changes: UpdateMember, actor: Actor) -> dict:
        repo = self._repo(uow)
        member = repo.member(member_id)
        access.ensure_may_manage(actor, member["organization_id"], member["division"])
        fields = changes.model_dump(mode="json", exclude_unset=True, exclude={"id_number", "phone"})
        # Ciphertexts differ on every write: compare the values they stand for.
        if "id_number" in changes.model_fields_set:
            if changes.id_number is None:
                raise InvalidValue("id_number", "cannot be null")
            if self.id_number_index(changes.id_number) != member["id_number_index"]:
                fields.update(self._protected_id_number(member_id, changes.id_number))
        if "phone" in changes.model_fields_set and changes.phone != self._phone_of(member):
            fields.update(self._protected_phone(member_id, changes.phone))
        changed = domain.apply_changes(member, fields, uow.now)
        if not changed:
            return as_resource(member)
        repo.save_member(member)
        resource = as_resource(member)
        uow.emit("member.updated", subject=member_id, division=member["division"],
                 data=_member_data(resource, changed=sorted({STORED_AS.get(f, f) for f in changed})))
        return resource

    def promote_member(self, uow, member_id: str, command: PromoteMember, actor: Actor) -> dict:
        repo = self._repo(uow)
        member = repo.member(member_id)
        access.ensure_may_manage(actor, member["organization_id"], member["division"])
        if command.override_reason:
            access.ensure_may_override(actor)
        from_stage = member["stage"]
        domain.promote(member, command.stage.value, on=command.on, override_reason=_free_text(command.override_reason),
                       by=actor.username, now=uow.now)
        repo.save_member(member)
        step = member["stage_history"][-1]
        uow.emit("member.promoted", subject=member_id, division=member["division"], data={
            "member_id": member_id, "organization_id": member["organization_id"], "unit_id": member.get("unit_id"),
            "division": member["division"], "from_stage": from_stage, "to_stage": member["stage"],
            "category": member["category"], "on": step["on"], "override_reason": step.get("override_reason"),
            **_mobility(member),
        })
        return as_resource(member)

    def reveal_id_number(self, uow, member_id: str, reason: str, actor: Actor) -> dict | Forbidden:
        """The one read of a plaintext ID number, and its audit record, in one transaction.

        An attempt by someone not allowed is on record too: the refusal is returned rather than
        raised, so that its record commits, and the caller raises it."""
        by = actor.username
        repo = self._repo(uow)
        member = repo.member(member_id)
        record = {"_id": new_id(), "action": "reveal_id_number", "member_id": member_id, "by": by,
                  "role": actor.role.value, "reason": _free_text(reason), "at": uow.now}
        try:
            access.ensure_may_reveal(actor, member)
        except Forbidden as refusal:
            repo.insert_audit({**record, "outcome": AuditOutcome.refused.value})
            return refusal
        id_number = self.cipher.decrypt(member["id_number_encrypted"], f"member:{member_id}:id_number")
        repo.insert_audit({**record, "outcome": AuditOutcome.revealed.value})
        return {"member_id": member_id, "id_number": id_number}

    def check_in(self, uow, member_id: str, command: CheckIn, actor: Actor) -> dict:
        repo = self._repo(uow)
        member = repo.member(member_id)
        access.ensure_may_read(actor, member)
        stations.ensure_active(repo.station(command.station_id), command.station_id)
        record = {"_id": new_id(), "member_id": member_id, "station_id": command.station_id,
                  "organization_id": member["organization_id"], "checked_in_at": uow.now,
                  "by": actor.username}
        repo.insert_check_in(record)
        member["last_check_in"] = {"station_id": command.station_id, "at": uow.now}
        repo.save_member(member)
        resource = as_resource(record)
        uow.emit("member.checked_in", subject=member_id, division=member["division"], data={
            "check_in_id": record["_id"], **{k: resource[k] for k in (
                "member_id", "station_id", "organization_id", "checked_in_at")}, **_mobility(member)})
        return resource

    @classmethod
    def keep_station(cls, uow, station: StationEvent) -> None:
        """The service-station service's station.* events, as the stations check-ins may name."""
        cls._repo(uow).keep_station(stations.read_model(station, uow.now))

    # ---- transfers ---------------------------------------------------------------------------

    def request_transfer(self, uow, command: RequestTransfer, to_organization: dict, actor: Actor) -> dict:
        repo = self._repo(uow)
        member = repo.member(command.member_id, "member_id")
        access.ensure_may_request(actor, member)
        transfer = transfers.new_transfer(
            transfer_id=new_id(), member=member, to_organization=to_organization, to_unit_id=command.to_unit_id,
            reason=_free_text(command.reason), by=actor.username, now=uow.now,
        )
        repo.claim_open_transfer(member["_id"], transfer["_id"])
        repo.insert_transfer(transfer)
        uow.emit("transfer.requested", subject=transfer["_id"], division=transfer["from_division"],
                 other_division=transfer["to_division"], data=_transfer_data(transfer))
        return as_resource(transfer)

    def approve_transfer(self, uow, transfer_id: str, command: ApproveTransfer, actor: Actor) -> dict:
        repo = self._repo(uow)
        transfer = repo.transfer(transfer_id)
        access.ensure_sending_side(actor, transfer)
        valid_days = self.letter_valid_days if command.letter_valid_days is None else command.letter_valid_days
        transfers.approve(transfer, valid_days=valid_days, by=actor.username, now=uow.now)
        return self._saved(uow, repo, transfer, "transfer.approved", transfer["to_division"])

    def receive_transfer(self, uow, transfer_id: str, actor: Actor) -> dict:
        repo = self._repo(uow)
        transfer = repo.transfer(transfer_id)
        access.ensure_receiving_side(actor, transfer)
        transfers.advance(transfer, "receive", by=actor.username, now=uow.now)
        return self._saved(uow, repo, transfer, "transfer.received", transfer["to_division"])

    def report_in(self, uow, transfer_id: str, actor: Actor) -> dict:
        """The member reports in (报到): the transfer completes and the member moves, at once."""
        repo = self._repo(uow)
        transfer = repo.transfer(transfer_id)
        access.ensure_may_report_in(actor, transfer)
        transfers.advance(transfer, "report_in", by=actor.username, now=uow.now, note="reported in")
        member = repo.member(transfer["member_id"])
        repo.release_open_transfer(member["_id"], transfer_id, {
            "organization_id": transfer["to_organization_id"], "unit_id": transfer["to_unit_id"],
            "division": transfer["to_division"], "updated_at": uow.now,
        })
        return self._saved(uow, repo, transfer, "transfer.completed", transfer["to_division"],
                           category=member["category"], stage=member["stage"])

    def reject_transfer(self, uow, transfer_id: str, command: RejectTransfer, actor: Actor) -> dict:
        repo = self._repo(uow)
        transfer = repo.transfer(transfer_id)
        access.ensure_either_side(actor, transfer)
        transfers.advance(transfer, "reject", by=actor.username, now=uow.now, note=_free_text(command.reason))
        repo.release_open_transfer(transfer["member_id"], transfer_id)
        return self._saved(uow, repo, transfer, "transfer.rejected", transfer["from_division"])

    def cancel_transfer(self, uow, transfer_id: str, command: CancelTransfer, actor: Actor) -> dict:
        repo = self._repo(uow)
        transfer = repo.transfer(transfer_id)
        access.ensure_may_cancel(actor, transfer)
        transfers.advance(transfer, "cancel", by=actor.username, now=uow.now, note=_free_text(command.reason))
        repo.release_open_transfer(transfer["member_id"], transfer_id)
        return self._saved(uow, repo, transfer, "transfer.cancelled", transfer["from_division"])

    def expire_transfer(self, uow, transfer_id: str) -> bool:
        """Expire a letter past its date; False if it has moved on meanwhile (another replica)."""
        repo = self._repo(uow)
        transfer = repo.transfer(transfer_id)
        if not (transfers.is_open(transfer) and transfers.letter_expired(transfer, domain.local_date(uow.now))):
            return False
        transfers.advance(transfer, "expire", by="system", now=uow.now,
                          note=f"introduction letter expired on {transfer['letter_expires_on']}")
        repo.release_open_transfer(transfer["member_id"], transfer_id)
        self._saved(uow, repo, transfer, "transfer.expired", transfer["from_division"])
        return True

    @staticmethod
    def _saved(uow, repo: Repository, transfer: dict, event_type: str, division: str, **extra) -> dict:
        repo.save_transfer(transfer)
        # Both sides follow a transfer on their streams: the envelope names the side to act
        # next, `otherdivision` the other one.
        other = transfer["to_division"] if division == transfer["from_division"] else transfer["from_division"]
        uow.emit(event_type, subject=transfer["_id"], division=division, other_division=other,
                 data=_transfer_data(transfer, **extra))
        return as_resource(transfer)
