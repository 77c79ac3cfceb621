#!/usr/bin/env bash
# The operator console (console/): Node.js and npm from Debian where they are missing, the
# locked npm packages (npm ci, only when the lock file changed since the last install), then
# the build into console/dist (only when a source changed since the last build).
# With --browser also what tests/test_console_browser.py drives: Debian's chromium, and
# fonts-noto-cjk so that Chinese renders as glyphs rather than boxes in its screenshots.
# Idempotent and non-interactive; installs through apt as root or through sudo.
set -euo pipefail
cd "$(dirname "$0")/../console"

log() { echo "ensure_console: $*"; }

SUDO=""
if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then SUDO="sudo"; fi

apt_updated=0
apt_install() {
  if [ "$(id -u)" -ne 0 ] && [ -z "$SUDO" ]; then
    log "not root and no sudo: install Debian's $* by hand"; exit 1
  fi
  log "installing Debian packages $*"
  if [ "$apt_updated" -eq 0 ]; then
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    apt_updated=1
  fi
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@"
}

if ! command -v npm >/dev/null 2>&1; then
  apt_install nodejs npm
fi

if [ "${1:-}" = "--browser" ]; then
  [ -x /usr/bin/chromium ] || apt_install chromium
  dpkg -s fonts-noto-cjk >/dev/null 2>&1 || apt_install fonts-noto-cjk
fi

installed="node_modules/.installed-stamp"
if [ ! -f "$installed" ] || [ package-lock.json -nt "$installed" ]; then
  log "npm ci in console"
  npm ci --no-audit --no-fund --loglevel=error
  touch "$installed"
fi

built="dist/.built-stamp"
sources=(index.html vite.config.js package.json package-lock.json src public)
if [ ! -f "$built" ] || [ -n "$(find "${sources[@]}" -newer "$built" -print -quit 2>/dev/null)" ]; then
  log "building console/dist"
  npm run --silent build -- --logLevel warn
  touch "$built"
fi
