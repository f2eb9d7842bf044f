#!/usr/bin/env bash
# Where an idle connection's memory goes: runs chatbench-server on the system
# allocator under heaptrack, connects CLIENTS idle clients of one transport,
# and prints the server's peak heap per connection and its largest
# allocation sites (heaptrack_print). Needs heaptrack (Debian: heaptrack).
#
#   scripts/heap-per-connection.sh sse          # or long_poll, websocket
#   CLIENTS=5000 scripts/heap-per-connection.sh websocket
#
# The peak is allocated heap, not resident memory: an 8 KiB buffer of which
# one page was written costs 8 KiB here and about 4 KiB of RSS.
set -euo pipefail
cd "$(dirname "$0")/.."
transport=${1:?usage: $0 short_poll|long_poll|sse|websocket}
clients=${CLIENTS:-2000}
rooms=$(( (clients + 99) / 100 ))
work=$(mktemp -d)
trap 'kill "$srv" 2>/dev/null || true; rm -rf "$work"' EXIT
cargo build --release -p chatbench
cargo build --release -p chatbench-server --features system-allocator --target-dir target/heap
cat > "$work/idle.toml" <<TOML
name = "idle"
transports = ["$transport"]
duration = "3s"
warmup = "1s"
grace = "1s"
[clients]
rooms = $rooms
clients_per_room = 100
senders_per_room = 1
ramp = "3s"
[messages]
rate = 0.1
body_bytes = 64
TOML
heaptrack -o "$work/heap" target/heap/release/chatbench-server --listen 127.0.0.1:0 \
  --max-connections $((clients + rooms + 100)) > "$work/server.out" 2> "$work/heaptrack.log" &
srv=$!
for _ in $(seq 50); do grep -q "listening on" "$work/server.out" 2>/dev/null && break; sleep 0.2; done
url=$(grep -o 'http://[0-9.:]*' "$work/server.out" | head -n 1)
./target/release/chatbench run "$work/idle.toml" --server "$url" --out "$work/out" --quiet --no-report
conns=$(python3 -c "import json,glob; print(json.load(open(glob.glob('$work/out/idle/*/run.json')[0]))['runs'][0]['connections'])")
# heaptrack runs the server as its child: stop the server, heaptrack follows.
pkill -INT -P "$srv" -f chatbench-server || true
wait "$srv" || true
file=$(ls "$work"/heap*.zst)
peak=$(heaptrack_print -f "$file" --print-peaks 0 --print-allocators 0 --print-temporary 0 \
  --print-leaks 0 --print-histogram 0 | grep 'peak heap memory consumption')
echo "$transport: $conns connections; $peak (heaptrack's units)"
heaptrack_print -f "$file" --print-peaks 1 --print-allocators 0 --print-temporary 0 \
  --print-leaks 0 --print-histogram 0 --peak-limit 8 \
  | grep -v '^ *at \|^ *in ' \
  | awk '/consumed over/{print; n=4; next} n>0{print "      " substr($0,1,140); n--}' \
  | grep -v 'alloc5alloc\|Allocator8allocate\|__rdl_alloc\|aligned_malloc\|GlobalAlloc' | head -40
