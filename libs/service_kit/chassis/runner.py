"""Running a nameko service as a process (see run.py: `python -m service_kit.chassis.run <service>`).

The caller must have applied eventlet.monkey_patch() before importing anything else.

A stop (SIGTERM from Kubernetes or run_platform, SIGINT from a terminal's Ctrl-C; both arrive
under `make run`, and only the first counts) is graceful: the service stops taking RPC calls,
events and timer runs (what it had not taken up stays on its queues for another replica), lets
the workers in flight finish, answer and acknowledge their messages, has the outbox relay
publish what they committed, and exits 0."""

import logging
import signal
import time

import eventlet
import eventlet.event
from nameko.containers import ServiceContainer as NamekoServiceContainer
from nameko.messaging import QueueConsumer

from .. import topology
from ..config import retry_delays
from ..exposition import without_created_series
from .consumer import DrainingQueueConsumer
from .operations import OperationsServer

log = logging.getLogger(__name__)


class ExpectedErrorsWithoutTraceback(logging.Filter):
    """nameko logs an expected exception with its traceback; for a refusal that is noise (the
    problem document went back to the caller): keep the one line."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and str(record.msg).startswith("(expected)"):
            record.exc_info = None
            record.exc_text = None
        return True


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
    without_created_series()  # no <name>_created samples on /metrics (service_kit.exposition)
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

    container = ServiceContainer(service_cls, config)
    signalled = []
    # /readyz answers while the entrypoints are still starting: a stop asked for then waits
    # until they have started (stopping a consumer that is being started raises).
    started = eventlet.event.Event()

    def stop_once_started():
        started.wait()
        container.stop()

    def shutdown(signum, frame):
        name = signal.Signals(signum).name
        if signalled:
            # Ctrl-C under `make run` brings the terminal's SIGINT and run_platform's SIGTERM.
            log.info("%s: %s while stopping: the stop carries on", service_cls.name, name)
            return
        signalled.append(name)
        log.info("%s: %s: stopping", service_cls.name, name)
        eventlet.spawn_n(stop_once_started)

    signal.signal(signal.SIGTERM, shutdown)
    signal.signal(signal.SIGINT, shutdown)
    container.start()  # returns once every consumer consumes: only then is the service ready
    for dependency in container.dependencies:
        if isinstance(dependency, OperationsServer):
            dependency.serving()
    started.send()
    log.info("%s started; HTTP on %s", service_cls.name, config["WEB_SERVER_ADDRESS"])
    container.wait()  # raises what killed the container, if something did
    log.info("%s stopped", service_cls.name)


class ServiceContainer(NamekoServiceContainer):
    """nameko's container with the kit's queue consumer (see consumer.DrainingQueueConsumer)
    and a stop that runs once, however many signals ask for it, and logs its steps.

    nameko's ServiceRunner.stop, called a second time while the first stop waits, stops every
    entrypoint again: a timer's second stop raises, and each consumer's second request to be
    cancelled replaces the first one's, whose waiter then waits for ever; the process hung
    until run_platform killed it 30 s later."""

    stopping = False

    # nameko's __init__ sets this to {} and then binds the service's extensions, which find the
    # extensions they share here: the queue consumer they find is the kit's.
    @property
    def shared_extensions(self):
        return self._shared_extensions

    @shared_extensions.setter
    def shared_extensions(self, extensions):
        self._shared_extensions = extensions
        if QueueConsumer not in extensions:
            DrainingQueueConsumer().bind(self)  # binding registers it under nameko's QueueConsumer

    def stop(self):
        if self.stopping:  # the first stop carries on; wait for it
            try:
                self._died.wait()
            except Exception:  # noqa: BLE001 - the first caller's to report
                pass
            return
        self.stopping = True
        if self._died.ready() or self._being_killed:
            return super().stop()
        name, started = self.service_name, time.monotonic()
        log.info("%s: taking no more calls, events or timer runs; %d worker(s) in flight",
                 name, len(self._worker_threads))
        # The consumers are cancelled, the timers stopped (each after a run in progress).
        self.entrypoints.all.stop()
        # The workers in flight finish, answer and acknowledge their messages on the consumer's
        # connection, which stays open until the subextensions stop.
        self._worker_pool.waitall()
        log.info("%s: workers finished after %.1fs", name, time.monotonic() - started)
        # The outbox relay publishes what they committed, then stops.
        self.dependencies.all.stop()
        self.subextensions.all.stop()
        self._kill_managed_threads()
        self.started = False
        if not self._died.ready():
            self._died.send(None)
        log.info("%s: stopped in %.1fs", name, time.monotonic() - started)
