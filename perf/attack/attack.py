#!/usr/bin/env python3
"""ringhub-attack: memory and fairness attacks on a running ringhub, with figures.

Each attack runs for a bounded time against a hub on loopback while a control client measures
IDENTITY, LIST and small-RELAY round trips; the hub's RSS (from /proc) and its charged memory (from
/metrics) are sampled. Afterwards every attack connection is closed and the time for RSS to come back
is measured. Loopback only; every loop is bounded in count and time.

    python3 perf/attack/attack.py --hub-pid "$(pidof ringhub)" [--attacks unfinished,stalled,...]
    python3 perf/attack/attack.py --quick ...     # small versions (ctest)
"""
import argparse
import json
import os
import selectors
import signal
import socket
import struct
import sys
import time
import urllib.request

HEADER = struct.Struct("<BBHI")
IDENTITY, LIST, RELAY = 1, 2, 3
IDENTITY_REPLY, LIST_REPLY, DELIVER, ERROR = 0x81, 0x82, 0x83, 0xFF
MAX_BODY = 1 << 20
DRAINED_BYTES = 1 << 20  # charged memory below this: the attack's burst has drained
RECOVERY_LIMIT_S = 60  # how long to watch the hub recover after an attack's sockets close
QUICK_RECOVERY_WATCH_S = 3  # the same with --quick


def frame(kind, count=0, payload=b""):
    return HEADER.pack(kind, count, 0, len(payload)) + payload


def relay(receivers, body):
    ids = b"".join(struct.pack("<Q", r) for r in receivers)
    return frame(RELAY, len(receivers), ids + body)


def loopback_only(host):
    if not host.startswith("127."):
        sys.exit(f"ringhub-attack: {host} is not a loopback address; attacks target 127.0.0.0/8 only")


class Control:
    """One well-behaved client: IDENTITY, LIST and a 64-byte RELAY to a peer, timed end to end."""

    def __init__(self, addr):
        self.sock = socket.create_connection(addr, timeout=10)
        self.peer = socket.create_connection(addr, timeout=10)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.me = self._request(self.sock, IDENTITY)
        self.peer_id = self._request(self.peer, IDENTITY)
        self.samples = []
        self.stuck = None  # why a round trip got no answer within the sockets' 10 s, if one did

    @staticmethod
    def _read_frame(sock):
        head = Control._read_exact(sock, HEADER.size)
        kind, _, _, length = HEADER.unpack(head)
        return kind, Control._read_exact(sock, length)

    @staticmethod
    def _read_exact(sock, n):
        data = bytearray()
        while len(data) < n:
            chunk = sock.recv(n - len(data))
            if not chunk:
                raise ConnectionError("the hub closed the control connection")
            data += chunk
        return bytes(data)

    def _request(self, sock, kind):
        sock.sendall(frame(kind))
        while True:
            got, payload = self._read_frame(sock)
            if got == IDENTITY_REPLY:
                return struct.unpack("<Q", payload)[0]
            if got == LIST_REPLY:
                return len(payload) // 8
            if got == ERROR:
                raise ConnectionError(f"control client got ERROR {payload[0]}")

    def round_trip(self):
        """One timed round trip; a hub that does not answer within 10 s is recorded, not raised, and
        the control client stops trying (its stream may hold half a reply)."""
        if self.stuck:
            return
        start = time.perf_counter()
        try:
            self._request(self.sock, IDENTITY)
            self._request(self.sock, LIST)
            self.sock.sendall(relay([self.peer_id], b"x" * 64))
            while self._read_frame(self.peer)[0] != DELIVER:
                pass
        except (TimeoutError, ConnectionError) as error:
            self.stuck = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
            return
        self.samples.append(time.perf_counter() - start)

    def close(self):
        self.sock.close()
        self.peer.close()


def rss_bytes(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def running(pid):
    """Whether the process still runs: a zombie has exited (its reaper may be slow; some init
    processes reap once a second), so it does not count."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def metric(admin, name):
    try:
        with urllib.request.urlopen(f"http://{admin}/metrics", timeout=2) as response:
            for line in response.read().decode().splitlines():
                if line.startswith(name + " "):
                    return float(line.split()[1])
    except OSError:
        pass
    return float("nan")


def percentile(values, q):
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def connect_many(addr, n, rcvbuf=None):
    socks = []
    for _ in range(n):
        s = socket.socket()
        if rcvbuf:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        s.connect(addr)
        s.setblocking(False)
        socks.append(s)
    return socks


def identities(addr, socks):
    """Asks each connection its id (blocking briefly) and returns them."""
    ids = []
    for s in socks:
        s.setblocking(True)
        s.settimeout(10)
        s.sendall(frame(IDENTITY))
        kind, payload = Control._read_frame(s)
        assert kind == IDENTITY_REPLY, kind
        ids.append(struct.unpack("<Q", payload)[0])
        s.setblocking(False)
    return ids


class Pump:
    """Writes each connection's stream without blocking, as far as the hub takes it, until a deadline;
    or, for a trickle, one byte per interval."""

    def __init__(self):
        self.pending = {}
        self.trickles = []  # [sock, data, position]
        self.trickle_interval = 1.0
        self.next_trickle = 0.0

    def add(self, sock, data, repeat=None):
        self.pending[sock] = [memoryview(data), repeat]

    def add_trickle(self, sock, data):
        self.trickles.append([sock, data, 0])

    def run_trickles(self):
        now = time.monotonic()
        if now < self.next_trickle:
            return
        self.next_trickle = now + self.trickle_interval
        for state in self.trickles:
            sock, data, position = state
            if position < len(data):
                try:
                    sock.send(data[position:position + 1])
                    state[2] = position + 1
                except OSError:
                    state[2] = len(data)

    def run_once(self):
        self.run_trickles()
        for sock, state in list(self.pending.items()):
            view, repeat = state
            try:
                while view:
                    sent = sock.send(view)
                    view = view[sent:]
                    if not view and repeat is not None:
                        view = memoryview(repeat)
            except BlockingIOError:
                pass
            except OSError:
                del self.pending[sock]
                continue
            state[0] = view


def attack_unfinished(addr, scale, warm=False):
    """Connections that announce a 1 MiB RELAY and send all but its last byte (with `warm`, after one
    IDENTITY each, so the hub already reads them as proven light clients)."""
    socks = connect_many(addr, scale["unfinished"])
    if warm:
        identities(addr, socks)
    pump = Pump()
    # One bytes object shared by every connection: 8000 private copies would cost this tool 8 GB.
    unfinished = HEADER.pack(RELAY, 1, 0, 8 + MAX_BODY) + struct.pack("<Q", 1) + b"u" * (MAX_BODY - 1)
    for s in socks:
        pump.add(s, unfinished)
    return socks, pump


def attack_stalled(addr, count, body_size, rcvbuf, one_frame_each=False):
    """Receivers that never read, while one sender sends `body_size` bodies to all of them: one frame
    fanned out to all (one shared block), or one frame to each (a block each)."""
    readers = connect_many(addr, count, rcvbuf=rcvbuf)
    ids = identities(addr, readers)
    sender = connect_many(addr, 1)
    pump = Pump()
    body = b"s" * body_size
    message = b"".join(relay([i], body) for i in ids) if one_frame_each else relay(ids[:255], body)
    pump.add(sender[0], message, repeat=message)
    return readers + sender, pump


def attack_flood(addr, scale, kind):
    """One client pipelining a request without reading a reply, beside idle peers."""
    peers = connect_many(addr, scale["idle_peers"])
    flooder = connect_many(addr, 1, rcvbuf=64 * 1024)
    pump = Pump()
    chunk = frame(kind) * 8192
    pump.add(flooder[0], chunk, repeat=chunk)
    return peers + flooder, pump


def attack_slowloris(addr, scale):
    """Connections that send one byte of a frame per second."""
    socks = connect_many(addr, scale["slowloris"])
    message = relay([1], b"l" * 1000)
    pump = Pump()
    for s in socks:
        pump.add_trickle(s, message)
    return socks, pump


ATTACKS = {
    "unfinished": lambda addr, scale: attack_unfinished(addr, scale),
    "warm-unfinished": lambda addr, scale: attack_unfinished(addr, scale, warm=True),
    "stalled": lambda addr, scale: attack_stalled(addr, scale["stalled"], MAX_BODY, 64 * 1024),
    # Bodies under 64 KiB, a frame to each: the sender is light, never paused as heavy, so the readers'
    # queues (each under its own --max-outbound-bytes) can fill the budget; the write deadline cuts them
    # (probe 9a).
    "stalled-light": lambda addr, scale: attack_stalled(addr, scale["stalled_light"], 60_000, 4096, True),
    "list-flood": lambda addr, scale: attack_flood(addr, scale, LIST),
    "identity-flood": lambda addr, scale: attack_flood(addr, scale, IDENTITY),
    "slowloris": lambda addr, scale: attack_slowloris(addr, scale),
}


def wait_for_recovery(args, idle_rss):
    """After the attack's sockets are closed: seconds until the hub's charged memory is below
    DRAINED_BYTES (the burst has drained: a closed sender's kernel may still deliver what it had
    queued), then seconds from there until RSS is back within 64 MiB of idle. Each None when not
    within RECOVERY_LIMIT_S (QUICK_RECOVERY_WATCH_S with --quick)."""
    start = time.monotonic()
    drained = back = None
    # The ctest version only reports: a sanitized hub's RSS never comes back (shadow, quarantine).
    watch_s = QUICK_RECOVERY_WATCH_S if args.quick else RECOVERY_LIMIT_S
    while time.monotonic() - start < watch_s:
        now = time.monotonic()
        if drained is None and metric(args.admin, "ringhub_memory_in_use_bytes") < DRAINED_BYTES:
            drained = now - start
        if drained is not None and rss_bytes(args.hub_pid) <= idle_rss + (64 << 20):
            back = now - start - drained
            break
        time.sleep(0.1)
    return drained, back


def run_attack(name, args, addr, scale):
    idle_rss = rss_bytes(args.hub_pid)
    control = Control(addr)
    socks, pump = ATTACKS[name](addr, scale)
    peak_rss, peak_charged = idle_rss, 0.0
    deadline = time.monotonic() + args.duration
    next_sample = 0.0
    while time.monotonic() < deadline:
        pump.run_once()
        control.round_trip()
        now = time.monotonic()
        if now >= next_sample:
            peak_rss = max(peak_rss, rss_bytes(args.hub_pid))
            peak_charged = max(peak_charged, metric(args.admin, "ringhub_memory_in_use_bytes"))
            next_sample = now + 0.1
        time.sleep(0.01)
    sigterm_seconds = None
    if args.sigterm and name == args.attacks[-1]:
        start = time.monotonic()
        os.kill(args.hub_pid, signal.SIGTERM)
        while running(args.hub_pid) and time.monotonic() - start < 60:
            time.sleep(0.01)
        sigterm_seconds = time.monotonic() - start
    for s in socks:
        s.close()
    control.close()
    drained_seconds = back_seconds = None
    if sigterm_seconds is None:
        drained_seconds, back_seconds = wait_for_recovery(args, idle_rss)
    result = {
        "attack": name,
        "connections": len(socks),
        "seconds": args.duration,
        "control_round_trips": len(control.samples),
        "control_stuck": control.stuck,
        "control_p50_ms": 1000 * percentile(control.samples, 0.50),
        "control_p99_ms": 1000 * percentile(control.samples, 0.99),
        "control_max_ms": 1000 * max(control.samples, default=float("nan")),
        "hub_rss_idle_mib": idle_rss / 2**20,
        "hub_rss_peak_mib": peak_rss / 2**20,
        "hub_charged_peak_mib": peak_charged / 2**20,
        "drained_s": drained_seconds,
        "rss_back_within_64mib_s": back_seconds,
        "sigterm_exit_s": sigterm_seconds,
    }
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hub", default="127.0.0.1:7400", help="relay HOST:PORT (loopback only)")
    parser.add_argument("--admin", default="127.0.0.1:7402", help="admin HOST:PORT for /metrics")
    parser.add_argument("--hub-pid", type=int, required=True, help="the hub's pid, for RSS and SIGTERM")
    parser.add_argument("--attacks", default=",".join(ATTACKS), help="comma-separated: " + ",".join(ATTACKS))
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per attack")
    parser.add_argument("--quick", action="store_true", help="small connection counts (ctest)")
    parser.add_argument("--connections", type=int, default=0,
                        help="attacking connections (idle peers for the floods) instead of each attack's default")
    parser.add_argument("--sigterm", action="store_true", help="SIGTERM the hub during the last attack")
    parser.add_argument("--json", action="store_true", help="print results as JSON")
    parser.add_argument("--check-budget", type=int, default=0,
                        help="fail if the hub's charged memory (ringhub_memory_in_use_bytes) passed this")
    parser.add_argument("--recovery-limit", type=float, default=0,
                        help="fail if RSS is not back within 64 MiB of idle this many seconds after the drain")
    parser.add_argument("--sigterm-limit", type=float, default=0,
                        help="with --sigterm: fail if the hub took longer than this many seconds to exit")
    args = parser.parse_args()
    host, port = args.hub.rsplit(":", 1)
    loopback_only(host)
    loopback_only(args.admin.rsplit(":", 1)[0])
    args.attacks = args.attacks.split(",")
    for name in args.attacks:
        if name not in ATTACKS:
            sys.exit(f"ringhub-attack: unknown attack {name!r}; known: {', '.join(ATTACKS)}")
    scale = {"unfinished": 8000, "stalled": 128, "stalled_light": 24, "idle_peers": 1000, "slowloris": 5000}
    if args.quick:
        scale = {"unfinished": 40, "stalled": 8, "stalled_light": 6, "idle_peers": 20, "slowloris": 50}
    if args.connections:
        scale = {name: args.connections for name in scale}
    results = [run_attack(name, args, (host, int(port)), scale) for name in args.attacks]
    if args.json:
        print(json.dumps(results, indent=2))
    for r in results:
        print(f"{r['attack']:>15}: {r['connections']} conns {r['seconds']:.0f} s | control p50 "
              f"{r['control_p50_ms']:.2f} ms p99 {r['control_p99_ms']:.2f} ms max {r['control_max_ms']:.1f} ms "
              f"({r['control_round_trips']} trips) | hub RSS idle {r['hub_rss_idle_mib']:.0f} MiB peak "
              f"{r['hub_rss_peak_mib']:.0f} MiB, charged peak {r['hub_charged_peak_mib']:.0f} MiB | drained in "
              f"{fmt_s(r['drained_s'])}, RSS back {fmt_s(r['rss_back_within_64mib_s'])} later | SIGTERM exit "
              f"{fmt_s(r['sigterm_exit_s'])}", file=sys.stderr)
    return 1 if failures(results, args) else 0


def fmt_s(seconds):
    return "-" if seconds is None else f"{seconds:.1f} s"


def failures(results, args):
    """The behaviour every attack must leave intact; prints each breach."""
    found = []
    for r in results:
        if r["control_round_trips"] == 0:
            found.append(f"{r['attack']}: the control client was not served")
        if r["control_stuck"]:
            found.append(f"{r['attack']}: a control round trip got no answer within 10 s ({r['control_stuck']})")
        if args.check_budget and r["hub_charged_peak_mib"] * 2**20 > args.check_budget:
            found.append(f"{r['attack']}: charged memory {r['hub_charged_peak_mib']:.0f} MiB passed the budget")
        if args.recovery_limit and r["sigterm_exit_s"] is None and (
                r["rss_back_within_64mib_s"] is None or r["rss_back_within_64mib_s"] > args.recovery_limit):
            found.append(f"{r['attack']}: RSS was not back within 64 MiB of idle {args.recovery_limit:.0f} s "
                         f"after the drain (drained in {fmt_s(r['drained_s'])})")
        if args.sigterm_limit and r["sigterm_exit_s"] is not None and r["sigterm_exit_s"] > args.sigterm_limit:
            found.append(f"{r['attack']}: the hub took {r['sigterm_exit_s']:.1f} s to exit on SIGTERM")
    for line in found:
        print("ringhub-attack: FAIL: " + line, file=sys.stderr)
    return found


if __name__ == "__main__":
    sys.exit(main())
