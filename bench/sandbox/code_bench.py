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

A/B of server binaries (e.g. a copy of ./cellbox from before a change,
with its cellbox-agent next to it):
    sudo /usr/bin/python3 bench/sandbox/code_bench.py --ab /tmp/old/cellbox ./cellbox --rounds 3
starts one server per binary, all at once, and sends their runs in turn:
`1+1` in an existing context (--n * 4 * --rounds runs each: p50/p90, the
median of the paired differences with the first binary, the server's CPU
per run), then --rounds runs of --display display() calls (median), each
with its ratio to the first binary's.
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


def server_cpu_ms(srv):
    """The server process's CPU time (user + system) so far, in ms."""
    with open("/proc/%d/stat" % srv.server_pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * 1000.0 / os.sysconf("SC_CLK_TCK")


def ab(a):
    """--ab: one server per binary, all running at once, one context each;
    the runs go to them in turn (the order reversed every other round), so
    what the machine does meanwhile falls on all of them alike."""
    srvs, clients, ctxs = [], [], []
    try:
        for b in a.ab:
            sandbox_lib.CELLBOX = os.path.abspath(b)
            srv = Server()
            srvs.append(srv)
            srv.create("bench-ctx", instanceType=a.instance)
            cl = Client(srv)
            s, d = cl.call("POST", "/v1/sandboxes/bench-ctx/contexts", {})
            clients.append(cl)
            ctxs.append(json.loads(d)["id"])

        def one(i, src):
            t = time.perf_counter()
            s, d = clients[i].call("POST", "/v1/sandboxes/bench-ctx/code", {"code": src, "context": ctxs[i]})
            took = time.perf_counter() - t
            if s != 200:
                raise RuntimeError("%s: %d %s" % (a.ab[i], s, d[:200]))
            return took, json.loads(d)

        order = list(range(len(a.ab)))
        for k in range(20):
            for i in order:
                one(i, "1+1")
        n = a.n * 4 * a.rounds
        runs = [[] for _ in a.ab]
        cpu0 = [server_cpu_ms(x) for x in srvs]
        for k in range(n):
            for i in (order if k % 2 == 0 else order[::-1]):
                runs[i].append(one(i, "1+1")[0])
        cpu = [(server_cpu_ms(x) - c) / n for x, c in zip(srvs, cpu0)]
        displays = [[] for _ in a.ab]
        for k in range(a.rounds if a.display else 0):
            for i in (order if k % 2 == 0 else order[::-1]):
                took, j = one(i, DISPLAY % a.display)
                if j.get("error") or len(j["results"]) != a.display:
                    raise RuntimeError("display run failed: %s" % json.dumps(j)[:300])
                displays[i].append(took)
    finally:
        for srv in srvs:
            srv.stop()
            srv.cleanup()
    print("sandboxes: instanceType %s; the servers alternated run by run (%d runs of `1+1` each, %d display runs)"
          % (a.instance, n, len(displays[0])))
    print("| binary | `1+1` p50 | p90 | ratio p50 | paired difference (median) | server CPU per run "
          "| %d display() run (median) | ratio |" % a.display)
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for i, b in enumerate(a.ab):
        p50, p90 = pct(runs[i], 0.5), pct(runs[i], 0.9)
        diff = statistics.median(x - y for x, y in zip(runs[i], runs[0])) * 1000.0
        d = statistics.median(displays[i]) * 1000.0 if displays[i] else 0
        d0 = statistics.median(displays[0]) * 1000.0 if displays[0] else 0
        print("| %s | %.3f ms | %.3f ms | %.2f | %+.3f ms | %.3f ms | %.0f ms | %s |" % (
            b, p50, p90, p50 / pct(runs[0], 0.5), diff, cpu[i], d, "%.2f" % (d / d0) if d0 else "-"))
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"binaries": a.ab, "runs": runs, "displays": displays, "cpu_ms_per_run": cpu}, f)


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
