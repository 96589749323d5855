#!/usr/bin/env python3
"""Create many sessions in a linkup worker through its v2 API (bench/run.sh helper).

Usage: mksessions.py HOST:PORT TOKEN COUNT BACKEND_URL [PREFIX] [THREADS]

Each session is a realistic small one (two services, two domains, one route,
one rewrite) named PREFIX + a 5-digit number, created with
POST /linkup/v2/sessions/preview over keep-alive connections (http.client),
THREADS connections in parallel. Prints "created N sessions in S s (R/s)" and
exits 1 on the first non-200 answer.
"""
import http.client
import json
import sys
import threading
import time


def body(name, backend):
    return json.dumps({
        "desired_name": name,
        "session_token": "bench-token-" + name,
        "services": [
            {"name": "web", "location": backend, "rewrites": [
                {"source": "^/old/(.*)", "target": "/new/$1"}]},
            {"name": "api", "location": backend, "rewrites": None},
        ],
        "domains": [
            {"domain": "example.com", "default_service": "web",
             "routes": [{"path": "^/api/", "service": "api"}]},
            {"domain": "api.example.com", "default_service": "api", "routes": None},
        ],
        "cache_routes": None,
    }, separators=(",", ":"))


def worker(addr, token, names, backend, errors):
    host, port = addr.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    headers = {"Authorization": "Bearer " + token, "Content-Type": "application/json"}
    for name in names:
        conn.request("POST", "/linkup/v2/sessions/preview", body(name, backend), headers)
        resp = conn.getresponse()
        data = resp.read()
        if resp.status != 200:
            errors.append("%s: %d %s" % (name, resp.status, data[:200]))
            return
    conn.close()


def main():
    if len(sys.argv) < 5:
        print(__doc__, file=sys.stderr)
        return 2
    addr, token, count, backend = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    prefix = sys.argv[5] if len(sys.argv) > 5 else "s"
    threads = int(sys.argv[6]) if len(sys.argv) > 6 else 4
    names = ["%s%05d" % (prefix, i) for i in range(count)]
    errors = []
    t0 = time.monotonic()
    ts = [threading.Thread(target=worker, args=(addr, token, names[i::threads], backend, errors))
          for i in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    secs = time.monotonic() - t0
    if errors:
        print("session creation failed: " + errors[0], file=sys.stderr)
        return 1
    print("created %d sessions in %.1f s (%.0f/s)" % (count, secs, count / secs if secs else 0))
    return 0


if __name__ == "__main__":
    sys.exit(main())
