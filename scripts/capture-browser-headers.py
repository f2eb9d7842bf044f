#!/usr/bin/env python3
"""Captures the request headers headless Chromium sends for a poll (fetch
GET), a publish (fetch POST of JSON), an EventSource and a WebSocket
handshake, byte for byte, against a bare TCP listener on 127.0.0.1.

Usage: scripts/capture-browser-headers.py [--chromium PATH] [--out FILE]

It writes the profile the load generator's `protocol.headers = "browser"`
reads (crates/loadgen/profiles/chromium.txt): one section per request kind,
each the request head exactly as it arrived. The page sets a cookie first,
so the capture shows where Chromium puts the Cookie header; the load
generator replaces its value with `protocol.cookie_bytes` bytes.
"""

import argparse
import datetime
import socket
import subprocess
import sys
import threading

PAGE = """<!doctype html><meta charset="utf-8"><title>capture</title>
<script>
document.cookie = "session=1; path=/";
(async () => {
  await fetch("/rooms/capture/messages?after=0");
  await fetch("/rooms/capture/messages", {method: "POST",
    headers: {"content-type": "application/json"},
    body: JSON.stringify({from: "c1", body: "hello"})});
  const es = new EventSource("/rooms/capture/events?after=0");
  await new Promise(r => es.onopen = r);
  es.close();
  const ws = new WebSocket(`ws://${location.host}/rooms/capture/ws?after=0`);
  await new Promise(r => ws.onopen = r);
  ws.close();
  await fetch("/done");
})();
</script>
"""

KINDS = [
    ("poll", "GET /rooms/capture/messages?after=0 "),
    ("publish", "POST /rooms/capture/messages "),
    ("sse", "GET /rooms/capture/events?after=0 "),
    ("websocket", "GET /rooms/capture/ws?after=0 "),
]


def read_head(conn):
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return None, b""
        data += chunk
    head, rest = data.split(b"\r\n\r\n", 1)
    return head.decode("latin-1"), rest


def answer(conn, head):
    line = head.split("\r\n", 1)[0]
    if line.startswith("GET / "):
        body = PAGE.encode()
        conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: %d\r\n\r\n" % len(body) + body)
    elif line.startswith("GET /rooms/capture/events"):
        conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n\r\n: open\n\n")
    elif line.startswith("GET /rooms/capture/ws"):
        import base64
        import hashlib
        key = [l.split(":", 1)[1].strip() for l in head.split("\r\n") if l.lower().startswith("sec-websocket-key:")][0]
        accept = base64.b64encode(hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest())
        conn.sendall(b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-accept: " + accept + b"\r\n\r\n")
    elif line.startswith("POST "):
        conn.sendall(b"HTTP/1.1 201 Created\r\ncontent-type: application/json\r\ncontent-length: 9\r\n\r\n{\"seq\":1}")
    else:
        body = b'{"messages":[],"next":0,"missed":0}'
        conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n" % len(body) + body)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--chromium", default="chromium")
    ap.add_argument("--out", default="crates/loadgen/profiles/chromium.txt")
    args = ap.parse_args()

    heads = {}
    done = threading.Event()
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    port = srv.getsockname()[1]

    def serve(conn):
        with conn:
            while True:
                head, _ = read_head(conn)
                if head is None:
                    return
                for kind, prefix in KINDS:
                    if head.startswith(prefix) and kind not in heads:
                        heads[kind] = head
                if head.startswith("GET /done "):
                    done.set()
                answer(conn, head)
                if "/events" in head.split("\r\n", 1)[0] or "/ws" in head.split("\r\n", 1)[0]:
                    # Held open until the browser closes it.
                    while conn.recv(4096):
                        pass
                    return

    def accept():
        while not done.is_set():
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    version = subprocess.run([args.chromium, "--version"], capture_output=True, text=True).stdout.strip()
    browser = subprocess.Popen(
        [args.chromium, "--headless=new", "--no-sandbox", "--disable-gpu",
         "--user-data-dir=/tmp/chatbench-capture-profile",
         f"http://127.0.0.1:{port}/"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ok = done.wait(30)
    browser.kill()
    browser.wait()
    srv.close()
    missing = [k for k, _ in KINDS if k not in heads]
    if not ok or missing:
        sys.exit(f"capture failed: no {', '.join(missing) or '/done'} request within 30 s")
    today = datetime.date.today().isoformat()
    with open(args.out, "w") as f:
        f.write(f"# Request heads {version} (headless) sent to http://127.0.0.1:PORT/,\n")
        f.write(f"# captured byte for byte by scripts/capture-browser-headers.py on {today}.\n")
        f.write("# The load generator's protocol.headers = \"browser\" sends these headers.\n")
        for kind, _ in KINDS:
            head = heads[kind].replace(f"127.0.0.1:{port}", "{authority}")
            f.write(f"\n[{kind}]\n{head}\n")
    print(f"wrote {args.out} ({version})")


if __name__ == "__main__":
    main()
