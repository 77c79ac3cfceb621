"""Both overlays render with `kubectl kustomize`, and contain what each environment needs."""

import base64
import json
import re
import shlex
import subprocess
from collections import Counter
from urllib.parse import urlsplit

import pytest

from deploy_helpers import OVERLAYS, README, REGISTRY, SERVICES, broker_hosts, by_kind, find


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


def _secret_values(secret: dict) -> dict:
    return {key: base64.b64decode(value).decode() for key, value in secret["data"].items()}


def test_dev_secrets_are_generated_and_marked_dev_only(rendered):
    """One Secret per service as in prod, with the keys its pods read; field keys and actor
    keys of each service its own, the actor keys' public halves in partybuilding-actor-keys."""
    from service_kit.actor_tokens import private_key, public_keys
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    secrets = {s["metadata"]["name"]: s for s in by_kind(rendered["dev"], "Secret")}
    assert {f"partybuilding-{name}" for name in SERVICES} | {"rabbitmq-credentials", "mongodb-credentials"} \
        == set(secrets)
    [actor_keys] = [c for c in by_kind(rendered["dev"], "ConfigMap")
                    if c["metadata"]["name"].startswith("partybuilding-actor-keys")]
    published = public_keys(actor_keys["data"]["ACTOR_PUBLIC_KEYS"])
    assert set(published) == set(SERVICES), "a public key for the gateway and every nameko service"
    field_keys = {}
    for name, entry in REGISTRY.items():
        values = _secret_values(secrets[f"partybuilding-{name}"])
        expected = {"AMQP_URI", "MONGODB_URI", "ACTOR_SIGNING_KEY"}
        if entry.kind == "gateway":
            expected |= {"JWT_SECRET", "ADMIN_PASSWORD"}
        if entry.needs_field_key:
            expected |= {"FIELD_ENCRYPTION_KEY"}
            # The service accepts only standard base64 of exactly 32 bytes.
            assert len(base64.b64decode(values["FIELD_ENCRYPTION_KEY"], validate=True)) == 32
            field_keys[name] = values["FIELD_ENCRYPTION_KEY"]
        assert expected <= set(values) <= expected | {"FIELD_ENCRYPTION_PREVIOUS_KEYS"}, name
        own = private_key(values["ACTOR_SIGNING_KEY"]).public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        assert own == published[name].public_bytes(Encoding.Raw, PublicFormat.Raw), f"{name}: its public key"
        assert "dev-only" in base64.b64decode(values["ACTOR_SIGNING_KEY"]).decode(), name
    assert len(set(field_keys.values())) == len(field_keys) >= 2, "a field key per service"


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
    # Quorum queues: the vhost is created with default queue type quorum (the Job's script,
    # test_secrets_and_tls.py).
    job = find(objects, "Job", "rabbitmq-vhost")["spec"]["template"]["spec"]
    [script_volume] = [v for v in job["volumes"] if v["name"] == "script"]
    script = "\n".join(find(objects, "ConfigMap", script_volume["configMap"]["name"])["data"].values())
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
                if ref and not ref.get("optional"):
                    assert ref["key"] in secrets.get(ref["name"], set()), f"{obj['metadata']['name']}: {ref}"
                elif ref:  # an optional key (FIELD_ENCRYPTION_PREVIOUS_KEYS): its Secret exists
                    assert ref["name"] in secrets, f"{obj['metadata']['name']}: {ref}"
            for source in container.get("envFrom", []):
                if "secretRef" in source:
                    assert source["secretRef"]["name"] in secrets


def test_amqp_uri_names_the_broker_fully_qualified(rendered):
    """KEDA's operator runs in namespace keda and gets AMQP_URI through the
    TriggerAuthentication: a short name like "rabbitmq" does not resolve there. dev removes
    KEDA, but names the broker the same way in every service's Secret; prod's Secrets are
    the README's (test_secrets_and_tls.py)."""
    objects = rendered["dev"]
    hosts = {urlsplit(base64.b64decode(find(objects, "Secret", f"partybuilding-{name}")["data"]["AMQP_URI"]).decode())
             .hostname for name in SERVICES}
    expected = broker_hosts(objects)
    assert expected, "dev: no RabbitMQ Service found"
    assert hosts <= expected, f"dev: AMQP_URI hosts {sorted(hosts)}, KEDA needs one of {sorted(expected)}"
