"""Database preparation: the appeal service's indexes (the grid cells of locations, the timers'
keys, lists by department, division and status)."""

from . import repository


def prepare(db, config: dict) -> None:
    """What `python -m service_kit.chassis.run appeal migrate` (and every start) does."""
    repository.ensure_indexes(db)
