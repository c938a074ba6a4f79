#!/usr/bin/env python3
"""The report side of perf/compare/compare.sh (stdlib only): records each ringhub-perf run as a JSON
line, works out the fixed-rate rate of each cell, and turns the runs into results.json, README.md and
gnuplot PNGs. README.md keeps its hand-written block, between <!-- analysis:begin --> and
<!-- analysis:end -->.
  python3 perf/compare/report.py render --out docs/perf    # README.md and plots again from results.json
"""

import argparse
import datetime
import json
import os
import platform
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile

TARGETS = ["ringhub", "nats", "redis"]
TARGET_NAMES = {"ringhub": "ringhub", "nats": "NATS", "redis": "Redis"}
PEERS = ["nats", "redis"]
MODES = ["saturating", "fixed"]
ANALYSIS_BEGIN = "<!-- analysis:begin -->"
ANALYSIS_END = "<!-- analysis:end -->"
ANALYSIS_PLACEHOLDER = ("_Hand-written: analysis, tuning history and missed targets. "
                        "Kept when the report is regenerated._")

# The targets. Small bodies are judged on delivered messages/s, large ones on delivered bytes/s.
SMALL_MAX_BYTES = 1024
LARGE_MIN_BYTES = 65536
SMALL_FACTOR = 2.0
LARGE_FACTOR = 1.5
# Fixed-rate runs: the slowest rate used, and how a slow rate stretches a run so that it publishes at
# least MIN_FIXED_MESSAGES (K=255 x 1 MiB may run at well under one message a second).
MIN_FIXED_RATE = 0.05
MIN_FIXED_MESSAGES = 4
MAX_FIXED_DURATION_S = 10.0
IDLE_TARGET_CONNECTIONS = 100000
IDLE_TARGET_BYTES_PER_CONN = 1024
STDERR_TAIL_LINES = 15
STDERR_TAIL_CHARS = 2000

# Figures kept per run: (name, path into ringhub-perf's JSON).
FIGURES = {
    "published_per_s": ("published_per_s",),
    "delivered_per_s": ("delivered_per_s",),
    "delivered_bytes_per_s": ("delivered_bytes_per_s",),
    "latency_p50_ns": ("latency_ns", "p50"),
    "latency_p99_ns": ("latency_ns", "p99"),
    "latency_p999_ns": ("latency_ns", "p999"),
    "latency_mean_ns": ("latency_ns", "mean"),
    "latency_max_ns": ("latency_ns", "max"),
    "cpu_us_per_delivery": ("server", "cpu_us_per_delivery"),
    "server_cpu_s": ("server", "cpu_s"),
    "rss_bytes": ("server", "rss_bytes"),
    "hwm_bytes": ("server", "hwm_bytes"),
    "load_cpu_s": ("load", "cpu_s"),
}
# Figures derived from a run's result: the share of the measured window each side spent on a CPU. Each
# is pinned to one core, so near 1.0 means that side set the pace.
DERIVED_FIGURES = {
    "server_busy": lambda result: busy_share(result, "server"),
    "load_busy": lambda result: busy_share(result, "load"),
}


def busy_share(result, side):
    cpu = (result.get(side) or {}).get("cpu_s")
    window = result.get("duration_s")
    if not isinstance(cpu, (int, float)) or not isinstance(window, (int, float)) or window <= 0:
        return None
    return cpu / window


# ---------------------------------------------------------------- record: one run -> one JSON line


def read_text(path):
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def tail(text):
    lines = text.strip().splitlines()[-STDERR_TAIL_LINES:]
    return "\n".join(lines)[-STDERR_TAIL_CHARS:]


def parse_json_object(text):
    """The last line of stdout that parses as a JSON object, or None."""
    for line in reversed(text.strip().splitlines()):
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    return None


def failure_of(exit_code, result, mode, limit_hint):
    """Why a run counts as failed, or None. What the JSON says comes first: it is the most specific."""
    if exit_code in (124, 137):
        return f"killed by timeout ({limit_hint})"
    problem = None
    if result is None:
        problem = "no JSON object on stdout"
    elif (result.get("verify") or {}).get("ok") is False:
        verify = result["verify"]
        counts = ", ".join(f"{k}={verify.get(k)}" for k in ("lost", "out_of_order", "corrupt", "duplicates"))
        problem = f"verification failed ({counts})"
    elif mode == "idle" and result.get("complete") is False:
        problem = f"opened {result.get('opened')} of {result.get('connections')} connections"
    if exit_code != 0:
        return f"exit {exit_code}" + (f": {problem}" if problem else "")
    return problem


def flag_value(command, flag):
    words = shlex.split(command)
    return words[words.index(flag) + 1] if flag in words[:-1] else None


def progress_line(record):
    head = f"{record['target']:7} {record['mode']:10}"
    if record["mode"] == "idle":
        head += f" N={record['connections']}"
    else:
        head += f" K={record['fanout']} S={record['size']} #{record['repeat']}"
    result = record["result"] or {}
    if record["mode"] == "idle":
        seconds = fmt_num(result.get("seconds_to_open"))
        body = f"opened {result.get('opened')} in {seconds} s, {fmt_bytes(result.get('rss_per_conn_bytes'))}/conn"
    else:
        p99 = (result.get("latency_ns") or {}).get("p99")
        body = f"{fmt_si(result.get('delivered_per_s'))} delivered/s, p99 {fmt_ns(p99)}"
    status = "ok" if record["ok"] else f"FAILED: {record['failure']}"
    return f"  {head}: {body} [{status}]"


def cmd_record(args):
    stdout = read_text(args.stdout)
    stderr = read_text(args.stderr)
    result = parse_json_object(stdout)
    failure = failure_of(args.exit_code, result, args.mode, f"{args.elapsed} s")
    connections = flag_value(args.command, "--idle-conns")
    record = {
        "target": args.target,
        "mode": args.mode,
        "fanout": args.fanout,
        "size": args.size,
        "repeat": args.repeat,
        "rate": args.rate,
        "connections": int(connections) if connections else None,
        "command": args.command,
        "exit_code": args.exit_code,
        "elapsed_s": args.elapsed,
        "ok": failure is None,
        "failure": failure,
        # A peer's idle run that exited 0 short of its count met the peer's open-file limit, as expected:
        # a result, not a failure. ringhub is meant to reach every count, so for it a shortfall fails.
        "limit_reached": (args.mode == "idle" and args.target != "ringhub" and args.exit_code == 0
                          and (result or {}).get("complete") is False),
        "result": result,
        "stdout_tail": None if result is not None else tail(stdout),
        "stderr_tail": tail(stderr),
    }
    with open(args.jsonl, "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")
    print(progress_line(record), file=sys.stderr)


def cmd_skip(args):
    """Records runs that did not happen (a server that would not start, a cell with no rate)."""
    record = {"kind": "skipped", "target": args.target, "mode": args.mode, "fanout": args.fanout,
              "size": args.size, "connections": args.connections or None, "reason": args.reason.strip()}
    with open(args.jsonl, "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")
    print(f"  {args.target:7} {args.mode:10} skipped: {args.reason}", file=sys.stderr)


# ---------------------------------------------------------------- rates: fixed-rate rate per cell


def load_jsonl(path):
    records = []
    for line in read_text(path).splitlines():
        if line.strip():
            records.append(json.loads(line))
    return records


def figure(result, name):
    if name in DERIVED_FIGURES:
        return DERIVED_FIGURES[name](result)
    value = result
    for key in FIGURES[name]:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value if isinstance(value, (int, float)) else None


def ok_values(records, target, mode, fanout, size, name):
    values = []
    for r in records:
        if (r.get("target"), r.get("mode"), r.get("fanout"), r.get("size")) != (target, mode, fanout, size):
            continue
        if r.get("ok") and r.get("result"):
            value = figure(r["result"], name)
            if value is not None:
                values.append(value)
    return values


def publish_rate(records, target, fanout, size):
    """(median saturating publish rate of one target in one cell, what it was read from), or None.

    published_per_s counts publishes inside the measured window, so when one publish takes a large part
    of the window (K=255 x 1 MiB against a slow server) it reads low or 0; delivered_per_s / K is then
    the better figure. The larger of the two medians is used.
    """
    published = ok_values(records, target, "saturating", fanout, size, "published_per_s")
    delivered = ok_values(records, target, "saturating", fanout, size, "delivered_per_s")
    if not published and not delivered:
        return None
    by_published = statistics.median(published) if published else 0.0
    by_delivered = statistics.median(delivered) / fanout if delivered and fanout else 0.0
    if by_published >= by_delivered:
        return by_published, "published/s"
    return by_delivered, "delivered/s / K"


def fixed_rate(records, fanout, size, share):
    """(rate, basis): share x the slower peer's median saturating publish rate (0: no rate to use)."""
    found = {t: publish_rate(records, t, fanout, size) for t in TARGETS}
    sources = {t: v[1] for t, v in found.items() if v and v[0]}
    medians = {t: v[0] for t, v in found.items() if v and v[0]}
    peers = {t: v for t, v in medians.items() if t in PEERS}
    if peers:
        slower = min(peers, key=peers.get)
        basis = f"{share} x {TARGET_NAMES[slower]} {peers[slower]:.4g}/s ({sources[slower]})"
        if len(peers) < len(PEERS):
            basis += " (the other peer had no successful run)"
        raw = share * peers[slower]
    elif "ringhub" in medians:
        raw = share * medians["ringhub"]
        basis = f"{share} x ringhub {medians['ringhub']:.4g}/s (no peer had a successful run)"
    else:
        return 0, "no successful saturating run"
    # Three significant digits, never printed with an exponent; at least MIN_FIXED_RATE.
    raw = max(raw, MIN_FIXED_RATE)
    return (round(raw) if raw >= 100 else float(f"{raw:.3g}")), basis


def fixed_duration(rate, base_s):
    """The fixed-rate run's length: base_s, stretched (up to MAX_FIXED_DURATION_S) so that at least
    MIN_FIXED_MESSAGES are published at a slow rate."""
    if rate <= 0:
        return base_s
    return round(max(base_s, min(MAX_FIXED_DURATION_S, MIN_FIXED_MESSAGES / rate)), 1)


def cells_of(records):
    cells = []
    for r in records:
        cell = (r.get("fanout"), r.get("size"))
        if r.get("mode") == "saturating" and cell not in cells:
            cells.append(cell)
    return cells


def cmd_rates(args):
    records = load_jsonl(args.jsonl)
    for fanout, size in cells_of(records):
        rate, basis = fixed_rate(records, fanout, size, args.share)
        print(f"{fanout} {size} {rate} {fixed_duration(rate, args.duration)} {basis}")


# ---------------------------------------------------------------- build: results.json


def run_quiet(command):
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return (done.stdout + done.stderr).strip() or None


def cpu_model():
    for line in read_text("/proc/cpuinfo").splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or None


def memory_total_bytes():
    match = re.search(r"MemTotal:\s+(\d+) kB", read_text("/proc/meminfo"))
    return int(match.group(1)) * 1024 if match else None


def environment(repo):
    commit = run_quiet(["git", "-C", repo, "rev-parse", "HEAD"])
    dirty = run_quiet(["git", "-C", repo, "status", "--porcelain", "--untracked-files=no"])
    limits = run_quiet(["bash", "-c", "ulimit -n; ulimit -Hn"])
    return {
        "date_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "kernel": platform.release(),
        "os": read_text("/etc/debian_version").strip() and f"Debian {read_text('/etc/debian_version').strip()}",
        "cpu_model": cpu_model(),
        "nproc": os.cpu_count(),
        "memory_bytes": memory_total_bytes(),
        "open_files_soft_hard": limits.split() if limits else None,
        "nats_server_version": run_quiet(["nats-server", "--version"]),
        "redis_server_version": run_quiet(["redis-server", "--version"]),
        "gnuplot_version": run_quiet(["gnuplot", "--version"]),
        "python_version": platform.python_version(),
        "git_commit": commit,
        "git_dirty": bool(dirty),
    }


def read_settings(path):
    settings = {}
    for line in read_text(path).splitlines():
        if "=" in line:
            key, value = line.split("=", 1)
            settings[key] = value
    return settings


def stats(values):
    if not values:
        return None
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def summarize_matrix(records, cells):
    summary = {}
    for mode in MODES:
        summary[mode] = {}
        for fanout, size in cells:
            per_target = {}
            for target in TARGETS:
                runs = [r for r in records if (r.get("target"), r.get("mode"), r.get("fanout"), r.get("size"))
                        == (target, mode, fanout, size) and "ok" in r]
                entry = {name: stats(ok_values(records, target, mode, fanout, size, name))
                         for name in [*FIGURES, *DERIVED_FIGURES]}
                entry["runs"] = len(runs)
                entry["failed"] = sum(1 for r in runs if not r["ok"])
                # ringhub-perf's rate_kept: false when the publishers fell behind the fixed rate.
                entry["rate_not_kept"] = sum(1 for r in runs if (r.get("result") or {}).get("rate_kept") is False)
                per_target[target] = entry
            summary[mode][cell_key(fanout, size)] = per_target
    return summary


def cell_key(fanout, size):
    return f"K={fanout} S={size}"


def median_of(summary, mode, fanout, size, target, name):
    entry = summary.get(mode, {}).get(cell_key(fanout, size), {}).get(target, {})
    value = entry.get(name)
    return value["median"] if value else None


def throughput_target(summary, fanout, size):
    """The issue's throughput target for one cell: figure, factor, verdict."""
    if size <= SMALL_MAX_BYTES:
        name, factor = "delivered_per_s", SMALL_FACTOR
    elif size >= LARGE_MIN_BYTES:
        name, factor = "delivered_bytes_per_s", LARGE_FACTOR
    else:
        return {"figure": None, "factor": None, "met": None, "note": "no target for this size"}
    hub = median_of(summary, "saturating", fanout, size, "ringhub", name)
    peers = {p: median_of(summary, "saturating", fanout, size, p, name) for p in PEERS}
    peers = {p: v for p, v in peers.items() if v is not None}
    verdict = {"figure": name, "factor": factor, "faster_peer": None, "met": None, "note": ""}
    if not peers:
        verdict["note"] = "no peer figure"
        return verdict
    faster = max(peers, key=peers.get)
    verdict["faster_peer"] = faster
    if hub is None:
        verdict.update(met=False, note="ringhub had no successful run")
        return verdict
    verdict["met"] = hub >= factor * peers[faster]
    verdict["note"] = f"{hub / peers[faster]:.2f}x {TARGET_NAMES[faster]}"
    return verdict


def latency_target(summary, fanout, size):
    hub = median_of(summary, "fixed", fanout, size, "ringhub", "latency_p99_ns")
    peers = {p: median_of(summary, "fixed", fanout, size, p, "latency_p99_ns") for p in PEERS}
    missing = [TARGET_NAMES[p] for p, v in peers.items() if v is None]
    peers = {p: v for p, v in peers.items() if v is not None}
    if hub is None:
        return {"met": False if peers else None, "note": "ringhub had no successful fixed-rate run"}
    if not peers:
        return {"met": None, "note": "no peer figure"}
    note = f"ringhub p99 {fmt_ns(hub)} vs best peer {fmt_ns(min(peers.values()))}"
    if missing:
        note += f" ({', '.join(missing)} had no successful run)"
    return {"met": all(hub < v for v in peers.values()), "note": note}


def idle_target(idle_records):
    runs = [r for r in idle_records if r.get("target") == "ringhub" and r.get("connections") == IDLE_TARGET_CONNECTIONS]
    if not runs:
        return {"met": None, "note": f"not measured ({IDLE_TARGET_CONNECTIONS} connections not in this run)"}
    result = runs[-1].get("result") or {}
    per_conn = result.get("rss_per_conn_bytes")
    if not runs[-1]["ok"] or per_conn is None:
        return {"met": False, "note": f"run failed: {runs[-1]['failure']}"}
    return {"met": per_conn < IDLE_TARGET_BYTES_PER_CONN, "note": f"{per_conn:.0f} B per connection"}


def targets(summary, cells, idle_records):
    per_cell = {}
    for fanout, size in cells:
        per_cell[cell_key(fanout, size)] = {
            "throughput": throughput_target(summary, fanout, size),
            "latency_p99": latency_target(summary, fanout, size),
        }
    return {"cells": per_cell, "idle": idle_target(idle_records)}


def read_limits(work):
    rc = read_text(os.path.join(work, "limits.rc")).strip()
    limits = parse_json_object(read_text(os.path.join(work, "limits.json")))
    return {
        "exit_code": int(rc) if rc.lstrip("-").isdigit() else None,
        "result": limits,
        "stderr_tail": tail(read_text(os.path.join(work, "limits.err"))),
        "pinning": "single streams unpinned (the kernel places the sender and receiver threads)",
    }


def parse_cells(settings):
    cells = []
    for text in settings.get("cells", "").split(";"):
        if text.strip():
            fanout, size = text.split()
            cells.append((int(fanout), int(size)))
    return cells


def cmd_build(args):
    settings = read_settings(os.path.join(args.work, "settings.env"))
    matrix = load_jsonl(os.path.join(args.work, "matrix.jsonl"))
    results = {
        "schema": 1,
        "environment": environment(args.repo),
        "settings": settings,
        "servers": server_settings(args.work),
        "cells": [list(c) for c in (parse_cells(settings) or cells_of(matrix))],
        "runs": matrix,
        "idle": load_jsonl(os.path.join(args.work, "idle.jsonl")),
        "limits": read_limits(args.work),
        "server_events": read_text(os.path.join(args.work, "server_events.txt")) or None,
        "elapsed_s": args.elapsed,
    }
    os.makedirs(args.out, exist_ok=True)
    render(args.out, results)


def derive(results):
    """The figures computed from the raw runs: fixed rates, medians and spreads, target verdicts."""
    cells = [tuple(c) for c in results["cells"]]
    settings = results["settings"]
    share = float(settings.get("fixed_rate_share", "0.5"))
    base_s = float(settings.get("fixed_duration_s", "2"))
    results["fixed_rates"] = fixed_rates(results["runs"], cells, share, base_s)
    results["summary"] = summarize_matrix(results["runs"], cells)
    results["targets"] = targets(results["summary"], cells, results["idle"])


def fixed_rates(matrix, cells, share, base_s):
    rates = {}
    for fanout, size in cells:
        rate, basis = fixed_rate(matrix, fanout, size, share)
        rates[cell_key(fanout, size)] = {"rate": rate, "duration_s": fixed_duration(rate, base_s), "basis": basis}
    return rates


def server_settings(work):
    return {
        "pinning": "each server: taskset -c 0; ringhub-perf: taskset -c 1",
        "ringhub": "ringhub --bind 127.0.0.1 --relay-port P --line-port P+1 --admin-port P+2 --shards 1 "
                   "--max-connections 10000 --log-level warn (idle runs: default shards, --max-connections 110000)",
        "nats": "GOMAXPROCS=1 nats-server -c nats.conf",
        "nats_conf": read_text(os.path.join(work, "nats.conf")),
        "redis": "redis-server --bind 127.0.0.1 --port P --save '' --appendonly no --io-threads 1 "
                 "--client-output-buffer-limit 'pubsub 256mb 64mb 60' --protected-mode no "
                 "--maxclients 100000 --logfile ''",
    }


# ---------------------------------------------------------------- formatting


def fmt_num(value, digits=3):
    if value is None:
        return "–"
    return f"{value:.{digits}g}"


def fmt_si(value):
    if value is None:
        return "–"
    for factor, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= factor:
            return f"{value / factor:.3g}{suffix}"
    return f"{value:.3g}"


def fmt_rate_bytes(value):
    return "–" if value is None else f"{value / 1e6:,.0f} MB/s"


def fmt_bytes(value):
    if value is None:
        return "–"
    for factor, suffix in ((1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")):
        if abs(value) >= factor:
            return f"{value / factor:.3g} {suffix}"
    return f"{value:.0f} B"


def fmt_ns(value):
    if value is None:
        return "–"
    if value >= 1e9:
        return f"{value / 1e9:.3g} s"
    if value >= 1e6:
        return f"{value / 1e6:.3g} ms"
    return f"{value / 1e3:.3g} µs"


def fmt_size(size):
    if size >= 1 << 20:
        return f"{size >> 20} MiB"
    if size >= 1 << 10:
        return f"{size >> 10} KiB"
    return f"{size} B"


def cell_label(fanout, size):
    return f"K={fanout} S={fmt_size(size)}"


def fmt_spread(entry, formatter):
    """median (min–max) of one figure, or a dash."""
    if not entry:
        return "–"
    text = formatter(entry["median"])
    if entry["n"] > 1:
        text += f" ({formatter(entry['min'])}–{formatter(entry['max'])})"
    return text


def fmt_count(value):
    return f"{value:,}" if isinstance(value, int) else "–"


def fmt_whole(value):
    return "–" if value is None else f"{value:,.0f}"


def fenced(text):
    """A code block indented to sit inside a Markdown list item."""
    return "  ```\n" + "\n".join("  " + line for line in text.splitlines()) + "\n  ```"


def fmt_ratio(a, b):
    return "–" if a is None or not b else f"{a / b:.2f}x"


def fmt_verdict(met):
    return {True: "**met**", False: "**missed**", None: "n/a"}[met]


def table_cell(value):
    """One Markdown table cell: a | or a line break would end the cell or the row."""
    return " ".join(str(value).replace("|", "\\|").splitlines())


def table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(table_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


# ---------------------------------------------------------------- render: README.md


def entry_of(results, mode, fanout, size, target):
    return results["summary"].get(mode, {}).get(cell_key(fanout, size), {}).get(target, {})


def cell_failures(results, mode, fanout, size, target):
    entry = entry_of(results, mode, fanout, size, target)
    return f" ⚠{entry['failed']}" if entry.get("failed") else ""


def spread_cell(results, mode, fanout, size, target, entry, formatter):
    return fmt_spread(entry, formatter) + cell_failures(results, mode, fanout, size, target)


def saturating_table(results):
    rows = []
    for fanout, size in map(tuple, results["cells"]):
        verdict = results["targets"]["cells"][cell_key(fanout, size)]["throughput"]
        name = verdict["figure"] or ("delivered_per_s" if size <= SMALL_MAX_BYTES else "delivered_bytes_per_s")
        formatter = fmt_si if name == "delivered_per_s" else fmt_rate_bytes
        values = {t: entry_of(results, "saturating", fanout, size, t).get(name) for t in TARGETS}
        medians = {t: v["median"] if v else None for t, v in values.items()}
        goal = f"≥ {verdict['factor']}x faster peer" if verdict["factor"] else "–"
        rows.append([cell_label(fanout, size), "msgs/s" if name == "delivered_per_s" else "bytes/s"]
                    + [spread_cell(results, "saturating", fanout, size, t, values[t], formatter) for t in TARGETS]
                    + [fmt_ratio(medians["ringhub"], medians["nats"]), fmt_ratio(medians["ringhub"], medians["redis"]),
                       goal, f"{fmt_verdict(verdict['met'])} {verdict['note']}".strip()])
    header = ["cell", "delivered", "ringhub", "NATS", "Redis", "ringhub/NATS", "ringhub/Redis", "target", "verdict"]
    return table(header, rows)


def figure_table(results, mode, name, formatter, ratios=True):
    rows = []
    for fanout, size in map(tuple, results["cells"]):
        values = {t: entry_of(results, mode, fanout, size, t).get(name) for t in TARGETS}
        medians = {t: v["median"] if v else None for t, v in values.items()}
        row = [cell_label(fanout, size)]
        row += [spread_cell(results, mode, fanout, size, t, values[t], formatter) for t in TARGETS]
        if ratios:
            row += [fmt_ratio(medians["ringhub"], medians["nats"]), fmt_ratio(medians["ringhub"], medians["redis"])]
        rows.append(row)
    header = ["cell", "ringhub", "NATS", "Redis"] + (["ringhub/NATS", "ringhub/Redis"] if ratios else [])
    return table(header, rows)


def busy_table(results):
    """Per saturating cell and server: the median share of the window the server's core and the load
    generator's core were busy."""
    rows = []
    for fanout, size in map(tuple, results["cells"]):
        row = [cell_label(fanout, size)]
        for target in TARGETS:
            entry = entry_of(results, "saturating", fanout, size, target)
            shares = [entry.get(name) for name in ("server_busy", "load_busy")]
            row.append(" / ".join("–" if v is None else f"{v['median']:.0%}" for v in shares))
        rows.append(row)
    return table(["cell", "ringhub", "NATS", "Redis"], rows)


def fmt_fixed_rate(results, fanout, size):
    """The cell's rate, with the run length when a slow rate stretched it."""
    fixed = results["fixed_rates"].get(cell_key(fanout, size), {})
    text = fmt_si(fixed.get("rate"))
    base = results["settings"].get("fixed_duration_s")
    if fixed.get("duration_s") is not None and base and fixed["duration_s"] != float(base):
        text += f" for {fixed['duration_s']:g} s"
    return text


def latency_table(results, mode):
    rows = []
    for fanout, size in map(tuple, results["cells"]):
        row = [cell_label(fanout, size)]
        if mode == "fixed":
            row.append(fmt_fixed_rate(results, fanout, size))
        for target in TARGETS:
            entry = entry_of(results, mode, fanout, size, target)
            parts = [fmt_ns((entry.get(f"latency_{p}_ns") or {}).get("median")) for p in ("p50", "p99", "p999")]
            lagged = entry.get("rate_not_kept") if mode == "fixed" else 0
            row.append(" / ".join(parts) + cell_failures(results, mode, fanout, size, target)
                       + (f" (rate not kept in {lagged})" if lagged else ""))
        if mode == "fixed":
            verdict = results["targets"]["cells"][cell_key(fanout, size)]["latency_p99"]
            row.append(f"{fmt_verdict(verdict['met'])} {verdict['note']}")
        rows.append(row)
    header = ["cell"] + (["rate (pub/s)"] if mode == "fixed" else [])
    header += [f"{TARGET_NAMES[t]} p50 / p99 / p99.9" for t in TARGETS]
    header += ["p99 below both peers"] if mode == "fixed" else []
    return table(header, rows)


def rss_table(results):
    rows = []
    for fanout, size in map(tuple, results["cells"]):
        row = [cell_label(fanout, size)]
        for target in TARGETS:
            entry = entry_of(results, "saturating", fanout, size, target)
            rss = (entry.get("rss_bytes") or {}).get("median")
            hwm = (entry.get("hwm_bytes") or {}).get("max")
            row.append(f"{fmt_bytes(rss)} / {fmt_bytes(hwm)}")
        rows.append(row)
    return table(["cell"] + [f"{TARGET_NAMES[t]} RSS / peak" for t in TARGETS], rows)


def idle_outcome(record):
    if record.get("kind") == "skipped":
        return f"skipped: {record['reason']}"
    if record["ok"]:
        return "yes"
    errors = (record.get("result") or {}).get("errors") or []
    first = f" (first error: {errors[0]})" if errors else ""
    return f"no: {record['failure']}{first}"


def idle_table(results):
    rows = []
    for r in results["idle"]:
        result = r.get("result") or {}
        rows.append([TARGET_NAMES.get(r["target"], r["target"]), fmt_count(r.get("connections")),
                     fmt_count(result.get("opened")),
                     fmt_num(result.get("seconds_to_open")), fmt_si(result.get("accept_per_s")),
                     fmt_bytes(result.get("rss_before_bytes")), fmt_bytes(result.get("rss_after_bytes")),
                     fmt_whole(result.get("rss_per_conn_bytes")),
                     idle_outcome(r)])
    header = ["server", "asked", "opened", "s to open", "accepts/s", "RSS before", "RSS after", "bytes/conn",
              "complete"]
    return table(header, rows)


def limits_section(results):
    limits = results["limits"].get("result")
    if not limits:
        return (f"ringhub-limits failed (exit {results['limits'].get('exit_code')}):\n\n```\n"
                f"{results['limits'].get('stderr_tail') or '(no stderr)'}\n```")
    gbps = (1e-9, "GB/s", 2)
    nspb = (1.0, "ns/B", 3)
    def placed(cpu):
        return "unpinned" if cpu is None or cpu < 0 else f"on CPU {cpu}"
    floor = (f"{limits.get('relay_streams')} x 1 MiB streams, relay {placed(limits.get('relay_cpu'))}, "
             f"writers and readers {placed(limits.get('load_cpu'))}")
    names = [("loopback_1mib_bytes_per_s", "loopback TCP, one stream, 1 MiB writes", gbps),
             ("loopback_64kib_bytes_per_s", "loopback TCP, one stream, 64 KiB writes", gbps),
             ("memcpy_1mib_hot_bytes_per_s", "memcpy 1 MiB, cache-hot", gbps),
             ("memcpy_1mib_dram_bytes_per_s", f"memcpy 1 MiB, DRAM ({limits.get('dram_set_mib')} MiB sets)", gbps),
             ("relay_copy_ns_per_byte", f"relay floor, read/write: relay CPU per byte ({floor})", nspb),
             ("relay_copy_load_ns_per_byte", "relay floor, read/write: writers' and readers' CPU per byte", nspb),
             ("relay_copy_bytes_per_s", "relay floor, read/write: bytes relayed", gbps),
             ("relay_splice_ns_per_byte", f"relay floor, splice: relay CPU per byte ({floor})", nspb),
             ("relay_splice_load_ns_per_byte", "relay floor, splice: writers' and readers' CPU per byte", nspb),
             ("relay_splice_bytes_per_s", "relay floor, splice: bytes relayed", gbps)]
    rows = []
    for key, label, (scale, unit, digits) in names:
        if key not in limits:
            continue  # results from before the measurement existed
        samples = (limits.get("samples") or {}).get(key) or []
        spread = f"{min(samples) * scale:.{digits}f}–{max(samples) * scale:.{digits}f}" if samples else "–"
        rows.append([label, f"{limits.get(key, 0) * scale:.{digits}f} {unit}", spread])
    text = (f"`ringhub-limits --duration {limits.get('duration_s')} --repeats {limits.get('repeats')}`, "
            f"{results['limits']['pinning']}; median of {limits.get('repeats')} (GB = 10^9 bytes).\n\n")
    return (text + table(["measurement", "median", "min–max"], rows) + "\n\n" + fraction_table(results, limits)
            + floor_table(results, limits))


def floor_table(results, limits):
    """Each server's CPU per delivered byte at fan-out 1 with large bodies, against the relay floor."""
    copy_floor = limits.get("relay_copy_ns_per_byte")
    if not copy_floor:
        return ""
    rows = []
    for fanout, size in map(tuple, results["cells"]):
        if fanout != 1 or size < LARGE_MIN_BYTES:
            continue
        row = [cell_label(fanout, size)]
        for target in TARGETS:
            per_delivery = median_of(results["summary"], "saturating", fanout, size, target, "cpu_us_per_delivery")
            row.append("–" if per_delivery is None else
                       f"{per_delivery * 1e3 / size:.3f} ({per_delivery * 1e3 / size / copy_floor:.2f}x)")
        rows.append(row)
    if not rows:
        return ""
    return ("\n\nServer CPU per delivered byte at fan-out 1 (ns/B, saturating, median), and as a multiple of the "
            "read/write relay floor above: a relay that only moves bytes through user space spends that much, so "
            "no copying server goes much below 1.0x.\n\n" + table(["cell", "ringhub", "NATS", "Redis"], rows))


def fraction_table(results, limits):
    rows = []
    for fanout, size in map(tuple, results["cells"]):
        if size < LARGE_MIN_BYTES:
            continue
        hub = median_of(results["summary"], "saturating", fanout, size, "ringhub", "delivered_bytes_per_s")
        stream = limits.get("loopback_1mib_bytes_per_s" if size >= 1 << 20 else "loopback_64kib_bytes_per_s")
        rows.append([cell_label(fanout, size), fmt_rate_bytes(hub), fmt_rate_bytes(stream),
                     "–" if hub is None or not stream else f"{hub / stream:.2f}"])
    if not rows:
        return ""
    return ("ringhub's delivered bytes/s (summed over all K receivers) as a fraction of one loopback stream "
            "with the same write size:\n\n" + table(["cell", "ringhub delivered", "one stream", "fraction"], rows))


def failures_section(results):
    failed = [r for r in results["runs"] + results["idle"]
              if (not r.get("ok", True) and not r.get("limit_reached")) or r.get("kind") == "skipped"]
    lines = []
    for r in failed:
        where = f"N={r.get('connections')}"
        if r["mode"] != "idle":
            where = cell_label(r["fanout"], r["size"]) + (f" #{r['repeat']}" if "repeat" in r else "")
        if r.get("kind") == "skipped":
            lines.append(f"- {r['target']} {r['mode']} {where}: skipped: {r['reason']}")
            continue
        lines.append(f"- {r['target']} {r['mode']} {where}: {r['failure']}")
        detail = r.get("stderr_tail") or r.get("stdout_tail")
        if detail:
            lines.append(fenced(detail))
    if results.get("server_events"):
        lines.append("- server restarts:\n" + fenced(results["server_events"]))
    return "\n".join(lines) if lines else "None: every run exited 0 and verified."


def targets_section(results):
    rows = []
    for fanout, size in map(tuple, results["cells"]):
        verdicts = results["targets"]["cells"][cell_key(fanout, size)]
        throughput = verdicts["throughput"]
        rows.append([cell_label(fanout, size), f"{fmt_verdict(throughput['met'])} {throughput['note']}",
                     fmt_verdict(verdicts["latency_p99"]["met"])])
    idle = results["targets"]["idle"]
    text = table(["cell", "throughput target", "fixed-rate p99 below both peers"], rows)
    return (text + "\n\nIdle connections (< 1 KiB hub RSS per connection at 100k): "
            f"{fmt_verdict(idle['met'])}, {idle['note']}.")


def environment_section(results):
    env = results["environment"]
    settings = results["settings"]
    rows = [["date (UTC)", env.get("date_utc")], ["kernel", env.get("kernel")], ["OS", env.get("os")],
            ["CPU", f"{env.get('cpu_model')}, {env.get('nproc')} cores"],
            ["memory", fmt_bytes(env.get("memory_bytes"))],
            ["open files (soft, hard)", ", ".join(env.get("open_files_soft_hard") or [])],
            ["nats-server", env.get("nats_server_version")], ["redis-server", env.get("redis_server_version")],
            ["git commit", f"`{env.get('git_commit')}`" + (" (uncommitted changes)" if env.get("git_dirty") else "")],
            ["mode", "quick" if settings.get("quick") == "1" else "full"],
            ["repeats per cell", settings.get("repeats")],
            ["saturating run", f"{settings.get('duration_s')} s after {settings.get('warmup_s')} s warm-up, "
                               f"{settings.get('publishers')} publishers"],
            ["fixed-rate run", f"{settings.get('fixed_duration_s')} s at {settings.get('fixed_rate_share')} x "
                               "the slower peer's median saturating publish rate; a slow rate stretches the run "
                               f"(up to {MAX_FIXED_DURATION_S:g} s) to publish at least {MIN_FIXED_MESSAGES}"],
            ["whole run", f"{results.get('elapsed_s')} s"]]
    return table(["", ""], [[k, v if v is not None else "–"] for k, v in rows])


def servers_section(results):
    servers = results["servers"]
    conf = servers.get("nats_conf", "").strip()
    return "\n".join([f"- pinning: {servers['pinning']}",
                      f"- ringhub: `{servers['ringhub']}`",
                      f"- NATS: `{servers['nats']}` with\n" + fenced(conf),
                      f"- Redis: `{servers['redis']}`"])


def read_analysis(readme):
    text = read_text(readme)
    start, end = text.find(ANALYSIS_BEGIN), text.find(ANALYSIS_END)
    if start < 0 or end < start:
        return ANALYSIS_PLACEHOLDER
    return text[start + len(ANALYSIS_BEGIN):end].strip("\n") or ANALYSIS_PLACEHOLDER


def readme_text(results, analysis, plots):
    open_files = ", ".join(results["environment"].get("open_files_soft_hard") or ["?"])
    publishers = results["settings"].get("publishers", "?")
    sections = [
        "# ringhub vs NATS vs Redis on one box",
        "Generated by `perf/compare/report.py` from `results.json` (every run raw, medians, environment). "
        "Regenerate with `bash perf/compare/compare.sh` (full, about 15 minutes) or "
        "`bash perf/compare/compare.sh --quick --out /tmp/compare-quick` (under 3 minutes); "
        "`python3 perf/compare/report.py render --out DIR` rebuilds this page and the plots from `DIR/results.json`. "
        "Only the block between the analysis markers is hand-written; it is kept when the page is regenerated.",
        "Each server runs alone, pinned to CPU 0, and `ringhub-perf` (pinned to CPU 1) drives it over loopback: "
        f"{publishers} publishers, each message to K subscribers, S-byte bodies, every delivery checked. "
        "Figures are medians over "
        "the repeats with (min–max); ⚠n marks n failed runs, listed under Failures. "
        "Delivered counts every copy received, so at K=16 one published message is 16 deliveries.",
        "## Analysis", ANALYSIS_BEGIN, analysis, ANALYSIS_END,
        "## Targets", targets_section(results),
        "## Environment", environment_section(results),
        "## Servers", servers_section(results),
        "## Saturating throughput", saturating_table(results),
        "Published messages/s:", figure_table(results, "saturating", "published_per_s", fmt_si),
    ]
    sections += [f"![{alt}]({name})" for name, alt in plots if name.startswith("throughput")]
    sections += [
        "## Latency at a fixed rate", latency_table(results, "fixed"),
        "Delivered messages/s at that rate:", figure_table(results, "fixed", "delivered_per_s", fmt_si),
    ]
    sections += [f"![{alt}]({name})" for name, alt in plots if name.startswith("latency")]
    sections += [
        "## Latency under saturation", latency_table(results, "saturating"),
        "## Server CPU per delivery (µs)",
        "Saturating:", figure_table(results, "saturating", "cpu_us_per_delivery", lambda v: f"{v:.3g}"),
        "Fixed rate:", figure_table(results, "fixed", "cpu_us_per_delivery", lambda v: f"{v:.3g}"),
        "## Which side was busy (saturating runs)",
        "Server / load generator: CPU seconds over the measured window, as a share of it (median). Each is pinned "
        "to one core, so the side near 100% set the pace; where the load generator is, the cell measures it "
        "more than the server.", busy_table(results),
        "## Server memory (saturating runs)",
        "RSS at the end of the run (median) / peak RSS (VmHWM, largest). One server start per target per pass, "
        "so a cell's RSS includes what earlier cells left behind.", rss_table(results),
        "## Connection scale (idle connections)",
        "ringhub with default shards and `--max-connections 110000`; NATS and Redis stop at the open-file limit "
        f"({open_files}), so their rows show what they reached. "
        "bytes/conn = (RSS after − RSS before) / opened.", idle_table(results),
        "## Physical limits of this box", limits_section(results),
        "## Failures", failures_section(results),
    ]
    return "\n\n".join(s for s in sections if s) + "\n"


def write_atomically(path, text):
    """Replaces path in one step, so an interrupted run never leaves half a file (or loses the analysis)."""
    partial = path + ".partial"
    with open(partial, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(partial, path)


def render(out, results):
    """Derives the figures again from the raw runs, then writes results.json, README.md and the plots."""
    derive(results)
    write_atomically(os.path.join(out, "results.json"), json.dumps(results, indent=1) + "\n")
    readme = os.path.join(out, "README.md")
    analysis = read_analysis(readme)
    plots = make_plots(results, out)
    write_atomically(readme, readme_text(results, analysis, plots))
    print(f"report: wrote {readme}, results.json and {len(plots)} plots", file=sys.stderr)


def cmd_render(args):
    with open(os.path.join(args.out, "results.json"), encoding="utf-8") as f:
        render(args.out, json.load(f))


# ---------------------------------------------------------------- plots (gnuplot)


def plot_label(fanout, size):
    return f"K={fanout}\\nS={fmt_size(size)}"  # a backslash-n gnuplot reads as a line break


def histogram_data(results, mode, name, scale):
    """Rows: cell label, then median, min, max per target ('?' when missing)."""
    rows = []
    for fanout, size in map(tuple, results["cells"]):
        row = [plot_label(fanout, size)]
        for target in TARGETS:
            value = entry_of(results, mode, fanout, size, target).get(name)
            if value and value["min"] > 0:
                row += [f"{value[k] * scale:.6g}" for k in ("median", "min", "max")]
            else:
                row += ["?"] * 3
        rows.append(row)
    return rows


def write_data(path, rows):
    with open(path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(f"\"{row[0]}\" " + " ".join(row[1:]) + "\n")


def throughput_script(data, output, ylabel, title):
    # Per target three columns (median, min, max): the bar and its error bar.
    columns = [f"{2 + 3 * i}:{3 + 3 * i}:{4 + 3 * i}" + (":xtic(1)" if i == 0 else "") for i in range(len(TARGETS))]
    plots = ", ".join(f"'{data}' using {c} title '{TARGET_NAMES[t]}'" for c, t in zip(columns, TARGETS))
    return f"""set terminal pngcairo size 1200,600 noenhanced font ',10'
set output '{output}'
set bmargin 5
set title '{title}'
set datafile missing '?'
set style data histograms
set style histogram errorbars gap 1 lw 1
set style fill solid 0.7 border -1
set logscale y
set grid ytics
set ylabel '{ylabel}'
set key top right
plot {plots}
"""


def latency_script(data_by_target, output, yrange):
    lines = [f"set terminal pngcairo size 1200,1350 noenhanced font ',10'", f"set output '{output}'", "set bmargin 5",
             "set datafile missing '?'", "set style data histograms", "set style histogram clustered gap 1",
             "set style fill solid 0.7 border -1", "set logscale y", "set grid ytics", "set key top left",
             f"set yrange [{yrange[0]}:{yrange[1]}]", "set ylabel 'latency (µs)'",
             "set multiplot layout 3,1 title 'Latency at a fixed rate: p50, p99, p99.9 (median of repeats)'"]
    for target, data in data_by_target.items():
        lines.append(f"set title '{TARGET_NAMES[target]}'")
        if data is None:  # an empty panel: gnuplot cannot plot a file without one valid point
            lines += ["set label 1 'no successful run' at graph 0.5, 0.5 center", "plot [0:1] 1/0 notitle",
                      "unset label 1"]
            continue
        lines.append(f"plot '{data}' using 2:xtic(1) title 'p50', '' using 3 title 'p99', '' using 4 title 'p99.9'")
    lines.append("unset multiplot")
    return "\n".join(lines) + "\n"


def latency_data(results, target):
    rows, values = [], []
    for fanout, size in map(tuple, results["cells"]):
        entry = entry_of(results, "fixed", fanout, size, target)
        row = [plot_label(fanout, size)]
        for p in ("p50", "p99", "p999"):
            median = (entry.get(f"latency_{p}_ns") or {}).get("median")
            row.append(f"{median / 1e3:.6g}" if median else "?")
            if median:
                values.append(median / 1e3)
        rows.append(row)
    return rows, values


def run_gnuplot(script, workdir):
    path = os.path.join(workdir, "plot.gp")
    with open(path, "w", encoding="utf-8") as f:
        f.write(script)
    done = subprocess.run(["gnuplot", path], capture_output=True, text=True, timeout=60, check=False)
    if done.returncode != 0:
        print(f"report: gnuplot failed: {done.stderr.strip()}", file=sys.stderr)
    return done.returncode == 0


def make_plots(results, out):
    """Writes the PNGs; returns (file name, alt text) of each one made."""
    if not shutil.which("gnuplot") or not results["cells"]:
        print("report: no gnuplot or no cells: no plots", file=sys.stderr)
        return []
    made = []
    with tempfile.TemporaryDirectory() as workdir:
        specs = [("throughput_msgs.png", "delivered_per_s", 1.0, "delivered messages/s",
                  "Saturating: delivered messages/s by fan-out K and body size S (median, min-max bars)"),
                 ("throughput_bytes.png", "delivered_bytes_per_s", 1e-6, "delivered MB/s",
                  "Saturating: delivered MB/s by fan-out K and body size S (median, min-max bars)")]
        for name, figure_name, scale, ylabel, title in specs:
            data = os.path.join(workdir, name + ".dat")
            write_data(data, histogram_data(results, "saturating", figure_name, scale))
            if run_gnuplot(throughput_script(data, os.path.join(out, name), ylabel, title), workdir):
                made.append((name, title))
        data_by_target, all_values = {}, []
        for target in TARGETS:
            rows, values = latency_data(results, target)
            data_by_target[target] = os.path.join(workdir, f"latency_{target}.dat") if values else None
            if values:
                write_data(data_by_target[target], rows)
            all_values += values
        if all_values:
            yrange = (min(all_values) / 2, max(all_values) * 2)
            if run_gnuplot(latency_script(data_by_target, os.path.join(out, "latency.png"), yrange), workdir):
                made.append(("latency.png", "Latency at a fixed rate: p50, p99, p99.9 per target"))
    return made


# ---------------------------------------------------------------- main


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)

    record = commands.add_parser("record", help="append one ringhub-perf run to a JSON-lines file")
    record.add_argument("--jsonl", required=True)
    record.add_argument("--target", required=True)
    record.add_argument("--mode", required=True)
    for name in ("--fanout", "--size", "--repeat", "--exit-code", "--elapsed"):
        record.add_argument(name, type=int, required=True)
    record.add_argument("--rate", type=float, default=0)
    record.add_argument("--stdout", required=True)
    record.add_argument("--stderr", required=True)
    record.add_argument("--command", required=True)
    record.set_defaults(run=cmd_record)

    skip = commands.add_parser("skip", help="record a run that did not happen, and why")
    skip.add_argument("--jsonl", required=True)
    skip.add_argument("--target", required=True)
    skip.add_argument("--mode", required=True)
    skip.add_argument("--fanout", type=int, default=0)
    skip.add_argument("--size", type=int, default=0)
    skip.add_argument("--connections", type=int, default=0)
    skip.add_argument("--reason", required=True)
    skip.set_defaults(run=cmd_skip)

    rates = commands.add_parser("rates", help="print 'K S rate seconds basis' per cell for the fixed-rate pass")
    rates.add_argument("--jsonl", required=True)
    rates.add_argument("--share", type=float, default=0.5)
    rates.add_argument("--duration", type=float, default=2.0, help="fixed-rate seconds before stretching")
    rates.set_defaults(run=cmd_rates)

    build = commands.add_parser("build", help="results.json, README.md and plots from a compare.sh work dir")
    build.add_argument("--work", required=True)
    build.add_argument("--out", required=True)
    build.add_argument("--repo", default=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    build.add_argument("--elapsed", type=int, default=None)
    build.set_defaults(run=cmd_build)

    render_cmd = commands.add_parser("render", help="README.md and plots again from OUT/results.json")
    render_cmd.add_argument("--out", required=True)
    render_cmd.set_defaults(run=cmd_render)

    args = parser.parse_args()
    args.run(args)


if __name__ == "__main__":
    main()
