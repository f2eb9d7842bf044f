#!/usr/bin/env bash
# Where the CPU of a fan-out delivery goes, on both sides (issue 32): runs
# scenarios/fan-out.toml (1,000 clients in one room, 100 msg/s) for one
# transport under `perf record -e cpu-clock -g`, then splits each side's
# samples (the server's process, and the load generator's) into what the
# kernel does in the socket calls, what its network softirq does under them
# (on loopback the sender's CPU runs the receiver's TCP input, and the
# reader's CPU runs the input of the ACK it sends back), epoll, and the
# user-space crates, with each part's µs per delivery from run.json's CPU;
# then the same split of `chatbench floor --read`'s reader at the run's
# rate, the least a reader can spend (perf's own cost is in all three).
#
#   scripts/profile-fan-out.sh              # WebSocket; TRANSPORT=sse for SSE
#   OUT=dir scripts/profile-fan-out.sh      # keep perf.data and the run there
#
# Needs perf (linux-perf) and root or perf_event_paranoid <= 1.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/common.sh
. scripts/common.sh
transport=${TRANSPORT:-websocket}
command -v perf >/dev/null || { echo "profile-fan-out.sh needs perf (apt-get install linux-perf)" >&2; exit 1; }
sed -e "s/^transports = .*/transports = [\"$transport\"]/" -e 's/^duration = .*/duration = "10s"/' \
  scenarios/fan-out.toml >"$out/fan-out-profiled.toml"
perf record -q -e cpu-clock -F 2000 -g -o "$out/perf.data" -- \
  $bin run "$out/fan-out-profiled.toml" --out "$out/runs" --no-report -q >"$out/run.txt" 2>&1
run=$(ls -d "$out/runs/fan-out"/*/ | sort | tail -n 1)
perf script -i "$out/perf.data" -F comm,pid,tid,ip,sym,dso 2>/dev/null >"$out/samples.txt"
# The receive floor beside it: `chatbench floor --read` at the run's
# deliveries a second and bytes per delivery, its reader profiled alone.
read -r rate bytes < <(python3 -c '
import json, sys
r = json.load(open(sys.argv[1]))["runs"][0]
c = r["crosscheck"]
print(round(r["audit"]["delivered"] / r["measured_seconds"]), round(c["server_bytes_written"] / max(c["server_delivered"], 1)))' "$run/run.json")
perf record -q -e cpu-clock -F 2000 -g -o "$out/floor.data" -- \
  $bin floor --read --rate "$rate" --connections 1000 --bytes "$bytes" --writes $((rate * 6)) \
  --cpu 0 --reader-cpu $((ncpu > 1 ? 1 : 0)) --json >"$out/floor.json"
perf script -i "$out/floor.data" -F comm,pid,tid,ip,sym,dso 2>/dev/null >"$out/floor-samples.txt"
python3 - "$out/samples.txt" "$run/run.json" "$out/floor-samples.txt" "$out/floor.json" <<'PY'
import collections, json, re, sys

samples, run_json, floor_samples, floor_json = sys.argv[1:5]
run = json.load(open(run_json))["runs"][0]
delivered = max(run["audit"]["delivered"], 1)
cpu_us = {
    "server": run["server"]["cpu_ms_measured"] * 1000 / delivered,
    "load generator": run["loadgen"]["cpu_ms_measured"] * 1000 / delivered,
}
SYSCALLS = [("recvmsg", "__sys_recvmsg"), ("recvfrom", "__sys_recvfrom"), ("sendto", "__sys_sendto"),
            ("sendmsg", "__sys_sendmsg"), ("write", "ksys_write"), ("read", "ksys_read"),
            ("writev", "do_writev"), ("epoll_wait", "do_epoll_wait")]

def part(frames):
    """What a sample was doing: (kernel call, softirq under it) or a crate."""
    if not frames:
        return "unknown"
    syms = [s for s, _ in frames]
    if "kernel" in frames[0][1]:
        chain = " ".join(syms)
        softirq = "net_rx_action" in chain
        for name, key in SYSCALLS:
            if key in chain:
                if name == "epoll_wait":
                    return "kernel: epoll_wait"
                return f"kernel: {name}" + (", the peer's TCP input (softirq)" if softirq else "")
        return "kernel: softirq elsewhere" if softirq else "kernel: other"
    m = re.match(r"<?(?:&mut |&)?([a-z_][a-z_0-9]*)::", syms[0])
    return "user: " + (m.group(1) if m else "libc and other")

def read_samples(path, key):
    """Parts per process (key 0) or per thread (key 1), and thread names."""
    parts = collections.defaultdict(collections.Counter)
    names = collections.defaultdict(set)
    head, frames = None, []
    for line in open(path, errors="replace"):
        if not line.strip():
            if head:
                parts[head][part(frames)] += 1
            head, frames = None, []
        elif not line[0].isspace():
            # "comm pid/tid" or "comm pid tid", comm may hold spaces
            m = re.match(r"(.*?)\s+(\d+)[/ ]\s*(\d+)\s*$", line.rstrip())
            if m:
                head = m.group(2 + key)
                names[head].add(m.group(1).strip())
        else:
            m = re.match(r"\s*[0-9a-f]+ (.*) \((.*)\)$", line.rstrip())
            if m:
                frames.append((m.group(1), m.group(2)))
    return parts, names

def show(title, c, us):
    total = sum(c.values())
    print(f"\n{title} ({total} samples): {us:.2f} µs of CPU per delivery")
    for k, v in c.most_common():
        share = v / total
        if share >= 0.005:
            print(f"  {100 * share:5.1f}%  {share * us:5.2f} µs  {k}")

by_pid, names = read_samples(samples, 0)
# The load generator's process has the send threads; the server is the
# other busy one.
busy = sorted(by_pid, key=lambda p: -sum(by_pid[p].values()))[:2]
print(f"{run['transport']}, {delivered} deliveries in {run['measured_seconds']:.1f} s measured; run {run_json}")
for p in busy:
    who = "load generator" if any(t.startswith("chatbench-send") for t in names[p]) else "server"
    show(f"{who} (pid {p})", by_pid[p], cpu_us[who])
# The floor's reader is the thread that waits on epoll.
by_tid, _ = read_samples(floor_samples, 1)
reader = max(by_tid, key=lambda t: by_tid[t]["kernel: epoll_wait"])
floor = json.load(open(floor_json))
show(f"the read floor's reader (tid {reader}, {floor['read']['waits']} epoll waits for {floor['writes']} frames)",
     by_tid[reader], floor["read"]["cpu_us_per_frame"])
PY
echo "raw files: $out"
