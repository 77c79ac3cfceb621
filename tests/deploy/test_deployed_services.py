"""services/registry.toml is the one list of the platform's services: every entry is
deployed (its folder in the base, its image pinned in both overlays, its workloads
rendered), nothing else is, and each nameko service's Deployment and migrate Job agree
with its entry (runner command, image, database variable, FIELD_ENCRYPTION_KEY)."""

import pytest
import yaml

from deploy_helpers import K8S, NAMEKO_SERVICES, OVERLAYS, REGISTRY, SERVICES, by_kind, config_values, find

BASE = K8S / "base"
TEMPLATE = "../../../components/nameko-service"
FIELD_KEY = "../../../components/field-encryption-key"


def kustomization(path) -> dict:
    return yaml.safe_load((path / "kustomization.yaml").read_text())


def test_base_deploys_every_registry_service_and_nothing_else():
    listed = [r.removeprefix("services/") for r in kustomization(BASE)["resources"] if r.startswith("services/")]
    assert sorted(listed) == sorted(SERVICES), "deploy/k8s/base/kustomization.yaml vs services/registry.toml"
    folders = sorted(p.name for p in (BASE / "services").iterdir() if p.is_dir())
    assert folders == sorted(SERVICES), "folders under deploy/k8s/base/services/ vs services/registry.toml"


@pytest.mark.parametrize("name", NAMEKO_SERVICES)
def test_nameko_service_folder_uses_the_template(name):
    """A nameko service's folder is the template plus what is its own; the field key
    component exactly when the registry says the service needs the key."""
    folder = BASE / "services" / name
    own = kustomization(folder)
    components = own.get("components", [])
    assert components[:1] == [TEMPLATE], f"{name}: include {TEMPLATE} first"
    assert (FIELD_KEY in components) == REGISTRY[name].needs_field_key, f"{name}: {FIELD_KEY} vs needs_field_key"
    assert not own.get("resources"), f"{name}: its objects come from the template, not from files of its own"
    assert [p.name for p in folder.iterdir()] == ["kustomization.yaml"], f"{name}: only kustomization.yaml"
    [config] = own["configMapGenerator"]
    assert config["name"] == f"{name}-config"
    # The template names every object after this label.
    assert config["options"]["labels"]["app.kubernetes.io/name"] == name


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_deploys_every_registry_service_and_nothing_else(rendered, overlay):
    objects = rendered[overlay]
    # Every Deployment is a registry service (PartybuildingServiceAbsent takes each
    # Deployment of the namespace for a service that must have a scrape target).
    deployments = by_kind(objects, "Deployment")
    assert sorted(d["metadata"]["name"] for d in deployments) == sorted(SERVICES)
    for deployment in deployments:
        assert deployment["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"] == "service"
    # Beside the services' images, prod pins the third-party ones by digest
    # (test_node_loss_and_pod_security.py).
    pinned = {image["name"] for image in kustomization(K8S / "overlays" / overlay).get("images", [])
              if image["name"].startswith("partybuilding/")}
    assert pinned == {f"partybuilding/{name}" for name in SERVICES}, f"{overlay}: images: one entry per service"


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("name", NAMEKO_SERVICES)
def test_nameko_workloads_agree_with_the_registry_entry(rendered, overlay, name):
    objects, entry = rendered[overlay], REGISTRY[name]
    other_databases = {REGISTRY[other].database_env for other in SERVICES if other != name}
    workloads = (("Deployment", name, entry.argv), ("Job", f"{name}-migrate", [*entry.argv, "migrate"]))
    for kind, obj_name, argv in workloads:
        pod = find(objects, kind, obj_name)["spec"]["template"]["spec"]
        [container] = pod["containers"]
        assert container["command"] == ["python", *argv], obj_name
        assert container["image"].split(":")[0] == f"partybuilding/{name}", obj_name
        assert pod["serviceAccountName"] == name, obj_name
        env = {e["name"]: e for e in container.get("env", [])}
        assert ("FIELD_ENCRYPTION_KEY" in env) == entry.needs_field_key, f"{obj_name}: needs_field_key"
        config = config_values(objects, container)
        assert config.get(entry.database_env) == entry.database, f"{obj_name}: {entry.database_env}"
        assert not other_databases & set(config), f"{obj_name}: another service's database variable"
