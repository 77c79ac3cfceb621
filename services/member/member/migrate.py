"""Database preparation: the member service's indexes (the blind index's unique one among them)."""

from . import repository


def prepare(db, config: dict) -> None:
    """What `python -m service_kit.chassis.run member migrate` (and every start) does."""
    repository.ensure_indexes(db)
