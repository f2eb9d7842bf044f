#!/usr/bin/env bash
# Where the CPU of a fan-out delivery goes, on both sides (issue 32): runs
# scenarios/fan-out.toml (1,000 clients in one room, 100 msg/s) for one
# transport under `perf record -e cpu-clock -g`, then splits each side's
# samples (the server's process, and the load generator's) into what the
# kernel does in the socket calls, what its network softirq does under them
# (on loopback the sender's CPU runs the receiver's TCP input, and the
# reader's CPU runs the input of the ACK it sends back), epoll, and the
# user-space crates, with each part's µs per delivery from run.json's CPU.
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
python3 - "$out/samples.txt" "$run/run.json" <<'PY'
import collections, json, re, sys

samples, run_json = sys.argv[1], sys.argv[2]
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

by_pid = collections.defaultdict(collections.Counter)
threads = collections.defaultdict(set)
head, frames = None, []
for line in open(samples, errors="replace"):
    if not line.strip():
        if head:
            by_pid[head[0]][part(frames)] += 1
        head, frames = None, []
    elif not line[0].isspace():
        # "comm pid/tid" or "comm pid tid", comm may hold spaces
        m = re.match(r"(.*?)\s+(\d+)[/ ]\s*(\d+)\s*$", line.rstrip())
        if m:
            head = (m.group(2), m.group(1).strip())
            threads[m.group(2)].add(m.group(1).strip())
    else:
        m = re.match(r"\s*[0-9a-f]+ (.*) \((.*)\)$", line.rstrip())
        if m:
            frames.append((m.group(1), m.group(2)))
# The load generator's process has the send threads; the server is the
# other busy one.
busy = sorted(by_pid, key=lambda p: -sum(by_pid[p].values()))[:2]
side = {p: ("load generator" if any(t.startswith("chatbench-send") for t in threads[p]) else "server") for p in busy}
print(f"{run['transport']}, {delivered} deliveries in {run['measured_seconds']:.1f} s measured; run {run_json}")
for p in busy:
    c, total = by_pid[p], sum(by_pid[p].values())
    who = side[p]
    print(f"\n{who} (pid {p}, {total} samples): {cpu_us[who]:.2f} µs of CPU per delivery")
    for k, v in c.most_common():
        share = v / total
        if share < 0.005:
            continue
        print(f"  {100 * share:5.1f}%  {share * cpu_us[who]:5.2f} µs  {k}")
PY
echo "raw files: $out"
