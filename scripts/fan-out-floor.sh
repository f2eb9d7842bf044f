#!/usr/bin/env bash
# The server's fan-out beside the write floor, side by side (issue 32):
# scenarios/fan-out.toml (1,000 clients in one room, 100 msg/s) gives the
# server's CPU per delivery for SSE and WebSocket, and `chatbench floor`
# the CPU of one bare write of a frame of the same size to each of 1,000
# loopback sockets in turn, on the CPU the server had. Prints, per round
# and transport, both figures and their ratio (server / floor), then the
# median ratio over the rounds. The receive side beside it: the load
# generator's CPU per received message, `chatbench floor --read` (a reader
# on the load generator's CPU that only waits on epoll and reads, the
# writes paced at the run's deliveries a second), and the ratios load
# generator / read floor and load generator / server.
#
#   scripts/fan-out-floor.sh            # 3 rounds; ROUNDS=N for more, OUT=dir keeps the raw files
#   CHATBENCH=/path/to/chatbench scripts/fan-out-floor.sh   # another build (A/B), not rebuilt
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/common.sh
. scripts/common.sh
# chatbench run pins the server to CPU 0 and the load generator to the
# rest; the floor's writer takes the server's CPU, its reader another.
writer_cpu=0
reader_cpu=$((ncpu > 1 ? 1 : 0))

rounds=${ROUNDS:-3}
: >"$out/rounds.txt"
for round in $(seq "$rounds"); do
  $bin run scenarios/fan-out.toml --out "$out/runs" --no-report -q >"$out/run-$round.txt" 2>&1
  run=$(ls -d "$out/runs/fan-out"/*/ | sort | tail -n 1)
  # Per transport: the server's CPU µs per delivery, and its bytes per
  # delivery (what the floor then writes).
  python3 - "$run/run.json" >"$out/server-$round.txt" <<'PY'
import json, sys
for r in json.load(open(sys.argv[1]))["runs"]:
    c, s = r["crosscheck"], r["server"]
    delivered = max(r["audit"]["delivered"], 1)
    print(r["transport"], s["cpu_ms_per_1k_msgs"], round(c["server_bytes_written"] / max(c["server_delivered"], 1)),
          round(r["loadgen"]["cpu_ms_measured"] * 1000 / delivered, 3), round(delivered / r["measured_seconds"]))
PY
  while read -r transport server_us bytes loadgen_us rate; do
    floor=$($bin floor --connections 1000 --bytes "$bytes" --writes 2000000 \
      --cpu "$writer_cpu" --reader-cpu "$reader_cpu" --json)
    floor_us=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["cpu_us_per_write"])' "$floor")
    ratio=$(python3 -c 'import sys; print(f"{float(sys.argv[1]) / float(sys.argv[2]):.3f}")' "$server_us" "$floor_us")
    printf 'round %s %-9s server %.2f µs per delivery, floor %.2f µs per %s-byte write, ratio %s\n' \
      "$round" "$transport" "$server_us" "$floor_us" "$bytes" "$ratio" | tee -a "$out/rounds.txt"
    # The machine's TCP segments over the read floor (nstat, when there):
    # beyond its writes, they are the reader's ACKs.
    command -v nstat >/dev/null && nstat -n >/dev/null
    rfloor=$($bin floor --read --rate "$rate" --connections 1000 --bytes "$bytes" --writes $((rate * 6)) \
      --cpu "$writer_cpu" --reader-cpu "$reader_cpu" --json)
    acks=unknown
    if command -v nstat >/dev/null; then
      # Without -a, nstat gives what changed since the `nstat -n` above.
      segs=$(nstat TcpOutSegs 2>/dev/null | awk '$1 == "TcpOutSegs" {print $2}')
      acks=$(python3 -c 'import sys; print(f"{(int(sys.argv[1]) - int(sys.argv[2])) / int(sys.argv[2]):.2f}")' "${segs:-0}" $((rate * 6)))
    fi
    rfloor_us=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["read"]["cpu_us_per_frame"])' "$rfloor")
    rratio=$(python3 -c 'import sys; print(f"{float(sys.argv[1]) / float(sys.argv[2]):.3f}")' "$loadgen_us" "$rfloor_us")
    lratio=$(python3 -c 'import sys; print(f"{float(sys.argv[1]) / float(sys.argv[2]):.3f}")' "$loadgen_us" "$server_us")
    printf 'round %s %-9s load generator %.2f µs per received message, read floor %.2f µs per frame at %s/s (%s ACKs sent per frame), ratio %s; load generator / server %s\n' \
      "$round" "$transport" "$loadgen_us" "$rfloor_us" "$rate" "$acks" "$rratio" "$lratio" | tee -a "$out/receive.txt"
  done <"$out/server-$round.txt"
done
for transport in sse websocket; do
  median=$(awk -v t="$transport" '$3 == t {print $NF}' "$out/rounds.txt" | sort -n |
    awk '{v[NR] = $1} END {if (NR == 0) exit; print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}')
  echo "$transport: median ratio server / floor over $rounds rounds: $median"
done
for transport in sse websocket; do
  for col in 25 NF; do
    median=$(awk -v t="$transport" -v c="$col" '$3 == t {print (c == "NF") ? $NF : $c}' "$out/receive.txt" | sed 's/;//' | sort -n |
      awk '{v[NR] = $1} END {if (NR == 0) exit; print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}')
    [ "$col" = 25 ] && what="load generator / read floor" || what="load generator / server"
    echo "$transport: median $what over $rounds rounds: $median"
  done
done
echo "raw files: $out"
