#!/usr/bin/env bash
# Reruns every scenario and writes new run folders under results/ (or $OUT).
# Committed run folders are never touched: each run gets a folder of its own.
#
#   scripts/reproduce.sh                 # every scenario
#   scripts/reproduce.sh quick kaazing   # only these
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-results}
cargo build --release -p chatbench
names=("$@")
if [ ${#names[@]} -eq 0 ]; then
  names=(quick ci group-chat live-stream idle-lurkers poll-interval-sweep clients-sweep kaazing fan-out many-clients kaazing-10k kaazing-100k scale-sweep rtt-sweep mobile flaky-mobile break-even-bytes break-even-requests protocols kaazing-protocols)
fi
status=0
for name in "${names[@]}"; do
  echo "== $name"
  if ! ./target/release/chatbench run "scenarios/$name.toml" --out "$OUT"; then
    echo "!! $name failed" >&2
    status=1
    continue
  fi
  dir=$(ls -d "$OUT/$name"/*/ | sort | tail -n 1)
  ./target/release/chatbench check "$dir" || status=1
done
exit $status
