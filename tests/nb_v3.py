#!/usr/bin/python3
"""`cellbox run` on nbformat 3 notebooks (tests/notebooks/v3), against what
nbclient and papermill do with them: nbformat.read(f, as_version=4), which
upgrades v3 to v4 in memory, then run and nbformat.write() (nbformat 4.5).

- executed with --kernel python3, the result equals nbclient's on the same
  kernel (normalised as the corpus test does), and the file is what
  nbformat.write() makes of it;
- --prepare-only (nothing executed) writes nbformat's upgrade;
- --inplace replaces the v3 file by the executed v4 notebook, as nbclient's
  `jupyter execute --inplace` (nbformat.write of the upgraded notebook);
- a broken v3 notebook or an nbformat 2 one fails with one line naming the
  file and the field, and nothing is written (with --inplace the input is
  left as it was)."""
import json
import os
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import nb_common as C  # noqa: E402

V3 = os.path.join(C.SRCDIR, "tests", "notebooks", "v3")
GOOD = ["outputs.ipynb", "cells.ipynb"]
BAD = {"bad_worksheets_not_list.ipynb": "'worksheets' is an object (expected a list",
       "bad_no_cell_type.ipynb": "cell 2: 'cell_type' is missing",
       "bad_nbformat2.ipynb": "nbformat 2 notebooks are not supported"}


def nbclient_allow_errors(path, cwd):
    import nbformat
    from nbclient import NotebookClient
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, kernel_name="python3", timeout=120, startup_timeout=60, allow_errors=True,
                   resources={"metadata": {"path": cwd}}).execute()
    return json.loads(nbformat.writes(nb))


def upgraded(path):
    import nbformat
    return json.loads(nbformat.writes(nbformat.read(path, as_version=4)))


def comparable(nb, had_kernelspec):
    """normalize(), and what differs for reasons that are not nbformat 3:
    cellbox records the kernelspec it ran (nbclient only language_info),
    papermill's prepare gives each cell an empty tags list."""
    nb = C.normalize(nb)
    if not had_kernelspec:
        nb["metadata"].pop("kernelspec", None)
    for cell in nb["cells"]:
        if cell.get("metadata", {}).get("tags") == []:
            del cell["metadata"]["tags"]
    return nb


def main():
    C.quiet_logs()
    t = C.Tap()
    tmp = C.tempdir("cellbox-nb-v3-")
    try:
        env = C.kernelspec_env(tmp)
        work = os.path.join(tmp, "in")
        shutil.copytree(V3, work)
        for name in GOOD:
            src = os.path.join(work, name)
            had_ks = "kernelspec" in C.load(src)["metadata"]
            before = C.read_text(src)
            out = os.path.join(tmp, "run-" + name)
            r = C.run(["run", "--allow-errors", "--kernel", "python3", src, "-o", out], env=env)
            res = C.load(out) if os.path.exists(out) else None
            t.ok(r.returncode == 0 and res and res["nbformat"] == 4 and res["nbformat_minor"] == 5
                 and C.read_text(src) == before,
                 "%s (nbformat 3): runs, writes nbformat 4.5, input untouched (was refused)" % name, r.stderr)
            if not res:
                continue
            t.ok(C.read_text(out) == C.nbformat_rewrite(out), "%s: the file is byte-identical to nbformat.write()" % name)
            ref = nbclient_allow_errors(src, work)
            d = C.first_difference(comparable(res, had_ks), comparable(ref, had_ks))
            t.ok(d is None, "%s: cellbox run (python3) == nbformat.read(as_version=4) + nbclient (python3)" % name, d)

            prep = os.path.join(tmp, "prep-" + name)
            r = C.run(["run", "--prepare-only", "--kernel", "python3", src, "-o", prep], env=env)
            res = C.load(prep) if os.path.exists(prep) else None
            d = C.first_difference(comparable(res, True), comparable(upgraded(src), True)) if res else "not written"
            t.ok(r.returncode == 0 and d is None,
                 "%s: --prepare-only writes nbformat's upgrade, nothing executed" % name, r.stderr + str(d))

        # --inplace: the v3 file becomes the executed v4 notebook
        inplace = os.path.join(work, "inplace.ipynb")
        shutil.copy(os.path.join(work, "cells.ipynb"), inplace)
        r = C.run(["run", "--inplace", "--kernel", "python3", inplace], env=env)
        res = C.load(inplace)
        other = C.load(os.path.join(tmp, "run-cells.ipynb")) if os.path.exists(os.path.join(tmp, "run-cells.ipynb")) else {}
        t.ok(r.returncode == 0 and res.get("nbformat") == 4 and res.get("nbformat_minor") == 5
             and "worksheets" not in res and C.read_text(inplace) == C.nbformat_rewrite(inplace)
             and C.first_difference(C.normalize(res), C.normalize(other)) is None,
             "--inplace on an nbformat 3 notebook writes the executed nbformat 4.5 notebook, as "
             "`jupyter execute --inplace`", r.stderr)

        # broken: one line naming the file and the field, nothing written
        for name, why in sorted(BAD.items()):
            src = os.path.join(work, name)
            before = C.read_text(src)
            r = C.run(["run", "--kernel", "python3", src], env=env)
            line = r.stderr.strip()
            t.ok(r.returncode == 1 and src in line and why in line and len(line.splitlines()) == 1
                 and not os.path.exists(src.replace(".ipynb", ".out.ipynb")),
                 "%s: exit 1, one line naming file and field (%r), nothing written" % (name, why), r.stderr)
            r = C.run(["run", "--inplace", "--kernel", "python3", src], env=env)
            t.ok(r.returncode == 1 and why in r.stderr and C.read_text(src) == before,
                 "%s --inplace: refused, the file left as it was" % name, r.stderr)
    finally:
        C.rmtree(tmp)
    return t.done()


if __name__ == "__main__":
    sys.exit(C.tap_main(main))
