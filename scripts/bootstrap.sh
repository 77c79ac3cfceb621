#!/usr/bin/env bash
# Create the virtual environment, installing Debian's venv support first if it is missing.
set -euo pipefail
python_bin=${1:-python3.11}
venv=${2:-.venv}
if ! command -v "$python_bin" >/dev/null 2>&1; then
  echo "$python_bin was not found: install Python 3.11 (Debian 12: apt-get install python3)" >&2
  exit 1
fi
if [ -x "$venv/bin/python" ]; then
  exit 0
fi
if ! "$python_bin" -m venv "$venv" 2>/dev/null; then
  rm -rf "$venv"
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq && apt-get install -y -qq python3-venv
  else
    echo "Python's venv module is missing: run 'sudo apt-get install python3-venv'" >&2
    exit 1
  fi
  "$python_bin" -m venv "$venv"
fi
