#!/usr/bin/env bash
# Set up everything and run the main job on the embedded default: the workshop example becomes
# a working JupyterHub on Docker hosts on this machine. Safe to run again (it converges).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
./scripts/ensure-docker.sh
./scripts/images.sh
course=${1:-examples/workshop.yaml}
.venv/bin/hubfleet create "$course"
name=$(.venv/bin/python -c 'import sys,yaml; print(yaml.safe_load(open(sys.argv[1]))["name"])' "$course")
echo
echo "Next:"
echo "  .venv/bin/hubfleet credentials $name   # the password to log in with"
echo "  .venv/bin/hubfleet status $name        # live health check"
echo "  .venv/bin/hubfleet destroy $name       # archive the students' work, then remove it all"
