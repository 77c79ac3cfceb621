"""`integration_event_handler`: nameko's @event_handler made safe for state changes.

nameko 2.14 acknowledges a message whose handler raised, so the event is lost. This entrypoint
validates the CloudEvent, passes it to the handler, and on failure republishes it to a delay
queue (see topology.py) with backoff; after the last attempt it goes to the dead-letter queue.
The original is acknowledged only after the copy is confirmed by the broker, so a crash at
any point leaves the event in RabbitMQ (at least once; the inbox makes applying it once).

`DrainingQueueConsumer`: the connection every consumer of a service (RPC, events, RPC replies)
receives on, kept open while a stopping service finishes its workers (runner.ServiceContainer
installs it)."""

import logging
import traceback

from kombu import Exchange
from nameko.amqp.publish import Publisher
from nameko.events import EventHandler
from nameko.messaging import QueueConsumer
from pydantic import ValidationError

from platform_contracts.events import validate_event
from platform_contracts.problems import describe_invalid

from .. import topology
from ..config import max_attempts, retry_delays
from ..metrics import DEAD_LETTERS, HANDLER_RETRIES
from ..pii import redact

log = logging.getLogger(__name__)

LOOK_UP_SECONDS = 0.2


class DrainingQueueConsumer(QueueConsumer):
    """nameko's QueueConsumer, except when the service stops.

    nameko's cancels its broker consumers when the entrypoints stop and, with none left, closes
    its connection a second or two later, while the workers started from its messages may
    still be running. Each
    such worker then answers (the reply has a connection of its own) but its acknowledgement is
    skipped, the connection being gone, so the broker delivers the message again: an RPC already
    answered runs a second time on another replica. This one cancels the consumers just as early
    (no new message arrives, the rest stay on the queue for another replica) and keeps the
    connection until the container has waited for its workers and stops it, so that every
    message a worker took is acknowledged after it is answered."""

    _workers_done = False

    @property
    def sharing_key(self):
        return QueueConsumer  # stands in for nameko's: every consumer of the service shares it

    def consume(self, *args, **kwargs):
        # How often the consuming loop looks up from the socket for what it is asked (cancel a
        # consumer, end): kombu's 1 s, paid once to cancel and twice to end, was most of a stop.
        kwargs.setdefault("safety_interval", LOOK_UP_SECONDS)
        return super().consume(*args, **kwargs)

    def on_iteration(self):
        self._cancel_consumers_if_requested()
        if not self._consumers and self._workers_done:
            self.should_stop = True  # the loop ends and closes the connection

    def stop(self):
        # Called after the workers have finished (subextensions stop after the pool is drained).
        self._workers_done = True
        super().stop()


class InvalidEvent(Exception):
    """The message is not a valid event of the catalogue: retrying cannot help."""


class IntegrationEventHandler(EventHandler):
    def setup(self):
        super().setup()
        config = self.container.config
        self.delays = retry_delays(config)
        self.max_attempts = max_attempts(config)
        self.publisher = Publisher(config["AMQP_URI"], use_confirms=True, serializer="json")

    def handle_message(self, body, message):
        try:
            event = validate_event(body)
        except ValueError as exc:  # includes pydantic's ValidationError
            # The refusal quotes what it refused (an unknown type, a wrong source): masked too.
            self._dead_letter(message, redact(f"invalid event: {describe_invalid(exc)}"),
                              attempt=self._attempt(message))
            return
        super().handle_message(event, message)

    def handle_message_processed(self, message, result=None, exc_info=None):
        if exc_info is None:
            self.queue_consumer.ack_message(message)
            return
        attempt = self._attempt(message)
        error = redact(describe_failure(exc_info[1]))
        if attempt < self.max_attempts:
            delay = self.delays[min(attempt - 1, len(self.delays) - 1)]
            self._republish(
                message, Exchange(topology.retry_exchange_name(self.container.service_name, delay)),
                routing_key=self.queue.name, headers=topology.failure_headers(self.queue.name, error, attempt + 1),
            )
            HANDLER_RETRIES.labels(self.container.service_name, self.method_name).inc()
            log.warning("%s failed on %s (attempt %d/%d), retrying in %ds: %s", self.method_name,
                        self._message_id(message), attempt, self.max_attempts, delay, error)
        else:
            self._dead_letter(message, error, attempt)

    def _dead_letter(self, message, error: str, attempt: int) -> None:
        service = self.container.service_name
        self._republish(message, Exchange(""), routing_key=topology.dead_letter_queue_name(service),
                        headers=topology.failure_headers(self.queue.name, error, attempt, dead_letter=True))
        DEAD_LETTERS.labels(service, self.method_name).inc()
        log.error("%s gave up on %s after %d attempt(s); dead-lettered: %s",
                  self.method_name, self._message_id(message), attempt, error)

    def _republish(self, message, exchange, routing_key, headers: dict):
        headers = {**(message.headers or {}), **headers}
        headers.pop("x-death", None)
        self.publisher.publish(
            message.body, exchange=exchange, routing_key=routing_key, headers=headers,
            serializer=None, content_type=message.content_type,
            content_encoding=message.content_encoding,
            message_id=self._message_id(message),
        )
        self.queue_consumer.ack_message(message)

    @staticmethod
    def _attempt(message) -> int:
        return int((message.headers or {}).get(topology.ATTEMPT_HEADER, 1))

    @staticmethod
    def _message_id(message) -> str | None:
        return message.properties.get("message_id")


def describe_failure(exc: BaseException) -> str:
    """What went wrong, for the log and the dead letter, without quoting the event's values."""
    if isinstance(exc, ValidationError):
        return f"{type(exc).__name__}: {describe_invalid(exc)}"
    return "".join(traceback.format_exception_only(type(exc), exc)).strip()


integration_event_handler = IntegrationEventHandler.decorator
