"""The images install what the code needs and nothing else: requirements.txt pins the
versions (a constraints file, `pip install -c`), the packages' own dependencies decide
what goes in. `-r requirements.txt` would put the test tools (pytest, secantusdb,
kubernetes-validate, ...) into production images."""

import ast
import importlib.metadata as metadata
import re
import sys

import pytest
from packaging.requirements import Requirement

from deploy_helpers import NAMEKO_SERVICES, REPO, SERVICES

TEST_ONLY = {"pytest", "secantusdb", "kubernetes-validate", "httpx", "pytest-asyncio", "pytest-timeout"}


def pip_installs(dockerfile: str) -> list[list[str]]:
    text = dockerfile.replace("\\\n", " ")
    return [line.split("&&")[0].split() for line in re.findall(r"pip install ([^\n]*)", text)]


@pytest.mark.parametrize("name", SERVICES)
def test_image_uses_requirements_as_constraints_only(name):
    dockerfile = (REPO / "services" / name / "Dockerfile").read_text()
    installs = pip_installs(dockerfile)
    assert installs, f"{name}: no pip install in its Dockerfile"
    requirements = (REPO / "requirements.txt").read_text().lower()
    assert all(p in requirements for p in TEST_ONLY), "TEST_ONLY lists what requirements.txt holds for tests"
    for args in installs:
        assert "-r" not in args and "--requirement" not in args and not any(a.startswith("-r") for a in args), \
            f"{name}: `pip install {' '.join(args)}` installs every test tool of requirements.txt"
        assert ["-c", "requirements.txt"] == args[:2], f"{name}: pin versions with -c requirements.txt"
        assert set(args[2:]) == {"./libs", f"./services/{name}"}, f"{name}: only the kit and the service"


def _closure(distribution: str) -> set[str]:
    """The distribution and everything it requires, transitively (as installed here)."""
    seen, todo = set(), [distribution]
    while todo:
        name = todo.pop()
        key = re.sub(r"[-_.]+", "-", name).lower()
        if key in seen:
            continue
        seen.add(key)
        for spec in metadata.requires(name) or []:
            requirement = Requirement(spec)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                todo.append(requirement.name)
    return seen


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
    libs = REPO / "libs"
    code = [REPO / "services" / name / name, libs / "platform_contracts"]
    if name in NAMEKO_SERVICES:
        code.append(libs / "service_kit")
    local = {"platform_contracts", "service_kit", *SERVICES}
    imported = _imports(*code) - set(sys.stdlib_module_names) - local
    provided = _closure(metadata.distribution(f"partybuilding-{name}").metadata["Name"])
    by_module = metadata.packages_distributions()
    missing = sorted(m for m in imported
                     if not {re.sub(r"[-_.]+", "-", d).lower() for d in by_module.get(m, [])} & provided)
    assert not missing, f"{name}: imports {missing}, which its image would not install"
    assert not {re.sub(r"[-_.]+", "-", t) for t in TEST_ONLY} & provided, f"{name}: a test tool is a dependency"
