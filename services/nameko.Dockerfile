# The image of every nameko service in services/registry.toml; SERVICE names the entry
# (its folder under services/). Build from the repository root:
#   docker build -f services/nameko.Dockerfile --build-arg SERVICE=organization -t partybuilding/organization .
FROM python:3.11-slim
ARG SERVICE
RUN test -n "$SERVICE" || { echo "build with --build-arg SERVICE=<a service of services/registry.toml>" >&2; exit 1; }
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app
COPY requirements.txt ./
COPY libs ./libs
COPY services/registry.toml ./services/registry.toml
COPY services/${SERVICE} ./services/${SERVICE}
# requirements.txt is a constraints file here: the service gets its own dependencies, at
# the pinned versions. ./libs installs only libs/pyproject.toml's packages (kit and
# contracts); the test tooling (libs/testing, platform_testing) is never installed.
RUN pip install -c requirements.txt ./libs ./services/${SERVICE} \
 && useradd --uid 10001 --no-create-home --shell /usr/sbin/nologin app
# The chassis runner finds the service in the registry this image carries.
ENV SERVICE_REGISTRY=/app/services/registry.toml SERVICE_NAME=${SERVICE} \
    HTTP_PORT=8000 PYTHONWARNINGS=ignore::DeprecationWarning
# Fail the build, not the pod, on a name the registry does not know as a nameko service
# in this folder.
RUN python -c 'import os; from service_kit.registry import entry; e = entry(os.environ["SERVICE_NAME"]); \
assert e.kind == "nameko" and e.folder == e.name, f"{e.name}: kind {e.kind}, folder {e.folder}"'
USER 10001
EXPOSE 8000
# exec: python is PID 1 and gets SIGTERM (graceful stop). Kubernetes sets the same command.
CMD ["sh", "-c", "exec python -m service_kit.chassis.run \"$SERVICE_NAME\""]
