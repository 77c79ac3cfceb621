"""Manifests that survive a node loss and that Pod Security "restricted" admits, checked on
the rendered overlays (issue 16, item 12):

- MongoDB members need a node each (required pod anti-affinity on the host name; the
  broker's nodes too), so one lost node costs at most one member of each majority;
- the services, the gateway and the data stores spread over zones (ScheduleAnyway: see
  components/nameko-service/deployment.yaml for why not DoNotSchedule);
- every third-party image in prod is pinned by digest (name:tag@sha256:...);
- the namespace enforces Pod Security "restricted", and every pod the overlays render
  (and the broker pods the operator generates, through the RabbitmqCluster's override)
  passes that profile's rules, implemented below after the Kubernetes Pod Security
  Standards ("restricted", latest);
- the broker's egress is its peers and DNS only;
- every container runs with a read-only root filesystem, with an emptyDir for /tmp
  where the image writes there.
"""

import copy
import re

import pytest

from deploy_helpers import OVERLAYS, SERVICES, by_kind, find, selects

HOSTNAME = "kubernetes.io/hostname"
ZONE = "topology.kubernetes.io/zone"
OWN_IMAGES = "partybuilding/"
# The pods the RabbitMQ Cluster Operator generates for RabbitmqCluster "rabbitmq" carry
# these labels (cluster-operator internal/metadata/label.go).
OPERATOR_BROKER_LABELS = {"app.kubernetes.io/name": "rabbitmq", "app.kubernetes.io/component": "rabbitmq",
                          "app.kubernetes.io/part-of": "rabbitmq"}


def broker_pod(objects: list[dict]) -> tuple[dict, dict]:
    """(labels, pod spec) of the broker's pods: the dev StatefulSet's, or in prod what the
    manifests guarantee of the pods the operator generates: its two containers (the
    broker, and its init container setup-container), both of spec.image, with what the
    RabbitmqCluster's override merges into them (by name, as the operator does)."""
    clusters = by_kind(objects, "RabbitmqCluster")
    if clusters:
        spec = clusters[0]["spec"]
        override = copy.deepcopy(
            spec.get("override", {}).get("statefulSet", {}).get("spec", {}).get("template", {}).get("spec", {}))
        pod = {**override}
        for field, name in (("containers", "rabbitmq"), ("initContainers", "setup-container")):
            given = {c["name"]: c for c in override.get(field, [])}
            pod[field] = [{**given.pop(name, {}), "name": name}] + list(given.values())
            for container in pod[field]:
                container["image"] = spec["image"]
        return OPERATOR_BROKER_LABELS, pod
    statefulset = find(objects, "StatefulSet", "rabbitmq")
    return statefulset["spec"]["template"]["metadata"]["labels"], statefulset["spec"]["template"]["spec"]


def pods(objects: list[dict]) -> list[tuple[str, dict]]:
    """(what, pod spec) of every pod the overlay makes: each workload's template, and the
    broker pods the operator generates (their override)."""
    found = [(f"{o['kind']}/{o['metadata']['name']}", o["spec"]["template"]["spec"])
             for o in objects if o.get("spec", {}).get("template", {}).get("spec")]
    if by_kind(objects, "RabbitmqCluster"):
        found.append(("RabbitmqCluster/rabbitmq (operator's pods, override)", broker_pod(objects)[1]))
    return found


def containers(pod: dict) -> list[dict]:
    return pod.get("initContainers", []) + pod.get("containers", []) + pod.get("ephemeralContainers", [])


# ------------------------------------------------------------ Pod Security "restricted"

# https://kubernetes.io/docs/concepts/security/pod-security-standards/ (latest)
RESTRICTED_VOLUME_TYPES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim",
                           "projected", "secret"}
SAFE_SYSCTLS = {"kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.ip_unprivileged_port_start",
                "net.ipv4.tcp_syncookies", "net.ipv4.ping_group_range", "net.ipv4.ip_local_reserved_ports",
                "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_keepalive_intvl",
                "net.ipv4.tcp_keepalive_probes"}
SELINUX_TYPES = {"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"}


def restricted_violations(pod: dict) -> list[str]:
    """What Pod Security Admission at level "restricted" (version latest) would refuse in
    this pod spec: the baseline controls and the restricted ones."""
    found = []
    pod_sc = pod.get("securityContext", {}) or {}
    all_containers = containers(pod)
    # baseline
    for field in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(field):
            found.append(f"{field}")
    if (pod_sc.get("windowsOptions") or {}).get("hostProcess"):
        found.append("hostProcess")
    for volume in pod.get("volumes", []):
        types = set(volume) - {"name"}
        if "hostPath" in types:
            found.append(f"volume {volume['name']}: hostPath")
        if not types <= RESTRICTED_VOLUME_TYPES:
            found.append(f"volume {volume['name']}: type {sorted(types - RESTRICTED_VOLUME_TYPES)}")
    for sysctl in pod_sc.get("sysctls", []):
        if sysctl["name"] not in SAFE_SYSCTLS:
            found.append(f"sysctl {sysctl['name']}")
    for where, sc in [("pod", pod_sc)] + [(c["name"], c.get("securityContext") or {}) for c in all_containers]:
        selinux = sc.get("seLinuxOptions") or {}
        if selinux.get("type", "") not in SELINUX_TYPES or selinux.get("user") or selinux.get("role"):
            found.append(f"{where}: seLinuxOptions {selinux}")
        if (sc.get("appArmorProfile") or {}).get("type") == "Unconfined":
            found.append(f"{where}: appArmorProfile Unconfined")
        if (sc.get("seccompProfile") or {}).get("type") == "Unconfined":
            found.append(f"{where}: seccompProfile Unconfined")
        if sc.get("runAsUser") == 0:
            found.append(f"{where}: runAsUser 0")
    for annotation, value in (pod.get("metadata", {}).get("annotations") or {}).items():
        if annotation.startswith("container.apparmor.security.beta.kubernetes.io/") and value == "unconfined":
            found.append(f"{annotation}: unconfined")
    pod_non_root = pod_sc.get("runAsNonRoot") is True
    pod_seccomp = (pod_sc.get("seccompProfile") or {}).get("type") in ("RuntimeDefault", "Localhost")
    for container in all_containers:
        name = container["name"]
        sc = container.get("securityContext") or {}
        if sc.get("privileged"):
            found.append(f"{name}: privileged")
        if sc.get("procMount", "Default") != "Default":
            found.append(f"{name}: procMount {sc['procMount']}")
        if any(port.get("hostPort") for port in container.get("ports", [])):
            found.append(f"{name}: hostPort")
        # restricted
        if sc.get("allowPrivilegeEscalation") is not False:
            found.append(f"{name}: allowPrivilegeEscalation must be false")
        capabilities = sc.get("capabilities") or {}
        if "ALL" not in (capabilities.get("drop") or []):
            found.append(f"{name}: capabilities must drop ALL")
        if set(capabilities.get("add") or []) - {"NET_BIND_SERVICE"}:
            found.append(f"{name}: adds capabilities {capabilities['add']}")
        if sc.get("runAsNonRoot") is False or not (pod_non_root or sc.get("runAsNonRoot") is True):
            found.append(f"{name}: runAsNonRoot")
        if not (pod_seccomp or (sc.get("seccompProfile") or {}).get("type") in ("RuntimeDefault", "Localhost")):
            found.append(f"{name}: seccompProfile RuntimeDefault or Localhost")
    return found


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_namespace_enforces_pod_security_restricted(rendered, overlay):
    [namespace] = by_kind(rendered[overlay], "Namespace")
    labels = namespace["metadata"]["labels"]
    for mode in ("enforce", "warn", "audit"):
        assert labels.get(f"pod-security.kubernetes.io/{mode}") == "restricted", mode


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_pod_passes_pod_security_restricted(rendered, overlay):
    """Admission would refuse a pod that fails: the namespace enforces the profile in
    both overlays. The broker's pods in prod come from the operator: its override must
    give what the profile asks (the operator's own volumes are configMap, projected,
    secret, emptyDir and persistentVolumeClaim, all allowed)."""
    found = pods(rendered[overlay])
    assert len(found) >= len(SERVICES) * 2 + 2, "suspiciously few pods"
    failures = {what: violations for what, pod in found if (violations := restricted_violations(pod))}
    assert not failures, failures


def test_restricted_check_refuses_what_admission_would(rendered):
    """Self-check: a pod that passes fails once any one control is broken."""
    good = find(rendered["prod"], "Deployment", "gateway")["spec"]["template"]["spec"]
    assert restricted_violations(good) == []

    def broken(change):
        pod = copy.deepcopy(good)
        change(pod, pod["containers"][0].setdefault("securityContext", {}))
        return pod

    breakages = {
        "no runAsNonRoot": lambda p, c: (p["securityContext"].pop("runAsNonRoot"), c.pop("runAsNonRoot", None)),
        "root user": lambda p, c: c.update(runAsUser=0),
        "seccomp unconfined": lambda p, c: c.update(seccompProfile={"type": "Unconfined"}),
        "no seccomp": lambda p, c: p["securityContext"].pop("seccompProfile"),
        "escalation allowed": lambda p, c: c.pop("allowPrivilegeEscalation"),
        "capabilities kept": lambda p, c: c.update(capabilities={"drop": ["NET_RAW"]}),
        "capability added": lambda p, c: c["capabilities"].update(add=["SYS_ADMIN"]),
        "privileged": lambda p, c: c.update(privileged=True),
        "host path": lambda p, c: p["volumes"].append({"name": "host", "hostPath": {"path": "/"}}),
        "host network": lambda p, c: p.update(hostNetwork=True),
        "host port": lambda p, c: p["containers"][0]["ports"][0].update(hostPort=8080),
        "init container unhardened": lambda p, c: p.setdefault("initContainers", []).append(
            {"name": "init", "image": "busybox:1.37"}),
    }
    for what, change in breakages.items():
        assert restricted_violations(broken(change)), f"not caught: {what}"


# ----------------------------------------------------------------- node and zone loss

def test_mongodb_members_require_a_node_each(rendered):
    objects = rendered["prod"]
    statefulset = find(objects, "StatefulSet", "mongodb")
    assert statefulset["spec"]["replicas"] == 3
    labels = statefulset["spec"]["template"]["metadata"]["labels"]
    anti = statefulset["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"]
    terms = anti.get("requiredDuringSchedulingIgnoredDuringExecution", [])
    own = [t for t in terms if t["topologyKey"] == HOSTNAME and selects(t["labelSelector"], labels)
           and not t.get("namespaces") and not t.get("namespaceSelector")]
    assert own, "mongodb: no required anti-affinity on the host name against its own members"
    # The broker's nodes likewise (the operator copies spec.affinity into its pods).
    rabbit = find(objects, "RabbitmqCluster", "rabbitmq")["spec"]
    terms = rabbit["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert [t for t in terms if t["topologyKey"] == HOSTNAME and selects(t["labelSelector"], OPERATOR_BROKER_LABELS)]
    assert rabbit["replicas"] == 3


def zone_spread(pod: dict, labels: dict) -> list[dict]:
    return [c for c in pod.get("topologySpreadConstraints", [])
            if c["topologyKey"] == ZONE and selects(c["labelSelector"], labels)]


def test_services_gateway_and_data_stores_spread_over_zones(rendered):
    """Each service's and the gateway's replicas, MongoDB's members and the broker's nodes
    are spread over zones (maxSkew 1) counting only their own pods. ScheduleAnyway: a
    cluster without zones, or a zone that is down, still gets every replica placed."""
    objects = rendered["prod"]
    workloads = {}
    for name in SERVICES:
        deployment = find(objects, "Deployment", name)
        workloads[name] = (deployment["spec"]["template"]["metadata"]["labels"], deployment["spec"]["template"]["spec"])
    mongodb = find(objects, "StatefulSet", "mongodb")["spec"]["template"]
    workloads["mongodb"] = (mongodb["metadata"]["labels"], mongodb["spec"])
    workloads["rabbitmq"] = broker_pod(objects)
    for name, (labels, pod) in workloads.items():
        constraints = zone_spread(pod, labels)
        assert len(constraints) == 1, f"{name}: one zone spread constraint over its own pods"
        assert constraints[0]["maxSkew"] == 1, name
        assert constraints[0]["whenUnsatisfiable"] == "ScheduleAnyway", name
        others = [other for other, (other_labels, _) in workloads.items()
                  if other != name and selects(constraints[0]["labelSelector"], other_labels)]
        assert not others, f"{name}: its zone spread also counts the pods of {others}"
    for name in SERVICES:  # and still over nodes
        labels, pod = workloads[name]
        assert [c for c in pod["topologySpreadConstraints"]
                if c["topologyKey"] == HOSTNAME and selects(c["labelSelector"], labels)], name


# ------------------------------------------------------------------- image digests

PINNED = re.compile(r"^(?P<repository>[a-z0-9][a-z0-9._/-]*):(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})"
                    r"@sha256:(?P<digest>[0-9a-f]{64})$")


def images(objects: list[dict]) -> set[str]:
    found = {c["image"] for _, pod in pods(objects) for c in containers(pod)}
    found |= {c["spec"]["image"] for c in by_kind(objects, "RabbitmqCluster")}
    return found


def test_third_party_images_are_pinned_by_digest_in_prod(rendered):
    third_party = {image for image in images(rendered["prod"]) if not image.startswith(OWN_IMAGES)}
    unpinned = sorted(image for image in third_party if not PINNED.match(image))
    assert not unpinned, f"third-party images without tag and digest: {unpinned}"
    digests = {}
    for image in third_party:
        match = PINNED.match(image)
        assert match["tag"] != "latest", image
        digests.setdefault(match["repository"], set()).add(match["digest"])
    assert {"mongo", "rabbitmq", "curlimages/curl"} <= set(digests), sorted(digests)
    assert all(len(d) == 1 for d in digests.values()), f"one digest per image: {digests}"
    # Self-check of the pattern: a tag alone, a digest without the tag, a short digest.
    for loose in ("mongo:7.0", "mongo@sha256:" + "a" * 64, "mongo:7.0@sha256:abc"):
        assert not PINNED.match(loose), loose


def test_broker_runs_a_release_whose_peer_discovery_needs_no_api(rendered):
    """The broker's narrowed egress (no Kubernetes API) holds only from RabbitMQ 4.1 on:
    its Kubernetes peer discovery derives the seed node from the pod names."""
    for overlay in OVERLAYS:
        objects = rendered[overlay]
        image = (by_kind(objects, "RabbitmqCluster") or [None])[0]
        image = image["spec"]["image"] if image else find(objects, "StatefulSet", "rabbitmq")[
            "spec"]["template"]["spec"]["containers"][0]["image"]
        version = re.search(r":(\d+)\.(\d+)", image)
        assert version and tuple(map(int, version.groups())) >= (4, 1), f"{overlay}: {image}"


# ------------------------------------------------------------------- broker egress

DNS_PORTS = {("UDP", 53), ("TCP", 53)}
PEER_PORTS = {4369, 25672} | set(range(35672, 35683))


def egress_rules(objects: list[dict], labels: dict) -> list[dict]:
    """The egress rules that apply to pods with these labels (NetworkPolicies add up)."""
    rules = []
    for policy in by_kind(objects, "NetworkPolicy"):
        if selects(policy["spec"]["podSelector"], labels) and "Egress" in policy["spec"].get("policyTypes", []):
            rules += policy["spec"].get("egress", [])
    return rules


def egress_outside_peers_and_dns(rules: list[dict], labels: dict) -> list[str]:
    wrong = []
    for rule in rules:
        ports = rule.get("ports", [])
        if not rule.get("to"):
            wrong.append(f"a rule to anywhere (ports {ports})")
            continue
        if not ports:
            wrong.append(f"a rule on every port to {rule['to']}")
            continue
        for peer in rule["to"]:
            own = set(peer) == {"podSelector"} and selects(peer["podSelector"], labels)
            dns = (peer.get("namespaceSelector", {}).get("matchLabels") == {"kubernetes.io/metadata.name": "kube-system"}
                   and peer.get("podSelector", {}).get("matchLabels") == {"k8s-app": "kube-dns"})
            if own:
                numbers = set()
                for p in ports:
                    numbers |= set(range(p["port"], p.get("endPort", p["port"]) + 1)) if isinstance(p["port"], int) \
                        else {p["port"]}
                if not numbers <= PEER_PORTS:
                    wrong.append(f"to its peers on {sorted(map(str, numbers - PEER_PORTS))}")
            elif dns:
                if {(p.get("protocol", "TCP"), p["port"]) for p in ports} - DNS_PORTS:
                    wrong.append(f"to DNS on {ports}")
            else:
                wrong.append(f"to {peer}")
    return wrong


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_broker_egress_is_its_peers_and_dns_only(rendered, overlay):
    objects = rendered[overlay]
    labels, _ = broker_pod(objects)
    rules = egress_rules(objects, labels)
    assert rules, f"{overlay}: no egress rule selects the broker (DNS at least)"
    assert not egress_outside_peers_and_dns(rules, labels), egress_outside_peers_and_dns(rules, labels)
    # Self-check: the Kubernetes API rule the broker had before, or a rule to anywhere, is caught.
    assert egress_outside_peers_and_dns(rules + [{"ports": [{"protocol": "TCP", "port": 443}]}], labels)
    assert egress_outside_peers_and_dns(rules + [{"to": [{"podSelector": {
        "matchLabels": {"app.kubernetes.io/name": "mongodb"}}}], "ports": [{"port": 27017}]}], labels)


# ------------------------------------------------------------ read-only root filesystem

# Images whose main process writes to /tmp: Python (tempfile), mongo (the entrypoint's
# temporary files and pid file, mongod's Unix socket, mongosh). Init containers that only
# copy a file (mongo's keyfile and tls-pem) need none.
NEEDS_TMP = (OWN_IMAGES, "mongo:")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_container_has_a_read_only_root_filesystem(rendered, overlay):
    failures = []
    for what, pod in pods(rendered[overlay]):
        empty_dirs = {v["name"] for v in pod.get("volumes", []) if "emptyDir" in v}
        for container in containers(pod):
            if (container.get("securityContext") or {}).get("readOnlyRootFilesystem") is not True:
                failures.append(f"{what} {container['name']}: readOnlyRootFilesystem")
            image = container.get("image", "")
            if container in pod.get("containers", []) and image.startswith(NEEDS_TMP) and not any(
                    m["mountPath"] == "/tmp" and m["name"] in empty_dirs and not m.get("readOnly")
                    for m in container.get("volumeMounts", [])):
                failures.append(f"{what} {container['name']}: /tmp from an emptyDir")
    assert not failures, failures
