"""Custom resources validate against the openAPIV3Schema of their CRDs (deploy/crds).

The schemas are made strict the way the API server is (unknown fields rejected unless
x-kubernetes-preserve-unknown-fields), see deploy_helpers.strict_schema.
"""

import copy
import re

import jsonschema
import kubernetes_validate
import pytest
import yaml
from referencing import Registry, Resource

from deploy_helpers import CRDS, by_kind, find

CUSTOM_KINDS = {"RabbitmqCluster", "ScaledObject", "TriggerAuthentication", "ServiceMonitor", "PrometheusRule"}


def validate_cr(crd_schemas, obj):
    key = (obj["apiVersion"], obj["kind"])
    assert key in crd_schemas, f"no CRD in deploy/crds for {key}"
    jsonschema.Draft202012Validator(crd_schemas[key]).validate(obj)


def custom_resources(objects):
    """Objects whose API group is neither core nor a *.k8s.io group."""
    def custom(api_version):
        group = api_version.split("/")[0] if "/" in api_version else ""
        return "." in group and not group.endswith("k8s.io")
    return [o for o in objects if custom(o["apiVersion"])]


def test_every_needed_crd_is_in_the_repo(crd_schemas):
    kinds = {kind for _, kind in crd_schemas}
    assert CUSTOM_KINDS <= kinds


def test_crd_provenance_is_recorded():
    readme = (CRDS / "README.md").read_text()
    for path in CRDS.glob("*.yaml"):
        assert path.name in readme, f"deploy/crds/README.md does not say where {path.name} comes from"


@pytest.mark.parametrize("source", ("dev", "prod", "monitoring"))
def test_custom_resources_validate_against_their_crds(rendered, crd_schemas, source):
    errors = []
    for obj in custom_resources(rendered[source]):
        try:
            validate_cr(crd_schemas, obj)
        except jsonschema.ValidationError as e:
            path = ".".join(str(p) for p in e.absolute_path)
            errors.append(f"{obj['kind']}/{obj['metadata']['name']}: {path}: {e.message}")
    assert not errors, "\n".join(errors)


def test_prod_has_every_custom_resource_kind(rendered):
    assert {o["kind"] for o in custom_resources(rendered["prod"])} == CUSTOM_KINDS


def test_rabbitmq_cluster_embedded_kubernetes_types(rendered):
    """The abridged RabbitmqCluster CRD leaves affinity, resources and the override's pod
    template to the Kubernetes schemas: check them there (strict: unknown fields fail)."""
    rabbit = find(rendered["prod"], "RabbitmqCluster", "rabbitmq")
    definitions = kubernetes_validate.utils.schema_contents(
        "kubernetes-json-schema/v1.34.0-local-strict/_definitions.json", "1.34.0"
    )
    base = definitions["$id"]  # https://kubernetes.io/api/_definitions.json, definitions under $defs
    registry = Registry().with_resource(base, Resource.from_contents(definitions))
    override = rabbit["spec"]["override"]["statefulSet"]["spec"]["template"]
    for value, definition in ((rabbit["spec"]["affinity"], "io.k8s.api.core.v1.Affinity"),
                              (rabbit["spec"]["resources"], "io.k8s.api.core.v1.ResourceRequirements"),
                              (override["spec"], "io.k8s.api.core.v1.PodSpec")):
        schema = {"$ref": f"{base}#/$defs/{definition}"}
        jsonschema.Draft202012Validator(schema, registry=registry).validate(value)
    assert set(rabbit["spec"]["override"]) == {"statefulSet"} and set(override) == {"spec"}
    broken = {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [{"topologyKey": 3}]}}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator(
            {"$ref": f"{base}#/$defs/io.k8s.api.core.v1.Affinity"}, registry=registry
        ).validate(broken)


def test_validator_rejects_broken_custom_resources(rendered, crd_schemas):
    """Self-check: each CRD schema catches a wrong type, a missing field, an unknown field."""
    objects = rendered["prod"]
    scaled = by_kind(objects, "ScaledObject")[0]
    monitor = by_kind(objects, "ServiceMonitor")[0]
    rule = by_kind(objects, "PrometheusRule")[0]
    rabbit = find(objects, "RabbitmqCluster", "rabbitmq")
    auth = by_kind(objects, "TriggerAuthentication")[0]
    for obj in (scaled, monitor, rule, rabbit, auth):
        validate_cr(crd_schemas, obj)  # unmodified: valid

    broken = []
    b = copy.deepcopy(scaled); del b["spec"]["scaleTargetRef"]; broken.append(b)
    b = copy.deepcopy(scaled); b["spec"]["minReplicaCount"] = "three"; broken.append(b)
    b = copy.deepcopy(monitor); b["spec"]["endpoints"][0]["portt"] = "http"; broken.append(b)
    b = copy.deepcopy(rule); b["spec"]["groups"][0]["rules"][0]["for"] = "ten minutes"; broken.append(b)
    b = copy.deepcopy(rabbit); b["spec"]["replicas"] = -1; broken.append(b)
    b = copy.deepcopy(rabbit); b["spec"]["persistance"] = {"storage": "1Gi"}; broken.append(b)
    b = copy.deepcopy(auth); del b["spec"]["secretTargetRef"][0]["key"]; broken.append(b)
    for obj in broken:
        with pytest.raises(jsonschema.ValidationError):
            validate_cr(crd_schemas, obj)


def test_crd_files_are_upstream_crds():
    for path in CRDS.glob("*.yaml"):
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
        assert len(docs) == 1 and docs[0]["kind"] == "CustomResourceDefinition", path.name
        assert re.match(r"^[a-z0-9.]+_[a-z]+\.yaml$", path.name), path.name
