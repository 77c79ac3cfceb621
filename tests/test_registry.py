"""services/registry.toml is the one list of services: everything that starts, tests, deploys
or benchmarks services follows it, and a service missing from any of them fails here."""

import re
import subprocess
from pathlib import Path

import pytest

from service_kit import registry

ROOT = Path(__file__).resolve().parent.parent
SERVICES = registry.load()


def test_every_service_folder_is_registered_and_every_entry_has_its_folder():
    folders = {p.parent.name for p in (ROOT / "services").glob("*/pyproject.toml")}
    assert folders == {entry.folder for entry in SERVICES.values()}
    for entry in SERVICES.values():
        assert (ROOT / "services" / entry.folder / entry.package).is_dir(), entry.name
        assert (ROOT / "services" / entry.folder / "README.md").is_file(), f"{entry.name} has no README"


def test_ports_and_databases_are_distinct():
    for attribute in ("http_port", "port_env", "database", "database_env"):
        values = [getattr(entry, attribute) for entry in SERVICES.values()]
        assert len(values) == len(set(values)), attribute


@pytest.mark.parametrize("entry", registry.nameko_services(), ids=lambda e: e.name)
def test_each_nameko_service_is_a_chassis_service_named_as_registered(entry):
    from service_kit.chassis.base import ChassisService
    from service_kit.chassis.providers import FieldCipherProvider

    service_cls = entry.service_class()
    assert issubclass(service_cls, ChassisService) and service_cls.name == entry.name
    has_cipher = any(isinstance(v, FieldCipherProvider) for v in vars(service_cls).values())
    assert has_cipher == entry.needs_field_key, "needs_field_key must say whether it holds personal data"
    for source in entry.consumes:
        assert source in SERVICES, f"{entry.name} consumes the events of an unknown service {source}"


def test_the_gateway_consumes_and_calls_every_nameko_service():
    from platform_contracts.events import SOURCES

    gateway = SERVICES["gateway"]
    nameko = {entry.name for entry in registry.nameko_services()}
    assert set(gateway.calls) == nameko
    assert set(gateway.consumes) == nameko
    assert nameko <= set(SOURCES), "a service's events belong in the contract's catalogue"


def test_make_installs_and_pytest_collects_every_service():
    dry_run = subprocess.run(["make", "-n", "install", "-B"], cwd=ROOT, capture_output=True, text=True).stdout
    testpaths = re.search(r"^testpaths\s*=\s*(.+)$", (ROOT / "pytest.ini").read_text(), re.M).group(1).split()
    for entry in SERVICES.values():
        assert f"-e services/{entry.folder}/" in dry_run, f"make install misses {entry.name}"
        tests = ROOT / "services" / entry.folder / "tests"
        assert any(tests.is_relative_to(ROOT / path) for path in testpaths), f"pytest does not collect {tests}"


def test_the_running_platform_serves_every_registered_service(platform):
    """`make run` (scripts/run_platform.py, started by the harness) starts each of them."""
    import httpx

    assert set(platform.metrics_targets) == set(SERVICES)
    for name, target in platform.metrics_targets.items():
        assert httpx.get(f"http://{target}/readyz", timeout=5).status_code == 200, name
