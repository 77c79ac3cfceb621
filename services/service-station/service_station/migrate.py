"""Database preparation: the service-station service's indexes (the grid cells and the 2dsphere
index of locations, open intervals, utilisation, activities)."""

from . import repository


def prepare(db, config: dict) -> None:
    """What `python -m service_kit.chassis.run service-station migrate` (and every start) does."""
    repository.ensure_indexes(db)
