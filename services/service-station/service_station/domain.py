"""Pure rules of service stations (location, opening hours, supplies, visits, activities).

None yet: the service so far is the chassis alone, started, migrated, deployed and monitored
like the others (issue 13 brings its rules). No I/O here when they come: repository.py
loads and saves, application.py composes the two inside a transaction."""
