"""The nameko half of the kit: a service is `base.ChassisService` plus its rules and use cases,
with entrypoints from `entrypoints` (`command`, `query`, `operation`) and `events` (`consumes`).

Everything here needs nameko and eventlet; the rest of service_kit does not (the gateway uses
that half). Nothing is imported here: `python -m service_kit.chassis.run` imports this package
before its own first line, which must patch eventlet before pymongo or kombu are imported."""
