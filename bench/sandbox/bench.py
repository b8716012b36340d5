#!/usr/bin/env python3
"""bench/sandbox/bench.py: timings of `cellbox serve` (see README.md here).

Runs, in one go and on this machine:
  1. create a sandbox and run `true` in it through the API (PUT + POST exec,
     one keep-alive connection), p50/p90, with the default warm pool and with
     --pool 0 (every create builds its namespaces from scratch);
  2. the reference: the bwrap CLI running `true` with --unshare-all;
  3. exec `true` in an existing sandbox, p50/p90;
  4. 50 sandboxes, 20 concurrent clients, 2000 execs: errors and throughput.
Prints a Markdown table and writes the numbers as JSON (--json FILE).
Needs root (namespaces, cgroups) and bubblewrap for the reference.
"""
import argparse
import http.client
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tests"))
from sandbox_lib import Server  # noqa: E402


def pct(values, p):
    v = sorted(values)
    return v[min(len(v) - 1, int(len(v) * p))] * 1000.0


class Client:
    def __init__(self, srv):
        self.srv = srv
        self.c = srv.conn()
        self.h = {"Authorization": "Bearer " + srv.token, "Content-Type": "application/json"}

    def call(self, method, path, body=None):
        self.c.request(method, path, body=json.dumps(body).encode() if body is not None else None,
                       headers=self.h)
        r = self.c.getresponse()
        data = r.read()
        return r.status, data


def bench_create(srv, n, prefix):
    cl = Client(srv)
    times = []
    for i in range(n):
        sid = "%s-%d" % (prefix, i)
        t = time.perf_counter()
        s1, d1 = cl.call("PUT", "/v1/sandboxes/" + sid, {})
        s2, d2 = cl.call("POST", "/v1/sandboxes/%s/exec" % sid, {"command": "true"})
        times.append(time.perf_counter() - t)
        if s1 not in (200, 201) or s2 != 200 or json.loads(d2)["exitCode"] != 0:
            raise RuntimeError("create+true failed: %s %s" % (d1[:200], d2[:200]))
        cl.call("DELETE", "/v1/sandboxes/" + sid)
        time.sleep(0.02)  # a user does not create sandboxes back to back
    return times


def bench_bwrap(n):
    exe = shutil.which("bwrap")
    if not exe:
        return None
    argv = [exe, "--unshare-all", "--die-with-parent", "--ro-bind", "/usr", "/usr",
            "--symlink", "usr/lib", "/lib", "--symlink", "usr/lib64", "/lib64",
            "--symlink", "usr/bin", "/bin", "--symlink", "usr/sbin", "/sbin",
            "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", "true"]
    times = []
    for _ in range(n):
        t = time.perf_counter()
        subprocess.run(argv, check=True)
        times.append(time.perf_counter() - t)
        time.sleep(0.02)
    return times


def bench_exec(srv, n, sid):
    cl = Client(srv)
    times = []
    for _ in range(n):
        t = time.perf_counter()
        s, d = cl.call("POST", "/v1/sandboxes/%s/exec" % sid, {"command": "true"})
        times.append(time.perf_counter() - t)
        if s != 200:
            raise RuntimeError(d[:300])
    return times


def bench_concurrent(srv, sandboxes, clients, total):
    ids = ["bench-m%d" % i for i in range(sandboxes)]
    cl = Client(srv)
    for sid in ids:
        s, d = cl.call("PUT", "/v1/sandboxes/" + sid, {"instanceType": "lite"})
        if s not in (200, 201):
            raise RuntimeError(d[:300])
    errors = []
    lat = []
    lock = threading.Lock()
    counter = iter(range(total))

    def worker(k):
        c = Client(srv)
        while True:
            with lock:
                i = next(counter, None)
            if i is None:
                return
            sid = ids[(i * 7 + k) % len(ids)]
            t = time.perf_counter()
            try:
                s, d = c.call("POST", "/v1/sandboxes/%s/exec" % sid, {"command": "echo %d" % i})
                ok = s == 200 and json.loads(d)["stdout"] == "%d\n" % i
            except Exception as e:  # noqa: BLE001
                ok, d = False, repr(e).encode()
                c = Client(srv)
            dt = time.perf_counter() - t
            with lock:
                lat.append(dt)
                if not ok:
                    errors.append(d[:200])
    t0 = time.perf_counter()
    ths = [threading.Thread(target=worker, args=(k,)) for k in range(clients)]
    for th in ths:
        th.start()
    for th in ths:
        th.join()
    wall = time.perf_counter() - t0
    for sid in ids:
        cl.call("DELETE", "/v1/sandboxes/" + sid)
    return {"execs": len(lat), "errors": len(errors), "seconds": wall, "per_second": len(lat) / wall,
            "p50_ms": pct(lat, 0.5), "p99_ms": pct(lat, 0.99), "first_errors": [e.decode(errors="replace") for e in errors[:3]]}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=200, help="samples per latency measurement")
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--sandboxes", type=int, default=50)
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--execs", type=int, default=2000)
    a = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench: needs root (namespaces and cgroups)")
    res = {"machine": {"cpus": os.cpu_count(), "kernel": os.uname().release}}
    srv = Server(extra_args=["--pool", "4"])
    try:
        create = bench_create(srv, a.n, "bench-c")
        res["create_true_ms"] = {"p50": pct(create, 0.5), "p90": pct(create, 0.9)}
        srv.create("bench-e", instanceType="standard")
        bench_exec(srv, 20, "bench-e")  # warm up
        ex = bench_exec(srv, a.n * 2, "bench-e")
        res["exec_true_ms"] = {"p50": pct(ex, 0.5), "p90": pct(ex, 0.9)}
        srv.create("bench-l")
        exl = bench_exec(srv, a.n, "bench-l")
        res["exec_true_lite_ms"] = {"p50": pct(exl, 0.5), "p90": pct(exl, 0.9)}
        res["concurrent"] = bench_concurrent(srv, a.sandboxes, a.clients, a.execs)
    finally:
        srv.cleanup()
    cold = Server(extra_args=["--pool", "0"])
    try:
        c = bench_create(cold, max(20, a.n // 4), "bench-k")
        res["create_true_cold_ms"] = {"p50": pct(c, 0.5), "p90": pct(c, 0.9)}
    finally:
        cold.cleanup()
    bw = bench_bwrap(a.n)
    if bw:
        res["bwrap_true_ms"] = {"p50": pct(bw, 0.5), "p90": pct(bw, 0.9)}
    cc = res["concurrent"]
    print("| measurement | p50 | p90 |")
    print("|---|---|---|")
    print("| create sandbox + exec `true` (API, warm pool) | %.2f ms | %.2f ms |" % (res["create_true_ms"]["p50"], res["create_true_ms"]["p90"]))
    print("| create sandbox + exec `true` (API, --pool 0) | %.2f ms | %.2f ms |" % (res["create_true_cold_ms"]["p50"], res["create_true_cold_ms"]["p90"]))
    if bw:
        print("| reference: `bwrap --unshare-all ... true` | %.2f ms | %.2f ms |" % (res["bwrap_true_ms"]["p50"], res["bwrap_true_ms"]["p90"]))
    print("| exec `true` in a sandbox (standard, 1 CPU) | %.2f ms | %.2f ms |" % (res["exec_true_ms"]["p50"], res["exec_true_ms"]["p90"]))
    print("| exec `true` in a sandbox (lite, 0.5 CPU) | %.2f ms | %.2f ms |" % (res["exec_true_lite_ms"]["p50"], res["exec_true_lite_ms"]["p90"]))
    print()
    print("%d sandboxes, %d concurrent clients, %d execs: %d errors, %.1f s, %.0f execs/s (p50 %.1f ms, p99 %.1f ms)" % (
        a.sandboxes, a.clients, cc["execs"], cc["errors"], cc["seconds"], cc["per_second"], cc["p50_ms"], cc["p99_ms"]))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=2)
    sys.exit(1 if cc["errors"] else 0)


if __name__ == "__main__":
    main()
