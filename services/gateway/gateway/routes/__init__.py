"""HTTP routes, one module per resource; each is a thin call to the owning service."""

# Routers carry the full path, so a request's route template (a metric label) is the public one.
API = "/api/v1"
ORGANIZATION = "organization"  # the nameko service that owns units, organizations and coverage
MEMBER = "member"  # the nameko service that owns members, the pipeline, transfers and check-ins
STATION = "service-station"  # stations, their supplies, visits, activities, and the holiday calendar
