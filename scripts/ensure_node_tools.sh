#!/usr/bin/env bash
# The Node.js tools the tests run (today: the AsyncAPI CLI, tools/asyncapi): Node.js and npm
# from Debian where they are missing, then the locked packages (npm ci), again only when the
# lock file changed since the last install.
set -euo pipefail

log() { echo "ensure_node_tools: $*"; }

if ! command -v npm >/dev/null 2>&1; then
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
      log "npm is missing and this is not root: install Debian's nodejs and npm"; exit 1
    fi
  fi
  log "installing Debian packages nodejs and npm"
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nodejs npm
fi

for tool in tools/asyncapi; do
  stamp="$tool/node_modules/.installed-stamp"
  if [ ! -f "$stamp" ] || [ "$tool/package-lock.json" -nt "$stamp" ]; then
    log "npm ci in $tool"
    npm ci --prefix "$tool" --no-audit --no-fund --loglevel=error
    touch "$stamp"
  fi
done
