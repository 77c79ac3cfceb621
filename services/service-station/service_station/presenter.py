"""Stored documents as the contract's resources (platform_contracts.station): `id` for `_id`,
JSON types, the location in WGS-84 and GCJ-02, supplies as a list, internal fields left out."""

from datetime import datetime

from platform_contracts import geo
from service_kit.documents import json_ready

from . import domain

STATION_FIELDS = ("name", "kind", "division", "address", "opening_hours", "amenities", "manager", "capacity",
                  "status", "version", "registered_at", "updated_at", "closed_at")


def supply_resource(item: str, supply: dict) -> dict:
    return json_ready({"item": item, "quantity": supply["quantity"], "low_threshold": supply["low_threshold"],
                       "unit": supply.get("unit"), "low": domain.is_low(supply["quantity"], supply["low_threshold"]),
                       "updated_at": supply["updated_at"]})


def coordinates(station: dict) -> tuple[float, float]:
    lng, lat = station["location"]["coordinates"]
    return lng, lat


def station_resource(station: dict, now: datetime, distance_m: float | None = None) -> dict:
    resource = {"id": station["_id"], **{k: json_ready(station.get(k)) for k in STATION_FIELDS},
                **geo.present(*coordinates(station)),
                "open_now": domain.is_open_at(station, now),
                "supplies": [supply_resource(item, s) for item, s in sorted(station.get("supplies", {}).items())]}
    if distance_m is not None:
        resource["distance_m"] = round(distance_m, 1)
    return resource


def activity_resource(activity: dict) -> dict:
    resource = {"id": activity["_id"], **{k: json_ready(v) for k, v in activity.items() if k != "_id"}}
    resource["places_left"] = max(activity["capacity"] - activity["signed_up"], 0)
    return resource


def as_resource(document: dict) -> dict:
    """Any other record (a visit, a sign-up): `id` and JSON types."""
    return {"id": document["_id"], **{k: json_ready(v) for k, v in document.items() if k != "_id"}}
