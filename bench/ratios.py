"""Table of a benchmark's metrics for a baseline and cellbox, with ratios.

usage: ratios.py RESULTS.jsonl BASELINE_KERNEL CELLBOX_KERNEL

Reads the JSON lines of ../shared/bench/kernel_bench.py (several rounds may
be appended), takes per metric the median over rounds of the per-run medians
(or values), and prints a Markdown table: baseline, cellbox, and how many
times better cellbox is (for times: baseline/cellbox; for memory the same).
"""
import json
import statistics
import sys


def main():
    path, base, mine = sys.argv[1:4]
    vals = {}
    order = []
    for line in open(path):
        r = json.loads(line)
        if r.get("metric") == "meta" or r.get("kernel") not in (base, mine):
            continue
        v = r.get("median", r.get("value"))
        if v is None:
            continue
        key = (r["metric"], r["unit"])
        if key not in order:
            order.append(key)
        vals.setdefault((key, r["kernel"]), []).append(v)
    print("| metric | unit | %s | %s | ratio |" % (base, mine))
    print("|---|---|---:|---:|---:|")
    for key in order:
        b, m = vals.get((key, base)), vals.get((key, mine))
        if not b or not m:
            continue
        bm, mm = statistics.median(b), statistics.median(m)
        ratio = "%.1fx" % (bm / mm) if mm else "-"
        print("| %s | %s | %.3g | %.3g | %s |" % (key[0], key[1], bm, mm, ratio))


if __name__ == "__main__":
    main()
