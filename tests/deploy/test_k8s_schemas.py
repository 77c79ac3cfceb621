"""Every rendered built-in object validates with kubernetes-validate --strict.

Strict schemas reject unknown fields (a misspelt or misplaced key), not only wrong
types. Two Kubernetes versions: the oldest we support and a recent one.
"""

import copy

import kubernetes_validate
import pytest

from deploy_helpers import by_kind

KUBERNETES_VERSIONS = ("1.30.0", "1.34.0")
BUILTIN_GROUPS = {"v1", "apps/v1", "batch/v1", "policy/v1", "networking.k8s.io/v1", "autoscaling/v2"}


def builtin(objects):
    return [o for o in objects if o["apiVersion"] in BUILTIN_GROUPS]


def validate(obj, version):
    """Raise on an invalid object; a schema that cannot be found is a failure too."""
    kubernetes_validate.validate(obj, version, strict=True)


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("source", ("dev", "prod", "monitoring"))
def test_builtin_objects_validate_strictly(rendered, source, version):
    objects = rendered[source]
    errors = []
    for obj in objects:
        if obj["apiVersion"] not in BUILTIN_GROUPS:
            assert "." in obj["apiVersion"].split("/")[0], (  # a custom resource: test_custom_resources
                f"{obj['kind']} {obj['apiVersion']} is neither built in nor a custom resource"
            )
            continue
        try:
            validate(obj, version)
        except kubernetes_validate.ValidationError as e:
            path = ".".join(str(p) for p in e.path)
            errors.append(f"{obj['kind']}/{obj['metadata']['name']}: {path}: {e.message}")
        except kubernetes_validate.SchemaNotFoundError as e:
            errors.append(f"{obj['kind']}/{obj['metadata']['name']}: {e.message}")
    assert not errors, "\n".join(errors)
    if source != "monitoring":
        assert len(builtin(objects)) >= 20, "suspiciously few objects were validated"


def test_validator_rejects_broken_objects(rendered):
    """Self-check: the validator runs and fails on what it must fail on."""
    deployment = by_kind(rendered["prod"], "Deployment")[0]
    validate(deployment, KUBERNETES_VERSIONS[-1])  # the unmodified object passes

    wrong_type = copy.deepcopy(deployment)
    wrong_type["spec"]["replicas"] = "three"
    unknown_field = copy.deepcopy(deployment)
    unknown_field["spec"]["template"]["spec"]["containers"][0]["securityContxt"] = {}
    missing_required = copy.deepcopy(deployment)
    del missing_required["spec"]["selector"]
    for broken in (wrong_type, unknown_field, missing_required):
        with pytest.raises(kubernetes_validate.ValidationError):
            validate(broken, KUBERNETES_VERSIONS[-1])
