# The image of every nameko service in services/registry.toml; SERVICE names the entry
# (its folder under services/). Build from the repository root:
#   docker build -f services/nameko.Dockerfile --build-arg SERVICE=organization -t partybuilding/organization .
#
# Two stages. The builder turns the kit and the service into wheels, with every dependency
# at the version requirements.txt pins, and installs them into a virtual environment. The
# runtime stage is the slim base with that environment and the registry only: no compiler,
# no source tree, no wheels, no pip cache. (Every pinned dependency ships a wheel, so the
# builder needs no compiler either; one that must be compiled would get build tools in the
# builder stage only.)
FROM python:3.11-slim AS builder
ARG SERVICE
RUN test -n "$SERVICE" || { echo "build with --build-arg SERVICE=<a service of services/registry.toml>" >&2; exit 1; }
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY requirements.txt ./
COPY libs ./libs
COPY services/${SERVICE} ./services/${SERVICE}
# requirements.txt is a constraints file here: the service gets its own dependencies, at
# the pinned versions. ./libs builds only libs/pyproject.toml's packages (kit and
# contracts); the test tooling (libs/testing, platform_testing) is never built. The
# environment is then installed from those wheels alone (--no-index).
RUN pip wheel --wheel-dir /wheels -c requirements.txt ./libs ./services/${SERVICE} \
 && python -m venv --without-pip /opt/venv \
 && pip --python /opt/venv/bin/python install --no-index --find-links /wheels /wheels/*.whl

FROM python:3.11-slim
ARG SERVICE
# The chassis runner finds the service in the registry this image carries.
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PATH=/opt/venv/bin:$PATH \
    SERVICE_REGISTRY=/app/services/registry.toml SERVICE_NAME=${SERVICE} \
    HTTP_PORT=8000 PYTHONWARNINGS=ignore::DeprecationWarning
RUN useradd --uid 10001 --no-create-home --shell /usr/sbin/nologin app
WORKDIR /app
COPY --from=builder /opt/venv /opt/venv
COPY services/registry.toml ./services/registry.toml
# Fail the build, not the pod, on a name the registry does not know as a nameko service
# in this folder.
RUN python -c 'import os; from service_kit.registry import entry; e = entry(os.environ["SERVICE_NAME"]); \
assert e.kind == "nameko" and e.folder == e.name, f"{e.name}: kind {e.kind}, folder {e.folder}"'
USER 10001
EXPOSE 8000
# For `docker run` and compose (Kubernetes probes /healthz itself): the service's own
# /healthz, with the Python the image has (no curl in it).
HEALTHCHECK --interval=15s --timeout=3s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('HTTP_PORT', '8000'), timeout=2)"]
# exec: python is PID 1 and gets SIGTERM (graceful stop). Kubernetes sets the same command.
CMD ["sh", "-c", "exec python -m service_kit.chassis.run \"$SERVICE_NAME\""]
