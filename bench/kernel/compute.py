#!/usr/bin/python3
"""Pure-Python compute inside a cell: cellbox kernel vs ipykernel.

The kernel benchmark (run.sh) measures what a kernel adds around a cell;
this one measures the cell itself: the same CPU-bound Python code (recursive
calls, object creation, string building) timed *inside* each kernel, and in
a plain /usr/bin/python3 as the reference. cellbox embeds Debian's static
libpython (libpython3.X.a); ipykernel runs in /usr/bin/python3, which Debian
links with profile-guided and link-time optimisation the shipped archive does
not carry, so this is where ipykernel can be faster.

  /usr/bin/python3 bench/kernel/compute.py [--rounds 5]

Each round times every workload in each kernel (best of 5 inside the cell);
the table gives the median over rounds and the ratio ipykernel / cellbox
(above 1: cellbox faster).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
CELLBOX = os.path.abspath(os.path.join(HERE, "..", "..", "cellbox"))

WORKLOADS = r'''
import time, json
def fib(n):
    return n if n < 2 else fib(n - 1) + fib(n - 2)
class P:
    def __init__(self, x):
        self.x = x
    def get(self):
        return self.x
def objs(n):
    s = 0
    for i in range(n):
        s += P(i).get()
    return s
def strs(n):
    return len("".join([str(i) + "x" for i in range(n)]))
def dicts(n):
    d = {}
    for i in range(n):
        d["k%d" % i] = i
    return sum(d.values())
def best(f, *a):
    r = []
    for _ in range(5):
        t = time.perf_counter()
        f(*a)
        r.append(time.perf_counter() - t)
    return min(r) * 1000
_res = {"fib(25)": best(fib, 25), "300k objects": best(objs, 300000),
        "300k strings": best(strs, 300000), "300k dict items": best(dicts, 300000)}
print(json.dumps(_res))
'''


def in_kernel(name):
    from jupyter_client.manager import start_new_kernel
    km, kc = start_new_kernel(kernel_name=name, startup_timeout=60)
    try:
        out = []
        kc.execute_interactive(WORKLOADS, timeout=300, output_hook=lambda m: out.append(m))
        text = "".join(m["content"]["text"] for m in out if m["msg_type"] == "stream"
                       and m["content"]["name"] == "stdout")
        return json.loads(text)
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def plain():
    p = subprocess.run(["/usr/bin/python3", "-c", WORKLOADS], capture_output=True, text=True, check=True)
    return json.loads(p.stdout)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    a = ap.parse_args()
    jp = tempfile.mkdtemp()
    subprocess.run([CELLBOX, "kernelspec", "install", "--prefix", jp], check=True, capture_output=True)
    os.environ["JUPYTER_PATH"] = os.path.join(jp, "share", "jupyter")
    runs = {"cellbox": [], "python3": [], "plain": []}
    for r in range(a.rounds):
        runs["python3"].append(in_kernel("python3"))
        runs["cellbox"].append(in_kernel("cellbox"))
        runs["plain"].append(plain())
        print("round %d done" % (r + 1), file=sys.stderr)
    print("| workload (best of 5, ms) | /usr/bin/python3 | ipykernel | cellbox | ipykernel / cellbox |")
    print("|---|---:|---:|---:|---:|")
    for w in runs["cellbox"][0]:
        med = {k: statistics.median(x[w] for x in v) for k, v in runs.items()}
        print("| %s | %.1f | %.1f | %.1f | %.2fx |" % (w, med["plain"], med["python3"], med["cellbox"],
                                                     med["python3"] / med["cellbox"]))


if __name__ == "__main__":
    main()
