"""Alert rules, their promtool unit tests, runbook links, ServiceMonitors and the dashboard."""

import copy
import json
import re
import shutil
import subprocess

import pytest
import yaml

from deploy_helpers import (
    DASHBOARD, MONITORING, PROMETHEUS_RULE, README, REPO, SERVICES, all_alerts, by_kind, code_metric_labels, dashboard,
    dashboard_exprs, find, grafana_to_promql, kustomize, metric_names, package_dir, prometheus_rules,
    rules_and_dashboard_label_uses,
)

# The alerts the issue asks for, by name.
REQUIRED_ALERTS = {
    "PartybuildingServiceDown",  # a service down
    "PartybuildingServiceAbsent",  # ... or without any target to be down
    "PartybuildingRPCErrorRatioHigh",  # RPC error ratio high
    "PartybuildingRPCLatencyP99High",  # p99 latency high
    "PartybuildingOutboxBacklogGrowing",  # outbox backlog growing
    "PartybuildingOutboxOldestTooOld",  # ... or its oldest message too old
    "PartybuildingDeadLetters",  # dead letters present
    "PartybuildingQueueWithoutConsumers",  # a queue with no consumers
    "PartybuildingCoverageReconciliationDrift",  # coverage reconciliation drift non-zero
}

# Every series the services expose (the platform's metric contract): the dashboard
# and the rules between them must use each one.
SERVICE_METRICS = {
    "service_entrypoint_requests_total", "service_entrypoint_duration_seconds_bucket",
    "gateway_http_requests_total", "gateway_http_request_duration_seconds_bucket",
    "gateway_event_stream_clients", "gateway_events_received_total",
    "outbox_pending_events", "outbox_oldest_pending_age_seconds", "outbox_published_total", "outbox_publish_failures_total",
    "inbox_duplicates_total", "event_handler_retries_total", "dead_letters_total", "dead_letter_queue_messages",
    "coverage_units", "coverage_organization_ratio", "coverage_work_ratio", "coverage_standalone_ratio",
    "coverage_should_establish_units", "coverage_reconciliation_drift", "coverage_reconciliation_runs_total",
    "up",
}


def run(cmd, cwd=None):
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=300)


def test_promtool_check_rules(promtool, rules_file):
    proc = run([promtool, "check", "rules", str(rules_file)])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"SUCCESS: {len(all_alerts())} rules found" in proc.stdout


def test_promtool_unit_tests_pass(promtool, rules_dir):
    proc = run([promtool, "test", "rules", "alerts.test.yaml"], cwd=rules_dir)
    assert proc.returncode == 0, proc.stdout + proc.stderr


# Mutations of the rules the promtool tests must catch: (alert, text in its expr, replacement).
EXPR_MUTATIONS = [
    ("PartybuildingOutboxOldestTooOld", "> 300", "> 3000"),
    # Timers and event handlers are slow by design: the p99 alert is about RPC.
    ("PartybuildingRPCLatencyP99High", '{kind="rpc"}', ""),
    ("PartybuildingQueueWithoutConsumers", "|gateway[.]events", ""),
    ("PartybuildingRPCErrorRatioHigh", ',outcome="error"', ""),
    ("PartybuildingOutboxPublishFailing", "> 0", "> 1"),
    # A report-only run's drift is still there: the alert must say so.
    ("PartybuildingCoverageReconciliationDrift", "by (job, repaired)", "by (job)"),
    # An admin's runs must not hide a stopped timer.
    ("PartybuildingCoverageReconciliationStalled", '{trigger="periodic"}', ""),
    # The services come from what runs: our namespace's Deployments, and our jobs of the
    # last day (a Deployment deleted with its targets); a stranger's target hides nothing.
    ("PartybuildingServiceAbsent", 'namespace="partybuilding"', 'namespace=~".+"'),
    ("PartybuildingServiceAbsent", "[1d]", "[1m]"),
    ("PartybuildingServiceAbsent", 'unless on (job) up{platform="partybuilding"}', "unless on (job) up"),
    # Every replica of appeal reports the same counts: summed, the alert would say twice as many.
    ("PartybuildingAppealsOverdue", "max by", "sum by"),
]


def run_mutated(promtool, rules_dir, tmp_path, alert_name, mutate) -> subprocess.CompletedProcess:
    rules = prometheus_rules()
    matched = 0
    for group in rules["groups"]:
        for rule in group["rules"]:
            if rule.get("alert") == alert_name:
                mutate(rule)
                matched += 1
    assert matched, alert_name
    (tmp_path / "partybuilding.rules.yaml").write_text(yaml.safe_dump(rules))
    # Only the test cases that check this alert: faster, and the failure is theirs.
    tests = yaml.safe_load((rules_dir / "alerts.test.yaml").read_text())
    tests["tests"] = [case for case in tests["tests"]
                      if any(c["alertname"] == alert_name for c in case.get("alert_rule_test", []))]
    (tmp_path / "alerts.test.yaml").write_text(yaml.safe_dump(tests, sort_keys=False))
    return run([promtool, "test", "rules", "alerts.test.yaml"], cwd=tmp_path)


@pytest.mark.parametrize("alert,old,new", EXPR_MUTATIONS, ids=[f"{a}:{o}" for a, o, _ in EXPR_MUTATIONS])
def test_promtool_unit_tests_catch_a_changed_expression(promtool, rules_dir, tmp_path, alert, old, new):
    def mutate(rule):
        assert old in rule["expr"], f"{alert}: {old!r} not in its expr"
        rule["expr"] = rule["expr"].replace(old, new)

    proc = run_mutated(promtool, rules_dir, tmp_path, alert, mutate)
    assert proc.returncode != 0, f"the promtool tests pass with {alert} changed: {old!r} -> {new!r}"
    assert alert in proc.stdout + proc.stderr


@pytest.mark.parametrize("alert", sorted({a["alert"] for a in all_alerts()}))
def test_promtool_unit_tests_catch_a_dropped_for(promtool, rules_dir, tmp_path, alert):
    """Each alert's tests look at it while pending: with `for: 0m` it would fire there."""
    def mutate(rule):
        assert rule.get("for"), f"{alert} has no for: duration"
        rule["for"] = "0m"

    proc = run_mutated(promtool, rules_dir, tmp_path, alert, mutate)
    assert proc.returncode != 0, f"the promtool tests pass with {alert} at for: 0m"
    assert alert in proc.stdout + proc.stderr


def test_promtool_check_rejects_broken_rules(promtool, tmp_path):
    broken = {"groups": [{"name": "x", "rules": [{"alert": "X", "expr": "sum(rate(foo[5m]) by"}]}]}
    (tmp_path / "broken.yaml").write_text(yaml.safe_dump(broken))
    assert run([promtool, "check", "rules", str(tmp_path / "broken.yaml")]).returncode != 0


def test_every_alert_is_unit_tested_firing_and_quiet():
    tests = yaml.safe_load((MONITORING / "tests" / "alerts.test.yaml").read_text())["tests"]
    firing, quiet = set(), set()
    for case in tests:
        for check in case.get("alert_rule_test", []):
            (firing if check.get("exp_alerts") else quiet).add(check["alertname"])
    names = {a["alert"] for a in all_alerts()}
    assert names - firing == set(), "alerts never shown firing"
    assert names - quiet == set(), "alerts never shown staying quiet"


def test_required_alerts_exist_with_actionable_annotations():
    alerts = {a["alert"]: a for a in all_alerts()}
    assert REQUIRED_ALERTS <= set(alerts)
    for name, alert in alerts.items():
        annotations = alert.get("annotations", {})
        assert annotations.get("summary") and annotations.get("description"), name
        assert alert.get("labels", {}).get("severity") in {"critical", "warning"}, name
        assert annotations.get("runbook_url") == f"deploy/README.md#{name.lower()}", name


def github_anchor(heading: str) -> str:
    anchor = heading.strip().lower()
    anchor = re.sub(r"[^\w\- ]", "", anchor)
    return anchor.replace(" ", "-")


def test_runbook_anchors_exist_in_readme():
    headings = [m.group(1) for m in re.finditer(r"^#{1,6}\s+(.+)$", README.read_text(), re.M)]
    anchors = {github_anchor(h) for h in headings}
    for alert in all_alerts():
        anchor = alert["annotations"]["runbook_url"].split("#", 1)[1]
        assert anchor in anchors, f"deploy/README.md has no section for {alert['alert']} (#{anchor})"


def runbook_base(directory=MONITORING) -> str:
    return yaml.safe_load((directory / "runbook-url.yaml").read_text())["data"]["url"]


def with_runbook_base(spec: dict, base: str) -> dict:
    spec = copy.deepcopy(spec)
    for group in spec["groups"]:
        for rule in group["rules"]:
            if "runbook_url" in rule.get("annotations", {}):
                anchor = rule["annotations"]["runbook_url"].split("#", 1)[1]
                rule["annotations"]["runbook_url"] = f"{base}#{anchor}"
    return spec


def test_prometheusrule_is_the_single_source(rendered):
    """The rendered PrometheusRule carries exactly the groups the tests extract, with the
    runbook URL of runbook-url.yaml in front of each anchor."""
    for source in ("monitoring", "prod"):
        rule = find(rendered[source], "PrometheusRule", "partybuilding")
        assert rule["spec"] == with_runbook_base(prometheus_rules(), runbook_base()), source
    assert yaml.safe_load(PROMETHEUS_RULE.read_text())["metadata"]["name"] == "partybuilding"


def test_runbook_url_is_set_in_one_place(kubectl, tmp_path):
    """Operators point runbook_url at their repository by editing runbook-url.yaml (see
    deploy/README.md "Monitoring"): every alert then links to its section there."""
    copy_dir = tmp_path / "monitoring"
    shutil.copytree(MONITORING, copy_dir)
    url = "https://git.example.com/acme/partybuilding/-/blob/main/deploy/README.md"
    config = yaml.safe_load((copy_dir / "runbook-url.yaml").read_text())
    config["data"]["url"] = url
    (copy_dir / "runbook-url.yaml").write_text(yaml.safe_dump(config))
    objects = kustomize(kubectl, copy_dir)
    rule = find(objects, "PrometheusRule", "partybuilding")
    urls = [r["annotations"]["runbook_url"] for g in rule["spec"]["groups"] for r in g["rules"]]
    assert urls == [f"{url}#{a['alert'].lower()}" for a in all_alerts()]
    assert not [o for o in objects if o["metadata"]["name"] == "partybuilding-runbook-url"], "local-config only"
    assert "runbook-url.yaml" in README.read_text(), "deploy/README.md must say how to set it"


def test_service_monitor_covers_every_platform_service(rendered):
    objects = rendered["prod"]
    monitors = by_kind(objects, "ServiceMonitor")
    services = [s for s in by_kind(objects, "Service")
                if s["spec"].get("selector", {}).get("app.kubernetes.io/component") == "service"]
    assert {s["metadata"]["name"] for s in services} == set(SERVICES)
    for service in services:
        labels = service["metadata"]["labels"]
        port_names = {p["name"] for p in service["spec"]["ports"]}
        covering = [m for m in monitors
                    if all(labels.get(k) == v for k, v in m["spec"]["selector"]["matchLabels"].items())
                    and any(e["port"] in port_names and e.get("path", "/metrics") == "/metrics"
                            for e in m["spec"]["endpoints"])]
        assert covering, f"no ServiceMonitor scrapes {service['metadata']['name']}"
        monitor = covering[0]
        assert monitor["spec"]["jobLabel"] == "app.kubernetes.io/name"
        assert labels["app.kubernetes.io/name"] == service["metadata"]["name"], "job label = service name"
        relabel = monitor["spec"]["endpoints"][0]["relabelings"]
        assert {"action": "replace", "targetLabel": "platform", "replacement": "partybuilding"} in relabel


def readme_prometheus_selector() -> dict:
    """The labels the README's kube-prometheus-stack install selects ServiceMonitors and
    PrometheusRules by: the chart's default serviceMonitorSelector/ruleSelector is
    release=<Helm release name> (serviceMonitorSelectorNilUsesHelmValues=true)."""
    command = re.search(r"helm (?:upgrade --install|install) (\S+) prometheus-community/kube-prometheus-stack[^\n]*",
                        README.read_text())
    assert command, "deploy/README.md: no `helm install ... prometheus-community/kube-prometheus-stack` command"
    return {"release": command.group(1)}


@pytest.mark.parametrize("source", ["prod", "monitoring"])
def test_monitors_and_rules_carry_the_label_prometheus_selects(rendered, source):
    """kube-prometheus-stack ignores ServiceMonitors and PrometheusRules without its
    release label: the services would never be scraped and no alert would load."""
    selector = readme_prometheus_selector()
    objects = [o for o in rendered[source] if o["kind"] in ("ServiceMonitor", "PrometheusRule")]
    assert {o["kind"] for o in objects} == {"ServiceMonitor", "PrometheusRule"}
    for obj in objects:
        labels = obj["metadata"].get("labels", {})
        assert all(labels.get(k) == v for k, v in selector.items()), \
            f"{obj['kind']}/{obj['metadata']['name']}: labels {labels} lack {selector}"


def test_rabbitmq_service_monitor_scrapes_per_queue_consumers(rendered):
    monitor = find(rendered["monitoring"], "ServiceMonitor", "rabbitmq")
    detailed = [e for e in monitor["spec"]["endpoints"] if e["path"] == "/metrics/detailed"]
    assert detailed and "queue_consumer_count" in detailed[0]["params"]["family"]
    # Both the dev StatefulSet's Service and the operator's Service expose port "prometheus".
    dev_service = find(rendered["dev"], "Service", "rabbitmq")
    assert dev_service["metadata"]["labels"]["app.kubernetes.io/component"] == "rabbitmq"
    assert "prometheus" in {p["name"] for p in dev_service["spec"]["ports"]}


# Label matchers that would pick a service out by name.
SERVICE_MATCHER = re.compile(r'\b(job|service|deployment|pod|container)\s*(=|!=|=~|!~)\s*"([^"]*)"')


def test_rules_and_dashboard_list_no_service():
    """Alerts and dashboard select services by label (job, service, the namespace's
    Deployments), never by a list of names: a new service needs no edit there."""
    board = dashboard()
    queries = [a["expr"] for a in all_alerts()] + dashboard_exprs()
    queries += [v.get("definition") or "" for v in board["templating"]["list"]]
    named = [(query, value) for query in queries for _, _, value in SERVICE_MATCHER.findall(query)
             if any(re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", value) for name in SERVICES)]
    assert not named, f"services picked by name: {named}"


def test_service_absent_watches_the_namespace_the_services_run_in(rendered):
    """PartybuildingServiceAbsent takes every Deployment of one namespace for a service
    (test_deployed_services checks each is one, scraped as job <its name>)."""
    [alert] = [a for a in all_alerts() if a["alert"] == "PartybuildingServiceAbsent"]
    namespaces = set(re.findall(r'kube_deployment_spec_replicas\{namespace="([^"]+)"\}', alert["expr"]))
    for overlay in ("dev", "prod"):
        deployed = {d["metadata"]["namespace"] for d in by_kind(rendered[overlay], "Deployment")}
        assert namespaces == deployed, f"{overlay}: rule watches {namespaces}, Deployments run in {deployed}"


def test_dashboard_is_provisioned_by_configmap(rendered):
    configmap = find(rendered["monitoring"], "ConfigMap", "partybuilding-grafana-dashboard")
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(configmap["data"]["partybuilding-overview.json"]) == dashboard()


def test_dashboard_covers_red_event_flow_outbox_and_coverage(used_metric_names):
    board = dashboard()
    titles = " ".join(p["title"] for p in board["panels"] if p["type"] == "row").lower()
    for section in ("red per service", "event flow", "outbox and dead letters", "coverage by district"):
        assert section in titles
    assert {v["name"] for v in board["templating"]["list"]} >= {"datasource", "service", "district"}
    missing = SERVICE_METRICS - used_metric_names
    assert not missing, f"exposed but neither alerted on nor charted: {sorted(missing)}"
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"


def test_rules_and_dashboard_use_only_labels_the_code_declares():
    """A rule grouping by a label its metric lacks yields nothing, silently: each label the
    rules and dashboard rely on must be declared on that metric (or added by the scrape)."""
    declared = code_metric_labels()
    problems = []
    for name, labels in sorted(rules_and_dashboard_label_uses().items()):
        # not ours: the broker's, kube-state-metrics', Prometheus' up (job, instance, platform)
        if name.startswith(("rabbitmq_", "kube_")) or name == "up":
            continue
        assert name in declared, f"{name}: read by rules/dashboard, declared by no code"
        if labels - declared[name]:
            problems.append(f"{name}: uses {sorted(labels - declared[name])}, declared {sorted(declared[name])}")
    assert not problems, problems


def test_dashboard_queries_are_valid_promql(promtool, tmp_path):
    """promtool parses every dashboard query (as recording rules, Grafana variables filled in)."""
    exprs = dashboard_exprs()
    assert len(exprs) >= 20
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:query{i}", "expr": grafana_to_promql(e)} for i, e in enumerate(exprs)]}]}
    path = tmp_path / "dashboard-queries.yaml"
    path.write_text(yaml.safe_dump(rules))
    proc = run([promtool, "check", "rules", str(path)])
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_dashboard_json_is_formatted():
    text = DASHBOARD.read_text()
    assert text == json.dumps(json.loads(text), indent=2, ensure_ascii=False) + "\n"


@pytest.mark.parametrize("alert", sorted(a["alert"] for a in all_alerts()))
def test_runbook_section_says_what_to_do(alert):
    text = README.read_text()
    start = text.index(f"### {alert}")
    section = text[start:text.find("\n### ", start + 1)]
    assert len(section) > 300, f"{alert}: runbook section too thin"
    assert "kubectl" in section or "rabbitmqctl" in section or "PromQL" in section, alert


# ---- metric conventions (issue 16, item 14) ----------------------------------------------------

# A gauge whose help says it is a fraction (coverage rates and the like, 0 to 1) must end in
# `_ratio` (https://prometheus.io/docs/practices/naming/).
FRACTION_HELP = re.compile(r"\b(ratio|fraction|rate|proportion|share|percent(age)?)\b|\b0\s*[-–]\s*1\b", re.I)
# The platform's 0-1 gauges, by name: the help check above must keep finding them.
RATIO_GAUGES = {"coverage_organization_ratio", "coverage_work_ratio", "coverage_standalone_ratio"}
# Names before a rename: nothing may read them any more.
RETIRED_NAMES = {"coverage_organization_rate", "coverage_work_rate", "coverage_standalone_rate",
                 "gateway_notifications_created"}


def code_metrics() -> dict:
    """Family name -> the prometheus_client metric object, for every metric the kit's and the
    services' code define at module level (as deploy_helpers.code_metric_labels finds them)."""
    import importlib

    from prometheus_client.metrics import MetricWrapperBase

    found = {}
    for root in [REPO / "libs" / "service_kit"] + [package_dir(name) for name in SERVICES]:
        for path in sorted(root.rglob("*.py")):
            if "prometheus_client import" not in path.read_text():
                continue
            module = importlib.import_module(".".join(path.relative_to(root.parent).with_suffix("").parts))
            for metric in vars(module).values():
                if isinstance(metric, MetricWrapperBase):
                    found[metric._name] = metric
    return found


def test_fraction_gauges_are_named_ratio():
    metrics = code_metrics()
    gauges = {name: m for name, m in metrics.items() if m._type == "gauge"}
    assert RATIO_GAUGES <= set(gauges), f"0-1 gauges missing: {sorted(RATIO_GAUGES - set(gauges))}"
    misnamed = [f"{name}: {m._documentation!r}" for name, m in sorted(gauges.items())
                if FRACTION_HELP.search(m._documentation) and not name.endswith("_ratio")]
    assert not misnamed, f"gauges whose help says they are a fraction, not named _ratio: {misnamed}"
    for name, metric in metrics.items():
        if name.endswith("_ratio"):
            assert metric._type == "gauge", f"{name}: a {metric._type} named _ratio"
            assert FRACTION_HELP.search(metric._documentation), f"{name}: its help does not say it is 0-1"
    assert not RETIRED_NAMES & set(metrics), "a renamed metric is defined again under its old name"


# What OpenMetrics appends to a family's name in its samples (_created: a counter's or a
# histogram's creation time): a family named with one of them reads as another's series.
RESERVED_SUFFIXES = ("_created", "_total", "_count", "_sum", "_bucket", "_gcount", "_gsum", "_info")


def test_no_metric_is_named_with_a_reserved_suffix():
    clashing = sorted(name for name in code_metrics() if name.endswith(RESERVED_SUFFIXES))
    assert not clashing, f"family names ending in a suffix OpenMetrics reserves: {clashing}"


def test_the_help_check_catches_a_fraction_gauge_not_named_ratio():
    """The pattern test_fraction_gauges_are_named_ratio applies, on the old coverage help texts."""
    for help_text in ("Organizational coverage rate (0-1)", "Work coverage rate (0-1)",
                      "Standalone establishment rate (0-1)", "Share of units covered", "Fraction of queues idle"):
        assert FRACTION_HELP.search(help_text), help_text
    for help_text in ("Active units", "Units that should form an organization", "Outbox events not yet confirmed "
                      "by the broker", "Messages waiting in the dead-letter queue", "Connected live-event clients"):
        assert not FRACTION_HELP.search(help_text), help_text


def test_rules_and_dashboard_read_no_retired_or_created_series(used_metric_names):
    """Every series of ours the rules and the dashboard read is one the code exposes (not an old
    name of a renamed metric), and none is a `_created` series: the processes expose none."""
    declared = code_metric_labels()
    ours = {n for n in used_metric_names if not n.startswith(("rabbitmq_", "kube_")) and n != "up"}
    assert not ours & RETIRED_NAMES, sorted(ours & RETIRED_NAMES)
    assert not [n for n in used_metric_names if n.endswith("_created")]
    assert ours - set(declared) == set(), f"read by rules/dashboard, exposed by no code: {sorted(ours - set(declared))}"
    texts = [json.dumps(dashboard()), PROMETHEUS_RULE.read_text(), (MONITORING / "tests" / "alerts.test.yaml").read_text(),
             README.read_text(), (REPO / "README.md").read_text()]
    for old in RETIRED_NAMES:
        assert not [t for t in texts if re.search(rf"\b{old}(?:_total)?\b", t)], f"{old} is still named"


def test_dashboard_shows_ratios_as_percentages():
    """A 0-1 gauge charted with Grafana's unit percentunit (0.5 shows as 50%)."""
    def panels(items):
        for panel in items:
            yield panel
            yield from panels(panel.get("panels", []))

    charted = set()
    for panel in panels(dashboard()["panels"]):
        names = set().union(*(metric_names(grafana_to_promql(t["expr"])) for t in panel.get("targets", [])
                              if t.get("expr")))
        if any(n.endswith("_ratio") for n in names):
            charted |= {n for n in names if n.endswith("_ratio")}
            assert panel["fieldConfig"]["defaults"].get("unit") == "percentunit", panel["title"]
    assert RATIO_GAUGES <= charted, f"not charted: {sorted(RATIO_GAUGES - charted)}"
