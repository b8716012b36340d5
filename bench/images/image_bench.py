#!/usr/bin/python3
"""kernel_bench's image cases, cellbox against ipykernel in the same run.

Runs ../shared/bench/kernel_bench.py --cases image (20 figures of 640x480:
inline, display, cached) for the `cellbox` kernelspec and for `python3`
(ipykernel), alternating the kernels for --rounds rounds on this noisy
shared machine, and prints the median of the per-round medians with the
ratios. The cellbox kernelspec is installed from --cellbox into a
temporary prefix, so the freshly built binary is measured.

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
        for r in range(args.rounds):
            for kernel in ("cellbox", "python3"):
                p = subprocess.run(["/usr/bin/python3", args.bench, "--kernel", kernel, "--cases", "image",
                                    "--image-modes", args.modes, "--jsonl", raw], env=env,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=1800)
                if p.returncode != 0:
                    sys.exit("kernel_bench failed for %s:\n%s" % (kernel, p.stderr[-2000:]))
                print("round %d/%d: %s done" % (r + 1, args.rounds, kernel), file=sys.stderr)
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
    print("\n(send -> IOPub idle; median of %d alternating rounds, each the median of 3 repetitions;"
          " load average %.1f-%.1f)" % (args.rounds, min(load or [0]), max(load or [0])))


if __name__ == "__main__":
    main()
