"""The one list of the platform's services (services/registry.toml), as data.

Everything that needs to know which services exist reads it from here: the chassis runner,
`make run`, the test harness, the benchmarks and the deploy tests. No nameko here: the
gateway and the scripts read it too."""

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

REGISTRY_ENV = "SERVICE_REGISTRY"
# In a checkout (and an editable install) the registry sits beside the services; an image
# copies it and names it in SERVICE_REGISTRY.
DEFAULT_PATH = Path(__file__).resolve().parents[2] / "services" / "registry.toml"
KINDS = ("nameko", "gateway")


@dataclass(frozen=True)
class ServiceEntry:
    name: str
    kind: str
    folder: str
    package: str
    http_port: int
    port_env: str
    database: str
    service: str | None = None
    consumes: tuple[str, ...] = ()
    calls: tuple[str, ...] = ()
    needs_field_key: bool = False
    defaults: dict[str, str] = field(default_factory=dict)

    @property
    def env_prefix(self) -> str:
        """How the service's name appears in variable names: service-station -> SERVICE_STATION."""
        return self.name.upper().replace("-", "_")

    @property
    def database_env(self) -> str:
        return f"MONGODB_{self.env_prefix}_DB"

    @property
    def argv(self) -> list[str]:
        """How a process of it is started (after the Python interpreter)."""
        if self.kind == "gateway":
            return ["-m", "gateway"]
        return ["-m", "service_kit.chassis.run", self.name]

    def service_class(self):
        """The nameko service class (imports the service's package)."""
        import importlib

        module, _, attribute = (self.service or "").partition(":")
        return getattr(importlib.import_module(module), attribute)


def registry_path() -> Path:
    return Path(os.environ.get(REGISTRY_ENV) or DEFAULT_PATH)


def load(path: Path | None = None) -> dict[str, ServiceEntry]:
    """Every service, in start order (as listed), by name; ValueError naming a bad entry."""
    raw = tomllib.loads((path or registry_path()).read_text("utf-8")).get("services", {})
    entries = {}
    for name, values in raw.items():
        try:
            entry = ServiceEntry(name=name, **{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})
        except TypeError as exc:
            raise ValueError(f"services/registry.toml: [services.{name}]: {exc}") from None
        if entry.kind not in KINDS:
            raise ValueError(f"services/registry.toml: [services.{name}]: kind must be one of {KINDS}")
        if entry.kind == "nameko" and not entry.service:
            raise ValueError(f"services/registry.toml: [services.{name}]: a nameko service names its class")
        entries[name] = entry
    return entries


def entry(name: str) -> ServiceEntry:
    services = load()
    if name not in services:
        raise SystemExit(f"no service {name!r} in {registry_path()}; known: {', '.join(services)}")
    return services[name]


def nameko_services() -> list[ServiceEntry]:
    return [e for e in load().values() if e.kind == "nameko"]


def callers_of(name: str, services: dict[str, ServiceEntry] | None = None) -> list[str]:
    """Whose signed actors service `name` takes (service_kit.actor_tokens): the gateway's, and
    those of the services the registry says call it. A service outside the registry (a test's)
    takes the gateway's only."""
    services = load() if services is None else services
    gateways = [e.name for e in services.values() if e.kind == "gateway"] or ["gateway"]
    return gateways + [e.name for e in services.values() if name in e.calls and e.kind != "gateway"]
