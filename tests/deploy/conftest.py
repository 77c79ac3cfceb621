"""Fixtures for the deployment and monitoring tests (helpers: deploy_helpers.py).

A missing tool is a failure, never a skip: run scripts/ensure_deploy_tools.sh.
"""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import deploy_helpers as h  # noqa: E402


@pytest.fixture(scope="session")
def kubectl() -> str:
    return h.require_tool("kubectl")


@pytest.fixture(scope="session")
def promtool() -> str:
    return h.require_tool("promtool")


@pytest.fixture(scope="session")
def prometheus_bin() -> str:
    return h.require_tool("prometheus")


@pytest.fixture(scope="session")
def rendered(kubectl) -> dict:
    """Rendered objects of each overlay, and of deploy/monitoring on its own."""
    return h.render_all(kubectl)


@pytest.fixture(scope="session")
def crd_schemas() -> dict:
    """(apiVersion, kind) -> strict JSON schema, from every CRD file in deploy/crds."""
    return h.load_crd_schemas()


@pytest.fixture(scope="session")
def rules_dir(tmp_path_factory) -> Path:
    """partybuilding.rules.yaml extracted from the PrometheusRule, beside the promtool tests."""
    return h.write_rules_dir(tmp_path_factory.mktemp("rules"))


@pytest.fixture(scope="session")
def rules_file(rules_dir) -> Path:
    return rules_dir / "partybuilding.rules.yaml"


@pytest.fixture(scope="session")
def used_metric_names() -> set:
    """Every metric the alert rules and the dashboard read."""
    return h.rules_and_dashboard_metric_names()
