#!/usr/bin/env bash
# chatbench beside wrk: short-poll requests per load-generator CPU-second,
# against one spawned chatbench server, each tool pinned to the CPU the
# server does not use. Prints each tool's rate, CPU and requests per
# CPU-second, and the ratio chatbench/wrk. Installs wrk (Debian) if missing.
#
#   scripts/peer-bench.sh            # 3 rounds; ROUNDS=N for more, OUT=dir keeps the raw files
#   CHATBENCH=/path/to/chatbench scripts/peer-bench.sh   # another build (A/B), not rebuilt
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v wrk >/dev/null 2>&1; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq && $sudo apt-get install -y -qq wrk
fi
# shellcheck source=scripts/common.sh
. scripts/common.sh
server_cpu=0
client_cpu=$((ncpu > 1 ? 1 : 0))

# One server for both tools, pinned to its own CPU, on a free loopback port.
$bin serve --listen 127.0.0.1:0 --cpus "$server_cpu" --max-connections 1000 >"$out/server.out" 2>"$out/server.log" &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
for _ in $(seq 50); do grep -q listening "$out/server.out" && break; sleep 0.1; done
url=$(sed -n 's/^listening on //p' "$out/server.out")
[ -n "$url" ] || { echo "the server did not start" >&2; exit 1; }

# CPU seconds (user + system) of a command and its children, then its output.
cpu_of() {
  python3 - "$@" <<'PY'
import resource, subprocess, sys
p = subprocess.run(sys.argv[1:], capture_output=True, text=True)
r = resource.getrusage(resource.RUSAGE_CHILDREN)
sys.stdout.write(p.stdout)
sys.stderr.write(p.stderr)
print(f"CPU_SECONDS {r.ru_utime + r.ru_stime:.3f}")
sys.exit(p.returncode)
PY
}

# Rounds alternate wrk and chatbench against the same server, so machine
# drift touches both; the ratio reported is the median of the rounds'.
rounds=${ROUNDS:-3}
: >"$out/rounds.txt"
for round in $(seq "$rounds"); do
  cpu_of taskset -c "$client_cpu" wrk -t1 -c100 -d8s "$url/rooms/peer/messages?after=0" >"$out/wrk-$round.txt"
  wrk_reqs=$(awk '/requests in/ {print $1}' "$out/wrk-$round.txt")
  wrk_cpu=$(awk '/CPU_SECONDS/ {print $2}' "$out/wrk-$round.txt")
  taskset -c "$client_cpu" $bin run scenarios/peer-short-poll.toml --server "$url" --out "$out/runs" --no-report >"$out/chatbench-$round.txt" 2>&1
  run=$(ls -d "$out/runs/peer-short-poll"/*/ | sort | tail -n 1)
  cb=$(python3 -c '
import json, sys
r = json.load(open(sys.argv[1] + "/run.json"))["runs"][0]
print(r["wire"]["measured"]["requests"], r["loadgen"]["cpu_ms_measured"] / 1000, r["measured_seconds"])
' "$run")
  echo "$round $wrk_reqs $wrk_cpu 8 $cb" >>"$out/rounds.txt"
done

python3 - "$out/rounds.txt" <<'PY'
import statistics, sys
print("wrk: 1 thread, 100 connections, 8 s; chatbench: scenarios/peer-short-poll.toml (100 clients, back-to-back polls), 8 s measured")
print(f"{'round':<6} {'tool':<10} {'requests':>10} {'req/s':>9} {'CPU s':>7} {'req per CPU-s':>14}")
ratios = []
for line in open(sys.argv[1]):
    rnd, wr, wc, ws, cr, cc, cs = line.split()
    wr, wc, ws, cr, cc, cs = map(float, (wr, wc, ws, cr, cc, cs))
    w, c = wr / wc, cr / cc
    ratios.append(c / w)
    print(f"{rnd:<6} {'wrk':<10} {wr:>10.0f} {wr/ws:>9.0f} {wc:>7.2f} {w:>14.0f}")
    print(f"{rnd:<6} {'chatbench':<10} {cr:>10.0f} {cr/cs:>9.0f} {cc:>7.2f} {c:>14.0f}   ratio {c / w:.2f}")
print(f"ratio chatbench/wrk (requests per CPU-second), median of {len(ratios)} rounds: {statistics.median(ratios):.2f} (min {min(ratios):.2f}, max {max(ratios):.2f})")
PY
