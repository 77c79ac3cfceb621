"""One broker user per service with least-privilege rights (service_kit.broker_permissions;
issue 12, finding 10).

Offline: the rights cover every queue, exchange, binding and routing key the code declares
(nameko's entrypoints and RPC proxies, the kit's retry topology and outbox, the gateway's RPC
client and event consumer), no pattern is a wildcard, and no service's rights reach another
service's resources.

On the local RabbitMQ: a vhost of its own with exactly the rights prod's rabbitmq-vhost Job
gives, one user per service. organization, member and the gateway run on their own users (and
organization and member each on a field key of its own), connected as prod connects them: over
TLS (amqps:// with SSL_CERT_FILE naming the CA; MongoDB with tls=true&tlsCAFile=), through a
TLS terminator in front of the local broker and SecantusDB. Over the real gateway a command
runs, its event is consumed by the other service, a failing event goes through the retry queue
to the dead letters and is replayed, an invalid one is dead-lettered by both consumers. Then, as the
member service's user, reading organization's RPC queue, publishing on its events exchange,
declaring or deleting its queues, and binding a queue of its own to organization's RPC traffic
are each refused (ACCESS_REFUSED); so are the autoscaler's attempts to do more than count."""

import base64
import contextlib
import os
import re
import secrets
import subprocess
import uuid

import httpx
import pymongo
import pytest
from amqp.exceptions import AccessRefused
from kombu import Connection, Exchange, Queue

from platform_contracts.events import CATALOGUE
from platform_testing import credit_code, new_id_number, wait_for
from service_kit import broker_permissions as bp
from service_kit import registry, topology
from service_kit.broker_permissions import KEDA, RPC_EXCHANGE

SERVICES = registry.load()
NAMEKO = [name for name, entry in SERVICES.items() if entry.kind == "nameko"]
GATEWAY = next(name for name, entry in SERVICES.items() if entry.kind == "gateway")
GRANTS = bp.grants()
OPERATIONS = ("configure", "write", "read")


# ---- what the code declares -------------------------------------------------------------------

class Uses:
    """Resources a process touches, by the right RabbitMQ checks for each use."""

    def __init__(self):
        self.rights = {op: set() for op in OPERATIONS}
        self.bindings = set()  # (exchange, routing key): read on the exchange, topic read on the key
        self.publishes = set()  # (exchange, routing key): write on the exchange, topic write on the key

    def declare_queue(self, name, dead_letter_exchange=None):
        self.rights["configure"].add(name)
        if dead_letter_exchange is not None:  # RabbitMQ: read on the queue, write on its DLX
            self.rights["read"].add(name)
            self.rights["write"].add(dead_letter_exchange or "amq.default")

    def declare_exchange(self, name):
        self.rights["configure"].add(name)

    def bind(self, queue, exchange, routing_key):
        self.rights["write"].add(queue)
        self.rights["read"].add(exchange)
        self.bindings.add((exchange, routing_key))

    def consume(self, queue):
        self.rights["read"].add(queue)

    def publish(self, exchange, routing_key):
        self.rights["write"].add(exchange or "amq.default")
        self.publishes.add((exchange or "amq.default", routing_key))


def kombu_queue(uses: Uses, queue: Queue):
    uses.declare_queue(queue.name, (queue.queue_arguments or {}).get("x-dead-letter-exchange"))
    if queue.exchange is not None and queue.exchange.name:
        uses.declare_exchange(queue.exchange.name)
        uses.bind(queue.name, queue.exchange.name, queue.routing_key)


def nameko_uses(name: str) -> Uses:
    """What a nameko service's code declares, binds, consumes and publishes."""
    from nameko.containers import ServiceContainer
    from nameko.events import EventHandler
    from nameko.rpc import ReplyListener, Rpc, RpcProxy

    uses = Uses()
    container = ServiceContainer(SERVICES[name].service_class(), {"AMQP_URI": "amqp://guest:guest@localhost/"})
    for entrypoint in container.entrypoints:
        if isinstance(entrypoint, EventHandler):
            entrypoint.setup()
            kombu_queue(uses, entrypoint.queue)
            uses.consume(entrypoint.queue.name)
        elif isinstance(entrypoint, Rpc):
            entrypoint.rpc_consumer.setup()
            kombu_queue(uses, entrypoint.rpc_consumer.queue)
            uses.consume(entrypoint.rpc_consumer.queue.name)
            # Replies go to the callers' reply keys on nameko-rpc.
            for caller in bp._reply_keys_of_callers(name, SERVICES):
                uses.publish(RPC_EXCHANGE, sample_key(caller))
    for extension in container.subextensions:
        if isinstance(extension, ReplyListener):
            extension.setup()
            kombu_queue(uses, extension.queue)
            uses.consume(extension.queue.name)
    for dependency in container.dependencies:
        if isinstance(dependency, RpcProxy):
            uses.declare_exchange(RPC_EXCHANGE)
            uses.publish(RPC_EXCHANGE, f"{dependency.target_service}.some_method")
    # The kit: retry and dead-letter topology, their use, the outbox relay, dead-letter replay.
    for obj in topology.declarations(name, [1, 5, 30, 120]):
        if isinstance(obj, Queue):
            kombu_queue(uses, obj)
        else:
            uses.declare_exchange(obj.name)
    uses.publish(topology.retry_exchange_name(name, 30), "evt-x--y.z")
    uses.publish("", topology.dead_letter_queue_name(name))
    uses.consume(topology.dead_letter_queue_name(name))
    uses.declare_exchange(f"{name}.events")
    for event_type, (source, _) in CATALOGUE.items():
        if source == name:
            uses.publish(f"{name}.events", event_type)
    return uses


def sample_key(pattern: str) -> str:
    """A routing key of the kind a pattern of broker_permissions stands for."""
    return {bp.UUID: str(uuid.uuid4()), bp.gateway_reply_key(GATEWAY): f"{GATEWAY}-{uuid.uuid4().hex}"}[pattern]


def gateway_uses() -> Uses:
    """What the gateway's code declares: its RPC client, its event consumer's topology."""
    import asyncio

    from gateway import rpc as gateway_rpc
    from gateway.event_consumer import DEAD_LETTER_QUEUE, EVENTS_QUEUE, declare_topology

    uses = Uses()

    class RecordingQueue:
        def __init__(self, name):
            self.name = name

        async def bind(self, exchange, routing_key):
            uses.bind(self.name, exchange.name, routing_key)

        async def unbind(self, exchange, routing_key):
            uses.bind(self.name, exchange.name, routing_key)  # the same rights as a bind

    class RecordingExchange:
        def __init__(self, name):
            self.name = name

    class RecordingChannel:
        async def declare_queue(self, name, *args, arguments=None, **kwargs):
            uses.declare_queue(name)
            return RecordingQueue(name)

        async def declare_exchange(self, name, *args, **kwargs):
            uses.declare_exchange(name)
            return RecordingExchange(name)

    asyncio.run(declare_topology(RecordingChannel()))
    uses.consume(EVENTS_QUEUE)
    # Its RPC client: the exchange, an exclusive reply queue bound by its reply key, requests.
    client = gateway_rpc.RpcClient.__new__(gateway_rpc.RpcClient)
    init_args = ("amqp://guest:guest@localhost/", 10.0, None)
    try:
        client.__init__(*init_args)
    except TypeError:
        client.__init__(*init_args[:2])
    uses.declare_exchange(gateway_rpc.RPC_EXCHANGE)
    uses.declare_queue(f"rpc.reply-{client._reply_to}")
    uses.bind(f"rpc.reply-{client._reply_to}", gateway_rpc.RPC_EXCHANGE, client._reply_to)
    uses.consume(f"rpc.reply-{client._reply_to}")
    for service in SERVICES[GATEWAY].calls:
        uses.publish(gateway_rpc.RPC_EXCHANGE, f"{service}.list_dead_letters")
    # Invalid events to its dead letters, which it lists and replays; notifications on its exchange.
    uses.publish("", DEAD_LETTER_QUEUE)
    uses.consume(DEAD_LETTER_QUEUE)
    uses.declare_queue(DEAD_LETTER_QUEUE)
    uses.publish(f"{GATEWAY}.events", "notification.created")
    uses.publish("", EVENTS_QUEUE)  # a replayed dead letter goes back to gateway.events
    return uses


def code_uses(name: str) -> Uses:
    return gateway_uses() if name == GATEWAY else nameko_uses(name)


# ---- offline ----------------------------------------------------------------------------------

@pytest.mark.parametrize("name", list(SERVICES))
def test_the_rights_cover_what_the_code_declares(name):
    grant, uses = GRANTS[name], code_uses(name)
    for operation, resources in uses.rights.items():
        missing = sorted(r for r in resources if not grant.allows(operation, r))
        assert not missing, f"{name} needs {operation} on {missing}"
    for exchange, key in uses.bindings:
        assert grant.allows_routing_key(exchange, "read", key), f"{name} binds {key!r} on {exchange}"
    for exchange, key in uses.publishes:
        assert grant.allows_routing_key(exchange, "write", key), f"{name} publishes {key!r} on {exchange}"


def test_no_pattern_is_a_wildcard():
    everything = "any-queue.or.exchange"
    for principal, grant in GRANTS.items():
        patterns = [grant.configure, grant.write, grant.read] + [p for t in grant.topics for p in (t.write, t.read)]
        for pattern in patterns:
            assert ".*" not in pattern, f"{principal}: {pattern}"
            assert pattern.startswith("^") and pattern.endswith("$"), f"{principal}: {pattern} is not anchored"
            assert not re.search(pattern, everything) and not re.search(pattern, "#"), f"{principal}: {pattern}"
            re.compile(pattern)
        if principal != KEDA:
            assert [t.exchange for t in grant.topics] == [RPC_EXCHANGE], principal
    keda = GRANTS[KEDA]
    assert (keda.configure, keda.write, keda.read, keda.topics) == (bp.NOTHING, bp.NOTHING, bp.NOTHING, ())


def test_event_types_fit_the_handler_queue_pattern():
    """evt-<source>-<type>--...: a type with "-" could make one source's queues match another's."""
    for event_type in CATALOGUE:
        assert re.fullmatch(bp.EVENT_TYPE, event_type), event_type


def may_bind(grant, exchange: str, routing_key: str) -> bool:
    return grant.allows("read", exchange) and grant.allows_routing_key(exchange, "read", routing_key)


def may_publish(grant, exchange: str, routing_key: str) -> bool:
    return grant.allows("write", exchange) and grant.allows_routing_key(exchange, "write", routing_key)


@pytest.mark.parametrize("owner", NAMEKO)
def test_no_service_reaches_into_another_services_resources(owner):
    """What the owner's code declares is the owner's alone: no other service may consume its
    queues, configure them, publish on its events exchange or bind to its RPC traffic."""
    uses = code_uses(owner)
    own_queues = {q for q in uses.rights["configure"] if not q.endswith(".events") and q != RPC_EXCHANGE}
    shared_exchanges = {RPC_EXCHANGE} | {f"{s}.events" for s in SERVICES[owner].consumes}
    for other, grant in GRANTS.items():
        if other == owner:
            continue
        for queue in own_queues - shared_exchanges:
            for operation in OPERATIONS:
                assert not grant.allows(operation, queue), f"{other} may {operation} {owner}'s {queue}"
        assert not grant.allows("write", f"{owner}.events"), f"{other} may publish on {owner}.events"
        for key in (f"{owner}.*", "#", f"{owner}.#", "*.*"):
            assert not may_bind(grant, RPC_EXCHANGE, key), f"{other} may bind {key!r} on nameko-rpc"
        if other in SERVICES:  # (keda has no topic grant: it publishes nothing at all)
            may_call = owner in SERVICES[other].calls
            assert may_publish(grant, RPC_EXCHANGE, f"{owner}.get_unit") == may_call, \
                f"{other} {'may not' if may_call else 'may'} call {owner}"


def test_a_retry_queue_of_one_service_is_not_another_services():
    """Names that share a prefix (service vs service-station) stay apart."""
    station = GRANTS["service-station"]
    assert station.allows("configure", "service-station.retry.5s")
    services = registry.load()
    fake = {"service": registry.ServiceEntry("service", "nameko", "s", "s", 1, "S", "s", service="a:b",
                                             consumes=("member",)), **services}
    grant = bp.grants(fake)["service"]
    for resource in ("service-station.retry.5s", "service-station.dead-letters", "rpc-service-station",
                     "evt-member-member.registered--service-station.on_x"):
        for operation in OPERATIONS:
            assert not grant.allows(operation, resource), (operation, resource)


def test_the_command_line_prints_the_script_and_the_commands():
    import sys

    def run(*args):
        return subprocess.run([sys.executable, "-m", "service_kit.broker_permissions", *args], capture_output=True,
                              text=True, check=True, timeout=60).stdout

    assert run("--shell") == bp.shell_script()
    commands = run("--rabbitmqctl").splitlines()
    assert any(line.startswith("rabbitmqctl set_topic_permissions -p partybuilding partybuilding-member nameko-rpc")
               for line in commands)
    assert ".*" not in "\n".join(commands)
    assert "partybuilding-organization" in run()


# ---- on the local broker ----------------------------------------------------------------------

def rabbitmqctl(*args: str) -> str:
    proc = subprocess.run(["rabbitmqctl", *args], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, f"rabbitmqctl {args[0]}: {proc.stderr}"
    return proc.stdout


class Broker:
    def __init__(self, vhost: str, prefix: str, passwords: dict[str, str]):
        self.vhost, self.prefix, self.passwords = vhost, prefix, passwords
        self.admin = f"amqp://guest:guest@127.0.0.1:5672/{vhost}"  # the test's own view

    def user(self, principal: str) -> str:
        return bp.username(principal, self.prefix)

    def uri(self, principal: str) -> str:
        return f"amqp://{self.user(principal)}:{self.passwords[principal]}@127.0.0.1:5672/{self.vhost}"


@pytest.fixture(scope="module")
def broker():
    """A vhost with prod's settings and rights (bp.rabbitmqctl_commands: what the Job puts, as
    rabbitmqctl), one user per service with a password of its own; deleted afterwards."""
    tag = uuid.uuid4().hex[:8]
    vhost, prefix = f"test-perms-{tag}", f"test-{tag}-"
    passwords = {principal: secrets.token_hex(16) for principal in GRANTS}
    commands = bp.rabbitmqctl_commands(vhost, prefix)
    try:
        rabbitmqctl(*commands[0])  # add_vhost
        for principal, password in passwords.items():
            rabbitmqctl("add_user", bp.username(principal, prefix), password)
        for command in commands[1:]:
            rabbitmqctl(*command)
        rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
        yield Broker(vhost, prefix, passwords)
    finally:
        for principal in passwords:
            with contextlib.suppress(AssertionError):
                rabbitmqctl("delete_user", bp.username(principal, prefix))
        with contextlib.suppress(AssertionError):
            rabbitmqctl("delete_vhost", vhost)


def test_the_vhost_holds_exactly_the_grants(broker):
    import json

    rows = json.loads(rabbitmqctl("-q", "list_permissions", "-p", broker.vhost, "--formatter", "json"))
    found = {row["user"]: (row["configure"], row["write"], row["read"]) for row in rows if row["user"] != "guest"}
    assert found == {broker.user(p): (g.configure, g.write, g.read) for p, g in GRANTS.items()}
    rows = json.loads(rabbitmqctl("-q", "list_topic_permissions", "-p", broker.vhost, "--formatter", "json"))
    found = {(row["user"], row["exchange"]): (row["write"], row["read"]) for row in rows}
    assert found == {(broker.user(p), t.exchange): (t.write, t.read) for p, g in GRANTS.items() for t in g.topics}


# ---- TLS as prod's clients use it --------------------------------------------------------------

def write_ca_and_server_cert(directory) -> dict:
    """A CA and a certificate for localhost/127.0.0.1 it signed (PEM files in `directory`)."""
    from datetime import datetime, timedelta, timezone

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.now(timezone.utc)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "partybuilding test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(minutes=5))
          .not_valid_after(now + timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                       data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                       crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    import ipaddress

    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = {"ca": directory / "ca.crt", "cert": directory / "tls.crt", "key": directory / "tls.key"}
    paths["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths["cert"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths["key"].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
    return {name: str(path) for name, path in paths.items()}


class TlsTerminator:
    """Accepts TLS on a free port of 127.0.0.1 and passes the bytes on to a plain local port: the
    local broker and database stand in for prod's TLS listeners (RabbitMQ 5671, mongod
    requireTLS), unchanged. Runs its own event loop in a thread."""

    def __init__(self, upstream_port: int, cert: str, key: str):
        import asyncio
        import ssl
        import threading

        self.upstream_port = upstream_port
        self.loop = asyncio.new_event_loop()
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True, name="tls-terminator")
        self.thread.start()
        self.server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._handle, "127.0.0.1", 0, ssl=context), self.loop).result(10)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _handle(self, client_reader, client_writer):
        import asyncio

        async def pipe(reader, writer):
            try:
                while data := await reader.read(65536):
                    writer.write(data)
                    await writer.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                with contextlib.suppress(Exception):
                    writer.close()

        try:
            upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            client_writer.close()
            return
        await asyncio.gather(pipe(client_reader, upstream_writer), pipe(upstream_reader, client_writer))

    def close(self):
        self.loop.call_soon_threadsafe(self.server.close)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture(scope="module")
def tls(tmp_path_factory, mongodb_uri):
    """TLS in front of the local broker and of the test's MongoDB; the CA that signed them."""
    from urllib.parse import urlsplit

    files = write_ca_and_server_cert(tmp_path_factory.mktemp("tls"))
    amqps = TlsTerminator(5672, files["cert"], files["key"])
    mongo = TlsTerminator(urlsplit(mongodb_uri).port, files["cert"], files["key"])
    try:
        yield {"ca": files["ca"], "amqps_port": amqps.port, "mongodb_port": mongo.port}
    finally:
        amqps.close()
        mongo.close()


def amqps_uri(broker, principal: str, tls: dict) -> str:
    """The prod form (deploy/README.md "TLS"): amqps://, no query; the CA in SSL_CERT_FILE."""
    return (f"amqps://{broker.user(principal)}:{broker.passwords[principal]}@localhost:{tls['amqps_port']}/"
            f"{broker.vhost}")


def tls_env(broker, principal: str, tls: dict) -> dict:
    return {"AMQP_URI": amqps_uri(broker, principal, tls), "SSL_CERT_FILE": tls["ca"],
            "MONGODB_URI": f"mongodb://localhost:{tls['mongodb_port']}/?directConnection=true&tls=true"
                           f"&tlsCAFile={tls['ca']}"}


def test_the_amqps_uri_form_the_clients_take(broker, tls, monkeypatch):
    """What deploy/README.md says of the URI: kombu (nameko, the outbox relay, the retry topology,
    the gateway's relay too) refuses CA options in the URI (`?cafile=` is not a connection
    argument, `ssl_ca_certs` reaches py-amqp under a name it does not take) and verifies the
    broker against SSL_CERT_FILE; aio-pika (the gateway's RPC client and consumer) takes the
    same URI and file."""
    import asyncio

    import aio_pika

    uri = amqps_uri(broker, "member", tls)
    for query in ("?cafile=" + tls["ca"], "?ssl_ca_certs=" + tls["ca"]):
        with pytest.raises(TypeError):
            with Connection(uri + query, connect_timeout=5) as connection:
                connection.ensure_connection(max_retries=1)
    with pytest.raises(Exception, match="CERTIFICATE_VERIFY_FAILED"):
        with Connection(uri, connect_timeout=5) as connection:  # the system's CAs do not know ours
            connection.ensure_connection(max_retries=1)
    monkeypatch.setenv("SSL_CERT_FILE", tls["ca"])
    with Connection(uri, connect_timeout=5) as connection:
        connection.ensure_connection(max_retries=1)
        assert connection.transport.driver_name == "py-amqp" and connection.ssl

    async def aio_pika_connects():
        connection = await aio_pika.connect(uri, timeout=5)
        await connection.close()
    asyncio.run(aio_pika_connects())


ADMIN_PASSWORD = "admin-password-for-the-permissions-test"


def field_key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


def created(response: httpx.Response) -> dict:
    assert response.status_code == 201, response.text
    return response.json()


def ok(response: httpx.Response) -> dict:
    assert response.status_code == 200, response.text
    return response.json()


def test_the_platform_runs_each_service_on_its_own_user(broker, tls, start_service, mongodb_uri):
    keys = {name: field_key() for name in NAMEKO if SERVICES[name].needs_field_key}
    assert len(set(keys.values())) == len(keys) >= 2  # organization and member: a key each
    processes = {}
    for name in ("organization", "member"):  # member calls organization and publishes what it consumes
        env = {**tls_env(broker, name, tls), "RECONCILE_INTERVAL_SECONDS": "86400"}
        if name in keys:
            env["FIELD_ENCRYPTION_KEY"] = keys[name]
        processes[name] = start_service(name, env=env, wait=False)
    processes[GATEWAY] = start_service(GATEWAY, env={
        **tls_env(broker, GATEWAY, tls), "ADMIN_PASSWORD": ADMIN_PASSWORD,
        "JWT_SECRET": secrets.token_urlsafe(48)}, wait=False)
    for process in processes.values():
        process.wait_ready()

    url = f"http://127.0.0.1:{processes[GATEWAY].http_port}/api/v1"
    token = ok(httpx.post(f"{url}/auth/token", json={"username": "admin", "password": ADMIN_PASSWORD}))
    api = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token['access_token']}"}, timeout=20)
    organization_db = pymongo.MongoClient(mongodb_uri)[processes["organization"].database]
    gateway_db = pymongo.MongoClient(mongodb_uri)[processes[GATEWAY].database]

    def unit_and_branch(division: str) -> tuple[dict, dict]:
        unit = created(api.post("/units", json={
            "credit_code": credit_code(division), "name": f"平台企业{uuid.uuid4().hex[:4]}",
            "type": "platform_company", "industry": "delivery", "division": division}))
        branch = created(api.post("/organizations", json={
            "name": f"联合支部{uuid.uuid4().hex[:4]}", "kind": "joint_branch", "formation": "joint",
            "division": division, "unit_ids": [unit["id"]], "secretary": "李书记"}))
        return unit, branch

    def full_member(unit: dict, branch: dict) -> dict:
        return created(api.post("/members", json={
            "name": "王骑手", "id_number": new_id_number(branch["division"][:6]), "phone": "13800138000",
            "organization_id": branch["id"], "unit_id": unit["id"], "stage": "full",
            "joined_on": "2015-07-01", "stage_on": "2016-07-01", "occupation": "rider"}))

    def full_members(unit: dict) -> int:
        return ok(api.get(f"/units/{unit['id']}"))["full_members"]

    # A command through the gateway (its user) to member, which asks organization over RPC (member's
    # user, its own reply queue) and publishes member.registered; organization consumes it (its
    # user, its handler queue) and the gateway logs it.
    unit, branch = unit_and_branch("370113001")
    member = full_member(unit, branch)
    wait_for(lambda: full_members(unit) == 1, timeout=20, what="organization counts the member")
    wait_for(lambda: gateway_db.event_log.find_one({"envelope.type": "member.registered",
                                                    "envelope.subject": member["id"]}),
             timeout=20, what="the gateway logs member.registered")

    # A handler that fails (a unit document it cannot add to) goes through organization.retry.1s
    # (EVENT_MAX_ATTEMPTS=2 in the test kit) to organization.dead-letters; listed and replayed
    # through the gateway's admin API, i.e. by organization over RPC on its own user.
    poisoned, poisoned_branch = unit_and_branch("370113002")
    organization_db.units.update_one({"_id": poisoned["id"]}, {"$set": {"full_members": "not a number"}})
    failing = full_member(poisoned, poisoned_branch)

    def dead_letter_of(service: str, predicate) -> list:
        items = ok(api.get("/admin/dead-letters", params={"service": service}))["items"]
        return [item for item in items if predicate(item)]

    [letter] = wait_for(lambda: dead_letter_of("organization", lambda i: (i["event"] or {}).get("subject")
                                               == failing["id"]), timeout=30, what="the failed event dead-lettered")
    assert letter["attempts"] == 2 and letter["queue"] == \
        "evt-member-member.registered--organization.on_member_registered", letter
    organization_db.units.update_one({"_id": poisoned["id"]}, {"$set": {"full_members": 0}})
    assert ok(api.post("/admin/dead-letters/replay", params={"service": "organization"}))["replayed"] >= 1
    wait_for(lambda: full_members(poisoned) == 1, timeout=20, what="the replayed event applied")

    # An invalid event on member.events (published with member's user): both consumers put it
    # in their dead letters at once.
    marker = uuid.uuid4().hex
    with Connection(broker.uri("member")) as connection:
        channel = connection.channel()
        channel.confirm_select()
        channel.basic_publish(channel.prepare_message(b'{"not": "an event"}', properties={"message_id": marker}),
                              exchange="member.events", routing_key="member.registered")
    for service in ("organization", GATEWAY):
        wait_for(lambda: dead_letter_of(service, lambda i: i["message_id"] == marker), timeout=20,
                 what=f"{service} dead-letters the invalid event")

    # Every service on its own user, and nothing refused on the way.
    connected = {line.split("\t")[0] for line in rabbitmqctl("-q", "list_connections", "user", "vhost").splitlines()
                 if line.endswith(f"\t{broker.vhost}")}
    assert connected - {"guest"} == {broker.user(name) for name in processes}, connected
    for name, process in processes.items():
        log = open(process.log_path, encoding="utf-8", errors="replace").read()
        assert "ACCESS_REFUSED" not in log and "access to" not in log.lower(), f"{name}: {process.log_path}"
    api.close()


# ---- what a user may not do -------------------------------------------------------------------

def refused(uri: str, action) -> str:
    """Run `action(channel)` on a fresh channel of `uri`; it must be refused (403)."""
    with Connection(uri) as connection:
        channel = connection.channel()
        with pytest.raises(AccessRefused) as refusal:
            action(channel)
            channel.basic_qos(0, 1, False)  # a round trip: an asynchronous refusal arrives by now
        return str(refusal.value)


def allowed(uri: str, action):
    with Connection(uri) as connection:
        channel = connection.channel()
        result = action(channel)
        channel.basic_qos(0, 1, False)
        return result


def publish(exchange: str, routing_key: str):
    def act(channel):
        channel.confirm_select()
        channel.basic_publish(channel.prepare_message(b"{}"), exchange=exchange, routing_key=routing_key)
    return act


@pytest.fixture(scope="module")
def declared(broker):
    """organization's resources, as its code declares them (the admin declares them here)."""
    with Connection(broker.admin) as connection:
        channel = connection.channel()
        rpc = Exchange(RPC_EXCHANGE, "topic", durable=True)
        Queue("rpc-organization", rpc, routing_key="organization.*", durable=True)(channel).declare()
        Exchange("organization.events", "topic", durable=True)(channel).declare()
        Exchange("member.events", "topic", durable=True)(channel).declare()
        for obj in topology.declarations("organization", [1]):
            obj(channel).declare()
    return broker


def test_member_cannot_read_publish_or_configure_what_is_organizations(declared):
    broker, member = declared, declared.uri("member")
    # Its RPC queue: neither consumed nor peeked at.
    assert "ACCESS_REFUSED" in refused(member, lambda ch: ch.basic_consume("rpc-organization", callback=print))
    refused(member, lambda ch: ch.basic_get("rpc-organization"))
    refused(member, lambda ch: ch.basic_get("organization.dead-letters"))
    # Its events exchange: member cannot publish there (it may on its own).
    refused(member, publish("organization.events", "unit.registered"))
    allowed(member, publish("member.events", "member.registered"))
    # Its queues and exchanges: neither declared nor deleted.
    refused(member, lambda ch: ch.queue_declare("rpc-organization", durable=True))
    refused(member, lambda ch: ch.queue_delete("rpc-organization"))
    refused(member, lambda ch: ch.queue_declare("organization.dead-letters", durable=True))
    refused(member, lambda ch: ch.queue_purge("organization.dead-letters"))
    refused(member, lambda ch: ch.exchange_declare("organization.retry.1s", "fanout", durable=True))
    refused(member, lambda ch: ch.queue_declare("evt-member-member.registered--organization.on_member_registered",
                                                durable=True))
    # Its RPC traffic: a queue of member's own bound to organization's requests (or to all of
    # nameko-rpc) is refused by the topic permissions; member's own reply key is not.
    reply_queue = f"rpc.reply-member-{uuid.uuid4()}"
    allowed(member, lambda ch: ch.queue_declare(reply_queue, auto_delete=True))
    for key in ("organization.*", "organization.create_unit", "#", "*.*", f"{GATEWAY}-{uuid.uuid4().hex}"):
        assert "access to topic" in refused(member, lambda ch: ch.queue_bind(reply_queue, RPC_EXCHANGE, key))
    allowed(member, lambda ch: ch.queue_bind(reply_queue, RPC_EXCHANGE, reply_queue.removeprefix("rpc.reply-member-")))
    # RPC requests only to what the registry says member calls (organization), not service-station.
    assert "access to topic" in refused(member, publish(RPC_EXCHANGE, "service-station.register_station"))
    allowed(member, publish(RPC_EXCHANGE, "organization.get_unit"))
    with Connection(broker.admin) as connection:
        connection.channel().queue_purge("rpc-organization")


def test_organization_and_the_gateway_stay_in_their_lanes(declared):
    broker = declared
    organization, gateway = broker.uri("organization"), broker.uri(GATEWAY)
    # organization consumes member's events but may not publish them; it may publish its own.
    refused(organization, publish("member.events", "member.registered"))
    allowed(organization, publish("organization.events", "unit.registered"))
    # The gateway sends commands but never takes a service's requests or speaks for a service.
    refused(gateway, lambda ch: ch.basic_get("rpc-organization"))
    refused(gateway, publish("organization.events", "unit.registered"))
    refused(gateway, lambda ch: ch.queue_declare("rpc-organization", durable=True))
    allowed(gateway, publish(RPC_EXCHANGE, "organization.get_unit"))
    with Connection(broker.admin) as connection:
        connection.channel().queue_purge("rpc-organization")


def test_the_autoscaler_can_count_and_nothing_else(declared):
    keda = declared.uri(KEDA)
    name, messages, consumers = allowed(keda, lambda ch: ch.queue_declare("rpc-organization", passive=True))
    assert name == "rpc-organization"
    refused(keda, lambda ch: ch.queue_declare("rpc-organization", durable=True))
    refused(keda, lambda ch: ch.basic_get("rpc-organization"))
    refused(keda, publish(RPC_EXCHANGE, "organization.get_unit"))
