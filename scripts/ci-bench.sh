#!/usr/bin/env bash
# The CI reproduction: build in release mode, run scenarios/ci.toml, render
# its report, and check its [[expect]] rules plus "no message lost or
# duplicated". Exits non-zero when anything fails.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-target/ci-results}
cargo build --release -p chatbench
./target/release/chatbench run scenarios/ci.toml --out "$OUT"
dir=$(ls -d "$OUT/ci"/*/ | sort | tail -n 1)
echo "run folder: $dir"
./target/release/chatbench check --no-loss "$dir"
