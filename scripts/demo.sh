#!/usr/bin/env bash
# The main job on a fresh Debian 12 machine (as root): install what is missing, start a local
# pool of real builder hosts, and offload a real Nix build to them. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
[ -x node_modules/.bin/tsc ] || npm ci --no-audit --no-fund
npm run --silent build
nixpool() { node dist/cli/main.js "$@"; }
if ! nixpool local status --json | grep -q '"up": true'; then
  nixpool local up --builders 2 --jobs 2
fi
nixpool builders
echo
# A fresh seed makes fresh store paths, so every run really builds instead of reusing results.
nixpool build examples/graph.nix --arg n 12 --argstr seed "$(date +%s%N)" --out-link result --timeline build.svg
echo
echo "Contents of ./result:"
cat result
echo
echo "The build as a Gantt chart: ./build.svg (open it in a browser)."
echo "Stop the pool with: node dist/cli/main.js local down"
