"""The service-station service's own Prometheus metrics (the chassis records every entrypoint's).
No station ids in labels: districts (bounded) and kinds only."""

from prometheus_client import Counter, Gauge

SUPPLY_CROSSINGS = Counter(
    "station_supply_crossings", "Supplies crossing their low threshold, by district and direction (low, restocked)",
    ["district", "direction"])
SUPPLIES_LOW = Gauge(
    "station_supplies_low", "Supply items below their low threshold at active stations, by district", ["district"])
USES = Counter(
    "station_uses", "Visits (by visitor kind) and members' check-ins at stations, by district", ["district", "kind"])
CALENDAR_DAYS_LEFT = Gauge(
    "station_calendar_days_left",
    "Days from today (Asia/Shanghai) to the last day the holiday calendar's data covers (State Council schedule, "
    "package data and admins' overrides); below 8, open intervals are cut short")
CALENDAR_DATA_MISSING = Counter(
    "station_calendar_data_missing",
    "Open-interval computations cut short because the holiday calendar has no data for a day of the window")
