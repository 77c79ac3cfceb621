"""prod's credentials and TLS (issue 12, finding 10): a broker user per service with least
privilege, each service's own Secret and keys, TLS for AMQP and MongoDB.

- deploy/README.md's "Secrets" commands are run (bash, the real openssl and Python, `kubectl`
  replaced by a recorder): they create every Secret and key prod reads, with URIs, keys and
  certificates that fit what the manifests and the rabbitmq-vhost Job expect.
- The rabbitmq-vhost Job's script is service_kit.broker_permissions' (no `.*` anywhere), its
  variables come from each service's own Secret, and run against a stand-in management API
  (HTTPS, curl as in the Job) it puts exactly those rights, with each password from its URI.
- prod is TLS only: no NetworkPolicy admits a plain broker port, mongod requires TLS, every
  client pod trusts the CA, KEDA and the ServiceMonitor connect over TLS.
(libs/tests/test_broker_permissions.py proves the rights and the URI forms on a real broker.)"""

import base64
import json
import os
import re
import secrets
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
import yaml

from deploy_helpers import README, REGISTRY, REPO, SERVICES, broker_hosts, by_kind, find
from service_kit import broker_permissions as bp

PROD = REPO / "deploy" / "k8s" / "overlays" / "prod"
PLAIN_PORTS = {5672, 15672, 15692}  # AMQP, management, metrics without TLS
TLS_PORTS = {5671, 15671, 15691}


# ---- the README's Secrets commands, run ---------------------------------------------------------

def secrets_script() -> str:
    text = README.read_text()
    section = text[text.index("### Secrets\n"):]
    match = re.search(r"```sh\n(.*?)```", section, re.S)
    assert match, "deploy/README.md: no ```sh block under ### Secrets"
    return match.group(1)


RECORDER = """\
import json, os, sys
args = sys.argv[1:]
files = {}
for arg in args:
    for flag in ("--cert=", "--key="):
        if arg.startswith(flag) and os.path.exists(arg[len(flag):]):
            files[flag.strip("-=")] = open(arg[len(flag):]).read()
with open(os.environ["KUBECTL_RECORD"], "a") as out:
    out.write(json.dumps({"args": args, "files": files}) + "\\n")
"""


@pytest.fixture(scope="module")
def readme_run(tmp_path_factory) -> dict:
    """What the README's commands create: {"secrets": name -> {key: value}, "dir": Path}."""
    work = tmp_path_factory.mktemp("readme-secrets")
    bin_dir = work / "bin"
    bin_dir.mkdir()
    (bin_dir / "kubectl").write_text(f"#!{sys.executable}\n{RECORDER}")
    (bin_dir / "kubectl").chmod(0o755)
    (bin_dir / "python3").symlink_to(sys.executable)  # a Python with `cryptography`
    (work / "deploy" / "k8s" / "overlays" / "prod").mkdir(parents=True)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "KUBECTL_RECORD": str(work / "kubectl.jsonl")}
    proc = subprocess.run(["bash", "-e", "-u", "-c", secrets_script()], cwd=work, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, f"the README's Secrets commands failed:\n{proc.stderr[-3000:]}"
    created = {}
    for line in (work / "kubectl.jsonl").read_text().splitlines():
        record = json.loads(line)
        args = record["args"]
        assert args[:2] == ["-n", "partybuilding"] and args[2] == "create", args
        kind, name = args[3:5] if args[3] != "secret" else (args[4], args[5])
        if args[3] == "secret" and kind == "generic":
            values = {}
            for arg in args[6:]:
                assert arg.startswith("--from-literal="), arg
                key, _, value = arg.removeprefix("--from-literal=").partition("=")
                values[key] = value
            created[name] = values
        elif args[3] == "secret" and kind == "tls":
            created[name] = {"tls.crt": record["files"].get("cert"), "tls.key": record["files"].get("key")}
        else:
            raise AssertionError(f"unexpected: kubectl {' '.join(args)}")
    return {"secrets": created, "dir": work}


def read_references(objects) -> set[tuple[str, str]]:
    """(Secret, key) prod's objects read and the operator must create (not the optional
    ones, not what the RabbitMQ Cluster Operator creates)."""
    refs = set()
    for obj in objects:
        pod = obj.get("spec", {}).get("template", {}).get("spec", {})
        for container in pod.get("containers", []) + pod.get("initContainers", []):
            for env in container.get("env", []):
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref and not ref.get("optional"):
                    refs.add((ref["name"], ref["key"]))
        for volume in pod.get("volumes", []):
            if "secret" in volume:
                items = volume["secret"].get("items") or [{"key": "tls.crt"}, {"key": "tls.key"}]
                refs |= {(volume["secret"]["secretName"], item["key"]) for item in items}
        for ref in obj.get("spec", {}).get("secretTargetRef", []):
            refs.add((ref["name"], ref["key"]))
    for cluster in by_kind(objects, "RabbitmqCluster"):
        refs |= {(cluster["spec"]["tls"]["secretName"], "tls.crt"), (cluster["spec"]["tls"]["secretName"], "tls.key")}
    return {(name, key) for name, key in refs if name != "rabbitmq-default-user"}


def test_the_readme_creates_every_secret_and_key_prod_reads(readme_run, rendered):
    created = readme_run["secrets"]
    missing = sorted((name, key) for name, key in read_references(rendered["prod"])
                     if key not in created.get(name, {}))
    assert not missing, f"deploy/README.md's Secrets commands do not create {missing}"
    assert {f"partybuilding-{name}" for name in SERVICES} | {"partybuilding-keda"} <= set(created)


def ca_mount(rendered) -> str:
    """Where the prod pods find the CA: SSL_CERT_FILE of the services."""
    container = find(rendered["prod"], "Deployment", "gateway")["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e.get("value") for e in container["env"]}["SSL_CERT_FILE"]


def test_each_service_gets_its_own_broker_user_over_tls(readme_run, rendered):
    created = readme_run["secrets"]
    # KEDA's operator resolves the host from namespace keda: the Service's full name.
    [broker] = broker_hosts(rendered["prod"])
    passwords = []
    for principal in bp.grants():
        uri = urlsplit(created[f"partybuilding-{principal}"]["AMQP_URI"])
        assert (uri.scheme, uri.hostname, uri.port, uri.path, uri.query) == ("amqps", broker, 5671, "/partybuilding", ""), \
            f"{principal}: {uri.geturl()}"
        assert unquote(uri.username) == bp.username(principal), f"{principal}: the Job expects that user"
        assert re.fullmatch(r"[0-9a-f]{48}", uri.password), principal
        passwords.append(uri.password)
    assert len(set(passwords)) == len(passwords), "a password per user"


def test_each_service_gets_its_own_keys(readme_run, rendered):
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
    from service_kit.actor_tokens import private_key, public_keys

    created = readme_run["secrets"]
    written = (readme_run["dir"] / "deploy" / "k8s" / "overlays" / "prod" / "actor-public-keys.env").read_text()
    [line] = [line for line in written.splitlines() if line and not line.startswith("#")]
    published = public_keys(line.removeprefix("ACTOR_PUBLIC_KEYS="))
    assert set(published) == set(SERVICES)
    field_keys = {}
    for name, entry in REGISTRY.items():
        values = created[f"partybuilding-{name}"]
        own = private_key(values["ACTOR_SIGNING_KEY"]).public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        assert own == published[name].public_bytes(Encoding.Raw, PublicFormat.Raw), name
        assert ("FIELD_ENCRYPTION_KEY" in values) == entry.needs_field_key, name
        if entry.needs_field_key:
            assert len(base64.b64decode(values["FIELD_ENCRYPTION_KEY"], validate=True)) == 32
            field_keys[name] = values["FIELD_ENCRYPTION_KEY"]
        mongodb = values["MONGODB_URI"]
        from pymongo.uri_parser import parse_uri

        assert f"tlsCAFile={ca_mount(rendered)}" in mongodb, f"{name}: the CA where the pods have it"
        # pymongo takes the URI, TLS options and all (it loads the CA: the one the README made).
        parsed = parse_uri(mongodb.replace(ca_mount(rendered), str(readme_run["dir"] / "ca.crt")))
        assert parsed["options"]["tls"] is True, name
        assert all(host.endswith(".mongodb.partybuilding.svc.cluster.local") for host, _ in parsed["nodelist"])
        assert (parsed["username"], parsed["password"]) == (created["mongodb-credentials"]["APP_USERNAME"],
                                                            created["mongodb-credentials"]["APP_PASSWORD"])
    assert len(set(field_keys.values())) == len(field_keys) >= 2
    keys = [v["ACTOR_SIGNING_KEY"] for n, v in created.items() if n.startswith("partybuilding-") and n != "partybuilding-keda"]
    assert len(set(keys)) == len(keys)


def openssl_verify(directory: Path, cert: str, hostname: str, purpose: str) -> None:
    (directory / "check.crt").write_text(cert)
    proc = subprocess.run(["openssl", "verify", "-CAfile", "ca.crt", "-verify_hostname", hostname, "-purpose",
                           purpose, "check.crt"], cwd=directory, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, f"{hostname} ({purpose}): {proc.stdout}{proc.stderr}"


def test_the_certificates_name_what_clients_connect_to(readme_run, rendered):
    objects, work, created = rendered["prod"], readme_run["dir"], readme_run["secrets"]
    assert (work / "deploy" / "k8s" / "overlays" / "prod" / "ca.crt").read_text() == (work / "ca.crt").read_text()
    rabbitmq = created["rabbitmq-tls"]["tls.crt"]
    job_env = {e["name"]: e.get("value") for e in
               find(objects, "Job", "rabbitmq-vhost")["spec"]["template"]["spec"]["containers"][0]["env"]}
    monitor = find(objects, "ServiceMonitor", "rabbitmq")
    names = {urlsplit(created["partybuilding-gateway"]["AMQP_URI"]).hostname, urlsplit(job_env["RABBITMQ_API"]).hostname,
             *(e["tlsConfig"]["serverName"] for e in monitor["spec"]["endpoints"])}
    for name in names:
        openssl_verify(work, rabbitmq, name, "sslserver")
    mongodb = created["mongodb-tls"]["tls.crt"]
    init = find(objects, "Job", "mongodb-init-replicaset")["spec"]["template"]["spec"]["containers"][0]["command"]
    init_host = init[init.index("--host") + 1].split(":")[0].replace("$(POD_NAMESPACE)", "partybuilding")
    from pymongo.uri_parser import parse_uri

    hosts = {host for host, _ in parse_uri(created["partybuilding-member"]["MONGODB_URI"], validate=False)["nodelist"]}
    hosts.add(init_host)
    for host in hosts:
        openssl_verify(work, mongodb, host, "sslserver")
        openssl_verify(work, mongodb, host, "sslclient")  # members connect to each other with it


# ---- the rabbitmq-vhost Job --------------------------------------------------------------------

def vhost_job(objects) -> dict:
    return find(objects, "Job", "rabbitmq-vhost")["spec"]["template"]["spec"]


def vhost_script(objects) -> str:
    pod = vhost_job(objects)
    [command] = [c["command"] for c in pod["containers"]]
    assert command[0] == "sh" and command[1].startswith("/scripts/")
    [volume] = [v for v in pod["volumes"] if v["name"] == "script"]
    return find(objects, "ConfigMap", volume["configMap"]["name"])["data"][command[1].removeprefix("/scripts/")]


def test_the_vhost_jobs_script_is_the_generated_one(rendered):
    script = vhost_script(rendered["prod"])
    expected = bp.shell_script()
    assert (PROD / "rabbitmq-vhost.sh").read_text() == expected, (
        "regenerate: .venv/bin/python -m service_kit.broker_permissions --shell "
        "> deploy/k8s/overlays/prod/rabbitmq-vhost.sh")
    assert script == expected


def test_no_permission_in_prod_is_a_wildcard(rendered):
    script = vhost_script(rendered["prod"])
    bodies = [json.loads(body) for body in re.findall(r"^put (?:topic-)?permissions/\S+ '(.+)'$", script, re.M)]
    users = re.findall(r"^put permissions/partybuilding/(\S+) ", script, re.M)
    assert sorted(users) == sorted(bp.username(p) for p in [*SERVICES, bp.KEDA]), "a user per service, and keda's"
    assert "partybuilding" not in users, "no shared user"
    for body in bodies:
        for field in ("configure", "write", "read"):
            if field in body:
                assert ".*" not in body[field] and body[field].startswith("^") and body[field].endswith("$"), body


def test_the_vhost_job_takes_each_users_uri_from_the_services_own_secret(rendered):
    objects = rendered["prod"]
    pod = vhost_job(objects)
    env = {e["name"]: e for e in pod["containers"][0]["env"]}
    script = vhost_script(objects)
    referenced = set(re.findall(r"\$\{?([A-Z][A-Z0-9_]*)", script))
    assert referenced <= set(env), f"the script reads {sorted(referenced - set(env))}, which the Job does not set"
    for principal in bp.grants():
        variable = bp.uri_variable(principal)
        assert variable in referenced, variable
        assert env[variable]["valueFrom"]["secretKeyRef"] == {"name": f"partybuilding-{principal}", "key": "AMQP_URI"}
    assert urlsplit(env["RABBITMQ_API"]["value"]).scheme == "https"
    mounts = {m["mountPath"]: m["name"] for m in pod["containers"][0]["volumeMounts"]}
    ca_volume = mounts[os.path.dirname(env["CA_FILE"]["value"])]
    assert [v["configMap"]["name"] for v in pod["volumes"] if v["name"] == ca_volume] == ["partybuilding-ca"]


MANAGEMENT_API = """\
import http.server, json, ssl, sys
record, cert, key = sys.argv[1:4]

class Api(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.answer(200 if self.path == "/api/overview" else 404)

    def do_PUT(self):
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        with open(record, "a") as out:
            out.write(json.dumps([self.path, body, self.headers["authorization"]]) + "\\n")
        self.answer(201)

    def answer(self, status):
        self.send_response(status)
        self.send_header("content-length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args):
        pass

server = http.server.HTTPServer(("127.0.0.1", 0), Api)
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(cert, key)
server.socket = context.wrap_socket(server.socket, server_side=True)
print(server.server_address[1], flush=True)
server.serve_forever()
"""


@pytest.fixture(scope="module")
def management_api(tmp_path_factory):
    """Stands in for RabbitMQ's management API over HTTPS (a process of its own): answers
    GET /api/overview, records every PUT (path, body, authorization) in `record`."""
    directory = tmp_path_factory.mktemp("management-api")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost", "-keyout", "key.pem", "-out", "cert.pem"],
                   cwd=directory, check=True, capture_output=True, timeout=60)
    record = directory / "puts.jsonl"
    server = subprocess.Popen([sys.executable, "-c", MANAGEMENT_API, str(record), "cert.pem", "key.pem"],
                              cwd=directory, stdout=subprocess.PIPE, text=True)
    try:
        port = int(server.stdout.readline())
        yield {"url": f"https://localhost:{port}/api", "ca": str(directory / "cert.pem"), "record": record}
    finally:
        server.terminate()
        server.wait(10)


def run_vhost_script(rendered, api: dict, uris: dict) -> tuple[subprocess.CompletedProcess, list]:
    """Run the Job's script against the stand-in; what it did, and the PUTs it made."""
    api["record"].write_text("")
    env = {"PATH": os.environ["PATH"], "RABBITMQ_API": api["url"], "CA_FILE": api["ca"], "ADMIN_USERNAME": "admin",
           "ADMIN_PASSWORD": "admin-secret", **{bp.uri_variable(p): uri for p, uri in uris.items()}}
    proc = subprocess.run(["sh", "-c", vhost_script(rendered["prod"])], env=env, capture_output=True, text=True,
                          timeout=120)
    return proc, [json.loads(line) for line in api["record"].read_text().splitlines()]


def uri_of(user: str, password: str) -> str:
    return f"amqps://{user}:{password}@rabbitmq.partybuilding.svc.cluster.local:5671/partybuilding"


def test_the_vhost_jobs_script_puts_exactly_the_grants(rendered, management_api):
    passwords = {p: secrets.token_hex(24) for p in bp.grants()}
    proc, made = run_vhost_script(rendered, management_api,
                                  {p: uri_of(bp.username(p), pw) for p, pw in passwords.items()})
    assert proc.returncode == 0, proc.stderr
    puts = {path.removeprefix("/api/"): body for path, body, _ in made}
    assert {auth for _, _, auth in made} == {"Basic " + base64.b64encode(b"admin:admin-secret").decode()}
    assert puts.pop("vhosts/partybuilding") == bp.VHOST_SETTINGS
    name, policy = bp.RETRY_POLICY
    assert puts.pop(f"policies/partybuilding/{name}") == policy
    expected = {}
    for principal, grant in bp.grants().items():
        user = bp.username(principal)
        expected[f"users/{user}"] = {"password": passwords[principal], "tags": ""}
        expected[f"permissions/partybuilding/{user}"] = {"configure": grant.configure, "write": grant.write,
                                                         "read": grant.read}
        for topic in grant.topics:  # one topic grant per user at most (nameko-rpc): one PUT
            expected[f"topic-permissions/partybuilding/{user}"] = {"exchange": topic.exchange, "write": topic.write,
                                                                   "read": topic.read}
    assert puts == expected


@pytest.mark.parametrize("user, password, complaint", [
    ("partybuilding", "0123abcd", "names user partybuilding"),  # the old shared user, or another service's
    (None, "pass\"word", "must be URL-safe"),
    (None, "", "must be URL-safe"),
])
def test_the_vhost_jobs_script_refuses_a_uri_it_cannot_trust(rendered, management_api, user, password, complaint):
    uris = {p: uri_of(bp.username(p), secrets.token_hex(8)) for p in bp.grants()}
    uris["member"] = uri_of(user or bp.username("member"), password)
    proc, made = run_vhost_script(rendered, management_api, uris)
    assert proc.returncode != 0 and complaint in proc.stderr, proc.stderr
    assert not [path for path, _, _ in made if "partybuilding-member" in path]


# ---- TLS only ----------------------------------------------------------------------------------

def policy_ports(policy: dict) -> set[int]:
    rules = policy["spec"].get("ingress", []) + policy["spec"].get("egress", [])
    return {port["port"] for rule in rules for port in rule.get("ports", [])}


def test_no_plain_broker_port_is_open_in_prod(rendered):
    objects = rendered["prod"]
    rabbit = find(objects, "RabbitmqCluster", "rabbitmq")
    assert rabbit["spec"]["tls"] == {"secretName": "rabbitmq-tls", "disableNonTLSListeners": True}
    for policy in by_kind(objects, "NetworkPolicy"):
        assert not policy_ports(policy) & PLAIN_PORTS, f"NetworkPolicy/{policy['metadata']['name']} admits a plain port"
        for rule in policy["spec"].get("egress", []):
            to_rabbitmq = any(peer.get("podSelector", {}).get("matchLabels", {}).get("app.kubernetes.io/name")
                              == "rabbitmq" for peer in rule.get("to", []))
            if to_rabbitmq and policy["metadata"]["name"] != "rabbitmq":  # (the nodes' own traffic aside)
                assert {p["port"] for p in rule["ports"]} <= TLS_PORTS, policy["metadata"]["name"]
    clients = find(objects, "NetworkPolicy", "rabbitmq")
    assert {5671, 15671, 15691} <= policy_ports(clients)


def test_mongodb_requires_tls_in_prod_and_not_in_dev(rendered):
    for overlay, tls in (("prod", True), ("dev", False)):
        objects = rendered[overlay]
        pod = find(objects, "StatefulSet", "mongodb")["spec"]["template"]["spec"]
        container = pod["containers"][0]
        env = {e["name"]: e.get("value") for e in container.get("env", [])}
        assert ("MONGOD_CONFIG" in env) == tls, overlay
        assert "${MONGOD_CONFIG:+--config" in " ".join(container["command"])
        probes = [" ".join(container[p]["exec"]["command"]) for p in ("startupProbe", "livenessProbe", "readinessProbe")]
        init = find(objects, "Job", "mongodb-init-replicaset")["spec"]["template"]["spec"]["containers"][0]["command"]
        if not tls:
            assert not [p for p in probes if "--tls" in p] and "--tls" not in init
            continue
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        volumes = {v["name"]: v for v in pod["volumes"]}
        directory, file = os.path.split(env["MONGOD_CONFIG"])
        config = yaml.safe_load(find(objects, "ConfigMap", volumes[mounts[directory]]["configMap"]["name"])["data"][file])
        assert config["net"]["tls"]["mode"] == "requireTLS"
        assert volumes[mounts[os.path.dirname(config["net"]["tls"]["CAFile"])]]["configMap"]["name"] == "partybuilding-ca"
        pem_volume = mounts[os.path.dirname(config["net"]["tls"]["certificateKeyFile"])]
        [maker] = [c for c in pod["initContainers"] if any(m["name"] == pem_volume for m in c["volumeMounts"])]
        made_from = {volumes[m["name"]].get("secret", {}).get("secretName") for m in maker["volumeMounts"]}
        assert "mongodb-tls" in made_from
        assert all("--tls" in p and "--tlsCAFile" in p for p in probes), probes
        assert "--tls" in init and "--tlsCAFile" in init


def test_every_client_pod_trusts_the_ca_in_prod(rendered):
    objects = rendered["prod"]
    ca = find(objects, "ConfigMap", "partybuilding-ca")
    certificate = ca["data"]["ca.crt"]
    if "BEGIN CERTIFICATE" in certificate:  # filled in by the operator: a CA's certificate
        from cryptography import x509

        assert x509.load_pem_x509_certificate(certificate.encode()).extensions.get_extension_for_class(
            x509.BasicConstraints).value.ca
    for kind in ("Deployment", "Job"):
        for obj in by_kind(objects, kind):
            labels = obj["spec"]["template"]["metadata"]["labels"]
            if labels.get("app.kubernetes.io/component") not in ("service", "migrate"):
                continue
            pod = obj["spec"]["template"]["spec"]
            container = pod["containers"][0]
            env = {e["name"]: e.get("value") for e in container["env"]}
            mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
            volume = mounts[os.path.dirname(env["SSL_CERT_FILE"])]
            assert [v["configMap"]["name"] for v in pod["volumes"] if v["name"] == volume] == ["partybuilding-ca"]
            assert os.path.basename(env["SSL_CERT_FILE"]) == "ca.crt", obj["metadata"]["name"]
    auth = find(objects, "TriggerAuthentication", "rabbitmq-amqp")
    refs = {r["parameter"]: r for r in auth["spec"]["configMapTargetRef"]}
    assert find(objects, "ConfigMap", refs["tls"]["name"])["data"][refs["tls"]["key"]] == "enable"
    assert (refs["ca"]["name"], refs["ca"]["key"]) == ("partybuilding-ca", "ca.crt")
    for endpoint in find(objects, "ServiceMonitor", "rabbitmq")["spec"]["endpoints"]:
        assert endpoint["scheme"] == "https" and endpoint["port"] == "prometheus-tls", endpoint
        assert endpoint["tlsConfig"]["ca"] == {"configMap": {"name": "partybuilding-ca", "key": "ca.crt"}}


def test_prods_actor_keys_are_filled_for_every_issuer_or_not_at_all(rendered):
    from service_kit.actor_tokens import public_keys

    [actor_keys] = [c for c in by_kind(rendered["prod"], "ConfigMap")
                    if c["metadata"]["name"].startswith("partybuilding-actor-keys")]
    value = actor_keys["data"].get("ACTOR_PUBLIC_KEYS", "")
    if value:  # the operator's: the gateway and every nameko service, valid keys
        assert set(public_keys(value)) == set(SERVICES)
