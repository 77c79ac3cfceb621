"""End to end: a real Prometheus scrapes the running platform and loads the alert rules.

Needs the `platform` session fixture (tests/conftest.py) that runs the services:
  platform.metrics_targets  {"organization": "127.0.0.1:PORT", "member": ..., "gateway": ...}
  platform.gateway_url, platform.admin_token()
Prometheus is the Debian package's binary, on a free loopback port, with a temporary
configuration that scrapes every target once a second and loads the rules extracted
from deploy/monitoring/prometheusrule.yaml. After some traffic (RPCs, a unit registered,
a report-only reconciliation), through Prometheus's HTTP API and the targets' raw
/metrics text, it checks that the series the rules and the dashboard read exist, with
the label names they group, filter and print by.

Every process (service_kit.exposition) exposes no `_created` series and answers a scraper
that asks for OpenMetrics (as Prometheus does) in OpenMetrics, the classic text otherwise.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import time
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

import pytest
import yaml
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families as parse_text

from deploy_helpers import SERVICES, all_alerts, code_metric_labels, rules_and_dashboard_label_uses
from platform_testing.factories import credit_code

# A district no other test uses: the unit registered here moves only its counters.
DISTRICT = "370117"

# Exported by RabbitMQ's rabbitmq_prometheus plugin (port 15692), not by our services:
# checked against the local broker, scraped as servicemonitor-rabbitmq.yaml scrapes it.
EXTERNAL_PREFIXES = ("rabbitmq_",)
# kube-state-metrics' series (PartybuildingServiceAbsent's Deployments) exist only in a
# cluster: the promtool tests cover the rule that reads them.
CLUSTER_ONLY_PREFIXES = ("kube_",)
RABBITMQ_PROMETHEUS_PORT = 15692
SERVICE_MONITOR_RABBITMQ = Path(__file__).resolve().parents[2] / "deploy" / "monitoring" / "servicemonitor-rabbitmq.yaml"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# The Accept header Prometheus 2 sends with every scrape (OpenMetrics first).
PROMETHEUS_ACCEPT = ("application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
                     "text/plain;version=0.0.4;q=0.5,*/*;q=0.1")


def http_get(url: str, timeout: float = 5.0) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.read().decode()


def api(base: str, path: str, **params) -> dict:
    query = ("?" + urllib.parse.urlencode(params)) if params else ""
    body = json.loads(http_get(f"{base}/api/v1/{path}{query}"))
    assert body["status"] == "success", body
    return body["data"]


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
            if last:
                return last
        except Exception as e:  # noqa: BLE001 - keep polling, report the last error
            last = e
        time.sleep(0.5)
    pytest.fail(f"timed out after {timeout}s waiting for {what}; last: {last!r}")


def exposed_families(text: str) -> tuple[set[str], set[str]]:
    """(names declared by # TYPE lines, names that have at least one sample)."""
    declared = set(re.findall(r"^# TYPE ([A-Za-z_:][A-Za-z0-9_:]*) ", text, re.M))
    sampled = set(re.findall(r"^([A-Za-z_:][A-Za-z0-9_:]*)(?:\{| )", text, re.M))
    return declared, sampled


def family_candidates(name: str) -> set[str]:
    """Names under which prometheus_client may declare the family of a series name."""
    candidates = {name}
    for suffix in ("_bucket", "_sum", "_count", "_total", "_created"):
        if name.endswith(suffix):
            candidates.add(name[: -len(suffix)])
    if not name.endswith("_total"):
        candidates.add(name + "_total")
    return candidates


def rabbitmq_plugins(*args: str) -> str:
    return subprocess.run(["rabbitmq-plugins", *args], check=True, capture_output=True, text=True,
                          timeout=120).stdout


@pytest.fixture
def rabbitmq_metrics():
    """The local broker's rabbitmq_prometheus endpoint (Debian's rabbitmq-server ships the
    plugin): enabled for the test if it was not, and disabled again afterwards."""
    enabled_before = "rabbitmq_prometheus" in rabbitmq_plugins("list", "-e", "-m")
    if not enabled_before:
        rabbitmq_plugins("enable", "rabbitmq_prometheus")
    try:
        wait_for(lambda: http_get(f"http://127.0.0.1:{RABBITMQ_PROMETHEUS_PORT}/metrics", timeout=2), 60,
                 "the rabbitmq_prometheus endpoint")
        yield f"127.0.0.1:{RABBITMQ_PROMETHEUS_PORT}"
    finally:
        if not enabled_before:
            rabbitmq_plugins("disable", "rabbitmq_prometheus")


def rabbitmq_scrape_configs(target: str, vhost: str) -> list[dict]:
    """The ServiceMonitor's endpoints as Prometheus scrape jobs, with this run's vhost in
    place of the deployment's."""
    monitor = yaml.safe_load(SERVICE_MONITOR_RABBITMQ.read_text())
    jobs = []
    for index, endpoint in enumerate(monitor["spec"]["endpoints"]):
        params = {k: ([vhost] if k == "vhost" else list(v)) for k, v in (endpoint.get("params") or {}).items()}
        jobs.append({"job_name": f"rabbitmq-{index}", "metrics_path": endpoint["path"], "params": params,
                     "static_configs": [{"targets": [target], "labels": {"platform": "partybuilding"}}]})
    return jobs


@pytest.fixture
def prometheus(prometheus_bin, platform, rules_file, rabbitmq_metrics, tmp_path):
    port = free_port()
    vhost = urllib.parse.unquote(urllib.parse.urlsplit(platform.amqp_uri).path.lstrip("/")) or "/"
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(rules_file)],
        "scrape_configs": [
            {
                "job_name": name,
                "metrics_path": "/metrics",
                # platform="partybuilding": what servicemonitor-services.yaml adds in a cluster.
                "static_configs": [{"targets": [target], "labels": {"platform": "partybuilding"}}],
            }
            for name, target in sorted(platform.metrics_targets.items())
        ] + rabbitmq_scrape_configs(rabbitmq_metrics, vhost),
    }
    config_path = tmp_path / "prometheus.yml"
    config_path.write_text(yaml.safe_dump(config))
    log_path = tmp_path / "prometheus.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [
                prometheus_bin,
                f"--config.file={config_path}",
                f"--storage.tsdb.path={tmp_path / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--log.level=warn",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        def ready():
            if proc.poll() is not None:
                pytest.fail(f"prometheus exited with {proc.returncode}:\n{log_path.read_text()}")
            return http_get(f"{base}/-/ready", timeout=1)
        wait_for(ready, 30, "Prometheus to be ready")
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def make_traffic(platform) -> None:
    """What puts labelled samples in the series the rules and dashboard read: RPC calls
    that succeed and are refused, a command with its event and coverage gauges, and a
    (report-only) reconciliation."""
    with platform.client() as api:
        assert api.get("/units", params={"limit": 1}).status_code == 200
        assert api.get(f"/units/missing-{uuid.uuid4().hex}").status_code == 404
        unit = {"credit_code": credit_code(DISTRICT), "name": f"监控企业{uuid.uuid4().hex[:4]}", "type": "enterprise",
                "industry": "express", "division": f"{DISTRICT}101001"}
        response = api.post("/units", json=unit)
        assert response.status_code == 201, response.text
        response = api.post("/coverage/reconcile", params={"repair": "false"})
        assert response.status_code == 200, response.text


def test_prometheus_scrapes_the_platform_and_the_series_exist(prometheus, platform, used_metric_names):
    targets = dict(platform.metrics_targets)
    make_traffic(platform)
    # One scrape job per deployed service, named like its Service (the ServiceMonitor's
    # job label), so rules and dashboard see the same job/service values as in a cluster.
    assert set(targets) == set(SERVICES), f"platform targets {sorted(targets)} != deployed {SERVICES}"

    # Every target scraped successfully: the services and the broker's two endpoints.
    def all_up():
        active = api(prometheus, "targets")["activeTargets"]
        health = {t["labels"]["job"]: t["health"] for t in active}
        return health if len(health) == len(targets) + 2 and set(health.values()) == {"up"} else None
    wait_for(all_up, 30, f"every target up ({targets} and the broker)")

    up = api(prometheus, "query", query='up{platform="partybuilding", job!~"rabbitmq-.*"}')["result"]
    assert {r["metric"]["job"]: r["value"][1] for r in up} == {job: "1" for job in targets}

    # Raw text: every series our rules and dashboard read is declared by some target
    # (prometheus_client writes # HELP/# TYPE even before a labelled child exists).
    texts = {job: http_get(f"http://{target}/metrics") for job, target in targets.items()}
    declared, sampled = set(), set()
    for text in texts.values():
        d, s = exposed_families(text)
        declared |= d
        sampled |= s
    ours = {n for n in used_metric_names
            if not n.startswith(EXTERNAL_PREFIXES + CLUSTER_ONLY_PREFIXES) and n != "up"}
    missing = sorted(n for n in ours if not family_candidates(n) & declared)
    assert not missing, f"read by rules/dashboard but exposed by no service: {missing}"

    # Prometheus API: every such series that has samples now has been ingested.
    with_samples = sorted(n for n in ours if n in sampled)
    assert with_samples, "no series of the rules/dashboard has samples yet"

    def ingested():
        names = set(api(prometheus, "label/__name__/values"))
        absent = [n for n in with_samples if n not in names]
        return True if not absent else None
    wait_for(ingested, 15, f"Prometheus to ingest {with_samples}")
    ingested_names = set(api(prometheus, "label/__name__/values"))
    assert not sorted(n for n in ingested_names if n.endswith("_created")), "a process exposes _created series"
    for name in with_samples:
        result = api(prometheus, "query", query=f"count({name})")["result"]
        assert result and float(result[0]["value"][1]) > 0, name

    # The label names the rules and the dashboard group, filter and print by exist on the
    # ingested series (job, instance and platform added by the scrape, as in a cluster).
    # Series without samples yet (handler-labelled ones need a retry, a duplicate or a
    # dead letter) are checked against the labels the code declares for them.
    def with_labels():
        names = set(api(prometheus, "label/__name__/values"))
        wanted = {"service_entrypoint_requests_total", "coverage_units", "gateway_events_received_total"}
        return True if wanted <= names else None
    wait_for(with_labels, 20, "labelled samples of RPCs, coverage gauges and received events")
    declared = code_metric_labels()
    live, problems = {}, []
    for name, labels in sorted(rules_and_dashboard_label_uses().items()):
        if name.startswith(EXTERNAL_PREFIXES + CLUSTER_ONLY_PREFIXES):
            continue
        series = api(prometheus, "series", **{"match[]": name})
        if series:
            have = set().union(*(set(s) - {"__name__"} for s in series))
            live[name] = labels
        else:
            have = declared.get(name, set())
        if labels - have:
            problems.append(f"{name}: uses {sorted(labels - have)}, has {sorted(have)}")
    assert not problems, problems
    checked = set().union(*live.values())
    assert {"service", "entrypoint", "kind", "outcome", "district", "le", "route", "status", "source",
            "job", "instance"} <= checked, f"checked on live series only {sorted(checked)}"

    # The rules loaded and evaluate without error against real data.
    def evaluated():
        groups = api(prometheus, "rules")["groups"]
        rules = [r for g in groups for r in g["rules"]]
        done = rules and all(r.get("lastEvaluation", "").startswith("20") for r in rules)
        return groups if done else None
    groups = wait_for(evaluated, 20, "every rule evaluated once")
    rule_names = {r["name"] for g in groups for r in g["rules"]}
    assert rule_names == {a["alert"] for a in all_alerts()}
    errors = [f"{r['name']}: {r.get('lastError')}" for g in groups for r in g["rules"] if r["health"] == "err"]
    assert not errors, errors
    # The broker's series the rules and the dashboard read, from the ServiceMonitor's
    # endpoints: present, with the label names they use, for the platform's own queues.
    external = {name: labels for name, labels in rules_and_dashboard_label_uses().items()
                if name.startswith(EXTERNAL_PREFIXES)}
    assert external, "the rules and dashboard read no broker series: is this test still needed?"

    def broker_series():
        found = {name: api(prometheus, "series", **{"match[]": name}) for name in external}
        return found if all(found.values()) else None
    found = wait_for(broker_series, 30, f"the broker's series {sorted(external)}")
    for name, labels in external.items():
        have = set().union(*(set(s) - {"__name__"} for s in found[name]))
        assert labels <= have, f"{name}: uses {sorted(labels - have)}, has {sorted(have)}"
    consumers = {s["queue"]: s for s in found["rabbitmq_detailed_queue_consumers"]}
    assert "rpc-organization" in consumers and "rpc-member" in consumers, sorted(consumers)

    # A healthy platform is quiet: nothing fires (ServiceDown in particular).
    firing = [a for a in api(prometheus, "alerts")["alerts"] if a["state"] == "firing"]
    assert not firing, firing


def scrape(target: str, accept: str | None = None) -> tuple[str, str | None, str]:
    """(Content-Type, Vary, body) of a target's /metrics, asked with `accept`."""
    request = urllib.request.Request(f"http://{target}/metrics", headers={"Accept": accept} if accept else {})
    with urllib.request.urlopen(request, timeout=5) as response:
        return response.headers["Content-Type"], response.headers.get("Vary"), response.read().decode()


def sample_names(families) -> set[str]:
    return {sample.name for family in families for sample in family.samples}


@pytest.mark.parametrize("accept", [None, "text/plain", PROMETHEUS_ACCEPT, "application/openmetrics-text"],
                         ids=["no-accept", "text-plain", "prometheus", "openmetrics"])
def test_every_process_exposes_no_created_series_and_openmetrics_when_asked(platform, accept):
    """Each process of the platform (chassis services and gateway), asked as curl, as a
    text-only scraper and as Prometheus asks: OpenMetrics (its content type, the `# EOF`
    terminator, a document the strict OpenMetrics parser reads) exactly when Accept asks for
    it; never a `<name>_created` sample; counters there (so their absence means something),
    and every `_ratio` gauge within 0..1."""
    make_traffic(platform)
    targets = dict(platform.metrics_targets)
    assert set(targets) == set(SERVICES)
    openmetrics = accept is not None and "openmetrics" in accept
    for job, target in sorted(targets.items()):
        content_type, vary, body = scrape(target, accept)
        assert vary and "accept" in vary.lower(), f"{job}: the answer depends on Accept but says Vary: {vary!r}"
        if openmetrics:
            assert content_type.startswith("application/openmetrics-text"), (job, content_type)
            assert "version=1.0.0" in content_type, (job, content_type)
            assert body.endswith("# EOF\n"), f"{job}: OpenMetrics without its # EOF line"
            families = list(parse_openmetrics(body))  # raises on anything OpenMetrics forbids
        else:
            assert content_type.startswith("text/plain"), (job, content_type)
            assert "# EOF" not in body, job
            families = list(parse_text(body))
        names = sample_names(families)
        assert [n for n in names if n.endswith("_total")], f"{job}: no counter samples to check"
        created = sorted(n for n in names if n.endswith("_created"))
        assert not created, f"{job} exposes _created series: {created}"
        assert not re.search(r"^# (?:HELP|TYPE) \S+_created ", body, re.M), job
        ratios = [(s.name, s.labels, s.value) for f in families if f.type == "gauge" for s in f.samples
                  if s.name.endswith("_ratio")]
        assert all(0 <= value <= 1 for _, _, value in ratios), ratios
        if job == "organization":
            assert {name for name, _, _ in ratios} >= {"coverage_organization_ratio", "coverage_work_ratio",
                                                       "coverage_standalone_ratio"}, ratios
