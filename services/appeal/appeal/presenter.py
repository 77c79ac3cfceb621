"""Stored appeals as the contract's resources (platform_contracts.appeal), in the view the caller
has of them (access.view): staff see everything but contact details in full; the person who
raised it sees no internal notes; the public sees no contact details, accounts or internal
notes, and of an appeal raised as not public no description, address or media."""

from platform_contracts import geo
from platform_contracts.appeal import NoteVisibility
from service_kit.documents import json_ready

from .access import PUBLIC, RAISER, STAFF

APPEAL_FIELDS = ("category", "title", "description", "division", "address", "media", "public", "status",
                 "department", "handler", "due_at", "overdue", "escalated_to", "duplicate_of", "duplicates",
                 "version", "submitted_at", "updated_at", "resolved_at", "closed_at")
WITHHELD_WHEN_PRIVATE = ("description", "address", "media")


# What the public sees of staff's public notes (the text of a resolution, a rejection, a note);
# never the words of whoever raised it (a rating's comment, a reopening's reason).
PUBLIC_NOTE_ACTIONS = ("accepted", "resolved", "rejected", "note", "closed")


def _location(appeal: dict, view: str) -> dict:
    point = appeal.get("location")
    if not point or (view == PUBLIC and not appeal["public"]):  # a private appeal's place is its own
        return {"location": None, "location_gcj02": None}
    return geo.present(*point["coordinates"][:2])


def _public_note(appeal: dict, entry: dict) -> str | None:
    return entry.get("note") if appeal["public"] and entry["action"] in PUBLIC_NOTE_ACTIONS else None


def _public_history(appeal: dict) -> list[dict]:
    return [json_ready({**entry, "note": _public_note(appeal, entry),
                        "actor": "submitter" if entry["action"] in ("submitted", "rated") else "staff"})
            for entry in appeal["history"] if entry["visibility"] == NoteVisibility.public]


def _raiser_history(appeal: dict) -> list[dict]:
    return [json_ready(entry) for entry in appeal["history"] if entry["visibility"] == NoteVisibility.public]


def appeal_resource(appeal: dict, view: str, department_name: str | None = None,
                    distance_m: float | None = None) -> dict:
    resource = {"id": appeal["_id"], **{k: json_ready(appeal.get(k)) for k in APPEAL_FIELDS},
                **_location(appeal, view), "department_name": department_name,
                "satisfaction": json_ready(appeal.get("satisfaction"))}
    submitter = appeal["submitter"]
    resource["history"] = {STAFF: lambda: [json_ready(e) for e in appeal["history"]],
                           RAISER: lambda: _raiser_history(appeal), PUBLIC: lambda: _public_history(appeal)}[view]()
    if view in (STAFF, RAISER):
        resource["raised_by"] = appeal.get("raised_by")
        resource["submitter"] = {"kind": submitter["kind"], "unit_id": submitter.get("unit_id"),
                                 "member_id": submitter.get("member_id"), "contact": appeal.get("contact_masked")}
    else:
        resource.update(raised_by=None, submitter={"kind": submitter["kind"]}, handler=None, satisfaction=None)
        if not appeal["public"]:
            resource.update({field: None for field in WITHHELD_WHEN_PRIVATE}, media=[])
    if distance_m is not None:
        resource["distance_m"] = round(distance_m, 1)
    return resource


def public_appeal(appeal: dict, department_name: str | None) -> dict:
    """PublicAppeal: Open311's view, with staff's latest public note as its status notes (none of
    an appeal raised as not public)."""
    full = appeal_resource(appeal, PUBLIC, department_name)
    notes = [note for entry in appeal["history"]
             if entry["visibility"] == NoteVisibility.public and entry["action"] != "submitted"
             and (note := _public_note(appeal, entry))]
    return {**{k: full[k] for k in ("id", "category", "title", "description", "division", "address", "media",
                                    "status", "department_name", "due_at", "submitted_at", "updated_at")},
            "location": full["location"], "status_notes": notes[-1] if notes else None}


def department_resource(department: dict) -> dict:
    return {"id": department["_id"], **{k: json_ready(v) for k, v in department.items() if k != "_id"}}


def route_resource(route: dict) -> dict:
    return json_ready({k: route.get(k) for k in ("category", "division", "department_id", "updated_at")})
