"""One RabbitMQ user per service, with only the rights its code uses.

Derived from the registry (services/registry.toml: what each service `consumes` and `calls`)
and from the names the code declares (nameko 2.14, the chassis, topology.py, the outbox and the
gateway's RPC client and event consumer):

| resource                                   | kind           | whose                                     |
| ------------------------------------------ | -------------- | ----------------------------------------- |
| `nameko-rpc`                               | topic exchange | everyone's RPC requests and replies       |
| `rpc-<service>`                            | queue          | the service's RPC requests (`<service>.*`) |
| `rpc.reply-<service>-<uuid>`               | queue          | replies to a nameko caller (key `<uuid>`)  |
| `rpc.reply-gateway-<32 hex>`               | queue          | replies to the gateway (key `gateway-<32 hex>`) |
| `<service>.events`                         | topic exchange | its outbox publishes there                |
| `evt-<source>-<type>--<service>.<method>`  | queue          | an event handler, bound to `<source>.events` |
| `<service>.retry.<n>s`                     | exchange+queue | its delayed retries (TTL, back by `amq.default`) |
| `<service>.dead-letters`                   | queue          | its dead letters (published by `amq.default`) |
| `gateway.events`                           | queue+exchange | the gateway's log consumer; its notifications |

What a user may do with them (RabbitMQ's access control: configure = declare and delete,
write = publish to an exchange or bind a queue, read = consume or get from a queue, or bind to
an exchange):

- configure, write and read its own queues and exchanges;
- configure the shared `nameko-rpc` exchange and the `<source>.events` exchanges it consumes
  (nameko and kombu declare an exchange before they bind to it; a declare is a configure),
  read them (to bind), publish on `nameko-rpc` (requests, replies) and on its own events
  exchange only;
- publish on the default exchange `amq.default`: dead letters and replays go through it, and
  RabbitMQ asks for it when a retry queue (dead-letter exchange "") is declared.

`nameko-rpc` is one exchange for every service, so reading it (needed to bind a queue) would
let a service bind a queue of its own to `organization.*` or `#` and read every request. Topic
permissions on that exchange close it: a user may bind only its own routing keys (`<service>.*`
for its RPC queue, its reply key) and publish only the routing keys of what the registry says
it calls, and replies to its callers' reply keys.

No pattern is `.*`: every one is anchored (`^...$`) and names the service. `keda` is the
autoscaler's user: it reads queue depths with passive declares, which need a user on the vhost
and no rights at all.

`python -m service_kit.broker_permissions` prints the table; `--shell` the script of the prod
overlay's `rabbitmq-vhost` Job (deploy/k8s/overlays/prod/rabbitmq-vhost.sh, which tests/deploy
compare with it); `--rabbitmqctl` the same as rabbitmqctl commands, for doing it by hand."""

import argparse
import json
import re
import shlex
import sys
from dataclasses import dataclass, field

from . import registry

RPC_EXCHANGE = "nameko-rpc"  # nameko's default (config RPC_EXCHANGE), the gateway's RPC_EXCHANGE
DEFAULT_EXCHANGE = "amq.default"  # the name RabbitMQ checks for the default exchange ""
KEDA = "keda"  # the autoscaler's user: queue depths by passive declares only
USER_PREFIX = "partybuilding-"
VHOST = "partybuilding"
NOTHING = "^$"  # matches no resource name

UUID = "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"  # nameko's reply keys
HEX32 = "[0-9a-f]{32}"  # the gateway's reply key: gateway-<uuid4().hex>
METHOD = "[A-Za-z_][A-Za-z0-9_]*"
EVENT_TYPE = "[A-Za-z0-9_.]+"  # no "-": "evt-service-" cannot run into "evt-service-station-"

# The policy the retry queues need under prod's quorum default queue type (deploy/README.md
# "RabbitMQ with quorum queues"): a quorum queue dead-letters at most once unless told otherwise.
RETRY_POLICY = ("retry-at-least-once", {
    "pattern": "\\.retry\\.[0-9]+s$", "apply-to": "queues", "priority": 1,
    "definition": {"dead-letter-strategy": "at-least-once", "overflow": "reject-publish"}})
VHOST_SETTINGS = {"description": "partybuilding platform", "default_queue_type": "quorum"}


@dataclass(frozen=True)
class TopicGrant:
    """Routing keys a user may publish with (write) and bind with (read) on a topic exchange."""
    exchange: str
    write: str
    read: str


@dataclass(frozen=True)
class Grant:
    """A user's rights on the vhost: regular expressions over resource names."""
    principal: str
    configure: str
    write: str
    read: str
    topics: tuple[TopicGrant, ...] = field(default=())

    def allows(self, operation: str, resource: str) -> bool:
        """What RabbitMQ decides (it searches the name with the pattern, `re:run`)."""
        return re.search(getattr(self, operation), resource) is not None

    def allows_routing_key(self, exchange: str, operation: str, routing_key: str) -> bool:
        """A topic exchange without a topic grant of this user takes any routing key."""
        for topic in self.topics:
            if topic.exchange == exchange:
                return re.search(getattr(topic, operation), routing_key) is not None
        return True


def _literal(name: str) -> str:
    if not re.fullmatch(r"[a-z][a-z0-9-]*", name):
        raise ValueError(f"service name {name!r}: lowercase letters, digits and '-' only")
    return name


def _any_of(alternatives: list[str]) -> str:
    unique = list(dict.fromkeys(alternatives))
    if not unique:
        return NOTHING
    return "^" + unique[0] + "$" if len(unique) == 1 else "^(?:" + "|".join(unique) + ")$"


def _one_of_names(names) -> str:
    names = [_literal(n) for n in names]
    return names[0] if len(names) == 1 else "(?:" + "|".join(names) + ")"


def events_exchange(source: str) -> str:
    """As platform_contracts.events.exchange_for (and nameko's get_event_exchange) name it."""
    return f"{source}.events"


def gateway_reply_key(gateway: str) -> str:
    return f"{_literal(gateway)}-{HEX32}"


def _gateway_sources(entry: registry.ServiceEntry) -> list[str]:
    """The gateway binds its queue to every source of the event catalogue but itself
    (gateway.event_consumer.declare_topology), besides what the registry says it consumes."""
    from platform_contracts.events import SOURCES

    return sorted((set(entry.consumes) | set(SOURCES)) - {entry.name})


def _reply_keys_of_callers(name: str, services: dict[str, registry.ServiceEntry]) -> list[str]:
    keys = [gateway_reply_key(e.name) for e in services.values() if e.kind == "gateway" and name in e.calls]
    if any(e.kind == "nameko" and name in e.calls for e in services.values()):
        keys.append(UUID)
    return keys


def _nameko_grant(entry: registry.ServiceEntry, services: dict[str, registry.ServiceEntry]) -> Grant:
    name = _literal(entry.name)
    own = f"{name}\\."
    rpc_queue = f"rpc-{name}"
    retry = f"{own}retry\\.[0-9]+s"
    dead_letters = f"{own}dead-letters"
    events = f"{own}events"
    reply = [f"rpc\\.reply-{name}-{UUID}"] if entry.calls else []
    sources = [events_exchange(s).replace(".", "\\.") for s in entry.consumes]
    handlers = [f"evt-{_one_of_names(entry.consumes)}-{EVENT_TYPE}--{own}{METHOD}"] if entry.consumes else []
    rpc = RPC_EXCHANGE
    topic_write = _reply_keys_of_callers(name, services)
    if entry.calls:
        topic_write.append(f"{_one_of_names(entry.calls)}\\.{METHOD}")
    topic_read = [f"{own}\\*"] + ([UUID] if entry.calls else [])
    return Grant(
        principal=name,
        configure=_any_of([rpc, rpc_queue, *reply, events, *sources, *handlers, retry, dead_letters]),
        write=_any_of([rpc, DEFAULT_EXCHANGE.replace(".", "\\."), rpc_queue, *reply, events, *handlers, retry]),
        read=_any_of([rpc, rpc_queue, *reply, *sources, *handlers, retry, dead_letters]),
        topics=(TopicGrant(RPC_EXCHANGE, write=_any_of(topic_write), read=_any_of(topic_read)),),
    )


def _gateway_grant(entry: registry.ServiceEntry) -> Grant:
    name = _literal(entry.name)
    own_events = f"{name}\\.events"  # its queue (the log consumer) and its exchange (notifications)
    dead_letters = f"{name}\\.dead-letters"
    reply = f"rpc\\.reply-{gateway_reply_key(name)}"
    sources = [events_exchange(s).replace(".", "\\.") for s in _gateway_sources(entry)]
    rpc = RPC_EXCHANGE
    topic_write = [f"{_one_of_names(entry.calls)}\\.{METHOD}"] if entry.calls else []
    return Grant(
        principal=name,
        configure=_any_of([rpc, reply, own_events, dead_letters, *sources]),
        write=_any_of([rpc, DEFAULT_EXCHANGE.replace(".", "\\."), reply, own_events]),
        read=_any_of([rpc, reply, own_events, dead_letters, *sources]),
        topics=(TopicGrant(RPC_EXCHANGE, write=_any_of(topic_write), read=_any_of([gateway_reply_key(name)])),),
    )


def grants(services: dict[str, registry.ServiceEntry] | None = None) -> dict[str, Grant]:
    """Every registry service's grant, in registry order, and the autoscaler's (`keda`)."""
    services = registry.load() if services is None else services
    out = {}
    for entry in services.values():
        out[entry.name] = _gateway_grant(entry) if entry.kind == "gateway" else _nameko_grant(entry, services)
    out[KEDA] = Grant(principal=KEDA, configure=NOTHING, write=NOTHING, read=NOTHING)
    return out


def username(principal: str, prefix: str = USER_PREFIX) -> str:
    return f"{prefix}{principal}"


def uri_variable(principal: str) -> str:
    """The rabbitmq-vhost Job's variable holding the principal's AMQP_URI (user and password)."""
    return f"AMQP_URI_{principal.upper().replace('-', '_')}"


# ---- the rabbitmq-vhost Job's script (prod overlay) ------------------------------------------

def _json(value) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=True)


def _quoted(value) -> str:
    """A JSON document as one single-quoted sh word (our JSON holds no single quote)."""
    text = _json(value)
    assert "'" not in text
    return f"'{text}'"


SCRIPT_HEAD = """\
#!/bin/sh
# Generated by `python -m service_kit.broker_permissions --shell` from services/registry.toml:
# regenerate, never edit (tests/deploy fail when it differs). The rabbitmq-vhost Job runs it.
#
# Creates the vhost (default queue type quorum), one user per service with only the rights its
# code needs (libs/service_kit/broker_permissions.py says which and why), and the retry queues'
# policy, through the management API over TLS. Idempotent (PUT). Each user's name and password
# come from the service's own AMQP_URI (amqps://<user>:<password>@host:5671/vhost); a URI
# naming another user fails the Job.
#
# Environment: RABBITMQ_API (https://host:15671/api), CA_FILE, ADMIN_USERNAME, ADMIN_PASSWORD,
# and one AMQP_URI_<SERVICE> per user below.
set -eu

api_get() { curl -fsS --cacert "$CA_FILE" -u "$ADMIN_USERNAME:$ADMIN_PASSWORD" "$RABBITMQ_API/$1"; }
put() {
  curl -fsS --cacert "$CA_FILE" -u "$ADMIN_USERNAME:$ADMIN_PASSWORD" -X PUT \\
    -H 'content-type: application/json' "$RABBITMQ_API/$1" -d "$2"
}
# user <name> <its AMQP URI>: the user, with the password its URI carries.
user() {
  credentials=${2#*://}
  credentials=${credentials%%@*}
  if [ "${credentials%%:*}" != "$1" ]; then
    echo "the AMQP_URI meant for user $1 names user ${credentials%%:*}" >&2
    exit 1
  fi
  password=${credentials#*:}
  case $password in
    "" | *[!A-Za-z0-9._~-]*)
      echo "the password of $1 must be URL-safe and non-empty (openssl rand -hex 24)" >&2
      exit 1 ;;
  esac
  put "users/$1" "{\\"password\\":\\"$password\\",\\"tags\\":\\"\\"}"
}

until api_get overview >/dev/null; do
  echo "waiting for the RabbitMQ management API"
  sleep 5
done
"""


def shell_script(vhost: str = VHOST, prefix: str = USER_PREFIX,
                 services: dict[str, registry.ServiceEntry] | None = None) -> str:
    lines = [SCRIPT_HEAD, f"put vhosts/{vhost} {_quoted(VHOST_SETTINGS)}"]
    for principal, grant in grants(services).items():
        user = username(principal, prefix)
        lines.append("")
        lines.append(f"# {principal}")
        lines.append(f'user {user} "${uri_variable(principal)}"')
        lines.append(f"put permissions/{vhost}/{user} "
                     + _quoted({"configure": grant.configure, "write": grant.write, "read": grant.read}))
        for topic in grant.topics:
            lines.append(f"put topic-permissions/{vhost}/{user} "
                         + _quoted({"exchange": topic.exchange, "write": topic.write, "read": topic.read}))
    name, policy = RETRY_POLICY
    lines += ["", "# A quorum queue dead-letters at most once by default: a retry whose TTL ran out while",
              "# the handler queue had no majority would be dropped. At least once needs reject-publish",
              "# overflow (the kit's publishes are confirmed, so they see it).",
              f"put policies/{vhost}/{name} {_quoted(policy)}",
              f'echo "vhost {vhost} (default queue type quorum) and its {len(grants(services))} users ready"', ""]
    return "\n".join(lines)


def rabbitmqctl_commands(vhost: str = VHOST, prefix: str = USER_PREFIX,
                         services: dict[str, registry.ServiceEntry] | None = None) -> list[list[str]]:
    """The same with rabbitmqctl (users without passwords: set them with change_password)."""
    name, policy = RETRY_POLICY
    commands = [["add_vhost", vhost, "--default-queue-type", VHOST_SETTINGS["default_queue_type"]]]
    for principal, grant in grants(services).items():
        user = username(principal, prefix)
        commands.append(["set_permissions", "-p", vhost, user, grant.configure, grant.write, grant.read])
        for topic in grant.topics:
            commands.append(["set_topic_permissions", "-p", vhost, user, topic.exchange, topic.write, topic.read])
    commands.append(["set_policy", "-p", vhost, "--apply-to", policy["apply-to"], "--priority",
                     str(policy["priority"]), name, policy["pattern"], _json(policy["definition"])])
    return commands


def _table(services=None) -> str:
    rows = []
    for principal, grant in grants(services).items():
        rows.append(f"{username(principal)}\n  configure {grant.configure}\n  write     {grant.write}\n"
                    f"  read      {grant.read}")
        for topic in grant.topics:
            rows.append(f"  topic {topic.exchange}: write {topic.write}\n  topic {topic.exchange}: read  {topic.read}")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m service_kit.broker_permissions",
                                     description=__doc__.split("\n")[0])
    what = parser.add_mutually_exclusive_group()
    what.add_argument("--shell", action="store_true", help="the rabbitmq-vhost Job's script")
    what.add_argument("--rabbitmqctl", action="store_true", help="rabbitmqctl commands (users: add_user first)")
    what.add_argument("--json", action="store_true", help="the grants as JSON")
    parser.add_argument("--vhost", default=VHOST)
    parser.add_argument("--user-prefix", default=USER_PREFIX)
    args = parser.parse_args(argv)
    if args.shell:
        sys.stdout.write(shell_script(args.vhost, args.user_prefix))
    elif args.rabbitmqctl:
        for principal in grants():  # each password from a variable of the operator's shell
            variable = f"PASSWORD_OF_{principal.upper().replace('-', '_')}"
            print(f'rabbitmqctl add_user {username(principal, args.user_prefix)} "${variable}"')
        for command in rabbitmqctl_commands(args.vhost, args.user_prefix):
            print(shlex.join(["rabbitmqctl", *command]))
    elif args.json:
        print(json.dumps({username(p, args.user_prefix): {
            "configure": g.configure, "write": g.write, "read": g.read,
            "topics": [vars(t) for t in g.topics]} for p, g in grants().items()}, indent=2))
    else:
        print(_table())
    return 0


if __name__ == "__main__":
    sys.exit(main())
