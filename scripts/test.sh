#!/usr/bin/env bash
# Runs one tier of tests (unit or integration) with node's test runner; Node 20 takes no globs itself.
set -euo pipefail
cd "$(dirname "$0")/.."
tier=${1:?usage: scripts/test.sh unit|integration}
shift
shopt -s globstar nullglob
files=(test/"$tier"/**/*.test.ts)
[ ${#files[@]} -gt 0 ] || { echo "no $tier tests found" >&2; exit 1; }
concurrency=4
[ "$tier" = integration ] && concurrency=${NIXPOOL_TEST_CONCURRENCY:-2}
# A file whose tests are done ends even if a helper left a handle open (a test that hangs still fails by its timeout).
exec node --import tsx --test --test-force-exit --test-concurrency="$concurrency" "$@" "${files[@]}"
