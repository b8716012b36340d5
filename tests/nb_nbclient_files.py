#!/usr/bin/python3
"""nbclient's own test notebooks (Debian's python3-nbclient ships them in
nbclient/tests/files) executed by `cellbox run` and by nbclient:

- `cellbox run --kernel python3` == nbclient with ipykernel, and
- `cellbox run --kernel cellbox` == nbclient with ipykernel where the two
  kernels are meant to agree (tracebacks and PNG bytes compared as in
  nb_corpus_cellbox.py),

after normalising ids, timings and addresses. These notebooks were written
by nbclient's authors, not by us: clear_output with and without wait,
display-id updates sent through kernel.session.send(), an inline image from
a file, other comms, unicode, skipped cells, errors allowed by tag.

One difference is by design and left out of the comparison:
metadata.kernelspec, which nbclient leaves as the file had it (often
absent) and cellbox fills with the kernel it ran, as papermill and the
notebook server do; it is checked on its own.

Left out: notebooks whose point is nbclient's own machinery (Interrupt,
Autokill, Sleep1s, the two Parallel Execute notebooks that need nbclient's
test harness), and the two widget notebooks, which nbclient 0.7 itself
cannot run with Debian 12's ipywidgets 6 (KeyError 'state');
nb_corpus.py's notebook 28 covers the Output widget. Output: TAP."""
import os
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import nb_common as C  # noqa: E402

SKIP = {"Interrupt.ipynb", "Autokill.ipynb", "Sleep1s.ipynb", "Parallel Execute A.ipynb",
        "Parallel Execute B.ipynb", "JupyterWidgets.ipynb", "Output.ipynb"}
ALLOW_ERRORS = {"Error.ipynb", "Skip Exceptions.ipynb", "Disable Stdin.ipynb"}


def files_dir():
    import nbclient
    return os.path.join(os.path.dirname(nbclient.__file__), "tests", "files")


def nbclient_run(path, cwd, allow_errors):
    import json

    import nbformat
    from nbclient import NotebookClient
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, kernel_name="python3", timeout=120, startup_timeout=60, allow_errors=allow_errors,
                   resources={"metadata": {"path": cwd}}).execute()
    return json.loads(nbformat.writes(nb))


def main():
    C.quiet_logs()
    t = C.Tap()
    src = files_dir()
    if not os.path.isdir(src):
        t.ok(False, "nbclient's test notebooks are installed (python3-nbclient)", src)
        return t.done()
    tmp = C.tempdir()
    try:
        env = C.kernelspec_env(tmp)
        work = os.path.join(tmp, "files")
        shutil.copytree(src, work)
        names = sorted(n for n in os.listdir(work) if n.endswith(".ipynb") and n not in SKIP)
        t.ok(len(names) >= 14, "nbclient ships at least 14 notebooks we run (%d)" % len(names))
        groups = {True: [n for n in names if n in ALLOW_ERRORS], False: [n for n in names if n not in ALLOW_ERRORS]}
        outs = {}
        for kernel in ("python3", "cellbox"):
            out = os.path.join(tmp, "out-" + kernel)
            for allow, group in groups.items():
                args = ["run", "-j", "2", "--kernel", kernel, "--output-dir", out]
                args += ["--allow-errors"] if allow else []
                r = C.run(args + [os.path.join(work, n) for n in group], env=env, timeout=600)
                t.ok(r.returncode == 0, "cellbox run --kernel %s%s on %d of nbclient's notebooks exits 0"
                     % (kernel, " --allow-errors" if allow else "", len(group)), r.stderr)
            outs[kernel] = out
        for name in names:
            try:
                ref = nbclient_run(os.path.join(work, name), work, name in ALLOW_ERRORS)
            except Exception as e:
                t.ok(False, "%s: nbclient ran it" % name, "%s: %s" % (type(e).__name__, e))
                continue
            for kernel in ("python3", "cellbox"):
                path = os.path.join(outs[kernel], name)
                if not os.path.exists(path):
                    t.ok(False, "%s: cellbox run --kernel %s wrote it" % (name, kernel))
                    continue
                mine = C.load(path)
                t.ok(mine["metadata"].get("kernelspec", {}).get("name") == kernel,
                     "%s (%s): metadata.kernelspec names the kernel that ran it" % (name, kernel),
                     mine["metadata"].get("kernelspec"))
                neutral = kernel == "cellbox"
                a, b = C.normalize(mine, kernel_neutral=neutral), C.normalize(ref, kernel_neutral=neutral)
                for nb in (a, b):
                    nb["metadata"].pop("kernelspec", None)
                d = C.first_difference(a, b)
                t.ok(d is None, "%s: cellbox run --kernel %s == nbclient (python3)" % (name, kernel), d)
    finally:
        C.rmtree(tmp)
    return t.done()


if __name__ == "__main__":
    sys.exit(C.tap_main(main))
