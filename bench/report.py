#!/usr/bin/env python3
"""Render the tables of a bench/run.sh results directory as markdown.

Usage: report.py OUT_DIR [OUT_DIR...]   (reads runs.tsv, rss.tsv, versions.txt, sessions.txt)

Several directories are merged: reps are renumbered per directory, so paired ratios stay within
one run; machine, versions and RSS are taken from the last directory.

wake-ups/req counts the voluntary context switches (sleeps ended by a wake-up) of the target's
processes per request; for direct, the origin's. At one connection every process on the path
sleeps once per message it waits for, so the count shows how many hand-offs a path makes.

req/s, latencies and CPU are medians over reps; /direct, /nginx and /base are medians of
per-rep paired ratios (same rep, back-to-back cells), which cancel most of the drift of a
shared machine. /base compares a variant with the plain path it extends:
worker-10k and worker-r100 and tunnel against worker, server-r100 against server, nginx2 (a
second nginx in front of the first) against nginx.

A run whose latency figures cannot be right is left out of the latency medians (marked †):
each connection has one request in flight, so wrk's mean latency × requests cannot much exceed
connections × wall time (ordinary runs reach 1.1–1.3× of it, wrk's clock reads included); runs
past 2× are dropped. Such runs (mean ~1.3 ms, p99 near 60 ms, max near 100 ms, at 12–14× of
the bound, on any target including direct) come from a stall of the machine or of wrk, not of
the proxy.
"""
import os
import re
import statistics
import sys

BASE = {"worker-10k": "worker", "worker-r100": "worker", "server-r100": "server", "tunnel": "worker",
        "nginx2": "nginx"}
ORDER = ["direct", "nginx", "nginx2", "server", "worker", "tunnel", "worker-10k", "server-r100", "worker-r100"]
WL_ORDER = ["small-c64", "small-c1", "1m-c64", "1m-c1", "tls-newconn-c16", "h2-small-c64"]


def num(s):
    try:
        return float(s)
    except ValueError:
        return None


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def load_rows(path):
    rows = []
    with open(path) as f:
        head = f.readline().rstrip("\n").split("\t")
        for line in f:
            rows.append(dict(zip(head, line.rstrip("\n").split("\t"))))
    return rows


LATENCY_KEYS = ("p50_us", "p90_us", "p99_us", "max_us")


def timing_ok(r):
    """False when wrk's latencies add up to more time than its connections had."""
    conns = re.search(r"-c(\d+)$", r["workload"])
    mean, reqs, secs = (num(r.get(k) or "") for k in ("mean_us", "reqs", "secs"))
    if conns is None or None in (mean, reqs, secs):
        return True
    return mean * reqs <= int(conns.group(1)) * secs * 1e6 * 2


def wrk_result(d, r):
    """The RESULT fields of a run's wrk output (results written before runs.tsv had them)."""
    path = os.path.join(d, "wrk", "%s.%s.%s.txt" % (r["workload"], r["target"], r["rep"]))
    try:
        with open(path) as f:
            lines = [line for line in f if line.startswith("RESULT ")]
    except OSError:
        return {}
    return dict(kv.split("=", 1) for kv in lines[-1].split()[1:]) if lines else {}


class Runs:
    def __init__(self, rows):
        self.cell = {}      # (w, t) -> list of rows
        self.by_rep = {}    # (rep, w, t) -> row
        for r in rows:
            r["timing_ok"] = timing_ok(r)
            self.cell.setdefault((r["workload"], r["target"]), []).append(r)
            self.by_rep[(r["rep"], r["workload"], r["target"])] = r
        self.reps = sorted({r["rep"] for r in rows})

    def m(self, w, t, key):
        rows = self.cell.get((w, t), [])
        if key in LATENCY_KEYS:
            rows = [r for r in rows if r["timing_ok"]]
        return med([num(r.get(key) or "") for r in rows])

    def dropped(self, w, t):
        return sum(1 for r in self.cell.get((w, t), []) if not r["timing_ok"])

    def ratio(self, w, t, ref, key="rps"):
        """median of paired per-rep ratios t/ref, plus (min, max)."""
        qs = []
        for rep in self.reps:
            a, b = self.by_rep.get((rep, w, t)), self.by_rep.get((rep, w, ref))
            if a and b and num(b[key]):
                qs.append(num(a[key]) / num(b[key]))
        if not qs:
            return None
        return statistics.median(qs), min(qs), max(qs)


def fmt_ratio(r):
    if r is None:
        return "-"
    q, lo, hi = r
    return "%.2f" % q if lo == hi else "%.2f (%.2f–%.2f)" % (q, lo, hi)


def fmt(x, spec="%.0f"):
    return "-" if x is None else spec % x


def main_table(R, out):
    out.append("| workload | target | req/s | [min–max] | MiB/s | p50 µs | p99 µs | Δp50 µs | cpu µs/req "
               "| wake-ups/req | /direct | /nginx | /base | err | foreign |")
    out.append("|---|---|---:|---|---:|---:|---:|---:|---:|---:|---|---|---|---:|---:|")
    for w in WL_ORDER:
        for t in ORDER:
            rows = R.cell.get((w, t))
            if not rows:
                continue
            rps = [num(r["rps"]) for r in rows]
            dp = None
            a, b = R.m(w, t, "p50_us"), R.m(w, "direct", "p50_us")
            if t != "direct" and a is not None and b is not None:
                dp = a - b
            base = BASE.get(t)
            out.append("| %s | %s | %s | [%s–%s] | %s | %s | %s | %s | %s | %s | %s | %s | %s | %d | %s |" % (
                w, t, fmt(med(rps)), fmt(min(rps)), fmt(max(rps)),
                fmt(R.m(w, t, "MiBps"), "%.1f") if w.startswith("1m") else "-",
                fmt(R.m(w, t, "p50_us")),
                fmt(R.m(w, t, "p99_us")) + (" †%d" % R.dropped(w, t) if R.dropped(w, t) else ""),
                "-" if dp is None else "%+.0f" % dp, fmt(R.m(w, t, "cpu_us_per_req"), "%.1f"),
                fmt(R.m(w, t, "wakeups_per_req"), "%.2f"),
                "1.00" if t == "direct" else fmt_ratio(R.ratio(w, t, "direct")),
                "1.00" if t == "nginx" else fmt_ratio(R.ratio(w, t, "nginx")),
                fmt_ratio(R.ratio(w, t, base)) if base else "-",
                sum(int(num(r["errors"]) or 0) for r in rows),
                fmt(R.m(w, t, "foreign_pct"), "%.0f%%")))


def rss_table(rss, R, out):
    out.append("| process | idle VmRSS | idle RssAnon | max VmRSS sampled under load | VmHWM after the runs "
               "| RssAnon after the runs |")
    out.append("|---|---:|---:|---:|---:|---:|")
    roles = []
    for r in rss:
        if r["process"] not in roles:
            roles.append(r["process"])
    target_of = {"server": ["server", "server-r100"], "worker": ["worker", "worker-r100"],
                 "worker10k": ["worker-10k"]}
    for p in roles:
        idle = [r for r in rss if r["process"] == p and r["phase"] == "idle"]
        after = [r for r in rss if r["process"] == p and r["phase"] == "after-load"]
        load = []
        for t in target_of.get(p, []):
            for w in WL_ORDER:
                load += [num(r["rss_load_kB"]) for r in R.cell.get((w, t), []) if num(r["rss_load_kB"])]
        kb = lambda v: "-" if v in (None, "-") else "%.1f MiB" % (float(v) / 1024)
        out.append("| %s | %s | %s | %s | %s | %s |" % (
            p, kb(idle[0]["VmRSS_kB"]) if idle else "-", kb(idle[0].get("RssAnon_kB")) if idle else "-",
            kb(max(load)) if load else "-", kb(after[0]["VmHWM_kB"]) if after else "-",
            kb(after[0].get("RssAnon_kB")) if after else "-"))


def targets_table(R, rss, out):
    """The bars of issue 8, as ratios measured in the same run."""
    out.append("| issue-8 target | server | worker | bar |")
    out.append("|---|---|---|---|")

    def cell(val, ok):
        if val is None:
            return "n/a"
        return "%s %s" % (val, "✅" if ok else "❌")

    def rps_row(label, w, bar):
        vals = []
        for t in ("server", "worker"):
            r = R.ratio(w, t, "nginx")
            vals.append(cell(None if r is None else "%.2f×" % r[0], r is not None and r[0] >= bar))
        out.append("| %s | %s | %s | ≥ %.2f× |" % (label, vals[0], vals[1], bar))

    rps_row("req/s vs nginx, 1 KiB, 64 conns", "small-c64", 0.9)
    rps_row("req/s vs nginx, 1 MiB, 64 conns", "1m-c64", 0.95)
    for w in ("small-c64", "small-c1", "1m-c64", "1m-c1"):
        vals = []
        for t in ("server", "worker"):
            a, b = R.m(w, t, "p99_us"), R.m(w, "nginx", "p99_us")
            q = None if a is None or not b else a / b
            vals.append(cell(None if q is None else "%.2f×" % q, q is not None and q <= 1.2))
        out.append("| p99 vs nginx, %s | %s | %s | ≤ 1.2× |" % (w, vals[0], vals[1]))
    for w in ("small-c1", "1m-c1"):
        vals = []
        for t in ("server", "worker"):
            a, b = R.m(w, t, "p50_us"), R.m(w, "direct", "p50_us")
            d = None if a is None or b is None else a - b
            vals.append(cell(None if d is None else "%+.0f µs" % d, d is not None and d <= 50))
        out.append("| added p50 over direct, %s | %s | %s | ≤ +50 µs |" % (w, vals[0], vals[1]))
    vals = []
    for p in ("server", "worker"):
        idle = [r for r in rss if r["process"] == p and r["phase"] == "idle"]
        v = float(idle[0]["VmRSS_kB"]) / 1024 if idle else None
        a = idle[0].get("RssAnon_kB") if idle else None
        vals.append(cell(None if v is None else "%.1f MiB (anon %s)" % (
            v, "-" if a in (None, "-") else "%.1f MiB" % (float(a) / 1024)), v is not None and v <= 8))
    out.append("| idle VmRSS (anonymous part in brackets) | %s | %s | ≤ 8 MiB |" % (vals[0], vals[1]))
    r = R.ratio("small-c64", "worker-10k", "worker")
    out.append("| 10,000 sessions vs 1 (worker, 1 KiB c64) | – | %s | ≥ 0.95× |" % cell(
        None if r is None else "%.2f×" % r[0], r is not None and r[0] >= 0.95))
    r1 = R.ratio("small-c1", "worker-10k", "worker")
    out.append("| 10,000 sessions vs 1 (worker, 1 KiB c1) | – | %s | ≥ 0.95× |" % cell(
        None if r1 is None else "%.2f×" % r1[0], r1 is not None and r1[0] >= 0.95))
    vals = []
    for t, b in (("server-r100", "server"), ("worker-r100", "worker")):
        r = R.ratio("small-c64", t, b)
        vals.append(cell(None if r is None else "%.2f×" % r[0], r is not None and r[0] >= 0.95))
    out.append("| 100 routes + 100 rewrites vs none (1 KiB c64) | %s | %s | (no bar; ≥ 0.95× shown) |"
               % (vals[0], vals[1]))
    parts = []
    for w in ("small-c64", "small-c1", "1m-c64", "1m-c1"):
        r = R.ratio(w, "tunnel", "worker")
        if r is not None:
            parts.append("%s %s" % (w, cell("%.2f×" % r[0], r[0] >= 0.7)))
    if not parts:
        out.append("| tunnel path vs direct worker path | – | not available | ≥ 0.7× |")
    else:
        out.append("| tunnel path vs direct worker path | – | %s | ≥ 0.7× |" % "; ".join(parts))
    parts = []
    for w in ("small-c64", "small-c1", "1m-c64", "1m-c1"):
        r = R.ratio(w, "nginx2", "nginx")
        if r is not None:
            t = R.ratio(w, "tunnel", "nginx2")
            parts.append("%s %.2f×%s" % (w, r[0], "" if t is None else " (tunnel %.2f× of it)" % t[0]))
    if parts:
        out.append("| reference: one more nginx hop (nginx → nginx vs nginx; the tunnel path "
                   "against those two nginx in brackets) | – | %s | (no bar) |" % "; ".join(parts))
    vals = []
    for t in ("server", "worker"):
        r = R.ratio("h2-small-c64", t, "nginx")
        vals.append("n/a" if r is None else "%.2f×" % r[0])
    out.append("| HTTP/2 prior knowledge req/s vs nginx (1 KiB, 8 conns × 8 streams) | %s | %s | (no bar) |"
               % (vals[0], vals[1]))
    r = R.ratio("tls-newconn-c16", "server", "nginx")
    out.append("| TLS handshakes/s vs nginx (new connection per request, 16 conns) | %s | – | (anchor: ≥ 0.8×) |"
               % cell(None if r is None else "%.2f×" % r[0], r is not None and r[0] >= 0.8))


def main():
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    rows = []
    for i, dd in enumerate(sys.argv[1:]):
        for r in load_rows(os.path.join(dd, "runs.tsv")):
            if "mean_us" not in r:
                r.update(wrk_result(dd, r))
            r["rep"] = "%d.%s" % (i, r["rep"])
            rows.append(r)
    d = sys.argv[-1]
    R = Runs(rows)
    if len(sys.argv) > 2:
        print("merged runs: " + ", ".join(sys.argv[1:]) + "\n")
    rss = load_rows(os.path.join(d, "rss.tsv")) if os.path.exists(os.path.join(d, "rss.tsv")) else []
    out = []
    vpath = os.path.join(d, "versions.txt")
    if os.path.exists(vpath):
        out.append("```")
        out += [line.rstrip("\n") for line in open(vpath)]
        spath = os.path.join(d, "sessions.txt")
        if os.path.exists(spath):
            out += ["worker-10k store: " + line.rstrip("\n") for line in open(spath)]
        out.append("```")
        out.append("")
    out.append("#### Issue-8 targets (paired ratios measured within the same run)")
    out.append("")
    targets_table(R, rss, out)
    out.append("")
    out.append("#### All cells (medians over %d rep(s); for 1 MiB rows req/s = MiB/s)" % len(R.reps))
    out.append("")
    main_table(R, out)
    n = sum(1 for r in rows if not r["timing_ok"])
    if n:
        out.append("")
        out.append("† runs left out of that cell's latency medians (%d in all): wrk's mean latency × "
                   "requests exceeded twice connections × wall time, so its latency figures cannot "
                   "be right (see bench/report.py)." % n)
    out.append("")
    out.append("#### Resident memory (Linkup processes; nginx proxy master+worker for reference)")
    out.append("")
    rss_table(rss, R, out)
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
