"""The images install what the code needs and nothing else: requirements.txt pins the
versions (a constraints file, `pip install -c`), the packages' own dependencies decide
what goes in. `-r requirements.txt` would put the test tools (pytest, secantusdb,
kubernetes-validate, ...) into production images, and so would installing the test
tooling's own distribution (libs/testing, package platform_testing).

Every nameko service is built from one Dockerfile, services/nameko.Dockerfile, with
`--build-arg SERVICE=<name>`; the gateway keeps its own services/gateway/Dockerfile."""

import ast
import importlib.metadata as metadata
import re
import sys
import tomllib

import pytest
from packaging.requirements import Requirement

from deploy_helpers import NAMEKO_SERVICES, REGISTRY, REPO, SERVICES, package_dir

TEST_ONLY = {"pytest", "secantusdb", "kubernetes-validate", "httpx", "pytest-asyncio", "pytest-timeout"}
NAMEKO_DOCKERFILE = REPO / "services" / "nameko.Dockerfile"
LIBS = REPO / "libs"
TESTING = LIBS / "testing"  # the test tooling's distribution (package platform_testing)
TESTING_PACKAGE = "platform_testing"


def dockerfile(name: str) -> str:
    """The Dockerfile a service's image is built from, with its build argument filled in."""
    if REGISTRY[name].kind == "nameko":
        return re.sub(r"\$\{?SERVICE\}?(?![A-Z_])", name, NAMEKO_DOCKERFILE.read_text())
    return (REPO / "services" / REGISTRY[name].folder / "Dockerfile").read_text()


def pip_installs(text: str) -> list[list[str]]:
    text = text.replace("\\\n", " ")
    return [line.split("&&")[0].split() for line in re.findall(r"pip install ([^\n]*)", text)]


def the_test_kits_distribution() -> str | None:
    path = TESTING / "pyproject.toml"
    return tomllib.loads(path.read_text())["project"]["name"] if path.exists() else None


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@pytest.mark.parametrize("name", SERVICES)
def test_image_uses_requirements_as_constraints_only(name):
    folder = REGISTRY[name].folder
    installs = pip_installs(dockerfile(name))
    assert installs, f"{name}: no pip install in its Dockerfile"
    requirements = (REPO / "requirements.txt").read_text().lower()
    assert all(p in requirements for p in TEST_ONLY), "TEST_ONLY lists what requirements.txt holds for tests"
    for args in installs:
        assert "-r" not in args and "--requirement" not in args and not any(a.startswith("-r") for a in args), \
            f"{name}: `pip install {' '.join(args)}` installs every test tool of requirements.txt"
        assert ["-c", "requirements.txt"] == args[:2], f"{name}: pin versions with -c requirements.txt"
        assert set(args[2:]) == {"./libs", f"./services/{folder}"}, f"{name}: only the kit and the service"


def test_nameko_images_share_one_dockerfile():
    """No nameko service has a Dockerfile of its own; the shared one runs the chassis
    runner on the registry it copies, as uid 10001 (the manifests' runAsUser)."""
    for name in NAMEKO_SERVICES:
        assert not (REPO / "services" / REGISTRY[name].folder / "Dockerfile").exists(), \
            f"{name}: built from services/nameko.Dockerfile, not a Dockerfile of its own"
    text = NAMEKO_DOCKERFILE.read_text()
    assert re.search(r"^ARG SERVICE$", text, re.M)
    copies = [line.split()[1:] for line in text.splitlines() if line.startswith("COPY ")]
    assert copies == [["requirements.txt", "./"], ["libs", "./libs"],
                      ["services/registry.toml", "./services/registry.toml"],
                      ["services/${SERVICE}", "./services/${SERVICE}"]], copies
    assert "SERVICE_REGISTRY=/app/services/registry.toml" in text
    assert re.search(r"^USER 10001$", text, re.M) and "useradd --uid 10001" in text
    assert 'exec python -m service_kit.chassis.run \\"$SERVICE_NAME\\"' in text
    assert "SERVICE_NAME=${SERVICE}" in text
    # The shared Dockerfile copies services/$SERVICE: a nameko entry's folder is its name.
    for name in NAMEKO_SERVICES:
        assert REGISTRY[name].folder == name, \
            f"{name}: folder {REGISTRY[name].folder!r}, but nameko.Dockerfile copies services/{name}"


def test_images_never_install_the_test_tooling():
    """`pip install ./libs` installs libs/pyproject.toml's packages: the kit and the
    contracts, never platform_testing (libs/testing is a distribution of its own, the
    pytest plugin of the tests), and no image installs libs/testing itself."""
    from setuptools import find_namespace_packages

    config = tomllib.loads((LIBS / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert isinstance(config.get("packages"), dict) and "find" in config["packages"], \
        "libs/pyproject.toml: [tool.setuptools.packages.find] (include patterns) decides what ./libs installs"
    find = config["packages"]["find"]
    shipped = find_namespace_packages(where=str(LIBS / find.get("where", ["."])[0]),
                                      include=find.get("include", ["*"]), exclude=find.get("exclude", []))
    assert {p.split(".")[0] for p in shipped} == {"platform_contracts", "service_kit"}, shipped
    for name in SERVICES:
        for args in pip_installs(dockerfile(name)):
            assert not [a for a in args if "testing" in a], f"{name}: installs the test tooling: {args}"
    distribution = the_test_kits_distribution()
    if distribution:  # libs/testing exists: a separate distribution, never a dependency of a service
        assert normalized(distribution) != normalized("partybuilding-libs")
        for name in SERVICES:
            assert normalized(distribution) not in _closure(_service_distribution(name)), name


def _local_requirements() -> dict[str, list[str]]:
    """The repository's own distributions (libs, each service) -> their declared
    dependencies, from the pyproject.toml an image installs (installed metadata may be
    older than the source)."""
    found = {}
    pyprojects = [LIBS / "pyproject.toml"]
    pyprojects += [REPO / "services" / entry.folder / "pyproject.toml" for entry in REGISTRY.values()]
    for pyproject in pyprojects:
        project = tomllib.loads(pyproject.read_text())["project"]
        found[normalized(project["name"])] = project.get("dependencies", [])
    return found


def _closure(distribution: str) -> set[str]:
    """The distribution and everything it requires, transitively (local distributions as
    their pyproject.toml declares, the others as installed here)."""
    local = _local_requirements()
    seen, todo = set(), [distribution]
    while todo:
        name = todo.pop()
        key = normalized(name)
        if key in seen:
            continue
        seen.add(key)
        for spec in local[key] if key in local else metadata.requires(name) or []:
            requirement = Requirement(spec)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                todo.append(requirement.name)
    return seen


def _service_distribution(name: str) -> str:
    pyproject = REPO / "services" / REGISTRY[name].folder / "pyproject.toml"
    return tomllib.loads(pyproject.read_text())["project"]["name"]


def _imports(*directories) -> set[str]:
    found = set()
    for directory in directories:
        for path in directory.rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    found |= {alias.name.split(".")[0] for alias in node.names}
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize("name", SERVICES)
def test_image_dependencies_cover_what_the_code_imports(name):
    """With -c, only the declared dependencies are installed: each third-party module the
    service (and the kit code it ships) imports must come from them."""
    code = [package_dir(name), LIBS / "platform_contracts"]
    if name in NAMEKO_SERVICES:
        code.append(LIBS / "service_kit")
    local = {"platform_contracts", "service_kit", *(entry.package for entry in REGISTRY.values())}
    imported = _imports(*code) - set(sys.stdlib_module_names) - local
    provided = _closure(_service_distribution(name))
    by_module = metadata.packages_distributions()
    missing = sorted(m for m in imported
                     if not {normalized(d) for d in by_module.get(m, [])} & provided)
    assert not missing, f"{name}: imports {missing}, which its image would not install"
    assert not {normalized(t) for t in TEST_ONLY} & provided, f"{name}: a test tool is a dependency"
    assert TESTING_PACKAGE not in imported, f"{name}: imports the test tooling"
