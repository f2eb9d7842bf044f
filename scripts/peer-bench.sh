#!/usr/bin/env bash
# chatbench beside wrk: short-poll requests per load-generator CPU-second,
# against one spawned chatbench server, each tool pinned to the CPU the
# server does not use. Prints each tool's rate, CPU and requests per
# CPU-second, and the ratio chatbench/wrk. Installs wrk (Debian) if missing.
#
#   scripts/peer-bench.sh            # prints the table; OUT=dir keeps the raw files
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v wrk >/dev/null 2>&1; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq && $sudo apt-get install -y -qq wrk
fi
cargo build --release -p chatbench >/dev/null
bin=./target/release/chatbench
out=${OUT:-$(mktemp -d)}
mkdir -p "$out"
ncpu=$(nproc)
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

echo "wrk: 1 thread, 100 connections, 10 s, GET $url/rooms/peer/messages?after=0"
cpu_of taskset -c "$client_cpu" wrk -t1 -c100 -d10s "$url/rooms/peer/messages?after=0" >"$out/wrk.txt"
wrk_reqs=$(awk '/requests in/ {print $1}' "$out/wrk.txt")
wrk_cpu=$(awk '/CPU_SECONDS/ {print $2}' "$out/wrk.txt")

echo "chatbench: scenarios/peer-short-poll.toml (100 clients, 2 ms interval)"
taskset -c "$client_cpu" $bin run scenarios/peer-short-poll.toml --server "$url" --out "$out/runs" --no-report >"$out/chatbench.txt" 2>&1
run=$(ls -d "$out/runs/peer-short-poll"/*/ | sort | tail -n 1)
read -r cb_reqs cb_cpu_ms cb_secs < <(python3 -c '
import json, sys
r = json.load(open(sys.argv[1] + "/run.json"))["runs"][0]
print(r["wire"]["measured"]["requests"], r["loadgen"]["cpu_ms_measured"], r["measured_seconds"])
' "$run")

python3 - "$wrk_reqs" "$wrk_cpu" "$cb_reqs" "$cb_cpu_ms" "$cb_secs" <<'PY'
import sys
wrk_reqs, wrk_cpu, cb_reqs, cb_cpu_ms, cb_secs = map(float, sys.argv[1:])
wrk_rate = wrk_reqs / wrk_cpu
cb_cpu = cb_cpu_ms / 1000
cb_rate = cb_reqs / cb_cpu
print(f"{'tool':<10} {'requests':>10} {'seconds':>8} {'req/s':>9} {'CPU s':>7} {'req per CPU-s':>14}")
print(f"{'wrk':<10} {wrk_reqs:>10.0f} {10:>8.1f} {wrk_reqs/10:>9.0f} {wrk_cpu:>7.2f} {wrk_rate:>14.0f}")
print(f"{'chatbench':<10} {cb_reqs:>10.0f} {cb_secs:>8.1f} {cb_reqs/cb_secs:>9.0f} {cb_cpu:>7.2f} {cb_rate:>14.0f}")
print(f"ratio chatbench/wrk (requests per CPU-second): {cb_rate / wrk_rate:.2f}")
PY
