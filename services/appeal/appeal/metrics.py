"""The appeal service's own Prometheus metrics (the chassis records every entrypoint's). No
appeal ids in labels: categories, channels, districts and departments (a district keeps tens
of departments) only."""

from prometheus_client import Counter, Gauge

SUBMITTED = Counter("appeals_submitted", "Appeals submitted, by category and channel (api, open311)",
                    ["category", "channel"])
OVERDUE_RAISED = Counter("appeal_overdue_raised", "Appeals that passed their deadline (appeal.overdue), by district",
                         ["district"])
OVERDUE_OPEN = Gauge("appeal_overdue_open", "Open appeals past their deadline, by department and district",
                     ["department", "district"])
