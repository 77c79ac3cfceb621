"""The coverage gauges of each district: set by the projection as commands commit, and by
the reconciliation and each replica's refresh from what is stored."""

from prometheus_client import Gauge

from . import domain
from .domain import ALL, CounterKey

UNITS = Gauge("coverage_units", "Active units", ["district"])
# Fractions from 0 to 1, named `_ratio` as Prometheus' conventions ask (a test checks every
# gauge whose help says ratio, fraction, rate or 0-1).
ORGANIZATION_RATIO = Gauge("coverage_organization_ratio", "Organizational coverage rate (ratio, 0-1)", ["district"])
WORK_RATIO = Gauge("coverage_work_ratio", "Work coverage rate (ratio, 0-1)", ["district"])
STANDALONE_RATIO = Gauge("coverage_standalone_ratio", "Standalone establishment rate (ratio, 0-1)", ["district"])
SHOULD_ESTABLISH = Gauge("coverage_should_establish_units", "Units that should form an organization", ["district"])


def publish_gauges(district: str, counts: dict) -> None:
    figures = domain.figures(counts, CounterKey(district, ALL, ALL), None)
    UNITS.labels(district).set(figures.units)
    ORGANIZATION_RATIO.labels(district).set(figures.organization_rate)
    WORK_RATIO.labels(district).set(figures.work_rate)
    STANDALONE_RATIO.labels(district).set(figures.standalone_rate)
    SHOULD_ESTABLISH.labels(district).set(figures.should_establish)
