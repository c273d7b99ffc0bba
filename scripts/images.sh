#!/usr/bin/env bash
# Build hubfleet's images on this machine, the slow parts side by side: the notebook image (then the
# desktop image on it) and the baked host image (the stock image configured by playbooks/bake.yml)
# both start from the base image, which is built once first. Each is cached by content: an unchanged recipe costs seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
log() { printf '[hubfleet] %s\n' "$*" >&2; }

build() { .venv/bin/python -c 'import sys; from hubfleet.providers.docker.images import main; sys.exit(main(sys.argv[1:]))' "$1" >/dev/null; }

started=$(date +%s)
build base
# The desktop environment's image (images/desktop) is the notebook image and a remote desktop.
(build notebook && build desktop) &
notebook=$!
.venv/bin/hubfleet bake docker >/dev/null &
bake=$!
rc=0
wait "$notebook" || rc=$?
wait "$bake" || rc=$?
[ "$rc" -eq 0 ] || { log "building the images failed (exit $rc)"; exit "$rc"; }
log "images ready ($(( $(date +%s) - started )) s)"
