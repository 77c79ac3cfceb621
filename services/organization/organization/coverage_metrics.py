"""The coverage gauges of each district: set by the projection as commands commit, and by
the reconciliation and each replica's refresh from what is stored."""

from prometheus_client import Gauge

from . import domain
from .domain import ALL, CounterKey

UNITS = Gauge("coverage_units", "Active units", ["district"])
ORGANIZATION_RATE = Gauge("coverage_organization_rate", "Organizational coverage rate (0-1)", ["district"])
WORK_RATE = Gauge("coverage_work_rate", "Work coverage rate (0-1)", ["district"])
STANDALONE_RATE = Gauge("coverage_standalone_rate", "Standalone establishment rate (0-1)", ["district"])
SHOULD_ESTABLISH = Gauge("coverage_should_establish_units", "Units that should form an organization", ["district"])


def publish_gauges(district: str, counts: dict) -> None:
    figures = domain.figures(counts, CounterKey(district, ALL, ALL), None)
    UNITS.labels(district).set(figures.units)
    ORGANIZATION_RATE.labels(district).set(figures.organization_rate)
    WORK_RATE.labels(district).set(figures.work_rate)
    STANDALONE_RATE.labels(district).set(figures.standalone_rate)
    SHOULD_ESTABLISH.labels(district).set(figures.should_establish)
