"""Under prod's vhost default queue type quorum (the rabbitmq-vhost Job), every queue the
platform declares must be accepted and behave: nameko's durable RPC reply queues become
quorum queues and still expire (x-expires), the retry queues still send messages back
after their TTL, and exclusive queues stay classic.

Needs the local RabbitMQ and rabbitmqctl (as the platform tests do); it creates its own
vhost with `--default-queue-type quorum`, the same setting the Job sets through the API.
Measured on the local broker (RabbitMQ 3.10); prod runs 4.2, where quorum queues have
supported queue TTL and message TTL since 3.10."""

import json
import re
import subprocess
import uuid

import pytest
from kombu import Connection, Exchange, Producer, Queue
from nameko.rpc import RPC_REPLY_QUEUE_TEMPLATE, get_rpc_exchange

from deploy_helpers import NAMEKO_SERVICES, consumed_queues, nameko_queues, require_tool

from platform_testing import wait_for
from service_kit import topology


def rabbitmqctl(*args: str) -> str:
    proc = subprocess.run([require_tool("rabbitmqctl"), *args], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.fixture(scope="module")
def quorum_vhost():
    vhost = f"test-quorum-{uuid.uuid4().hex[:8]}"
    rabbitmqctl("add_vhost", vhost, "--default-queue-type", "quorum")
    try:
        rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
        yield vhost, f"amqp://guest:guest@127.0.0.1:5672/{vhost}"
    finally:
        rabbitmqctl("delete_vhost", vhost)


def queues(vhost: str) -> dict[str, dict]:
    rows = json.loads(rabbitmqctl("-q", "-p", vhost, "list_queues", "name", "type", "arguments", "--formatter", "json"))
    return {row["name"]: row for row in rows}


def arguments(row: dict) -> dict:
    raw = row["arguments"]  # [key, type, value] triples (3.10), or a map
    return {item[0]: item[-1] for item in raw} if isinstance(raw, list) else raw


def exists(amqp_uri: str, name: str) -> bool:
    with Connection(amqp_uri) as connection:
        try:
            connection.channel().queue_declare(name, passive=True)
        except connection.channel_errors:  # 404 NOT_FOUND closes the channel
            return False
    return True


def declare(amqp_uri: str, declared: list[Queue]) -> None:
    with Connection(amqp_uri) as connection:
        for queue in declared:
            queue(connection.default_channel).declare()


def test_the_platform_queues_are_quorum_and_nameko_reply_queues_expire_as_declared(quorum_vhost):
    vhost, amqp_uri = quorum_vhost
    durable, reply = [], []
    for name in NAMEKO_SERVICES:
        topology.declare(amqp_uri, name, [1, 5])  # the migrate Job, then each start: twice
        topology.declare(amqp_uri, name, [1, 5])
        durable += [q.name for q in topology.declarations(name, [1, 5]) if isinstance(q, Queue)]
        found = nameko_queues(name)
        declare(amqp_uri, found["consumed"] + found["consumed"])
        declare(amqp_uri, found["reply"])
        durable += [q.name for q in found["consumed"]]
        reply += found["reply"]
    gateway = [Queue(n, durable=True, queue_arguments=a) for n, a in consumed_queues("gateway").items()]
    declare(amqp_uri, gateway + gateway)
    durable += [q.name for q in gateway]
    # The gateway's RPC reply queue (services/gateway/gateway/rpc.py) is exclusive.
    exclusive = Queue(f"rpc.reply-{uuid.uuid4()}", exclusive=True, auto_delete=True)

    with Connection(amqp_uri) as connection:
        exclusive(connection.default_channel).declare()
        listed = queues(vhost)
    assert reply, "member calls organization over RPC: it has a reply queue"
    for name in durable + [q.name for q in reply]:
        assert listed[name]["type"] == "quorum", f"{name}: {listed[name]['type']}"
    for queue in reply:  # nameko's: durable, not exclusive, x-expires 5 minutes
        assert queue.durable and not queue.exclusive and not queue.auto_delete
        assert arguments(listed[queue.name]).get("x-expires") == queue.queue_arguments["x-expires"]
    assert arguments(listed["gateway.events"]).get("x-single-active-consumer") is True
    assert listed[exclusive.name]["type"] == "classic"


def test_a_quorum_reply_queue_expires(quorum_vhost):
    """nameko's reply queue (template, exchange, x-expires) with a 1.5 s TTL instead of 5 min."""
    _, amqp_uri = quorum_vhost
    name = RPC_REPLY_QUEUE_TEMPLATE.format("member", uuid.uuid4())
    queue = Queue(name, exchange=get_rpc_exchange({}), routing_key=name, queue_arguments={"x-expires": 1500})
    with Connection(amqp_uri) as connection:
        queue(connection.default_channel).declare()
    assert queues(quorum_vhost[0])[name]["type"] == "quorum"
    wait_for(lambda: not exists(amqp_uri, name), timeout=15, interval=0.25, what=f"{name} to expire")


def test_a_quorum_retry_queue_returns_the_message_to_its_handler_queue(quorum_vhost):
    """topology's retry queue: message TTL, then dead-lettered back by routing key."""
    _, amqp_uri = quorum_vhost
    service, handler_queue = f"probe{uuid.uuid4().hex[:6]}", Queue(f"evt-x-y--probe.h{uuid.uuid4().hex[:6]}")
    topology.declare(amqp_uri, service, [1])
    with Connection(amqp_uri) as connection:
        channel = connection.default_channel
        bound = handler_queue(channel)
        bound.declare()
        Producer(channel).publish(b"{}", exchange=Exchange(topology.retry_exchange_name(service, 1)),
                                  routing_key=handler_queue.name)
        message = wait_for(lambda: bound.get(no_ack=True), timeout=15, interval=0.2,
                           what="the retried message back on its handler queue")
        assert message.body == b"{}"


def vhost_job_policies(rendered: dict) -> dict[str, dict]:
    """The policies prod's rabbitmq-vhost Job puts, as name -> body (from its script)."""
    [job] = [o for o in rendered["prod"] if o["kind"] == "Job" and o["metadata"]["name"] == "rabbitmq-vhost"]
    [volume] = [v for v in job["spec"]["template"]["spec"]["volumes"] if v["name"] == "script"]
    [configmap] = [o for o in rendered["prod"] if o["kind"] == "ConfigMap"
                   and o["metadata"]["name"] == volume["configMap"]["name"]]
    script = "\n".join(configmap["data"].values())
    return {name: json.loads(body) for name, body in re.findall(r"put policies/partybuilding/(\S+) '(.+)'", script)}


def test_retry_queues_dead_letter_at_least_once_under_the_jobs_policy(quorum_vhost, rendered):
    """A quorum queue dead-letters at most once unless told otherwise: with the Job's policy the
    retry queues (and only they) dead-letter at least once, and a retry still comes back."""
    vhost, amqp_uri = quorum_vhost
    [(name, policy)] = vhost_job_policies(rendered).items()
    rabbitmqctl("set_policy", "-p", vhost, "--apply-to", policy["apply-to"], "--priority", str(policy["priority"]),
                name, policy["pattern"], json.dumps(policy["definition"]))
    service = f"probe{uuid.uuid4().hex[:6]}"
    topology.declare(amqp_uri, service, [1, 5])
    rows = json.loads(rabbitmqctl("-q", "-p", vhost, "list_queues", "name", "policy", "--formatter", "json"))
    by_name = {row["name"]: row for row in rows}
    for delay in (1, 5):
        assert by_name[topology.retry_exchange_name(service, delay)]["policy"] == name
    assert by_name[topology.dead_letter_queue_name(service)]["policy"] in ("", None)
    [stored] = json.loads(rabbitmqctl("-q", "-p", vhost, "list_policies", "--formatter", "json"))
    definition = stored["definition"] if isinstance(stored["definition"], dict) else json.loads(stored["definition"])
    assert definition == {"dead-letter-strategy": "at-least-once", "overflow": "reject-publish"}
    test_a_quorum_retry_queue_returns_the_message_to_its_handler_queue(quorum_vhost)
