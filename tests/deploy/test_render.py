"""Both overlays render with `kubectl kustomize`, and contain what each environment needs."""

import base64
import json
import re
import shlex
import subprocess
from collections import Counter
from urllib.parse import urlsplit

import pytest

from deploy_helpers import OVERLAYS, README, REGISTRY, SERVICES, by_kind, find


def test_kustomize_runs_generators_before_components(kubectl):
    """components/nameko-service names a service after its generated ConfigMap, which a
    component sees from kustomize v5.1 on (kubectl 1.31); older ones fail to render."""
    proc = subprocess.run([kubectl, "version", "--client", "-o", "json"], capture_output=True, text=True, timeout=60)
    version = json.loads(proc.stdout)["kustomizeVersion"]
    assert tuple(map(int, re.match(r"v(\d+)\.(\d+)", version).groups())) >= (5, 1), \
        f"kubectl's kustomize is {version}: deploy/ needs v5.1 or later (kubectl 1.31 or later)"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_renders_every_service(rendered, overlay):
    objects = rendered[overlay]
    assert objects, f"{overlay} rendered nothing"
    for name in SERVICES:
        for kind in ("Deployment", "Service", "PodDisruptionBudget", "NetworkPolicy", "ServiceAccount"):
            find(objects, kind, name)
        find(objects, "Job", f"{name}-migrate")
    find(objects, "Ingress", "gateway")
    find(objects, "Ingress", "gateway-events")
    # Everything lives in the platform namespace (except the Namespace itself).
    for obj in objects:
        if obj["kind"] != "Namespace":
            assert obj["metadata"].get("namespace") == "partybuilding", f"{obj['kind']}/{obj['metadata']['name']}"
    names = Counter((o["kind"], o["metadata"]["name"]) for o in objects)
    assert not [k for k, n in names.items() if n > 1], "duplicate objects"


def test_dev_is_single_replica_with_plain_data_stores(rendered):
    objects = rendered["dev"]
    for deployment in by_kind(objects, "Deployment"):
        assert deployment["spec"]["replicas"] == 1, deployment["metadata"]["name"]
    assert find(objects, "StatefulSet", "rabbitmq")["spec"]["replicas"] == 1
    assert find(objects, "StatefulSet", "mongodb")["spec"]["replicas"] == 1
    # A laptop cluster needs no operator: no KEDA or operator custom resources.
    builtin_groups = ("v1", "apps/", "batch/", "policy/", "networking.k8s.io/")
    for obj in objects:
        assert obj["apiVersion"].startswith(builtin_groups), f"dev needs no CRD, found {obj['kind']}"


def test_dev_secrets_are_generated_and_marked_dev_only(rendered):
    secrets = {s["metadata"]["name"]: s for s in by_kind(rendered["dev"], "Secret")}
    assert {"partybuilding-secrets", "rabbitmq-credentials", "mongodb-credentials"} <= set(secrets)
    keys = set(secrets["partybuilding-secrets"]["data"])
    assert keys == {"AMQP_URI", "MONGODB_URI", "JWT_SECRET", "FIELD_ENCRYPTION_KEY", "ADMIN_PASSWORD"}
    # The member service accepts only standard base64 of exactly 32 bytes.
    field_key = base64.b64decode(secrets["partybuilding-secrets"]["data"]["FIELD_ENCRYPTION_KEY"]).decode()
    assert len(base64.b64decode(field_key, validate=True)) == 32


def _readme_secret_command(name: str) -> str:
    text = README.read_text()
    match = re.search(rf"kubectl -n \$NS create secret generic {name} \\\n((?:.*\\\n)*.*)", text)
    assert match, f"deploy/README.md: no `create secret generic {name}` command"
    return match.group(0)


def test_readme_secret_command_has_every_key_prod_reads(rendered):
    """The operator creates partybuilding-secrets from deploy/README.md: every key a prod
    workload or KEDA reads must be in that command."""
    command = _readme_secret_command("partybuilding-secrets")
    documented = set(re.findall(r"--from-literal=([A-Z_]+)=", command))
    used = set()
    for obj in rendered["prod"]:
        spec = obj.get("spec", {}).get("template", {}).get("spec", {})
        for container in spec.get("containers", []) + spec.get("initContainers", []):
            for env in container.get("env", []):
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref and ref["name"] == "partybuilding-secrets":
                    used.add(ref["key"])
        for ref in obj.get("spec", {}).get("secretTargetRef", []):
            if ref["name"] == "partybuilding-secrets":
                used.add(ref["key"])
    assert used <= documented, f"missing from the README command: {sorted(used - documented)}"
    # FIELD_ENCRYPTION_KEY: standard base64 of 32 bytes (the service rejects URL-safe base64).
    assert "head -c 32 /dev/urandom | base64" in command
    assert "tr '+/'" not in command


def test_readme_builds_every_dev_image(rendered):
    text = README.read_text()
    images = {c["image"] for obj in rendered["dev"]
              for c in obj.get("spec", {}).get("template", {}).get("spec", {}).get("containers", [])
              if c["image"].startswith("partybuilding/")}
    assert {f"partybuilding/{name}:dev" for name in SERVICES} == images
    for image in images:
        name = image.split("/")[1].split(":")[0]
        entry = REGISTRY[name]
        if entry.kind == "nameko":  # one shared Dockerfile, the service as build argument
            command = f"docker build -f services/nameko.Dockerfile --build-arg SERVICE={name} -t {image} ."
        else:
            command = f"docker build -f services/{entry.folder}/Dockerfile -t {image} ."
        assert command in text, image
        load = [line for line in text.splitlines() if line.startswith("kind load docker-image")]
        assert load and image in shlex.split(load[0].split("#")[0]), f"kind load of {image}"


def test_prod_commits_no_secret(rendered):
    assert by_kind(rendered["prod"], "Secret") == [], "prod must expect operator-created Secrets"


def test_prod_is_scaled_out_on_operators(rendered):
    objects = rendered["prod"]
    rabbit = find(objects, "RabbitmqCluster", "rabbitmq")
    assert rabbit["spec"]["replicas"] == 3
    assert find(objects, "StatefulSet", "mongodb")["spec"]["replicas"] == 3
    scaled = {s["spec"]["scaleTargetRef"]["name"]: s for s in by_kind(objects, "ScaledObject")}
    for deployment in by_kind(objects, "Deployment"):
        name = deployment["metadata"]["name"]
        assert name in scaled, f"{name}: not autoscaled"
        # KEDA's HPA owns the count: an applied spec.replicas would reset it on every apply.
        assert "replicas" not in deployment["spec"], f"{name}: spec.replicas fights KEDA"
        assert scaled[name]["spec"]["minReplicaCount"] >= 3, f"{name}: scaled out"
        assert scaled[name]["spec"]["maxReplicaCount"] > scaled[name]["spec"]["minReplicaCount"]
    # Quorum queues: the vhost is created with default queue type quorum.
    job = find(objects, "Job", "rabbitmq-vhost")
    script = "\n".join(job["spec"]["template"]["spec"]["containers"][0]["command"])
    assert '"default_queue_type":"quorum"' in script
    # Monitoring comes with prod.
    assert by_kind(objects, "ServiceMonitor") and by_kind(objects, "PrometheusRule")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_images_are_pinned_by_the_overlay(rendered, overlay):
    for obj in rendered[overlay]:
        spec = obj.get("spec", {}).get("template", {}).get("spec", {})
        for container in spec.get("containers", []) + spec.get("initContainers", []):
            image = container["image"]
            assert ":" in image.split("/")[-1], f"{obj['metadata']['name']}: image {image} has no tag"
            assert not image.endswith(":latest"), image


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_mongodb_init_job_matches_member_count(rendered, overlay):
    objects = rendered[overlay]
    members = find(objects, "StatefulSet", "mongodb")["spec"]["replicas"]
    job = find(objects, "Job", "mongodb-init-replicaset")
    env = {e["name"]: e.get("value") for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["MONGODB_MEMBERS"] == str(members)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_referenced_configmap_exists(rendered, overlay):
    """Generated ConfigMap names carry a hash: references must have been rewritten."""
    objects = rendered[overlay]
    configmaps = {c["metadata"]["name"] for c in by_kind(objects, "ConfigMap")}
    for obj in objects:
        spec = obj.get("spec", {}).get("template", {}).get("spec", {})
        for container in spec.get("containers", []):
            for source in container.get("envFrom", []):
                if "configMapRef" in source:
                    assert source["configMapRef"]["name"] in configmaps
        for volume in spec.get("volumes", []):
            if "configMap" in volume:
                assert volume["configMap"]["name"] in configmaps


def test_dev_references_only_existing_secrets(rendered):
    objects = rendered["dev"]
    secrets = {s["metadata"]["name"]: set(s["data"]) for s in by_kind(objects, "Secret")}
    for obj in objects:
        spec = obj.get("spec", {}).get("template", {}).get("spec", {})
        for container in spec.get("containers", []) + spec.get("initContainers", []):
            for env in container.get("env", []):
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert ref["key"] in secrets.get(ref["name"], set()), f"{obj['metadata']['name']}: {ref}"
            for source in container.get("envFrom", []):
                if "secretRef" in source:
                    assert source["secretRef"]["name"] in secrets


def _readme_literal(command: str, key: str) -> str:
    """The value of --from-literal=KEY=... in a README command, with $NS filled in."""
    match = re.search(rf'--from-literal={key}=("[^"]*"|\S+)', command)
    assert match, f"deploy/README.md: no {key} in the command"
    namespace = re.search(r"^NS=(\S+)$", README.read_text(), re.M)
    assert namespace, "deploy/README.md: no NS=... before the Secret commands"
    return match.group(1).strip('"').replace("${NS}", namespace.group(1)).replace("$NS", namespace.group(1))


def _broker_services(objects) -> set[str]:
    """Names of the Services that reach RabbitMQ's AMQP port: the dev StatefulSet's Service,
    or the client Service the Cluster Operator names after the RabbitmqCluster."""
    names = {c["metadata"]["name"] for c in by_kind(objects, "RabbitmqCluster")}
    for service in by_kind(objects, "Service"):
        if service["spec"].get("selector", {}).get("app.kubernetes.io/name") == "rabbitmq" \
                and 5672 in {p["port"] for p in service["spec"]["ports"]}:
            names.add(service["metadata"]["name"])
    return names


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_amqp_uri_names_the_broker_fully_qualified(rendered, overlay):
    """KEDA's operator runs in namespace keda and gets AMQP_URI through the
    TriggerAuthentication: a short name like "rabbitmq" does not resolve there."""
    objects = rendered[overlay]
    if overlay == "prod":
        auth = find(rendered["prod"], "TriggerAuthentication", "rabbitmq-amqp")
        [ref] = [r for r in auth["spec"]["secretTargetRef"] if r["parameter"] == "host"]
        namespace = auth["metadata"]["namespace"]
        uri = _readme_literal(_readme_secret_command(ref["name"]), ref["key"])  # prod: the operator's Secret
    else:  # dev removes KEDA, but generates the same key the same way
        secret = find(objects, "Secret", "partybuilding-secrets")
        namespace = secret["metadata"]["namespace"]
        uri = base64.b64decode(secret["data"]["AMQP_URI"]).decode()
    host = urlsplit(uri).hostname
    expected = {f"{name}.{namespace}.svc.cluster.local" for name in _broker_services(objects)}
    assert expected, f"{overlay}: no RabbitMQ Service found"
    assert host in expected, f"{overlay}: AMQP_URI host {host!r}, KEDA needs one of {sorted(expected)}"
