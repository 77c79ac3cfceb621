"""The stations members check in at, as this service knows them: a read model kept from the
service-station service's `station.registered`, `station.updated` and `station.closed` events
(consumed through the inbox, so a redelivered event changes nothing, and ordered by the
station's `version`, so a late one changes nothing either). A check-in asks no other service:
it names a station this model holds as active, or it is refused with a 422 naming station_id.

A station registered a moment ago may not be here yet (the event is on its way, usually within
milliseconds); a check-in naming it is refused meanwhile, and succeeds when tried again."""

from datetime import datetime

from platform_contracts.errors import InvalidValue
from platform_contracts.events import StationEvent
from platform_contracts.station import StationStatus

FIELD = "station_id"


def read_model(station: StationEvent, now: datetime) -> dict:
    return {"_id": station.id, "status": station.status.value, "division": station.division,
            "version": station.version, "kept_at": now}


def ensure_active(station: dict | None, station_id: str) -> None:
    if station is None:
        raise InvalidValue(FIELD, f"station {station_id} does not exist")
    if station["status"] != StationStatus.active:
        raise InvalidValue(FIELD, f"station {station_id} is {station['status']}: members check in at active stations")
