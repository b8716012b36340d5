#!/usr/bin/python3
"""PNG encoder benchmark: cellbox's libpng encoder against matplotlib's own
PNG writer, on the same RGBA buffers, in the same process.

Starts a cellbox kernel (the encoder lives in the cellbox binary) and, in
it, renders matplotlib figures of 640x480 and 1920x1080 with Agg, then
encodes each canvas's buffer_rgba():

  cellbox     _cellbox_c.png_encode(buffer, w, h, dpi, text={'Software': ...})
              -- the call the inline backend makes
  matplotlib  matplotlib.image.imsave(file, buffer, format='png',
              origin='upper', dpi=dpi) -- what FigureCanvasAgg.print_png
              does once the figure is drawn (Pillow, zlib level 6)

Both are timed alternately (--reps times, median), the files' sizes are
reported side by side, and both files are decoded to check they hold the
same pixels. Figures: a line plot (like kernel_bench's image case) and,
with --all-content, an imshow, a scatter, a histogram and a contour plot.

usage: png_bench.py [--cellbox PATH] [--reps N] [--rounds R] [--all-content] [--json FILE]
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

KERNEL_CODE = r'''
import io, json, time, statistics
import matplotlib
import matplotlib.image
from matplotlib.figure import Figure
from matplotlib.backends.backend_agg import FigureCanvasAgg
import numpy as np
import _cellbox_c
from PIL import Image

def figure(kind, w, h):
    fig = Figure(figsize=(w / 100, h / 100), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    rs = np.random.RandomState(0)
    if kind == "line":
        x = np.linspace(0, 10, 1000)
        ax.plot(x, np.sin(x)); ax.plot(x, np.cos(x) * 0.5, "--"); ax.set_title("sin"); ax.grid(True)
    elif kind == "imshow":
        im = ax.imshow(rs.rand(40, 60)); fig.colorbar(im)
    elif kind == "scatter":
        ax.scatter(*rs.rand(2, 300))
    elif kind == "hist":
        ax.hist(rs.randn(10000), 50)
    elif kind == "contour":
        ax.contourf(rs.rand(20, 20).cumsum(0))
    fig.canvas.draw()
    return fig

def bench(kind, w, h, reps):
    fig = figure(kind, w, h)
    buf = fig.canvas.buffer_rgba()
    dpi = fig.dpi
    sw = {"Software": "Matplotlib version%s, https://matplotlib.org/" % matplotlib.__version__}
    def ours():
        return _cellbox_c.png_encode(buf, w, h, dpi=float(dpi), text=sw)
    def theirs():
        b = io.BytesIO()
        matplotlib.image.imsave(b, buf, format="png", origin="upper", dpi=dpi)
        return b.getvalue()
    a, b = ours(), theirs()   # warm up, and the files compared
    ta, tb = [], []
    for i in range(reps):
        t = time.perf_counter(); ours(); ta.append(time.perf_counter() - t)
        t = time.perf_counter(); theirs(); tb.append(time.perf_counter() - t)
    pa = np.asarray(Image.open(io.BytesIO(a)).convert("RGBA"))
    pb = np.asarray(Image.open(io.BytesIO(b)).convert("RGBA"))
    return {"kind": kind, "w": w, "h": h, "reps": reps,
            "cellbox_ms": statistics.median(ta) * 1e3, "matplotlib_ms": statistics.median(tb) * 1e3,
            "cellbox_bytes": len(a), "matplotlib_bytes": len(b),
            "same_pixels": bool(pa.shape == pb.shape and (pa == pb).all())}
'''


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cellbox", default=os.path.join(HERE, "..", "..", "cellbox"))
    ap.add_argument("--reps", type=int, default=30)
    ap.add_argument("--rounds", type=int, default=3, help="separate rounds (median of the per-round medians)")
    ap.add_argument("--all-content", action="store_true", help="also imshow, scatter, hist, contour figures")
    ap.add_argument("--json", help="append the raw results here (JSON lines)")
    args = ap.parse_args()

    from jupyter_client.manager import start_new_kernel
    prefix = tempfile.mkdtemp(prefix="cellbox-pngbench-")
    try:
        subprocess.run([os.path.abspath(args.cellbox), "kernelspec", "install", "--prefix", prefix, "--name",
                        "cellbox-pngbench"], check=True, stdout=subprocess.DEVNULL)
        os.environ["JUPYTER_PATH"] = os.path.join(prefix, "share", "jupyter")
        km, kc = start_new_kernel(kernel_name="cellbox-pngbench", startup_timeout=60)
        try:
            kc.execute_interactive(KERNEL_CODE, timeout=120)
            kinds = ["line"] + (["imshow", "scatter", "hist", "contour"] if args.all_content else [])
            cases = [(k, w, h) for k in kinds for (w, h) in ((640, 480), (1920, 1080))]
            rows = {c: [] for c in cases}
            for r in range(args.rounds):
                for c in cases:
                    out = []
                    reply = kc.execute_interactive("print(json.dumps(bench(%r, %d, %d, %d)))" % (c + (args.reps,)),
                                                   timeout=600,
                                                   output_hook=lambda m: out.append(m["content"].get("text", ""))
                                                   if m["msg_type"] == "stream" else None)
                    if reply["content"]["status"] != "ok":
                        sys.exit("benchmark cell failed: %s" % reply["content"].get("evalue"))
                    res = json.loads("".join(out))
                    rows[c].append(res)
                    if args.json:
                        with open(args.json, "a") as f:
                            f.write(json.dumps(dict(res, round=r)) + "\n")
        finally:
            kc.stop_channels()
            km.shutdown_kernel(now=True)
    finally:
        shutil.rmtree(prefix, ignore_errors=True)

    print("| figure | pixels | cellbox libpng ms | matplotlib (Pillow) ms | speed-up | cellbox bytes | matplotlib bytes | size ratio | same pixels |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---|")
    ok = True
    for (kind, w, h), rs in rows.items():
        a = statistics.median(r["cellbox_ms"] for r in rs)
        b = statistics.median(r["matplotlib_ms"] for r in rs)
        sa, sb = rs[0]["cellbox_bytes"], rs[0]["matplotlib_bytes"]
        same = all(r["same_pixels"] for r in rs)
        ok = ok and same
        print("| %s | %dx%d | %.2f | %.2f | %.1fx | %d | %d | %.2f | %s |" % (
            kind, w, h, a, b, b / a, sa, sb, sa / sb, "yes" if same else "NO"))
    print("\n(median of %d rounds x %d repetitions each, encoders alternating, one cellbox kernel process)"
          % (args.rounds, args.reps))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
