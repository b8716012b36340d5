#!/usr/bin/python3
"""The example notebooks (notebooks/examples) run as the README shows them:
the tour produces every output type, the report takes its parameters, the
failing notebook fails with a one-line reason. The tour and the report are
also run with ipykernel (python3): the examples are not cellbox-only."""
import json
import os
import random
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import nb_common as C  # noqa: E402

EXAMPLES = os.path.join(C.SRCDIR, "notebooks", "examples")


def output_kinds(nb):
    kinds = set()
    for c in nb["cells"]:
        for o in c.get("outputs", []):
            kinds.add(o["output_type"])
            kinds.update(o.get("data", {}))
    return kinds


def main():
    C.quiet_logs()
    t = C.Tap()
    tmp = C.tempdir()
    env = C.kernelspec_env(tmp)
    try:
        work = os.path.join(tmp, "examples")
        shutil.copytree(EXAMPLES, work)
        for kernel in ("cellbox", "python3"):
            out = os.path.join(tmp, "out-" + kernel)
            r = C.run(["run", "-k", kernel, os.path.join(work, "tour.ipynb"), "--output-dir", out], env=env)
            kinds = output_kinds(C.load(os.path.join(out, "tour.ipynb"))) if r.returncode == 0 else set()
            want = {"stream", "execute_result", "display_data", "error", "text/html", "text/markdown", "text/latex",
                    "application/json", "image/svg+xml", "image/png", "text/plain"}
            t.ok(r.returncode == 0 and want <= kinds, "tour (%s): every output type" % kernel,
                 r.stderr + " missing: %s" % (want - kinds))
            r = C.run(["run", "-k", kernel, os.path.join(work, "report.ipynb"), "--output-dir", out,
                       "-p", "n", "500", "-p", "seed", "7", "-p", "title", "Weekly numbers"], env=env)
            rng = random.Random(7)
            walk = [0.0]
            for _ in range(500):
                walk.append(walk[-1] + rng.choice((-1.0, 1.0)))
            res = C.load(os.path.join(out, "report.ipynb")) if r.returncode == 0 else None
            last = res["cells"][-1]["outputs"][0]["data"]["text/plain"] if res else ""
            t.ok(res and "".join(last) == "{'title': 'Weekly numbers', 'n': 500, 'final': %r}" % walk[-1],
                 "report (%s): the parameters drive the report" % kernel, r.stderr + repr(last))
        r = C.run(["run", os.path.join(work, "fails.ipynb")], env=env)
        res = C.load(os.path.join(work, "fails.out.ipynb"))
        t.ok(r.returncode == 1 and "fails.ipynb: cell 3 (id 'fails-02'): ZeroDivisionError: division by zero" in r.stderr
             and res["cells"][2]["outputs"][0]["ename"] == "ZeroDivisionError", "fails: exit 1 naming the cell", r.stderr)
        for name in ("tour", "report", "fails"):
            nb = C.load(os.path.join(EXAMPLES, name + ".ipynb"))
            t.ok(all(not c.get("outputs") for c in nb["cells"]), "%s.ipynb is shipped without outputs" % name)
    finally:
        C.rmtree(tmp)
    return t.done()


if __name__ == "__main__":
    sys.exit(C.tap_main(main))
