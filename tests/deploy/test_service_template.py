"""Every nameko service renders from the one template (deploy/k8s/components/nameko-service)
to the objects pinned in golden/nameko-service.<overlay>.yaml, once its own parts are set
aside: its name (written <service>, its Secret partybuilding-<service>), its ConfigMap's
data, the resource amounts an overlay sizes, the event-queue triggers of its ScaledObject
(test_workload_policy derives them from the code) and FIELD_ENCRYPTION_KEY with
FIELD_ENCRYPTION_PREVIOUS_KEYS (test_deployed_services checks them against the registry). A template that drops or changes anything else (security, probes,
strategy, drain budget, PDB, NetworkPolicy, scaling policy, migrate Job) fails here for
every service.

The golden files equal the render of organization and of member before the template
existed, but for two intended changes: the chassis runner's command and the
app.kubernetes.io/name label on the service's ConfigMap (the template's name source).
After an intended change to the template, rewrite them and review the diff:
    .venv/bin/python tests/deploy/test_service_template.py
"""

import copy
import re
import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from deploy_helpers import K8S, NAMEKO_SERVICES, OVERLAYS, kustomize, require_tool  # noqa: E402

GOLDEN = Path(__file__).resolve().parent / "golden"
KINDS = ("ServiceAccount", "ConfigMap", "Service", "Deployment", "PodDisruptionBudget", "ScaledObject",
         "NetworkPolicy", "Job")


def golden_path(overlay: str) -> Path:
    return GOLDEN / f"nameko-service.{overlay}.yaml"


def own_objects(objects: list[dict], name: str) -> list[dict]:
    """The objects of one service: named after it, its migrate Job, its ConfigMap."""
    def owned(obj):
        object_name = obj["metadata"]["name"]
        if obj["kind"] == "ConfigMap":
            return re.fullmatch(rf"{re.escape(name)}-config-[a-z0-9]+", object_name)
        return object_name in (name, f"{name}-migrate")
    return sorted((o for o in objects if o["kind"] in KINDS and owned(o)), key=lambda o: KINDS.index(o["kind"]))


def normalized(obj: dict, name: str) -> dict:
    obj = copy.deepcopy(obj)
    if obj["kind"] == "ConfigMap":
        obj["data"] = "<its own>"
    if obj["kind"] == "ScaledObject":
        obj["spec"]["triggers"] = [t for t in obj["spec"]["triggers"] if t["name"] == "rpc"]
    for container in obj.get("spec", {}).get("template", {}).get("spec", {}).get("containers", []):
        container["env"] = [e for e in container.get("env", [])
                            if e["name"] not in ("FIELD_ENCRYPTION_KEY", "FIELD_ENCRYPTION_PREVIOUS_KEYS")]
        container["resources"] = {kind: {resource: "<sized>" for resource in amounts}
                                  for kind, amounts in container["resources"].items()}
    patterns = [
        (rf"{re.escape(name)}", "<service>"),
        (rf"{re.escape(name)}-migrate", "<service>-migrate"),
        (rf"rpc-{re.escape(name)}", "rpc-<service>"),
        (rf"{re.escape(name)}-config-[a-z0-9]+", "<service>-config-<hash>"),
        (r"platform-config-[a-z0-9]+", "platform-config-<hash>"),
        (rf"partybuilding-{re.escape(name)}", "partybuilding-<service>"),  # its own Secret
        (r"partybuilding-actor-keys-[a-z0-9]+", "partybuilding-actor-keys-<hash>"),
        (rf"partybuilding/{re.escape(name)}(:.+)", r"partybuilding/<service>\1"),
    ]

    def walk(node):
        if isinstance(node, dict):
            return {key: walk(value) for key, value in node.items()}
        if isinstance(node, list):
            return [walk(value) for value in node]
        if isinstance(node, str):
            for pattern, replacement in patterns:
                if re.fullmatch(pattern, node):
                    return re.sub(pattern, replacement, node)
        return node

    return walk(obj)


def template_render(objects: list[dict], name: str) -> list[dict]:
    return [normalized(o, name) for o in own_objects(objects, name)]


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("name", NAMEKO_SERVICES)
def test_service_renders_the_pinned_template(rendered, overlay, name):
    expected = [d for d in yaml.safe_load_all(golden_path(overlay).read_text()) if d]
    actual = template_render(rendered[overlay], name)
    assert [o["kind"] for o in actual] == [o["kind"] for o in expected], f"{name} in {overlay}: kinds"
    for got, want in zip(actual, expected):
        assert got == want, f"{name} in {overlay}: {got['kind']} differs from {golden_path(overlay).name}"


def _drop_readiness_probe(k8s: Path):
    path = k8s / "components" / "nameko-service" / "deployment.yaml"
    deployment = yaml.safe_load(path.read_text())
    del deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]
    path.write_text(yaml.safe_dump(deployment))


def _drop_migrate_job(k8s: Path):
    path = k8s / "components" / "nameko-service" / "kustomization.yaml"
    component = yaml.safe_load(path.read_text())
    component["resources"].remove("job-migrate.yaml")
    for replacement in component["replacements"]:
        replacement["targets"] = [t for t in replacement["targets"] if t["select"]["kind"] != "Job"]
    component["replacements"] = [r for r in component["replacements"] if r["targets"]]
    path.write_text(yaml.safe_dump(component))


def _service_overrides_strategy(k8s: Path):
    path = k8s / "base" / "services" / NAMEKO_SERVICES[-1] / "kustomization.yaml"
    own = yaml.safe_load(path.read_text())
    own.setdefault("patches", []).append({"target": {"kind": "Deployment"}, "patch": (
        "- {op: replace, path: /spec/strategy/rollingUpdate/maxUnavailable, value: 1}")})
    path.write_text(yaml.safe_dump(own))


@pytest.mark.parametrize("mutate", [_drop_readiness_probe, _drop_migrate_job, _service_overrides_strategy],
                         ids=lambda f: f.__name__.strip("_"))
def test_a_changed_template_or_override_is_caught(kubectl, tmp_path, mutate):
    """Self-check: the comparison fails when the template loses a part, or a service's
    folder quietly overrides one."""
    import shutil

    shutil.copytree(K8S.parent, tmp_path / "deploy")
    k8s = tmp_path / "deploy" / "k8s"
    mutate(k8s)
    objects = kustomize(kubectl, k8s / "overlays" / "prod")
    expected = [d for d in yaml.safe_load_all(golden_path("prod").read_text()) if d]
    caught = [name for name in NAMEKO_SERVICES if template_render(objects, name) != expected]
    if mutate is _service_overrides_strategy:
        assert caught == [NAMEKO_SERVICES[-1]]
    else:
        assert caught == list(NAMEKO_SERVICES)


def test_normalization_sets_aside_only_the_service_name():
    """Self-check: a value that merely contains the name (another service's queue) stays."""
    obj = {"kind": "Service", "metadata": {"name": "member", "labels": {"a": "evt-member-x--organization.y"}}}
    assert normalized(obj, "member")["metadata"] == {"name": "<service>", "labels": obj["metadata"]["labels"]}


if __name__ == "__main__":
    kubectl = require_tool("kubectl")
    GOLDEN.mkdir(exist_ok=True)
    for overlay in OVERLAYS:
        documents = template_render(kustomize(kubectl, K8S / "overlays" / overlay), "organization")
        golden_path(overlay).write_text(yaml.safe_dump_all(documents, sort_keys=False))
        print(f"wrote {golden_path(overlay)}")
