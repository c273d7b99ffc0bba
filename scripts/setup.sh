#!/usr/bin/env bash
# Set up everything hubfleet needs on a Debian 12 machine (root): system packages, the Docker
# engine, and a virtualenv in .venv with hubfleet installed. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
log() { printf '[hubfleet] %s\n' "$*" >&2; }

APT_PACKAGES=(python3-venv python3-pip openssh-client debootstrap ca-certificates git rsync pebble)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  log "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

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
