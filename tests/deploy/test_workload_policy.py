"""The platform's rules for every service workload, checked on the rendered overlays.

A new service folder that forgets one of them fails here, not in production.
"""

import re

import pytest

from deploy_helpers import (
    NAMEKO_SERVICES, OVERLAYS, REGISTRY, REPO, SERVICES, by_kind, config_values, consumed_queues, find,
    nameko_service_class, package_dir, selects,
)

# Seconds a pod needs after its work in flight is done: nameko stops its consumers and
# the outbox relay flushes, uvicorn closes connections, the process exits.
STOP_SECONDS = 15


def drain_bound_seconds(objects) -> dict:
    """What bounds the work a pod may have in flight at SIGTERM, from the manifests:

    - a MongoDB transaction: mongod aborts one older than transactionLifetimeLimitSeconds
      at its next cleanup, which runs every min(60 s, limit/2), so none outlives
      limit + min(60, limit/2). The slowest handler, the coverage reconciliation, runs one
      such transaction per district: a cut rolls back only the district in flight.
    - an RPC: the gateway waits RPC_TIMEOUT_SECONDS, then the reply is of no use.
    """
    mongod = find(objects, "StatefulSet", "mongodb")["spec"]["template"]["spec"]["containers"][0]
    command = " ".join(mongod.get("command", []) + mongod.get("args", []))
    match = re.search(r"--setParameter[ =]transactionLifetimeLimitSeconds=(\d+)", command)
    assert match, "mongod: set transactionLifetimeLimitSeconds explicitly (the grace periods derive from it)"
    limit = int(match.group(1))
    gateway = find(objects, "Deployment", "gateway")["spec"]["template"]["spec"]["containers"][0]
    rpc_timeout = float(config_values(objects, gateway)["RPC_TIMEOUT_SECONDS"])
    return {"transaction": limit + min(60, limit / 2), "rpc": rpc_timeout}


def pre_stop_seconds(container: dict) -> float:
    command = container.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", [])
    if not command:
        return 0.0
    assert command[0] == "sleep" and len(command) == 2, f"preStop {command}: only `sleep N` is accounted for"
    return float(command[1])


def platform_deployments(objects):
    return [d for d in by_kind(objects, "Deployment")
            if d["spec"]["template"]["metadata"]["labels"].get("app.kubernetes.io/component") == "service"]


def assert_hardened(pod_spec: dict, what: str):
    pod_sc = pod_spec.get("securityContext", {})
    assert pod_sc.get("runAsNonRoot") is True, f"{what}: runAsNonRoot"
    assert pod_sc.get("runAsUser") == 10001, f"{what}: the image's uid 10001"
    assert pod_sc.get("seccompProfile", {}).get("type") == "RuntimeDefault", f"{what}: seccomp"
    assert pod_spec.get("automountServiceAccountToken") is False, f"{what}: no API token"
    tmp_volumes = {v["name"] for v in pod_spec.get("volumes", []) if "emptyDir" in v}
    for container in pod_spec["containers"]:
        sc = container.get("securityContext", {})
        assert sc.get("readOnlyRootFilesystem") is True, f"{what}: read-only root filesystem"
        assert sc.get("allowPrivilegeEscalation") is False, f"{what}: allowPrivilegeEscalation"
        assert sc.get("capabilities", {}).get("drop") == ["ALL"], f"{what}: drop ALL capabilities"
        mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
        assert mounts.get("/tmp") in tmp_volumes, f"{what}: writable /tmp (emptyDir)"
        resources = container.get("resources", {})
        for kind in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(resources.get(kind, {})), f"{what}: {kind}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_deployments_are_hardened_probed_and_drain(rendered, overlay):
    deployments = platform_deployments(rendered[overlay])
    assert {d["metadata"]["name"] for d in deployments} == set(SERVICES)
    for deployment in deployments:
        name = deployment["metadata"]["name"]
        pod = deployment["spec"]["template"]["spec"]
        assert_hardened(pod, name)
        container = pod["containers"][0]
        needed = pre_stop_seconds(container) + max(drain_bound_seconds(rendered[overlay]).values()) + STOP_SECONDS
        assert pod["terminationGracePeriodSeconds"] >= needed, \
            f"{name}: grace {pod['terminationGracePeriodSeconds']} s < {needed} s (preStop + drain bound + stop)"
        assert container["command"] == ["python", *REGISTRY[name].argv], name
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert "http" in ports, f"{name}: a port named http (probes, metrics)"
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz", name
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz", name
        assert container["startupProbe"]["httpGet"]["path"] == "/healthz", name
        for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
            assert container[probe]["httpGet"]["port"] in ("http", ports["http"]), f"{name}: {probe} port"
        env = {e["name"]: e for e in container.get("env", [])}
        for secret in ("AMQP_URI", "MONGODB_URI", "ACTOR_SIGNING_KEY"):
            assert env[secret]["valueFrom"]["secretKeyRef"]["name"] == f"partybuilding-{name}", f"{name}: {secret}"
        assert any("configMapRef" in s for s in container.get("envFrom", [])), f"{name}: ConfigMap config"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_configured_port_matches_container_port(rendered, overlay):
    objects = rendered[overlay]
    port_variables = {name: ("HTTP_HOST", "HTTP_PORT") for name in NAMEKO_SERVICES}
    port_variables["gateway"] = ("GATEWAY_HOST", "GATEWAY_PORT")
    for name, (host_variable, variable) in port_variables.items():
        container = find(objects, "Deployment", name)["spec"]["template"]["spec"]["containers"][0]
        values = {}
        for source in container["envFrom"]:
            configmap = find(objects, "ConfigMap", source["configMapRef"]["name"])
            values.update(configmap.get("data", {}))
        assert values.get(variable) == str(container["ports"][0]["containerPort"]), name
        # In a pod the process must listen on all interfaces (the gateway's default is 127.0.0.1).
        assert values.get(host_variable) == "0.0.0.0", f"{name}: {host_variable}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_service_has_pdb_service_networkpolicy_and_migrate_job(rendered, overlay):
    objects = rendered[overlay]
    for deployment in platform_deployments(objects):
        name = deployment["metadata"]["name"]
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert [p for p in by_kind(objects, "PodDisruptionBudget") if selects(p["spec"]["selector"], labels)], \
            f"{name}: no PodDisruptionBudget"
        services = [s for s in by_kind(objects, "Service")
                    if s["spec"].get("selector") and selects({"matchLabels": s["spec"]["selector"]}, labels)]
        assert services, f"{name}: no Service"
        service = services[0]
        assert service["metadata"]["labels"].get("partybuilding.io/scrape") == "true", f"{name}: not scraped"
        assert "http" in {p["name"] for p in service["spec"]["ports"]}, f"{name}: Service port http"
        policies = [p for p in by_kind(objects, "NetworkPolicy")
                    if p["spec"]["podSelector"] and selects(p["spec"]["podSelector"], labels)]
        assert policies, f"{name}: no NetworkPolicy of its own"
        policy = policies[0]
        assert set(policy["spec"]["policyTypes"]) == {"Ingress", "Egress"}
        egress_ports = {p["port"] for rule in policy["spec"]["egress"] for p in rule.get("ports", [])}
        amqp = 5671 if overlay == "prod" else 5672  # prod: TLS only
        assert egress_ports == {amqp, 27017, 53}, f"{name}: egress only to RabbitMQ, MongoDB and DNS"
        job = find(objects, "Job", f"{name}-migrate")
        job_pod = job["spec"]["template"]["spec"]
        assert_hardened(job_pod, f"{name}-migrate")
        assert job_pod["containers"][0]["command"] == ["python", *REGISTRY[name].argv, "migrate"]
        assert job_pod["containers"][0]["image"] == deployment["spec"]["template"]["spec"]["containers"][0]["image"]
        assert selects(policy["spec"]["podSelector"], job["spec"]["template"]["metadata"]["labels"]), \
            f"{name}-migrate is not covered by the service's NetworkPolicy"
    default_deny = find(objects, "NetworkPolicy", "default-deny")
    assert default_deny["spec"]["podSelector"] == {}


def test_gateway_ingress_only_from_ingress_controller_and_prometheus(rendered):
    policy = find(rendered["prod"], "NetworkPolicy", "gateway")
    sources = [peer for rule in policy["spec"]["ingress"] for peer in rule["from"]]
    namespaces = {p["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"] for p in sources}
    assert namespaces == {"ingress-nginx", "monitoring"}
    for name in NAMEKO_SERVICES:  # reached over RabbitMQ only: nothing but the scrape comes in
        service_policy = find(rendered["prod"], "NetworkPolicy", name)
        sources = [peer for rule in service_policy["spec"]["ingress"] for peer in rule["from"]]
        assert [p["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"] for p in sources] == ["monitoring"], name


def test_event_stream_ingress_is_unbuffered(rendered):
    objects = rendered["prod"]
    events = find(objects, "Ingress", "gateway-events")
    annotations = events["metadata"]["annotations"]
    assert annotations["nginx.ingress.kubernetes.io/proxy-buffering"] == "off"
    assert int(annotations["nginx.ingress.kubernetes.io/proxy-read-timeout"]) >= 3600
    assert int(annotations["nginx.ingress.kubernetes.io/proxy-send-timeout"]) >= 3600
    paths = [p["path"] for rule in events["spec"]["rules"] for p in rule["http"]["paths"]]
    assert paths == ["/api/v1/events"]
    api = find(objects, "Ingress", "gateway")
    api_paths = [p["path"] for rule in api["spec"]["rules"] for p in rule["http"]["paths"]]
    assert api_paths == ["/api/v1"], "only the public API is routed (no /metrics, /healthz)"
    for ingress in (api, events):
        assert ingress["spec"]["ingressClassName"] == "nginx"
        assert ingress["spec"]["tls"], "prod serves TLS"


def test_keda_scales_each_service_on_its_queues(rendered):
    """Each ScaledObject's queue triggers are exactly the queues the service consumes, as
    its code declares them (nameko entrypoints, the gateway's topology), except queues
    with a single active consumer: more replicas cannot drain those."""
    objects = rendered["prod"]
    auth = by_kind(objects, "TriggerAuthentication")
    assert len(auth) == 1
    # KEDA's own broker user (it may only count), from its own Secret.
    assert [r for r in auth[0]["spec"]["secretTargetRef"] if r["parameter"] == "host"] == [
        {"parameter": "host", "name": "partybuilding-keda", "key": "AMQP_URI"}
    ]
    scaled = {s["spec"]["scaleTargetRef"]["name"]: s for s in by_kind(objects, "ScaledObject")}
    for deployment in platform_deployments(objects):
        name = deployment["metadata"]["name"]
        assert name in scaled, f"{name}: no ScaledObject"
        triggers = scaled[name]["spec"]["triggers"]
        consumed = consumed_queues(name)
        assert consumed, f"{name}: found no queue in its code"
        scalable = {q for q, arguments in consumed.items() if not arguments.get("x-single-active-consumer")}
        queues = [t["metadata"]["queueName"] for t in triggers if t["type"] == "rabbitmq"]
        assert len(queues) == len(set(queues)), f"{name}: duplicate queue triggers"
        single = sorted(set(queues) - scalable & set(consumed))
        assert not single, f"{name}: scales on single-active-consumer queue(s) {single}"
        assert set(queues) == scalable, (
            f"{name}: triggers on {sorted(queues)}, but the service consumes {sorted(scalable)}")
        for trigger in triggers:
            if trigger["type"] == "rabbitmq":
                assert trigger["authenticationRef"]["name"] == auth[0]["metadata"]["name"]
                assert trigger["metadata"]["mode"] == "QueueLength"
        if not queues:  # nothing to scale on but load
            assert [t for t in triggers if t["type"] == "cpu"], f"{name}: no trigger to scale on"
    # Guards for the derivation itself.
    assert "rpc-organization" in consumed_queues("organization")
    assert consumed_queues("gateway")["gateway.events"].get("x-single-active-consumer") is True


# Services that keep personal data encrypted at rest (registry: needs_field_key; member:
# ID numbers and phones; organization: instructors' phones). They refuse to start,
# migrate included, without FIELD_ENCRYPTION_KEY; each reads a key of its own from its own
# Secret (components/field-encryption-key), with earlier keys during a rotation.
ENCRYPTING_SERVICES = tuple(name for name, entry in REGISTRY.items() if entry.needs_field_key)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_encrypting_services_get_the_field_key_and_no_one_else(rendered, overlay):
    objects = rendered[overlay]
    for name in ENCRYPTING_SERVICES:
        for kind, obj_name in (("Deployment", name), ("Job", f"{name}-migrate")):
            container = find(objects, kind, obj_name)["spec"]["template"]["spec"]["containers"][0]
            env = {e["name"]: e for e in container.get("env", [])}
            assert env["FIELD_ENCRYPTION_KEY"]["valueFrom"]["secretKeyRef"] == {
                "name": f"partybuilding-{name}", "key": "FIELD_ENCRYPTION_KEY"}, obj_name
            # Earlier keys only during a rotation: optional, from the same Secret.
            assert env["FIELD_ENCRYPTION_PREVIOUS_KEYS"]["valueFrom"]["secretKeyRef"] == {
                "name": f"partybuilding-{name}", "key": "FIELD_ENCRYPTION_PREVIOUS_KEYS", "optional": True}, obj_name
    for kind in ("Deployment", "Job"):
        for obj in by_kind(objects, kind):
            if obj["metadata"]["labels"].get("app.kubernetes.io/name") in ENCRYPTING_SERVICES:
                continue
            for container in obj["spec"]["template"]["spec"]["containers"]:
                names = {e["name"] for e in container.get("env", [])}
                assert not {"FIELD_ENCRYPTION_KEY", "FIELD_ENCRYPTION_PREVIOUS_KEYS"} & names, obj["metadata"]["name"]


def secret_references(pod_spec: dict) -> set[tuple[str, str]]:
    """(Secret, key) of everything a pod reads from Secrets: env, envFrom, volumes."""
    found = set()
    for container in pod_spec.get("containers", []) + pod_spec.get("initContainers", []):
        for env in container.get("env", []):
            ref = env.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                found.add((ref["name"], ref["key"]))
        for source in container.get("envFrom", []):
            if "secretRef" in source:
                found.add((source["secretRef"]["name"], "*"))
    for volume in pod_spec.get("volumes", []):
        if "secret" in volume:
            found.add((volume["secret"]["secretName"], "*"))
        for projected in volume.get("projected", {}).get("sources", []):
            if "secret" in projected:
                found.add((projected["secret"]["name"], "*"))
    return found


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_services_pods_read_only_their_own_secret(rendered, overlay):
    """A service's Deployment and migrate Job read partybuilding-<service> and no other Secret:
    its own broker user, its own keys. The nameko services take every issuer's public key from
    the partybuilding-actor-keys ConfigMap; the gateway and each nameko service sign with a key
    of their own."""
    objects = rendered[overlay]
    for name in SERVICES:
        for kind, obj_name in (("Deployment", name), ("Job", f"{name}-migrate")):
            pod = find(objects, kind, obj_name)["spec"]["template"]["spec"]
            secrets = {secret for secret, _ in secret_references(pod)}
            assert secrets == {f"partybuilding-{name}"}, f"{obj_name} reads {sorted(secrets)}"
            assert not any("envFrom" in c and any("secretRef" in s for s in c["envFrom"]) for c in pod["containers"])
        container = find(objects, "Deployment", name)["spec"]["template"]["spec"]["containers"][0]
        env = {e["name"]: e.get("valueFrom", {}) for e in container.get("env", [])}
        assert env["ACTOR_SIGNING_KEY"]["secretKeyRef"] == {"name": f"partybuilding-{name}",
                                                             "key": "ACTOR_SIGNING_KEY"}, name
        if name in NAMEKO_SERVICES:
            ref = env["ACTOR_PUBLIC_KEYS"]["configMapKeyRef"]
            assert ref["key"] == "ACTOR_PUBLIC_KEYS" and ref["name"].startswith("partybuilding-actor-keys"), name
            find(objects, "ConfigMap", ref["name"])
    # Nothing else in the platform reads a service's Secret but the broker-user Job (prod).
    for obj in objects:
        pod = obj.get("spec", {}).get("template", {}).get("spec")
        if not pod or obj["metadata"]["name"] in {*SERVICES, *(f"{n}-migrate" for n in SERVICES), "rabbitmq-vhost"}:
            continue
        read = {secret for secret, _ in secret_references(pod)}
        assert not {s for s in read if s.startswith("partybuilding-")}, f"{obj['kind']}/{obj['metadata']['name']}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_member_gets_its_transfer_settings(rendered, overlay):
    objects = rendered[overlay]
    for kind, name in (("Deployment", "member"), ("Job", "member-migrate")):
        container = find(objects, kind, name)["spec"]["template"]["spec"]["containers"][0]
        values = config_values(objects, container)
        assert values.get("TRANSFER_LETTER_VALID_DAYS") == "30", name
        assert values.get("TRANSFER_EXPIRY_CHECK_SECONDS") == "60", name


def test_every_service_that_reads_the_field_key_gets_it():
    """The chassis runner reads FIELD_ENCRYPTION_KEY at start for a service with a
    FieldCipherProvider dependency (service_kit.chassis.run): such a service must say
    needs_field_key in the registry, or its pods would crash-loop without the key."""
    from service_kit.chassis.providers import FieldCipherProvider

    for name in NAMEKO_SERVICES:
        cls = nameko_service_class(name)
        ciphers = [n for n, value in vars(cls).items() if isinstance(value, FieldCipherProvider)]
        assert bool(ciphers) == REGISTRY[name].needs_field_key, \
            f"{name}: FieldCipherProvider {ciphers}, registry needs_field_key = {REGISTRY[name].needs_field_key}"


@pytest.mark.parametrize("name", NAMEKO_SERVICES)
def test_service_config_keys_are_read_by_the_service(rendered, name):
    """Every key of <name>-config is a variable the service or the kit reads (a typo
    would be silently ignored and the default used). The database variable is the
    registry's database_env (test_deployed_services.py checks it)."""
    sources = [package_dir(name), REPO / "libs" / "service_kit"]
    code = "\n".join(p.read_text() for d in sources for p in d.rglob("*.py"))
    container = find(rendered["prod"], "Deployment", name)["spec"]["template"]["spec"]["containers"][0]
    configmaps = [s["configMapRef"]["name"] for s in container["envFrom"] if "configMapRef" in s]
    own = [c for c in configmaps if c.startswith(f"{name}-config")]
    assert own, f"{name}: no {name}-config ConfigMap"
    for key in find(rendered["prod"], "ConfigMap", own[0])["data"]:
        if key == REGISTRY[name].database_env:
            continue
        assert re.search(rf"[\"']{key}[\"']|\b{key}=", code), f"{name}-config: {key} is read by nothing"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_data_store_pods_meet_restricted_basics(rendered, overlay):
    """Data stores run as non-root with no capabilities (the full Pod Security "restricted" check and
    the read-only root filesystem of every container: test_node_loss_and_pod_security.py)."""
    for kind in ("StatefulSet", "Job"):
        for obj in by_kind(rendered[overlay], kind):
            pod = obj["spec"]["template"]["spec"]
            assert pod["securityContext"]["runAsNonRoot"] is True, obj["metadata"]["name"]
            assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
            for container in pod["containers"] + pod.get("initContainers", []):
                assert container["securityContext"]["allowPrivilegeEscalation"] is False
                assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
