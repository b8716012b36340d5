#!/usr/bin/python3
"""bench/sandbox/code_bench.py: code contexts and preview URLs of `cellbox serve`,
with references measured in the same run (see README.md here).

  1. create a code context (a kernel inside a sandbox) and get the result
     of `1+1` from it, p50/p90; reference: jupyter_client starting
     ipykernel (kernelspec python3) and executing `1+1` (what a host-side
     code interpreter built on Jupyter does), no sandbox at all;
  2. run `1+1` in an existing context through the API, p50/p90; reference:
     execute `1+1` on a running ipykernel with jupyter_client;
  3. GET a small page through a preview URL (app inside a network-none
     sandbox), p50/p90; reference: the same app on the host, fetched
     directly (so the difference is the proxy's cost).
Needs root. Run from the project root after `make`:
    sudo /usr/bin/python3 bench/sandbox/code_bench.py --n 50

A/B of server binaries (e.g. a copy of ./cellbox from before a change):
    sudo /usr/bin/python3 bench/sandbox/code_bench.py --ab /tmp/old/cellbox ./cellbox --rounds 3
runs, for each binary in turn and alternating them --rounds times: `1+1`
in an existing context (--n * 4 runs, p50/p90 of all rounds) and one run of
--display display() calls (its duration, median of the rounds), and prints
each binary's numbers with its ratio to the first one's.
"""
import argparse
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tests"))
import sandbox_lib  # noqa: E402
from sandbox_lib import Server  # noqa: E402


def pct(values, p):
    v = sorted(values)
    return v[min(len(v) - 1, int(len(v) * p))] * 1000.0


def row(name, values, ref=None):
    p50, p90 = pct(values, 0.5), pct(values, 0.9)
    ratio = ""
    if ref:
        r = pct(ref, 0.5) / p50 if p50 else 0
        ratio = "%.1fx faster" % r if r >= 1 else "%.1fx slower" % (1 / r)
    return "| %s | %.2f ms | %.2f ms | %s |" % (name, p50, p90, ratio)


class Client:
    def __init__(self, srv):
        self.c = srv.conn()
        self.h = {"Authorization": "Bearer " + srv.token, "Content-Type": "application/json"}

    def call(self, method, path, body=None):
        self.c.request(method, path, body=json.dumps(body).encode() if body is not None else None, headers=self.h)
        r = self.c.getresponse()
        return r.status, r.read()


def bench_context_create(srv, n):
    cl = Client(srv)
    times = []
    for i in range(n):
        t = time.perf_counter()
        s, d = cl.call("POST", "/v1/sandboxes/bench-ctx/contexts", {})
        ctx = json.loads(d)["id"]
        s2, d2 = cl.call("POST", "/v1/sandboxes/bench-ctx/code", {"code": "1+1", "context": ctx})
        times.append(time.perf_counter() - t)
        if s != 201 or json.loads(d2)["results"][0]["text"] != "2":
            raise RuntimeError("context create failed: %s %s" % (d[:200], d2[:200]))
        cl.call("DELETE", "/v1/sandboxes/bench-ctx/contexts/" + ctx)
    return times


def bench_context_run(srv, n):
    cl = Client(srv)
    s, d = cl.call("POST", "/v1/sandboxes/bench-ctx/contexts", {})
    ctx = json.loads(d)["id"]
    times = []
    for i in range(n + 5):
        t = time.perf_counter()
        s, d = cl.call("POST", "/v1/sandboxes/bench-ctx/code", {"code": "1+1", "context": ctx})
        if i >= 5:
            times.append(time.perf_counter() - t)
        if json.loads(d)["results"][0]["text"] != "2":
            raise RuntimeError("run failed: %s" % d[:200])
    return times


DISPLAY = "for i in range(%d):\n    display(i)\n"  # display() is a builtin of the cellbox kernel


def bench_display(srv, count):
    """One run of `count` display() calls in an existing context: its duration."""
    cl = Client(srv)
    s, d = cl.call("POST", "/v1/sandboxes/bench-ctx/contexts", {})
    ctx = json.loads(d)["id"]
    cl.call("POST", "/v1/sandboxes/bench-ctx/code", {"code": DISPLAY % 10, "context": ctx})  # warm: the import
    t = time.perf_counter()
    s, d = cl.call("POST", "/v1/sandboxes/bench-ctx/code", {"code": DISPLAY % count, "context": ctx})
    took = time.perf_counter() - t
    j = json.loads(d)
    if s != 200 or j.get("error") or len(j["results"]) != count:
        raise RuntimeError("display run failed: %d %s" % (s, d[:300]))
    cl.call("DELETE", "/v1/sandboxes/bench-ctx/contexts/" + ctx)
    return took


def ab(a):
    """--ab: the same measurements on each binary, alternated."""
    runs = {b: [] for b in a.ab}
    displays = {b: [] for b in a.ab}
    for r in range(a.rounds):
        for b in a.ab:
            sandbox_lib.CELLBOX = os.path.abspath(b)
            srv = Server()
            try:
                srv.create("bench-ctx", instanceType=a.instance)
                runs[b] += bench_context_run(srv, a.n * 4)
                if a.display:
                    displays[b].append(bench_display(srv, a.display))
            finally:
                srv.stop()
                srv.cleanup()
    first = a.ab[0]
    print("sandboxes: instanceType %s; %d rounds, binaries alternated" % (a.instance, a.rounds))
    print("| binary | `1+1` p50 | p90 | ratio p50 | %d display() run (median) | ratio |" % a.display)
    print("|---|---:|---:|---:|---:|---:|")
    for b in a.ab:
        p50, p90 = pct(runs[b], 0.5), pct(runs[b], 0.9)
        d = statistics.median(displays[b]) * 1000.0 if displays[b] else 0
        d0 = statistics.median(displays[first]) * 1000.0 if displays[first] else 0
        print("| %s | %.3f ms | %.3f ms | %.2f | %.0f ms | %s |" % (
            b, p50, p90, p50 / pct(runs[first], 0.5), d, "%.2f" % (d / d0) if d0 else "-"))
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"runs": runs, "displays": displays}, f)


def bench_ipykernel(n):
    from jupyter_client.manager import KernelManager
    starts, runs = [], []
    for i in range(n):
        t = time.perf_counter()
        km = KernelManager(kernel_name="python3")
        km.start_kernel()
        kc = km.client()
        kc.start_channels()
        kc.wait_for_ready(timeout=60)
        reply = kc.execute_interactive("1+1", timeout=60, output_hook=lambda m: None)
        starts.append(time.perf_counter() - t)
        if reply["content"]["status"] != "ok":
            raise RuntimeError("ipykernel: %r" % reply["content"])
        if i == 0:
            for j in range(max(n, 20) + 5):
                t = time.perf_counter()
                kc.execute_interactive("1+1", timeout=60, output_hook=lambda m: None)
                if j >= 5:
                    runs.append(time.perf_counter() - t)
        kc.stop_channels()
        km.shutdown_kernel(now=True)
    return starts, runs


APP = "import http.server, sys\nhttp.server.test(http.server.SimpleHTTPRequestHandler, port=int(sys.argv[1]), bind='127.0.0.1')\n"


def fetch_times(host, port, host_header, n):
    times = []
    c = http.client.HTTPConnection(host, port, timeout=30)
    for i in range(n + 5):
        t = time.perf_counter()
        c.request("GET", "/index.html", headers={"Host": host_header})
        r = c.getresponse()
        body = r.read()
        if r.status != 200 or body != b"<h1>hello</h1>":
            raise RuntimeError("fetch: %d %r" % (r.status, body[:100]))
        if r.getheader("Connection", "").lower() == "close" or r.version == 10:
            c.close()
            c = http.client.HTTPConnection(host, port, timeout=30)
        if i >= 5:
            times.append(time.perf_counter() - t)
    c.close()
    return times


def bench_preview(srv, n, tmp):
    cl = Client(srv)
    cl.call("POST", "/v1/sandboxes/bench-web/files/write", {"path": "index.html", "content": "<h1>hello</h1>"})
    cl.call("POST", "/v1/sandboxes/bench-web/processes",
            {"command": "exec python3 -m http.server 8080 --bind 127.0.0.1", "processId": "web"})
    cl.call("POST", "/v1/sandboxes/bench-web/processes/web/wait", {"port": 8080, "timeoutMs": 30000})
    s, d = cl.call("POST", "/v1/sandboxes/bench-web/ports", {"port": 8080})
    url = json.loads(d)["url"]
    host = url.split("//")[1].split("/")[0]
    proxied = fetch_times(srv.host, srv.port, host, n)
    # the same app on the host, fetched directly
    with open(os.path.join(tmp, "index.html"), "w") as f:
        f.write("<h1>hello</h1>")
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    p = subprocess.Popen(["/usr/bin/python3", "-m", "http.server", str(port), "--bind", "127.0.0.1"], cwd=tmp,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
        direct = fetch_times("127.0.0.1", port, "127.0.0.1:%d" % port, n)
    finally:
        p.kill()
        p.wait()
    return proxied, direct


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=30)
    ap.add_argument("--json")
    ap.add_argument("--instance", default="lite", help="instanceType of the sandboxes (lite: half a CPU)")
    ap.add_argument("--ab", nargs="+", metavar="CELLBOX", help="compare these server binaries (see above)")
    ap.add_argument("--rounds", type=int, default=3, help="--ab: how many times each binary is measured")
    ap.add_argument("--display", type=int, default=20000,
                    help="--ab: display() calls in the one timed run (0: none)")
    a = ap.parse_args()
    if a.ab:
        return ab(a)
    srv = Server()
    try:
        srv.create("bench-ctx", instanceType=a.instance)
        srv.create("bench-web", instanceType=a.instance)
        ctx_create = bench_context_create(srv, a.n)
        ctx_run = bench_context_run(srv, a.n * 4)
        ipy_start, ipy_run = bench_ipykernel(max(5, a.n // 3))
        proxied, direct = bench_preview(srv, a.n * 4, srv.tmp)
    finally:
        srv.stop()
        srv.cleanup()
    print("sandboxes: instanceType %s" % a.instance)
    print("| measurement | p50 | p90 | vs reference |")
    print("|---|---:|---:|---:|")
    print(row("create a code context + result of `1+1` (kernel inside a sandbox)", ctx_create, ipy_start))
    print(row("reference: jupyter_client starts ipykernel + `1+1` (no sandbox)", ipy_start))
    print(row("run `1+1` in a context through the API", ctx_run, ipy_run))
    print(row("reference: `1+1` on a running ipykernel (jupyter_client)", ipy_run))
    print(row("GET a page through a preview URL (app in a network-none sandbox)", proxied, direct))
    print(row("reference: the same app on the host, fetched directly", direct))
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"context_create": ctx_create, "context_run": ctx_run, "ipykernel_start": ipy_start,
                       "ipykernel_run": ipy_run, "preview": proxied, "direct": direct}, f)


if __name__ == "__main__":
    main()
