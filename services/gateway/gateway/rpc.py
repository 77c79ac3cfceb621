"""An asyncio client for nameko 2.14's AMQP RPC protocol (as in nameko/rpc.py):

- request: published to the durable topic exchange "nameko-rpc" with routing key
  "<service>.<method>", properties reply_to (a routing key) and correlation_id, content type
  application/json, body {"args": [...], "kwargs": {...}}; nameko answers in the same encoding;
- reply: published by the service to "nameko-rpc" with routing key = reply_to, body
  {"result": ..., "error": null | {"exc_type", "exc_path", "exc_args", "value"}}.

One connection, one channel and one reply queue per process; callers wait on futures keyed by
correlation id. Publishing is mandatory with publisher confirms, so a call to a service that
has no queue is returned by the broker at once instead of waiting for the timeout.

A dropped broker connection (a broker restart, a connection closed by an operator) is noticed
at once: the robust connection reconnects, and every call in flight is sent again under the
same correlation id and arguments — a command carries its command id, which the service's
command log answers with the first result, so a re-sent command runs at most once; a query
only reads. A call whose deadline passes before the broker is back gets 503 with Retry-After.

A request expires with its caller's timeout (the AMQP per-message TTL, `expiration`): RabbitMQ
drops it when it reaches the head of a queue nobody took it from in time, so a service that was
stopped or stalled does not run, minutes later, a command whose client was told 504 (and may
have sent it again)."""

import asyncio
import itertools
import json
import logging
import time
import uuid
from typing import Any

import aio_pika
from aiormq.exceptions import AMQPError, ChannelInvalidStateError, DeliveryError

from platform_contracts.problems import Rejected
from service_kit import tracing
from service_kit.actor_tokens import ActorSigner

from .metrics import RPC_DURATION, RPC_RESENT
from .problems import ApiProblem, problem

log = logging.getLogger(__name__)

RPC_EXCHANGE = "nameko-rpc"
RECONNECT_SECONDS = 1


class RpcClient:
    def __init__(self, amqp_uri: str, timeout: float, signer: ActorSigner):
        self.amqp_uri = amqp_uri
        self.timeout = timeout
        self.signer = signer
        self._connection: aio_pika.abc.AbstractRobustConnection | None = None
        self._exchange: aio_pika.abc.AbstractExchange | None = None
        self._reply_to = f"gateway-{uuid.uuid4().hex}"
        self._pending: dict[str, asyncio.Future] = {}
        # Set while the connection, its channel and the reply queue are up; a loss sets `_lost`
        # (waking the calls in flight) and replaces it for the calls after.
        self._ready = asyncio.Event()
        self._lost = asyncio.Event()

    def _connection_lost(self, *_args) -> None:
        if self._ready.is_set():
            log.warning("the broker connection was lost: calls in flight are sent again once it is back")
        self._ready.clear()
        self._lost.set()
        self._lost = asyncio.Event()

    def _reconnected(self, *_args) -> None:
        log.info("the broker connection is back")
        self._ready.set()

    async def start(self) -> None:
        # Reconnect within a second (aio-pika's default waits 5 s): calls in flight wait for it.
        self._connection = await aio_pika.connect_robust(self.amqp_uri, reconnect_interval=RECONNECT_SECONDS,
                                                         client_properties={"connection_name": "gateway rpc"})
        self._connection.close_callbacks.add(self._connection_lost)
        self._connection.reconnect_callbacks.add(self._reconnected)
        channel = await self._connection.channel(publisher_confirms=True, on_return_raises=True)
        self._exchange = await channel.declare_exchange(RPC_EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True)
        # A fixed name lets the robust connection redeclare and rebind it after a reconnect.
        queue = await channel.declare_queue(f"rpc.reply-{self._reply_to}", exclusive=True, auto_delete=True)
        await queue.bind(self._exchange, routing_key=self._reply_to)
        await queue.consume(self._on_reply, no_ack=True)
        self._ready.set()

    async def close(self) -> None:
        for future in self._pending.values():
            future.cancel()
        if self._connection is not None:
            await self._connection.close()

    @property
    def connected(self) -> bool:
        return self._connection is not None and not self._connection.is_closed

    async def _on_reply(self, message: aio_pika.abc.AbstractIncomingMessage) -> None:
        future = self._pending.get(message.correlation_id or "")
        if future is None or future.done():
            log.debug("reply for an unknown or abandoned call %s", message.correlation_id)
            return
        try:
            future.set_result(json.loads(message.body))
        except ValueError:
            future.set_result(None)  # reported as a malformed reply by the caller

    async def call(self, service: str, method: str, **kwargs: Any) -> Any:
        """Call `service.method(**kwargs)`, its `actor` signed for that service and method;
        raise ApiProblem for anything but a result."""
        if kwargs.get("actor") is not None:
            kwargs["actor"] = self.signer.sign(kwargs["actor"], service, method)
        started = time.perf_counter()
        outcome = "error"
        try:
            result = await self._call(service, method, kwargs)
            outcome = "success"
            return result
        except ApiProblem as exc:
            outcome = {504: "timeout", 503: "unavailable"}.get(exc.status, "rejected" if exc.status < 500 else "error")
            raise
        finally:
            RPC_DURATION.labels(service, method, outcome).observe(time.perf_counter() - started)

    async def _call(self, service: str, method: str, kwargs: dict) -> Any:
        if not self.connected:
            raise ApiProblem.of(503, "the message broker is unreachable; try again shortly")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        correlation_id = uuid.uuid4().hex
        future = loop.create_future()
        self._pending[correlation_id] = future
        body = json.dumps({"args": [], "kwargs": kwargs}).encode()
        # nameko hands `nameko.*` headers to the worker as context data, and on to the calls it makes.
        traceparent = tracing.current_traceparent()
        headers = {f"nameko.{tracing.TRACEPARENT}": traceparent} if traceparent else None
        try:
            for attempt in itertools.count():
                if attempt:
                    RPC_RESENT.labels(service, method).inc()
                await self._wait_ready(deadline, service)
                lost = self._lost
                message = aio_pika.Message(body, content_type="application/json", correlation_id=correlation_id,
                                           reply_to=self._reply_to, headers=headers,
                                           expiration=max(0.001, deadline - loop.time()))
                try:
                    await asyncio.wait_for(self._exchange.publish(message, routing_key=f"{service}.{method}",
                                                                  mandatory=True),
                                           max(0.001, deadline - loop.time()))
                except DeliveryError:
                    raise ApiProblem.of(503, f"service {service} is not running") from None
                except (AMQPError, ChannelInvalidStateError, ConnectionError):
                    # The channel closed under us: a lost connection has cleared `_ready` (so the
                    # next turn waits for it); a channel alone is reopened by the robust connection.
                    await asyncio.sleep(0.1)
                    continue
                reply_or_loss = asyncio.ensure_future(lost.wait())
                try:
                    await asyncio.wait({future, reply_or_loss}, timeout=max(0.0, deadline - loop.time()),
                                       return_when=asyncio.FIRST_COMPLETED)
                finally:
                    reply_or_loss.cancel()
                if future.done():
                    reply = future.result()
                    break
                if not lost.is_set():
                    raise TimeoutError
        except TimeoutError:
            raise timeout_problem(service) from None
        finally:
            self._pending.pop(correlation_id, None)
        if not isinstance(reply, dict):
            log.error("malformed reply from %s.%s", service, method)
            raise ApiProblem.of(502, f"service {service} sent a malformed reply")
        if reply.get("error"):
            raise error_problem(service, method, reply["error"])
        return reply.get("result")


    async def _wait_ready(self, deadline: float, service: str) -> None:
        """Until the connection is up (again); 503 with Retry-After if it is not by the deadline."""
        if self._ready.is_set():
            return
        try:
            await asyncio.wait_for(self._ready.wait(), max(0.0, deadline - asyncio.get_running_loop().time()))
        except TimeoutError:
            raise ApiProblem({**problem(503, f"the connection to the message broker was lost and is not back: the "
                                             f"request to {service} may or may not have been carried out. Retry "
                                             "it, a write with the same Idempotency-Key"),
                              "retry_with_same_idempotency_key": True}) from None


def timeout_problem(service: str) -> ApiProblem:
    """The request may have been carried out (the service took it up and was slow to answer) or
    not (it expired unread): only a retry under the same Idempotency-Key is safe either way."""
    document = problem(504, f"service {service} did not answer in time: the request may or may not have been "
                            "carried out. Retry it, a write with the same Idempotency-Key so that it is carried "
                            "out at most once (a request not taken up in time is dropped, never carried out late)")
    return ApiProblem({**document, "retry_with_same_idempotency_key": True})


def error_problem(service: str, method: str, error: dict) -> ApiProblem:
    """A remote `Rejected` carries its problem document as its only argument: pass it on as
    is (a 4xx, or a 503 when a service it asked is away). Anything else is a fault in the
    service, whose details stay in the log."""
    if error.get("exc_type") == "Rejected":
        try:
            document = Rejected(error["exc_args"][0]).problem
            if 400 <= document["status"] < 500 or document["status"] == 503:
                return ApiProblem(document)
        except (KeyError, IndexError, TypeError, ValueError):
            pass
    log.error("%s.%s failed: %s %s", service, method, error.get("exc_path") or error.get("exc_type"),
              str(error.get("value"))[:500])
    return ApiProblem(problem(502, f"service {service} failed to handle the request"))
