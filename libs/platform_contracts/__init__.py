"""The public contract in code: pydantic models of commands, resources and events (CloudEvents).

Every service and the gateway validate against these; consumers depend on them, never on
another service's package."""
