"""Helpers shared by the deployment and monitoring tests (fixtures are in conftest.py).

Everything here works offline: kubectl renders the kustomizations, kubernetes-validate
carries the Kubernetes schemas, the CRDs are in deploy/crds, promtool and prometheus
come from the Debian package "prometheus".
"""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from service_kit.registry import load as load_registry

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
K8S = DEPLOY / "k8s"
OVERLAYS = ("dev", "prod")
MONITORING = DEPLOY / "monitoring"
CRDS = DEPLOY / "crds"
PROMETHEUS_RULE = MONITORING / "prometheusrule.yaml"
DASHBOARD = MONITORING / "dashboards" / "partybuilding-overview.json"
README = DEPLOY / "README.md"

# The one list of the platform's services (services/registry.toml): every entry is
# deployed from deploy/k8s/base/services/<name>/ (test_deployed_services.py checks
# both ways).
# The nameko services run `python -m service_kit.chassis.run <name>`, listen on
# HTTP_PORT and consume rpc-<name>; the gateway is the HTTP entry.
REGISTRY = load_registry()
NAMEKO_SERVICES = tuple(entry.name for entry in REGISTRY.values() if entry.kind == "nameko")
SERVICES = tuple(REGISTRY)

ENSURE = "run scripts/ensure_deploy_tools.sh (it installs kubectl, promtool and prometheus)"


def require_tool(name: str) -> str:
    path = shutil.which(name)
    if not path:
        pytest.fail(f"`{name}` is not on PATH: {ENSURE}", pytrace=False)
    return path


def kustomize(kubectl: str, path: Path) -> list[dict]:
    proc = subprocess.run([kubectl, "kustomize", str(path)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"kubectl kustomize {path} failed:\n{proc.stderr}"
    return [doc for doc in yaml.safe_load_all(proc.stdout) if doc]


def render_all(kubectl: str) -> dict[str, list[dict]]:
    """Rendered objects of each overlay, and of deploy/monitoring on its own."""
    out = {name: kustomize(kubectl, K8S / "overlays" / name) for name in OVERLAYS}
    out["monitoring"] = kustomize(kubectl, MONITORING)
    return out


def by_kind(objects: list[dict], kind: str) -> list[dict]:
    return [o for o in objects if o["kind"] == kind]


def selects(selector: dict, labels: dict) -> bool:
    """Whether a Kubernetes label selector (matchLabels, matchExpressions) selects `labels`."""
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expr in selector.get("matchExpressions", []):
        value = labels.get(expr["key"])
        if expr["operator"] == "In" and value not in expr["values"]:
            return False
        if expr["operator"] == "NotIn" and value in expr["values"]:
            return False
        if expr["operator"] == "Exists" and value is None:
            return False
        if expr["operator"] == "DoesNotExist" and value is not None:
            return False
    return True


def find(objects: list[dict], kind: str, name: str) -> dict:
    matches = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert matches, f"no {kind}/{name} in the rendered output"
    return matches[0]


def broker_hosts(objects: list[dict]) -> set[str]:
    """Fully qualified names of the Services that reach RabbitMQ: the dev StatefulSet's
    Service (AMQP port), or the client Service the Cluster Operator names after the
    RabbitmqCluster."""
    namespace = by_kind(objects, "Namespace")[0]["metadata"]["name"]
    names = {c["metadata"]["name"] for c in by_kind(objects, "RabbitmqCluster")}
    for service in by_kind(objects, "Service"):
        if service["spec"].get("selector", {}).get("app.kubernetes.io/name") == "rabbitmq" \
                and {5672, 5671} & {p["port"] for p in service["spec"]["ports"]}:
            names.add(service["metadata"]["name"])
    return {f"{name}.{namespace}.svc.cluster.local" for name in names}


def config_values(objects: list[dict], container: dict) -> dict:
    """What a container reads from its ConfigMaps (envFrom), merged."""
    values = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            values.update(find(objects, "ConfigMap", source["configMapRef"]["name"]).get("data", {}))
    return values


# ----------------------------------------------------------------- code-side facts

def nameko_service_class(name: str):
    """The nameko service class of a registry entry (its `service`), whose nameko `name`
    is the entry's name."""
    cls = REGISTRY[name].service_class()
    assert getattr(cls, "name", None) == name, f"{REGISTRY[name].service}: nameko name {cls.name!r}, registry {name!r}"
    return cls


def package_dir(name: str) -> Path:
    """services/<folder>/<package> of a registry entry: its code."""
    entry = REGISTRY[name]
    return REPO / "services" / entry.folder / entry.package


def nameko_container(name: str):
    """A nameko ServiceContainer of the service (built, not started: no broker needed)."""
    from nameko.containers import ServiceContainer

    return ServiceContainer(nameko_service_class(name), {"AMQP_URI": "amqp://guest:guest@localhost:5672/"})


def nameko_queues(name: str) -> dict:
    """Role -> kombu Queues of a nameko service, exactly as nameko would declare them (its
    extensions set up, not started): "consumed" (RPC and event-handler queues) and
    "reply" (the reply queues of its RpcProxy dependencies, if it calls other services)."""
    from nameko.events import EventHandler
    from nameko.rpc import ReplyListener, Rpc

    container = nameko_container(name)  # extensions hold it by weak reference: keep it
    consumed = {}
    for entrypoint in container.entrypoints:
        if isinstance(entrypoint, EventHandler):
            entrypoint.setup()
            queue = entrypoint.queue
        elif isinstance(entrypoint, Rpc):
            entrypoint.rpc_consumer.setup()
            queue = entrypoint.rpc_consumer.queue
        else:  # timers: no queue
            continue
        consumed[queue.name] = queue
    reply = {}
    for extension in container.subextensions:
        if isinstance(extension, ReplyListener):
            extension.setup()
            reply[extension.queue.name] = extension.queue
    return {"consumed": list(consumed.values()), "reply": list(reply.values())}


def consumed_queues(name: str) -> dict[str, dict]:
    """Queue name -> x-arguments of every queue the service consumes, read from the code.

    nameko services: each entrypoint's queue as nameko declares it (set up, not started).
    The gateway: the queue its declare_topology() returns, declared on a recording channel."""
    if name in NAMEKO_SERVICES:
        return {q.name: dict(q.queue_arguments or {}) for q in nameko_queues(name)["consumed"]}
    if REGISTRY[name].kind == "gateway":
        import asyncio

        try:
            from gateway.event_consumer import declare_topology
        except ImportError:  # the gateway before its event code was split up
            from gateway.events import declare_topology

        class Queue:
            def __init__(self, name: str, arguments: dict):
                self.name, self.arguments = name, arguments

            async def bind(self, *args, **kwargs):
                pass

            async def unbind(self, *args, **kwargs):
                pass

        class RecordingChannel:
            async def declare_queue(self, queue_name, *args, arguments=None, **kwargs):
                return Queue(queue_name, dict(arguments or {}))

            async def declare_exchange(self, *args, **kwargs):
                return object()

        # declare_topology returns the queue the gateway consumes (it declares its dead-letter
        # queue too, which nothing consumes).
        consumed = asyncio.run(declare_topology(RecordingChannel()))
        return {consumed.name: consumed.arguments}
    raise AssertionError(f"consumed_queues: teach me how service {name!r} declares its queues")


# --------------------------------------------------------------------------- CRDs

def strict_schema(schema: dict) -> dict:
    """Kubernetes semantics for a CRD's openAPIV3Schema, in JSON Schema terms.

    The API server drops (and with field validation "Strict", kubectl's default since
    1.27, rejects) fields a structural schema does not declare, unless the node says
    x-kubernetes-preserve-unknown-fields. JSON Schema allows unknown properties by
    default, so declare additionalProperties: false wherever Kubernetes would reject.
    """
    schema = copy.deepcopy(schema)

    def walk(node):
        if isinstance(node, dict):
            if (
                "properties" in node
                and "additionalProperties" not in node
                and not node.get("x-kubernetes-preserve-unknown-fields")
            ):
                node["additionalProperties"] = False
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schema)
    # metadata is validated by the API server itself, not by the CRD schema.
    schema.get("properties", {}).get("metadata", {}).pop("additionalProperties", None)
    return schema


def load_crd_schemas() -> dict[tuple[str, str], dict]:
    """(apiVersion, kind) -> strict JSON schema, from every CRD file in deploy/crds."""
    schemas = {}
    for path in sorted(CRDS.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if not doc or doc.get("kind") != "CustomResourceDefinition":
                continue
            spec = doc["spec"]
            for version in spec["versions"]:
                key = (f"{spec['group']}/{version['name']}", spec["names"]["kind"])
                schemas[key] = strict_schema(version["schema"]["openAPIV3Schema"])
    return schemas


# ---------------------------------------------------------------------- monitoring

def prometheus_rules() -> dict:
    """The plain Prometheus rules file: spec of the PrometheusRule (one source of truth)."""
    doc = yaml.safe_load(PROMETHEUS_RULE.read_text())
    assert doc["kind"] == "PrometheusRule"
    return doc["spec"]


def write_rules_dir(directory: Path) -> Path:
    """A directory with partybuilding.rules.yaml (extracted) and the promtool tests."""
    (directory / "partybuilding.rules.yaml").write_text(yaml.safe_dump(prometheus_rules(), sort_keys=False))
    for test_file in (MONITORING / "tests").glob("*.yaml"):
        shutil.copy(test_file, directory / test_file.name)
    return directory


def all_alerts() -> list[dict]:
    return [rule for group in prometheus_rules()["groups"] for rule in group["rules"] if "alert" in rule]


def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def dashboard_exprs() -> list[str]:
    exprs = []

    def walk(panels):
        for panel in panels:
            exprs.extend(t["expr"] for t in panel.get("targets", []) if t.get("expr"))
            walk(panel.get("panels", []))

    walk(dashboard()["panels"])
    return exprs


# Grafana variables replaced by values Prometheus accepts, to check dashboard queries.
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$__interval": "1m", "$service": ".*", "$district": ".*"}


def grafana_to_promql(expr: str) -> str:
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    return expr


_KEYWORDS = {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset", "inf", "nan"}


def metric_names(expr: str) -> set[str]:
    """Metric names a PromQL expression reads (a small tokenizer, enough for ours)."""
    expr = grafana_to_promql(expr)
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # string literals
    expr = re.sub(r"\{[^}]*\}", " ", expr)  # label matchers
    expr = re.sub(r"\[[^\]]*\]", " ", expr)  # range selectors
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", expr)
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", expr):
        token = match.group(0)
        rest = expr[match.end():].lstrip()
        if rest.startswith("("):  # a function or aggregation
            continue
        if token.lower() in _KEYWORDS:
            continue
        if re.fullmatch(r"\d+[smhdwy]", token):
            continue
        names.add(token)
    return names


def rules_and_dashboard_metric_names() -> set[str]:
    """Every metric the alert rules and the dashboard read."""
    names = set()
    for alert in all_alerts():
        names |= metric_names(alert["expr"])
    for expr in dashboard_exprs():
        names |= metric_names(expr)
    return names


# ------------------------------------------------------------------- label names

# Labels Prometheus itself adds to every scraped series (job, instance) and the one the
# ServiceMonitor adds (platform): present whatever the code declares.
TARGET_LABELS = {"job", "instance", "platform"}


def label_uses(expr: str) -> dict[str, set[str]]:
    """Metric -> label names a PromQL expression needs it to have: its own matchers, and
    the grouping labels (by/without/on/ignoring) of the expression (`le` only for
    histogram buckets). Small, like metric_names(): enough for our expressions, which
    combine only series that share their labels."""
    expr = grafana_to_promql(expr)
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    uses = {name: set() for name in metric_names(expr)}
    for match in re.finditer(r"([A-Za-z_:][A-Za-z0-9_:]*)\s*\{([^}]*)\}", expr):
        if match.group(1) in uses:
            uses[match.group(1)] |= set(re.findall(r"([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)", match.group(2)))
    grouping = set()
    for match in re.finditer(r"\b(?:by|without|on|ignoring)\s*\(([^)]*)\)", expr):
        grouping |= {label.strip() for label in match.group(1).split(",") if label.strip()}
    for name in uses:
        uses[name] |= {label for label in grouping if label != "le" or name.endswith("_bucket")}
    return uses


def rules_and_dashboard_label_uses() -> dict[str, set[str]]:
    """Metric -> every label name the alert rules (expressions and the $labels their
    annotations print) and the dashboard (queries and template variables) rely on."""
    uses: dict[str, set[str]] = {}

    def add(found: dict[str, set[str]]):
        for name, labels in found.items():
            uses.setdefault(name, set()).update(labels)

    for alert in all_alerts():
        found = label_uses(alert["expr"])
        printed = set(re.findall(r"\$labels\.([A-Za-z_][A-Za-z0-9_]*)", json.dumps(alert.get("annotations", {}))))
        add({name: labels | printed for name, labels in found.items()})
    for expr in dashboard_exprs():
        add(label_uses(expr))
    for variable in dashboard()["templating"]["list"]:
        query = variable.get("definition") or ""
        for name, label in re.findall(r"label_values\(\s*([A-Za-z_:][A-Za-z0-9_:]*)\s*,\s*([A-Za-z_]+)\s*\)", query):
            add({name: {label}})
    return uses


def code_metric_labels() -> dict[str, set[str]]:
    """Series name -> label names, as the services' and the kit's code declare them
    (prometheus_client metrics defined at module level), with the target labels."""
    import importlib

    from prometheus_client.metrics import MetricWrapperBase

    roots = [REPO / "libs" / "service_kit"] + [package_dir(name) for name in SERVICES]
    declared = {}
    for root in roots:
        for path in sorted(root.rglob("*.py")):
            if "prometheus_client import" not in path.read_text():
                continue
            module = importlib.import_module(".".join(path.relative_to(root.parent).with_suffix("").parts))
            for metric in vars(module).values():
                if not isinstance(metric, MetricWrapperBase):
                    continue
                labels = set(metric._labelnames) | TARGET_LABELS
                if metric._type == "counter":
                    declared[metric._name + "_total"] = labels
                elif metric._type == "histogram":
                    declared[metric._name + "_bucket"] = labels | {"le"}
                    declared[metric._name + "_sum"] = declared[metric._name + "_count"] = labels
                else:
                    declared[metric._name] = labels
    return declared
