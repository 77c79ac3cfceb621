"""The kit in two halves: what needs nameko and eventlet is in service_kit.chassis; the rest
(store, outbox relay, topology, personal data, tracing, registry, leases...) imports neither,
so the gateway, the scripts and the tests use it without them."""

import pkgutil
import re
import subprocess
import sys
from pathlib import Path

import service_kit

PLAIN_MODULES = sorted(f"service_kit.{m.name}" for m in pkgutil.iter_modules([str(Path(service_kit.__file__).parent)])
                       if m.name != "chassis")


def test_the_plain_half_imports_neither_nameko_nor_eventlet():
    assert "service_kit.store" in PLAIN_MODULES and "service_kit.outbox" in PLAIN_MODULES
    probe = (f"import sys\nfor module in {PLAIN_MODULES!r}:\n    __import__(module)\n"
             "print(sorted(m for m in sys.modules if m.split('.')[0] in ('nameko', 'eventlet')))")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]", result.stdout


def test_the_gateway_uses_only_the_plain_half():
    gateway = Path(__file__).resolve().parents[2] / "services" / "gateway" / "gateway"
    forbidden = re.compile(r"^\s*(from|import)\s+(nameko|eventlet|service_kit\.chassis)\b", re.M)
    for source in gateway.rglob("*.py"):
        assert not forbidden.search(source.read_text()), source
