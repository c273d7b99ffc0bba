#!/usr/bin/env bash
# Set up everything and run the whole test suite: unit tests first (no Docker, no network),
# then the tests against real peers (Docker engine, hosts as containers). Pytest's exit 5
# ("no tests collected") counts as a failure.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
./scripts/ensure-docker.sh

run() {
  local rc=0
  .venv/bin/python -m pytest "$@" || rc=$?
  if [ "$rc" -eq 5 ]; then echo "[hubfleet] no tests were collected for: $*" >&2; return 1; fi
  return "$rc"
}

run tests/unit -q
./scripts/images.sh  # the notebook image and the baked host image, side by side
HUBFLEET_REQUIRE_DOCKER=1 HUBFLEET_REQUIRE_OPENSTACK=1 run tests/integration -q -p no:cacheprovider --durations=25 "$@"
