#!/usr/bin/python3
"""End-to-end notebook execution: `cellbox run` against `jupyter execute`
(nbclient's CLI), in the same run, on the shared 50-cell benchmark notebook
(../shared/bench/notebook_bench.py generate).

Executors (each a fresh process with a fresh kernel, as a user runs them):
  cellbox-run[cellbox]   cellbox run -k cellbox NB -o OUT
  jupyter-execute[python3]  jupyter-execute --kernel_name=python3 NB
  cellbox-run[python3]   cellbox run -k python3 NB -o OUT
  python3-floor[none]    /usr/bin/python3 -c FLOOR: no kernel, no notebook; only
                         the imports and the figure every Python kernel must
                         run for this notebook (see FLOOR): jupyter execute's
                         time over this is the best ratio any kernel can reach

The executors take turns (round robin) so that drift in machine load hits
all of them alike; one unmeasured warm-up round comes first. Every notebook
cellbox writes is checked with notebook_bench.validate_executed (all cells
executed, 10,000 stream lines, one PNG, exactly the expected error).

Also reported, from one more cellbox run: where its time goes (kernel start,
cells, kernel shutdown, and the slowest cells, from the kernel's own
timestamps in cell.metadata.execution).

    /usr/bin/python3 bench/notebook/bench.py [--reps 5] [--jsonl out.jsonl]
"""
import argparse
import datetime
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def find_shared_bench(explicit):
    for d in [explicit, os.path.join(ROOT, "..", "shared", "bench"), "/work/shared/bench"]:
        if d and os.path.exists(os.path.join(d, "notebook_bench.py")):
            return os.path.abspath(d)
    sys.exit("bench.py: cannot find ../shared/bench/notebook_bench.py (use --shared DIR)")


def become_subreaper():
    try:
        import ctypes
        ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
    except Exception:
        pass


def leftovers():
    """Processes still descending from us (kernels an executor left behind)."""
    me, kids = os.getpid(), []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open("/proc/%s/stat" % d) as fh:
                    st = fh.read()
                if int(st[st.rindex(")") + 2:].split()[1]) == me:
                    kids.append(int(d))
            except (OSError, ValueError):
                pass
    return kids


def reap(pids):
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass


# The floor: what any CPython kernel running this notebook must do at
# least, timed as a plain /usr/bin/python3 process with nothing else (no
# kernel, no protocol, no notebook): start, import matplotlib.pyplot and
# numpy, draw the notebook's one figure and encode it as PNG. jupyter
# execute's time divided by this is the best ratio any kernel can reach.
FLOOR = ("import io, matplotlib\nmatplotlib.use('Agg')\nimport matplotlib.pyplot as plt\nimport numpy as np\n"
         "xs = np.linspace(0, 10, 500)\nfig, ax = plt.subplots(figsize=(6.4, 4.8))\nax.plot(xs, np.sin(xs))\n"
         "ax.set_title('sin')\nfig.savefig(io.BytesIO(), format='png')\n")


def timed(cmd, env, cwd):
    t0 = time.perf_counter()
    p = subprocess.run(cmd, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=600)
    return time.perf_counter() - t0, p


def summarize(xs):
    s = sorted(xs)
    return {"n": len(s), "median": statistics.median(s), "min": s[0], "max": s[-1]}


def breakdown(cellbox, nb, out, env, cwd):
    """One more cellbox run with CELLBOX_LOG=debug: start/cells/shutdown and the slowest cells."""
    e = dict(env, CELLBOX_LOG="debug")
    wall, p = timed([cellbox, "run", "-k", "cellbox", nb, "-o", out], e, cwd)
    m = re.search(r"startup ([\d.]+) s, cells ([\d.]+) s, shutdown ([\d.]+) s", p.stderr)
    res = {"wall": wall}
    if m:
        res.update(startup=float(m.group(1)), cells=float(m.group(2)), shutdown=float(m.group(3)))
    slow = []
    with open(out) as fh:
        doc = json.load(fh)
    for i, c in enumerate(doc["cells"]):
        ex = c.get("metadata", {}).get("execution")
        if ex and "iopub.status.busy" in ex and "iopub.status.idle" in ex:
            b = datetime.datetime.fromisoformat(ex["iopub.status.busy"].rstrip("Z"))
            d = datetime.datetime.fromisoformat(ex["iopub.status.idle"].rstrip("Z"))
            src = "".join(c["source"]).splitlines()[0][:60]
            slow.append(((d - b).total_seconds(), i + 1, src))
    slow.sort(reverse=True)
    res["slowest_cells"] = slow[:4]
    res["all_cells_busy"] = sum(s[0] for s in slow)
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--cellbox", default=os.path.join(ROOT, "cellbox"))
    ap.add_argument("--shared", help="folder of notebook_bench.py (default ../shared/bench)")
    ap.add_argument("--jsonl", help="append the results as JSON lines")
    a = ap.parse_args()
    shared = find_shared_bench(a.shared)
    sys.path.insert(0, shared)
    import notebook_bench  # noqa: E402  (the shared generator and validator)
    import nbformat  # noqa: E402

    jexec = shutil.which("jupyter-execute")
    if not jexec:
        sys.exit("bench.py: jupyter-execute not found (apt-get install python3-nbclient)")
    become_subreaper()
    work = tempfile.mkdtemp(prefix="cellbox-nbbench-")
    env = dict(os.environ, PYDEVD_DISABLE_FILE_VALIDATION="1")
    try:
        nb = os.path.join(work, "bench.ipynb")
        notebook_bench.write_notebook(nb, 50, "python3")
        out = os.path.join(work, "out.ipynb")
        executors = [
            ("cellbox-run[cellbox]", [a.cellbox, "run", "-k", "cellbox", nb, "-o", out], True),
            ("jupyter-execute[python3]", [jexec, "--kernel_name=python3", "--timeout=120", nb], False),
            ("cellbox-run[python3]", [a.cellbox, "run", "-k", "python3", nb, "-o", out], True),
            # no kernel and no executor: a plain interpreter doing only the
            # library work every Python kernel must do for this notebook
            ("python3-floor[none]", ["/usr/bin/python3", "-c", FLOOR], False),
        ]
        times = {name: [] for name, _, _ in executors}
        problems = []
        for rep in range(a.reps + 1):
            for name, cmd, validate in executors:
                if os.path.exists(out):
                    os.unlink(out)
                wall, p = timed(cmd, env, work)
                left = leftovers()
                if left:
                    problems.append("%s left %d process(es) behind" % (name, len(left)))
                    reap(left)
                if p.returncode != 0:
                    problems.append("%s failed (rc %d): %s" % (name, p.returncode, p.stderr[-300:]))
                    continue
                if validate:
                    ok, summary, why = notebook_bench.validate_executed(nbformat.read(out, as_version=4))
                    if not ok:
                        problems.append("%s: invalid output: %s" % (name, why))
                        continue
                if rep > 0:  # round 0 warms caches up
                    times[name].append(wall)
                print("# round %d %-26s %.3f s" % (rep, name, wall), file=sys.stderr, flush=True)
        bd = breakdown(a.cellbox, nb, out, env, work)
    finally:
        reap(leftovers())
        shutil.rmtree(work, ignore_errors=True)

    rows = {name: summarize(v) for name, v in times.items() if v}
    cb, je, cbp = (rows.get(k, {}).get("median") for k in
                   ("cellbox-run[cellbox]", "jupyter-execute[python3]", "cellbox-run[python3]"))
    meta = {"time": datetime.datetime.now().isoformat(timespec="seconds"), "cpus": os.cpu_count(),
            "platform": platform.platform(), "reps": a.reps}
    print()
    print("50-cell notebook (../shared/bench/notebook_bench.py), wall time end to end, %d rounds, median [min-max]"
          % a.reps)
    print()
    print("| executor | kernel | median s | min s | max s | vs jupyter execute |")
    print("|---|---|---:|---:|---:|---:|")
    for name in times:
        if name not in rows:
            continue
        r = rows[name]
        exe, kernel = name.split("[")
        if exe == "python3-floor":
            print("| floor: plain `python3`, imports + the figure only | none | %.3f | %.3f | %.3f | %s |"
                  % (r["median"], r["min"], r["max"], "%.1fx (the best any kernel can reach)" % (je / r["median"])
                     if je else "-"))
            continue
        ratio = "%.1fx faster" % (je / r["median"]) if je and name != "jupyter-execute[python3]" else "1.0x"
        print("| `%s` | %s | %.3f | %.3f | %.3f | %s |" % (exe.replace("-", " "), kernel[:-1], r["median"], r["min"],
                                                         r["max"], ratio))
    print()
    if "startup" in bd:
        print("where `cellbox run -k cellbox` spends its %.3f s: kernel start to ready %.3f s, cells %.3f s "
              "(kernel busy %.3f s), kernel shutdown %.3f s, the rest (process start, reading, writing) %.3f s"
              % (bd["wall"], bd["startup"], bd["cells"], bd["all_cells_busy"], bd["shutdown"],
                 bd["wall"] - bd["startup"] - bd["cells"] - bd["shutdown"]))
        print("slowest cells (kernel busy -> idle): " + "; ".join("cell %d %.3f s `%s`" % (i, s, src)
                                                                  for s, i, src in bd["slowest_cells"]))
    for p in problems:
        print("PROBLEM: " + p)
    if a.jsonl:
        with open(a.jsonl, "a") as fh:
            fh.write(json.dumps(dict(meta, rows=rows, breakdown=bd, problems=problems)) + "\n")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
