#!/usr/bin/env bash
# Set up what hubfleet needs on a Debian 12 machine (root): system packages and a virtualenv in
# .venv with hubfleet installed (scripts/ensure-docker.sh does the Docker engine). Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
log() { printf '[hubfleet] %s\n' "$*" >&2; }

APT_PACKAGES=(python3-venv python3-pip openssh-client debootstrap ca-certificates git rsync pebble)
ensure_debian_packages "${APT_PACKAGES[@]}"

PY=${HUBFLEET_PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  log "creating the virtualenv .venv"
  "$PY" -m venv .venv
fi
stamp=.venv/.hubfleet-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  log "installing hubfleet and its dependencies into .venv"
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -e ".[test,openstack,portal]"
  touch "$stamp"
fi
log "ready: .venv/bin/hubfleet"
