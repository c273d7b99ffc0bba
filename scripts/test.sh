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

# The images (the notebook image and the baked host image) build while the unit tests run.
images_log=$(mktemp)
./scripts/images.sh >"$images_log" 2>&1 &
images=$!
unit=0
run tests/unit -q -n 2 -p no:cacheprovider || unit=$?
images_rc=0
wait "$images" || images_rc=$?
cat "$images_log"; rm -f "$images_log"
[ "$unit" -eq 0 ] || exit "$unit"
[ "$images_rc" -eq 0 ] || { echo "[hubfleet] scripts/images.sh failed (exit $images_rc)" >&2; exit "$images_rc"; }

# Two modules at a time (most of their time is spent waiting on hosts); modules sharing a course or
# the dev cloud run in one worker, the longest first (tests/integration/conftest.py).
HUBFLEET_REQUIRE_DOCKER=1 HUBFLEET_REQUIRE_OPENSTACK=1 run tests/integration -q -p no:cacheprovider \
  -n "${HUBFLEET_TEST_WORKERS:-2}" --dist loadscope --durations=25 "$@"
