#!/usr/bin/env bash
# The CI reproduction: build in release mode, run scenarios/ci.toml, render
# its report, check its [[expect]] rules plus "no message lost or
# duplicated", and guard the figures that do not depend on the machine's
# speed against the committed reference (the newest run folder under
# results/ci/, or REFERENCE=DIR): bytes and requests per message within 2%
# and server memory per idle connection within 30%, either way
# (`chatbench compare --fail-on drift`). Exits non-zero when anything fails,
# naming the figure. A change that means to move a guarded figure commits
# its CI run as the new reference in the same change:
#   cp -r target/ci-results/ci/<run-id> results/ci/
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-target/ci-results}
cargo build --release -p chatbench
./target/release/chatbench run scenarios/ci.toml --out "$OUT"
dir=$(ls -d "$OUT/ci"/*/ | sort | tail -n 1)
echo "run folder: $dir"
./target/release/chatbench check --no-loss "$dir"
reference=${REFERENCE:-$(ls -d results/ci/*/ | sort | tail -n 1)}
echo "reference: $reference"
./target/release/chatbench compare "$reference" "$dir" --fail-on drift
