"""Notifications: who must act on an event (pure rules), whom a notification addresses, and the
inbox they are kept in.

The consumer derives each event's notifications before logging it and logs them right after it
as `notification.created` events, in the same transaction that stores them in `notifications`
and in the outbox (`NotificationStore.record`), from which the outbox relay publishes them to
`gateway.events` in log order. Their ids are derived from the source event and the rule, so a
redelivered event derives the same ids and the log's duplicate check drops them with it; a
re-published one keeps its id, which is how consumers drop it.

An audience names a user (`user_id`, `username`) or the people in a scope: operators whose
division prefix covers `division`, secretaries holding one of `organization_ids`, the worker
whose member id is `member_id`, handlers holding one of `department_ids`; `role`, when present,
narrows that to one role (the user named is told whatever their role). Read marks are
per user (`read_by`), so one operator reading a notification leaves it unread for the others."""

import re
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone

from pymongo import DESCENDING, ReturnDocument
from pymongo.asynchronous.database import AsyncDatabase

from platform_contracts.actors import Role
from platform_contracts.envelope import CloudEvent
from platform_contracts.events import (ActivityCancelled, ActivityReminder, AppealEventData, CoverageAlert,
                                       SupplyCrossed, TransferEventData, data_of, validate_event)
from service_kit.outbox import OUTBOX_INDEX, outbox_record

from .auth import Principal

NOTIFICATION_SOURCE = "gateway"  # notifications are the gateway's own events
NOTIFICATION_CREATED = "notification.created"
# A fixed namespace: the same (event, rule) always gives the same notification id.
_ID_NAMESPACE = uuid.UUID("6f1d3c2e-8a47-4b0e-9d55-0c4f7a1be2a9")


@dataclass(frozen=True)
class Notification:
    rule: str
    type: str
    title: str
    body: str
    subject: str
    audience: dict


# ---- rules: which events notify whom ----------------------------------------------------------
# Texts carry ids only, never names, ID numbers or phones.

def _side(organization_id: str, division: str | None) -> dict:
    """A transfer's side: the operators over its division and the organization's secretaries."""
    return {k: v for k, v in (("division", division), ("organization_ids", [organization_id])) if v}


def _transfer_rules(event: CloudEvent) -> list[Notification]:
    t: TransferEventData = data_of(event, TransferEventData)
    sending, receiving = _side(t.from_organization_id, t.from_division), _side(t.to_organization_id, t.to_division)
    member = {"role": Role.worker, "member_id": t.member_id}
    ref = t.transfer_id

    def note(rule, type_, audience, zh, en):
        return Notification(rule, type_, f"{zh} / {en}", f"组织关系转接 {ref}：{zh}。/ Transfer {ref}: {en}.",
                            ref, audience)

    step = event.type.removeprefix("transfer.")
    if step == "requested":
        return [note("sending_side", "transfer.awaiting_approval", sending, "转接待审批", "awaiting approval"),
                note("member", "transfer.requested", member, "转接申请已提交", "requested")]
    if step == "approved":
        return [note("receiving_side", "transfer.awaiting_receipt", receiving, "转接待接收", "awaiting receipt"),
                note("member", "transfer.approved", member, "转出方已批准", "approved by the sending side")]
    if step == "received":
        return [note("member", "transfer.awaiting_report_in", member, "请到新组织报到",
                     "report in to your new organization")]
    outcome = {"completed": ("转接已完成", "completed"), "rejected": ("转接被退回", "rejected"),
               "cancelled": ("转接已撤销", "cancelled"), "expired": ("介绍信已过期", "letter expired")}
    if step in outcome:
        # The side the envelope names: the receiving one that took the member in, or the
        # sending one whose request has ended.
        side = receiving if step == "completed" else sending
        zh, en = outcome[step]
        # Only approval issues the letter: a transfer ending with one had been announced to the
        # receiving side as awaiting receipt, so that side must hear it will not arrive. Within
        # one division both sides are one audience, so that its operators are told once.
        if step != "completed" and t.letter_expires_on is not None:
            if t.from_division == t.to_division:
                side = _side(t.from_organization_id, t.from_division)
                side["organization_ids"] = [t.from_organization_id, t.to_organization_id]
            else:
                return [note("member", event.type, member, zh, en), note("side", event.type, side, zh, en),
                        note("receiving_side", event.type, receiving, zh, en)]
        return [note("member", event.type, member, zh, en), note("side", event.type, side, zh, en)]
    return []


def _coverage_rules(event: CloudEvent) -> list[Notification]:
    alert: CoverageAlert = data_of(event, CoverageAlert)
    return [Notification(
        "operators", "coverage.should_establish", "单位应建立党组织 / The unit should establish an organization",
        f"单位 {alert.unit_id} 有 {alert.full_members} 名正式党员，尚无单独的党组织。"
        f"/ Unit {alert.unit_id} has {alert.full_members} full members and no standalone organization.",
        alert.unit_id, {"role": Role.operator, "division": alert.division})]


def _supply_rules(event: CloudEvent) -> list[Notification]:
    """A supply running low: the station's manager and the operators over its division."""
    s: SupplyCrossed = data_of(event, SupplyCrossed)
    audience = {"role": Role.operator, "division": s.division, **({"username": s.manager} if s.manager else {})}
    return [Notification(
        "manager_and_operators", "station.supply_low", "物资不足 / Supply running low",
        f"站点 {s.station_id} 的 {s.item} 剩余 {s.quantity}，低于 {s.low_threshold}。"
        f"/ Station {s.station_id}: {s.item} down to {s.quantity}, below {s.low_threshold}.",
        s.station_id, audience)]


def _activity_rules(event: CloudEvent) -> list[Notification]:
    """An activity cancelled (or its station closed), or starting soon: everyone signed up, the
    member or, for a walk-in, whoever signed them up."""
    cancelled = event.type == "station.activity_cancelled"
    a = data_of(event, ActivityCancelled if cancelled else ActivityReminder)
    title, told = (("活动已取消 / Activity cancelled", ("已取消", "is cancelled")) if cancelled
                   else ("活动即将开始 / Activity starting soon", ("即将开始", "starts soon")))
    notes = []
    for sign_up in a.sign_ups:
        audience = ({"role": Role.worker, "member_id": sign_up.member_id} if sign_up.member_id
                    else {"username": sign_up.by})
        notes.append(Notification(
            f"sign_up:{sign_up.sign_up_id}", event.type, title,
            f"站点 {a.station_id} 的活动 {a.activity_id}（{a.starts_at.isoformat()}）{told[0]}。"
            f"/ Activity {a.activity_id} at station {a.station_id} ({a.starts_at.isoformat()}) {told[1]}.",
            a.activity_id, audience))
    return notes


def _appeal_rules(event: CloudEvent) -> list[Notification]:
    """Who must act on an appeal, or hear of it: a new appeal, one assigned or reopened → the
    handlers of its department (and the handler it was assigned to); overdue → those handlers and
    the department's supervisor; escalated → the operators over the level it went up to; resolved
    → the account that raised it and those of every appeal merged into it, as rejected; merged into
    one resolved already → those who raised the duplicate. A new appeal no department took (no route) → the operators over its division,
    who route it."""
    a: AppealEventData = data_of(event, AppealEventData)
    ref, step = a.appeal_id, event.type.removeprefix("appeal.")
    handlers = {"role": Role.handler, "department_ids": [a.department]} if a.department else None

    def note(rule, type_, audience, zh, en):
        return Notification(rule, type_, f"{zh} / {en}", f"诉求 {ref}：{zh}。/ Appeal {ref}: {en}.", ref, audience)

    if step == "submitted":
        if handlers:
            return [note("department", "appeal.submitted", handlers, "新诉求待受理", "a new appeal to accept")]
        return [note("operators", "appeal.unrouted", {"role": Role.operator, "division": a.division},
                     "新诉求未匹配承办部门", "a new appeal no department takes: route it")]
    if step == "assigned" and handlers:
        audience = {**handlers, **({"username": a.handler} if a.handler else {})}
        return [note("department", "appeal.assigned", audience, "诉求已交办",
                     f"assigned to {a.handler or 'the department'}")]
    if step == "reopened" and handlers:
        return [note("department", "appeal.reopened", handlers, "诉求已重新办理", "reopened")]
    if step == "overdue" and handlers:
        audience = {**handlers, **({"username": a.supervisor} if a.supervisor else {})}
        due = f"（{a.due_at.isoformat()}）" if a.due_at else ""
        return [note("department_and_supervisor", "appeal.overdue", audience, f"诉求已超期{due}",
                     "past its deadline" + (f" ({a.due_at.isoformat()})" if a.due_at else ""))]
    if step == "escalated" and a.escalated_to:
        return [note("operators", "appeal.escalated", {"role": Role.operator, "division": a.escalated_to},
                     f"超期诉求已上报 {a.escalated_to}", f"overdue, escalated to {a.escalated_to}")]
    if step in ("resolved", "rejected"):
        zh, en = (("您的诉求已办结，请评价", "resolved: please rate it") if step == "resolved"
                  else ("您的诉求未予受理", "not taken up (see its public note)"))
        notes = [note("raised_by", event.type, {"username": a.raised_by}, zh, en)] if a.raised_by else []
        # and those who raised the appeals merged into it
        notes += [note(f"also_raised_by:{username}", event.type, {"username": username}, zh, en)
                  for username in dict.fromkeys(a.also_raised_by) if username and username != a.raised_by]
        return notes
    if step == "merged" and a.status == "resolved":  # merged into one resolved already: told now
        return [note(f"merged_raiser:{username}", "appeal.merged", {"username": username},
                     "您的诉求已并入已办结的诉求，请评价", "merged into an appeal that is resolved")
                for username in dict.fromkeys(a.merged_raisers) if username]
    if step == "feedback_requested" and a.raised_by:  # the questionnaire, when nobody rated it
        return [note("raised_by", "appeal.feedback_requested", {"username": a.raised_by}, "请评价诉求办理结果",
                     "was it solved? please rate how it was handled")]
    return []


def rules_for(event: CloudEvent) -> list[Notification]:
    if event.type.startswith("appeal."):
        return _appeal_rules(event)
    if event.type.startswith("transfer."):
        return _transfer_rules(event)
    if event.type == "coverage.alert_raised":
        return _coverage_rules(event)
    if event.type == "station.supply_low":
        return _supply_rules(event)
    if event.type in ("station.activity_cancelled", "station.activity_reminder"):
        return _activity_rules(event)
    return []


def notification_events(event: CloudEvent) -> list[CloudEvent]:
    """The `notification.created` events an event gives rise to."""
    created_at = datetime.now(timezone.utc).isoformat()
    events = []
    for n in rules_for(event):
        notification_id = uuid.uuid5(_ID_NAMESPACE, f"{event.id}\n{n.rule}").hex
        events.append(validate_event(CloudEvent(
            id=notification_id, source=NOTIFICATION_SOURCE, type=NOTIFICATION_CREATED, subject=notification_id,
            division=n.audience.get("division"), correlationid=event.correlationid, causationid=event.id,
            traceparent=event.traceparent,
            data={"id": notification_id, "type": n.type, "title": n.title, "body": n.body, "subject": n.subject,
                  "created_at": created_at, "audience": n.audience})))
    return events


def with_notifications(events: list[CloudEvent]) -> list[CloudEvent]:
    """The events, each followed by the notifications it gives rise to."""
    return [e for event in events for e in (event, *notification_events(event))]


# ---- addressing -------------------------------------------------------------------------------

def addressed_to(audience: dict, principal: Principal) -> bool:
    """Whether a notification for `audience` is the caller's (admins see every one)."""
    actor = principal.actor
    if actor.is_admin:
        return True
    if principal.id == audience.get("user_id") or actor.username == audience.get("username"):
        return True
    if audience.get("role") not in (None, actor.role):
        return False
    member_id = audience.get("member_id")
    return (actor.covers_division(audience.get("division"))
            or any(actor.is_secretary_of(o) for o in audience.get("organization_ids") or ())
            or (member_id is not None and actor.is_member(member_id))
            or any(actor.handles_department(d) for d in audience.get("department_ids") or ()))


def audience_query(principal: Principal) -> dict:
    """`addressed_to` as a MongoDB filter on stored notifications."""
    actor = principal.actor
    if actor.is_admin:
        return {}
    clauses: list[dict] = [{"audience.user_id": principal.id}, {"audience.username": actor.username}]
    if actor.role == Role.operator:
        by_scope = {"audience.division": {"$regex": f"^{re.escape(actor.scope)}"}}
    elif actor.role == Role.secretary:
        by_scope = {"audience.organization_ids": {"$in": list(actor.scope or ())}}
    elif actor.role == Role.worker:
        by_scope = {"audience.member_id": actor.scope}
    elif actor.role == Role.handler:
        by_scope = {"audience.department_ids": {"$in": list(actor.scope or ())}}
    else:
        return {"$or": clauses}
    clauses.append({"audience.role": {"$in": [None, actor.role.value]}, **by_scope})
    return {"$or": clauses}


# ---- the inbox --------------------------------------------------------------------------------

def _item(doc: dict, principal: Principal) -> dict:
    return {"id": doc["_id"], **{k: doc[k] for k in ("type", "title", "body", "subject", "created_at")},
            "read": principal.id in doc.get("read_by", ())}


def outbox_records(entries, relay: str | None = None) -> list[dict]:
    """The notifications among logged entries as the outbox records that publish them: a record's
    id is its log position, so the relay publishes in log order; it dates from its notification.
    `relay`: the process whose relay they are handed to."""
    return [outbox_record(entry.seq, entry.type, entry.envelope, datetime.fromisoformat(entry.envelope["time"]),
                          relay)
            for entry in entries if entry.type == NOTIFICATION_CREATED]


class NotificationStore:
    def __init__(self, db: AsyncDatabase, relay: str | None = None):
        self.collection = db["notifications"]
        self.outbox = db["outbox"]
        self.relay = relay  # this process's transaction owner id, named in its outbox records

    async def ensure_indexes(self) -> None:
        await self.collection.create_index([("seq", DESCENDING)], unique=True, name="seq_unique")
        await self.outbox.create_index(OUTBOX_INDEX)

    async def record(self, entries, session) -> None:
        """Store the notifications among freshly logged entries, and their outbox records (inside
        the log's transaction); `seq` is their log position, which orders an inbox newest first."""
        docs = [{"_id": data["id"], **{k: v for k, v in data.items() if k != "id"}, "seq": entry.seq, "read_by": []}
                for entry in entries if entry.type == NOTIFICATION_CREATED
                for data in (entry.envelope["data"],)]
        if docs:
            await self.collection.insert_many(docs, ordered=True, session=session)
            await self.outbox.insert_many(outbox_records(entries, self.relay), ordered=True, session=session)

    async def list_for(self, principal: Principal, unread: bool | None, limit: int,
                       before: int | None) -> tuple[list[dict], int | None]:
        """The caller's notifications, newest first, from before log position `before`; and the
        position to continue from, if there may be more."""
        query = audience_query(principal)
        if unread is not None:
            query = {**query, "read_by": {"$ne": principal.id} if unread else principal.id}
        if before is not None:
            query = {**query, "seq": {"$lt": before}}
        docs = await self.collection.find(query).sort("seq", DESCENDING).limit(limit).to_list()
        return [_item(doc, principal) for doc in docs], docs[-1]["seq"] if len(docs) == limit else None

    async def mark_read(self, notification_id: str, principal: Principal) -> dict | None:
        """Mark it read for the caller; None if there is no such notification for them."""
        doc = await self.collection.find_one_and_update(
            {"_id": notification_id, **audience_query(principal)}, {"$addToSet": {"read_by": principal.id}},
            return_document=ReturnDocument.AFTER)
        return _item(doc, principal) if doc else None
