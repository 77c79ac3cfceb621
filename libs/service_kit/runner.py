"""Running a nameko service as a process: `python -m <service>` and `python -m <service> migrate`.

The caller must have applied eventlet.monkey_patch() before importing anything else."""

import logging
import signal
import sys

import eventlet
from nameko.runners import ServiceRunner

from . import topology
from .entrypoints import ExpectedErrorsWithoutTraceback
from .config import retry_delays

log = logging.getLogger(__name__)


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("kombu").setLevel(logging.WARNING)
    logging.getLogger("amqp").setLevel(logging.WARNING)
    logging.getLogger("nameko.containers").addFilter(ExpectedErrorsWithoutTraceback())


def run(service_cls, config: dict, migrate=None, args: list[str] | None = None) -> None:
    """`migrate(service_cls, config)` prepares the database; the broker topology is declared
    here for every service. `args`: ["run"] (the default) or ["migrate"]."""
    configure_logging(config.get("LOG_LEVEL", "INFO"))
    command = (args or ["run"])[0]
    if command not in ("run", "migrate"):
        raise SystemExit(f"usage: python -m service_kit.chassis.run {service_cls.name} [run|migrate]")
    topology.declare(config["AMQP_URI"], service_cls.name, retry_delays(config))
    if migrate is not None:
        migrate(service_cls, config)
    if command == "migrate":
        log.info("%s: indexes and broker topology are in place", service_cls.name)
        return

    runner = ServiceRunner(config)
    runner.add_service(service_cls)

    def shutdown(signum, frame):
        # Finish workers in flight (nameko stops entrypoints first, then waits for workers).
        eventlet.spawn_n(runner.stop)

    signal.signal(signal.SIGTERM, shutdown)
    signal.signal(signal.SIGINT, shutdown)
    runner.start()
    log.info("%s started; HTTP on %s", service_cls.name, config["WEB_SERVER_ADDRESS"])
    runner.wait()
    log.info("%s stopped", service_cls.name)
