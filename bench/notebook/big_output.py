#!/usr/bin/python3
"""A notebook with a lot of output: 2,000 small cells, then one cell that
prints 300,000 lines and one that interleaves 100,000 stdout and stderr
lines (an executed notebook of ~36 MB). Wall time and the executor
process's own peak memory (VmHWM, the kernel not counted) for

  cellbox-run[cellbox]      cellbox run -k cellbox NB -o OUT
  cellbox-run[python3]      cellbox run -k python3 NB -o OUT
  jupyter-execute[python3]  jupyter-execute --kernel_name=python3 NB
  nbconvert[python3]        jupyter-nbconvert --to notebook --execute NB (writes OUT, like cellbox)

taking turns, each a fresh process and kernel. Executors that are not
installed are left out.

    /usr/bin/python3 bench/notebook/big_output.py [--reps 3]
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def make_notebook(path):
    cells = [{"cell_type": "code", "execution_count": None, "id": "c%d" % i, "metadata": {}, "outputs": [],
              "source": "print(%d)\n%d" % (i, i)} for i in range(2000)]
    cells.append({"cell_type": "code", "execution_count": None, "id": "big", "metadata": {}, "outputs": [],
                  "source": "for i in range(300000): print('line %d of many many characters' % i)"})
    cells.append({"cell_type": "code", "execution_count": None, "id": "mixed", "metadata": {}, "outputs": [],
                  "source": "import sys\nfor i in range(100000):\n    print('o', i)\n    print('e', i, file=sys.stderr)"})
    nb = {"cells": cells, "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                      "language": "python"}},
          "nbformat": 4, "nbformat_minor": 5}
    with open(path, "w") as fh:
        json.dump(nb, fh)


def hwm_kb(pid):
    try:
        with open("/proc/%d/status" % pid) as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def measure(argv, env, cwd):
    t0 = time.monotonic()
    p = subprocess.Popen(argv, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peak = 0
    while p.poll() is None:
        peak = max(peak, hwm_kb(p.pid))
        time.sleep(0.01)
    wall = time.monotonic() - t0
    err = p.stderr.read().decode(errors="replace")
    if p.returncode != 0:
        sys.exit("%s failed (%d): %s" % (argv[0], p.returncode, err[-500:]))
    return wall, peak / 1024.0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="cellbox-big-")
    try:
        nb = os.path.join(tmp, "big.ipynb")
        make_notebook(nb)
        cellbox = os.path.join(ROOT, "cellbox")
        jp = os.path.join(tmp, "jp")
        subprocess.run([cellbox, "kernelspec", "install", "--prefix", jp], check=True, stdout=subprocess.DEVNULL)
        env = dict(os.environ, JUPYTER_PATH=os.path.join(jp, "share", "jupyter"))
        out = os.path.join(tmp, "out.ipynb")
        execs = [("cellbox-run[cellbox]", [cellbox, "run", "-k", "cellbox", nb, "-o", out]),
                 ("cellbox-run[python3]", [cellbox, "run", "-k", "python3", nb, "-o", out])]
        if shutil.which("jupyter-execute"):
            execs.append(("jupyter-execute[python3]", ["jupyter-execute", "--kernel_name=python3", nb]))
        if shutil.which("jupyter-nbconvert"):
            execs.append(("nbconvert[python3]", ["jupyter-nbconvert", "--to", "notebook", "--execute",
                                                 "--ExecutePreprocessor.kernel_name=python3", "--output", out, nb]))
        res = {name: [] for name, _ in execs}
        for rnd in range(args.reps):
            for name, argv in execs:
                wall, mb = measure(argv, env, tmp)
                res[name].append((wall, mb))
                print("# round %d %-26s %6.2f s %7.1f MB" % (rnd + 1, name, wall, mb), file=sys.stderr)
        size = os.path.getsize(out) / 1e6
        base = statistics.median(w for w, _ in res[execs[0][0]])
        print("\n| executor | median s | peak MB (executor process) | time vs cellbox run |")
        print("|---|---:|---:|---:|")
        for name, _ in execs:
            w = statistics.median(x for x, _ in res[name])
            m = statistics.median(y for _, y in res[name])
            print("| `%s` | %.2f | %.0f | %.1fx |" % (name, w, m, w / base))
        print("\n(executed notebook %.1f MB; median of %d rounds)" % (size, args.reps))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
