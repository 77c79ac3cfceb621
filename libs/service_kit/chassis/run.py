"""`python -m service_kit.chassis.run <service> [run|migrate]`: any service of the registry
(services/registry.toml), run as a process, or its database and broker topology prepared
(indexes, the data it starts with, records of earlier versions brought up to date) and exit."""

import eventlet

eventlet.monkey_patch()  # before anything else imports socket or threading

import os  # noqa: E402
import sys  # noqa: E402

import pymongo  # noqa: E402

from service_kit import registry  # noqa: E402
from service_kit.chassis import runner  # noqa: E402
from service_kit.chassis.providers import FieldCipherProvider  # noqa: E402
from service_kit.config import env_config  # noqa: E402
from service_kit.pii import KEY_ENV, PREVIOUS_KEYS_ENV, key_from_environment  # noqa: E402


def config_for(entry: registry.ServiceEntry, service_cls) -> dict:
    config = env_config(entry.name, entry.http_port, database=entry.database, **entry.defaults)
    if any(isinstance(value, FieldCipherProvider) for value in vars(service_cls).values()):
        # No key, no start: personal data is never stored in clear.
        config[KEY_ENV] = key_from_environment()
        config[PREVIOUS_KEYS_ENV] = os.environ.get(PREVIOUS_KEYS_ENV, "")
    return config


def migrate(service_cls, config: dict) -> None:
    """The service's own preparation (`ChassisService.migrate`), if it has any; the kit's
    indexes are made by the store at every start."""
    if service_cls.migrate is None:
        return
    client = pymongo.MongoClient(config["MONGODB_URI"], tz_aware=True)
    try:
        service_cls.migrate(client[config["MONGODB_DATABASE"]], config)
    finally:
        client.close()


def main(argv: list[str]) -> None:
    if not argv or argv[0].startswith("-"):
        raise SystemExit("usage: python -m service_kit.chassis.run <service> [run|migrate]")
    entry = registry.entry(argv[0])
    if entry.kind != "nameko":
        raise SystemExit(f"{entry.name} is not a nameko service; see services/registry.toml")
    service_cls = entry.service_class()
    runner.run(service_cls, config_for(entry, service_cls), migrate, argv[1:])


if __name__ == "__main__":
    main(sys.argv[1:])
