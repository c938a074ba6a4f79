#!/usr/bin/env python3
"""ringhub-admin-squat: how long a /metrics scrape takes while sockets squat on the admin port.

Opens --idle idle connections and --slowloris connections that send one header byte every 100 ms to
the admin port, then times --scrapes sequential GET /metrics (connect to last byte, one connection
each) and prints the first (the one that meets every squatter), the median, p99 and max. Squatters the
hub closes are not replaced unless --refill is given: then, before each scrape, every idle socket the
hub closed is reconnected (a sustained squat). Loopback only; every loop is bounded in count and time.

    python3 perf/attack/admin_squat.py --admin 127.0.0.1:7402 [--idle 1000] [--slowloris 8] [--scrapes 200]
        [--refill]
    bash perf/attack/admin_squat.sh build/release/bin/ringhub     # starts a hub and runs this 5 times
"""
import argparse
import resource
import selectors
import socket
import sys
import threading
import time

SCRAPE_TIMEOUT = 10.0  # seconds one scrape may take before it counts as failed
TRICKLE_INTERVAL = 0.1  # slowloris: one header byte per this many seconds
SLOW_REQUEST = b"GET /metrics HTTP/1.1\r\nX-Slow: " + b"a" * 4096


def loopback_only(host):
    if not host.startswith("127."):
        sys.exit(f"ringhub-admin-squat: {host} is not a loopback address; this targets 127.0.0.0/8 only")


def raise_fd_limit(needed):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed <= hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    elif needed > hard:
        sys.exit(f"ringhub-admin-squat: {needed} sockets need more than the open-file limit {hard}")


def connect_many(addr, n):
    """Starts n non-blocking connects, as an attacker would, without waiting for any of them."""
    socks = []
    for _ in range(n):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        s.connect_ex(addr)  # EINPROGRESS; a hub whose backlog is full leaves it pending, still a squatter
        socks.append(s)
    return socks


def established(socks, bound):
    """How many of socks have connected within `bound` seconds (a full backlog leaves some pending)."""
    pending, done = set(socks), 0
    deadline = time.monotonic() + bound
    with selectors.DefaultSelector() as sel:
        for s in pending:
            sel.register(s, selectors.EVENT_WRITE)
        while pending and time.monotonic() < deadline:
            for key, _ in sel.select(timeout=max(0.0, deadline - time.monotonic())):
                sel.unregister(key.fileobj)
                pending.discard(key.fileobj)
                done += key.fileobj.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0
    return done


def refill(idle, addr):
    """Replaces every idle socket the hub has closed (readable: EOF, a reset or a 408) with a new one."""
    closed = []
    with selectors.DefaultSelector() as sel:  # epoll: no FD_SETSIZE limit
        for i, s in enumerate(idle):
            sel.register(s, selectors.EVENT_READ, i)
        closed = [key.data for key, _ in sel.select(timeout=0)]
    for i in closed:
        idle[i].close()
        idle[i] = connect_many(addr, 1)[0]
    return len(closed)


def trickle(socks, stop, deadline):
    """Sends the slow request one byte per interval on every socket until stopped or out of bytes."""
    for i in range(len(SLOW_REQUEST)):
        if stop.is_set() or time.monotonic() > deadline:
            return
        for s in socks:
            try:
                s.send(SLOW_REQUEST[i:i + 1])
            except OSError:
                pass  # the hub closed it (eviction or deadline): the load goes on with the others
        stop.wait(TRICKLE_INTERVAL)


def scrape(addr):
    """Seconds for one GET /metrics, connect to EOF; raises on a failed or malformed answer."""
    start = time.monotonic()
    with socket.create_connection(addr, timeout=SCRAPE_TIMEOUT) as s:
        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: squat\r\n\r\n")
        chunks = []
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    took = time.monotonic() - start
    reply = b"".join(chunks)
    if not reply.startswith(b"HTTP/1.1 200 ") or b"ringhub_" not in reply:
        raise RuntimeError(f"unexpected reply: {reply[:80]!r}")
    return took


def percentile(values, q):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--admin", required=True, help="admin HOST:PORT")
    parser.add_argument("--idle", type=int, default=1000)
    parser.add_argument("--slowloris", type=int, default=8)
    parser.add_argument("--scrapes", type=int, default=200)
    parser.add_argument("--max-seconds", type=float, default=120.0, help="bound on the whole run")
    parser.add_argument("--refill", action="store_true",
                        help="before each scrape, reconnect the idle sockets the hub closed (a sustained squat)")
    args = parser.parse_args()
    host, port = args.admin.rsplit(":", 1)
    loopback_only(host)
    addr = (host, int(port))
    raise_fd_limit(args.idle + args.slowloris + 64)
    deadline = time.monotonic() + args.max_seconds

    idle = connect_many(addr, args.idle)
    slow = connect_many(addr, args.slowloris)
    connected = established(idle + slow, 5.0)
    stop = threading.Event()
    trickler = threading.Thread(target=trickle, args=(slow, stop, deadline))
    trickler.start()
    times, failures, refilled = [], 0, 0
    try:
        for _ in range(args.scrapes):
            if time.monotonic() > deadline:
                break
            if args.refill:
                refilled += refill(idle, addr)
            try:
                times.append(scrape(addr))
            except (OSError, RuntimeError) as e:
                failures += 1
                print(f"scrape failed: {e}", file=sys.stderr)
    finally:
        stop.set()
        trickler.join()
        for s in idle + slow:
            s.close()
    if not times:
        sys.exit("ringhub-admin-squat: no scrape answered")
    ms = [t * 1000 for t in times]
    print(f"idle={args.idle} slowloris={args.slowloris} connected={connected} refilled={refilled} scrapes={len(ms)} failed={failures} "
          f"first={ms[0]:.2f}ms median={percentile(ms, 0.5):.2f}ms p99={percentile(ms, 0.99):.2f}ms max={max(ms):.2f}ms")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
