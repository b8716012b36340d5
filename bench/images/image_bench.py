#!/usr/bin/python3
"""kernel_bench's image cases, cellbox against ipykernel in the same run.

Runs ../shared/bench/kernel_bench.py --cases image (20 figures of 640x480:
inline, display, cached) for the `cellbox` kernelspec and for `python3`
(ipykernel), alternating the kernels for --rounds rounds on this noisy
shared machine, and prints the median of the per-round medians with the
ratios. The cellbox kernelspec is installed from --cellbox into a
temporary prefix, so the freshly built binary is measured.

Each round also times the floor of the display case: its very loop (20
figures: figure, plot, savefig to PNG through matplotlib's Agg and Pillow,
IPython.display.Image of the bytes) in a plain /usr/bin/python3 with no
kernel at all and nothing published, the median of 3 repetitions after one
warm-up figure. No kernel that runs the cell as written can be faster than
that, so ipykernel's time over it is the best ratio any kernel can reach.

usage: image_bench.py [--rounds N] [--cellbox PATH] [--bench PATH] [--jsonl FILE]
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

# kernel_bench's display case (IMAGE_SETUP / IMAGE_LOOP["display"]) without
# a kernel: display() left out, the Image object still made; prints the ms
FLOOR = r"""
import io, statistics, time
import matplotlib
matplotlib.use('Agg')
import matplotlib.pyplot as plt
import numpy as np
from IPython.display import Image
_bx = np.linspace(0, 10, 1000)
def loop(n):
    for _k in range(n):
        _f = plt.figure(figsize=(6.4, 4.8), dpi=100)
        plt.plot(_bx, np.sin(_bx + _k))
        _b = io.BytesIO(); _f.savefig(_b, format='png'); plt.close(_f)
        Image(data=_b.getvalue(), format='png')
loop(1)
ts = []
for _ in range(3):
    t0 = time.perf_counter()
    loop(20)
    ts.append((time.perf_counter() - t0) * 1e3)
print(statistics.median(ts))
"""

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--cellbox", default=os.path.join(ROOT, "cellbox"))
    ap.add_argument("--bench", default=os.path.join(ROOT, "..", "shared", "bench", "kernel_bench.py"))
    ap.add_argument("--jsonl", help="keep kernel_bench's raw JSON lines here")
    ap.add_argument("--modes", default="inline,display,cached")
    args = ap.parse_args()

    prefix = tempfile.mkdtemp(prefix="cellbox-imgbench-")
    raw = args.jsonl or os.path.join(prefix, "raw.jsonl")
    try:
        subprocess.run([os.path.abspath(args.cellbox), "kernelspec", "install", "--prefix", prefix], check=True,
                       stdout=subprocess.DEVNULL)
        env = dict(os.environ, JUPYTER_PATH=os.path.join(prefix, "share", "jupyter"))
        floor = []
        for r in range(args.rounds):
            for kernel in ("cellbox", "python3"):
                p = subprocess.run(["/usr/bin/python3", args.bench, "--kernel", kernel, "--cases", "image",
                                    "--image-modes", args.modes, "--jsonl", raw], env=env,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=1800)
                if p.returncode != 0:
                    sys.exit("kernel_bench failed for %s:\n%s" % (kernel, p.stderr[-2000:]))
                print("round %d/%d: %s done" % (r + 1, args.rounds, kernel), file=sys.stderr)
            if "display" in args.modes.split(","):
                p = subprocess.run(["/usr/bin/python3", "-c", FLOOR], stdout=subprocess.PIPE, text=True,
                                   check=True, timeout=600)
                floor.append(float(p.stdout.split()[-1]))
        res = {}
        load = []
        with open(raw) as f:
            for line in f:
                d = json.loads(line)
                if d.get("metric") == "meta":
                    load += [d["loadavg_start"][0], d["loadavg_end"][0]]
                elif d.get("metric", "").startswith("image_"):
                    res.setdefault((d["metric"], d["kernel"]), []).append(d["median"])
    finally:
        shutil.rmtree(prefix, ignore_errors=True)

    print("| case (20 figures 640x480) | cellbox ms | ipykernel ms | speed-up |")
    print("|---|---:|---:|---:|")
    for mode in args.modes.split(","):
        metric = "image_%s_20x" % mode
        a = res.get((metric, "cellbox"))
        b = res.get((metric, "python3"))
        if not a or not b:
            continue
        ma, mb = statistics.median(a), statistics.median(b)
        print("| %s | %.0f | %.0f | %.2fx |" % (mode, ma, mb, mb / ma))
    b = res.get(("image_display_20x", "python3"))
    if floor and b:
        mf = statistics.median(floor)
        print("| display floor: the same loop in a plain `python3`, no kernel | %.0f | | %.2fx at most |"
              % (mf, statistics.median(b) / mf))
    print("\n(send -> IOPub idle; median of %d alternating rounds, each the median of 3 repetitions;"
          " load average %.1f-%.1f)" % (args.rounds, min(load or [0]), max(load or [0])))


if __name__ == "__main__":
    main()
