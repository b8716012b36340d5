#!/usr/bin/python3
"""`cellbox run` with kernels that are not Python's ipykernel, as Debian
installs them: IRkernel (r-cran-irkernel, kernelspec "ir") and xeus-python
(xpython). The executor is a generic Jupyter client; these check it against
nbclient on the same kernel, and papermill's R translator for real:

- an R notebook with a `parameters` cell run with -p/-y: the injected cell
  is R, R executes it, and the executed notebook equals what nbclient makes
  of cellbox's --prepare-only output with the same kernel (streams,
  data.frame reprs in four mime types, a PNG plot, message()/warning() on
  stderr, an error in a cell tagged raises-exception);
- the notebook's own kernelspec chooses the kernel (no -k);
- --timeout interrupts R's Sys.sleep (signal interrupt mode) and the run
  fails with CellTimeoutError; no R process is left behind;
- a Python notebook with -k xpython equals nbclient with xpython;
- -j 2 over an R and a Python notebook, each with its own kernel.

A kernel that is not installed is reported as a skip naming the package.
Output: TAP."""
import base64
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import nb_common as C  # noqa: E402

IR = {"name": "ir", "display_name": "R", "language": "R"}
XPY = {"name": "xpython", "display_name": "Python 3 (XPython)", "language": "python"}


def write_nb(path, cells, kernelspec):
    import json
    nb = {"cells": [], "metadata": {"kernelspec": kernelspec}, "nbformat": 4, "nbformat_minor": 5}
    for i, (src, tags) in enumerate(cells):
        cell = {"cell_type": "code", "execution_count": None, "id": "c%d" % i, "metadata": {}, "outputs": [],
                "source": src}
        if tags:
            cell["metadata"]["tags"] = tags
        nb["cells"].append(cell)
    with open(path, "w") as fh:
        json.dump(nb, fh, indent=1)
    return path


def installed(name):
    for d in ("/usr/share/jupyter/kernels", "/usr/local/share/jupyter/kernels"):
        if os.path.exists(os.path.join(d, name, "kernel.json")):
            return True
    return False


def pixels(nb):
    """PNGs compared by pixels (the bytes too are equal today, but a
    kernel's PNG encoder is not what this test is about)."""
    for cell in nb.get("cells", []):
        for o in cell.get("outputs", []):
            png = o.get("data", {}).get("image/png")
            if png:
                o["data"]["image/png"] = C.png_pixels(png if isinstance(png, str) else "".join(png))
    return nb


def text(nb, i, name="stdout"):
    return "".join("".join(o["text"]) for o in nb["cells"][i]["outputs"]
                   if o["output_type"] == "stream" and o["name"] == name)


def r_processes():
    r = subprocess.run(["pgrep", "-f", "IRkernel::main"], capture_output=True, text=True)
    return set(r.stdout.split())


def main():
    C.quiet_logs()
    t = C.Tap()
    tmp = C.tempdir()
    env = C.kernelspec_env(tmp)
    run = lambda *a, **kw: C.run(list(a), env=env, **kw)  # noqa: E731
    try:
        if not installed("ir"):
            t.skip("R notebooks", "IRkernel is not installed (apt-get install r-cran-irkernel)")
        else:
            before = r_processes()
            rnb = write_nb(os.path.join(tmp, "r.ipynb"), [
                ("n <- 3\ns <- 'x'\nflag <- FALSE\nl <- list()", ["parameters"]),
                ("print(n * 2)\ncat(s, '\\n')\nflag", None),
                ("df <- data.frame(a = 1:n, b = letters[1:n])\ndf", None),
                ("length(l)\nl[[2]]", None),
                ("message('to stderr')\nwarning('careful')", None),
                ("plot(1:10)", None),
                ("stop('boom')", ["raises-exception"]),
                ("sum(1:100)", None)], IR)
            params = ["-p", "n", "5", "-p", "s", "a b", "-p", "flag", "True", "-y", "l: [1, two]"]
            out = os.path.join(tmp, "r.out.ipynb")
            r = run("run", rnb, *params, "-o", out)
            res = C.load(out) if os.path.exists(out) else None
            t.ok(r.returncode == 0 and res is not None, "cellbox run on an R notebook (its kernelspec: ir) exits 0",
                 r.stderr)
            if res:
                injected = "".join(res["cells"][1]["source"])
                t.ok(injected == '# Parameters\nn = 5\ns = "a b"\nflag = TRUE\nl = list(1, "two")\n'
                     and res["cells"][1]["metadata"]["tags"] == ["injected-parameters"],
                     "the injected parameters are R code", injected)
                t.ok(text(res, 2) == "[1] 10\na b \n", "R ran the injected values (n * 2, s)", text(res, 2))
                df = [o for o in res["cells"][3]["outputs"] if o["output_type"] == "display_data"]
                t.ok(len(df) == 1 and sorted(df[0]["data"]) == ["text/html", "text/latex", "text/markdown", "text/plain"]
                     and "<table" in "".join(df[0]["data"]["text/html"]),
                     "a data.frame comes back in IRkernel's four mime types")
                t.ok("careful" in text(res, 5, "stderr") and "to stderr" in text(res, 5, "stderr"),
                     "message() and warning() on stderr")
                png = [o for o in res["cells"][6]["outputs"] if "image/png" in o.get("data", {})]
                t.ok(len(png) == 1 and base64.b64decode("".join(png[0]["data"]["image/png"]))[:8] == b"\x89PNG\r\n\x1a\n",
                     "a plot is an image/png display")
                errs = [o for o in res["cells"][7]["outputs"] if o["output_type"] == "error"]
                t.ok(len(errs) == 1 and "boom" in errs[0]["evalue"] and res["cells"][8]["execution_count"] == 9,
                     "an R error in a raises-exception cell is recorded and the run goes on")
                t.ok(res["metadata"]["language_info"]["name"] == "R" and res["metadata"]["kernelspec"]["name"] == "ir"
                     and res["metadata"]["papermill"]["parameters"]["l"] == [1, "two"],
                     "language_info from IRkernel, kernelspec and papermill's parameters recorded")
                prep = os.path.join(tmp, "r.prep.ipynb")
                r = run("run", rnb, *params, "--prepare-only", "-o", prep)
                try:
                    ref = C.nbclient_execute(prep, "ir", tmp)
                except Exception as e:
                    ref = None
                    t.ok(False, "nbclient ran the prepared R notebook", "%s: %s" % (type(e).__name__, e))
                if ref is not None:
                    d = C.first_difference(pixels(C.normalize(res)), pixels(C.normalize(ref)))
                    t.ok(d is None, "the R notebook: cellbox run == nbclient on cellbox's --prepare-only output", d)

            slow = write_nb(os.path.join(tmp, "slow.ipynb"), [("cat('start\\n')\nSys.sleep(120)", None), ("1", None)], IR)
            r = run("run", slow, "--timeout", "2", "-o", os.path.join(tmp, "slow.out.ipynb"))
            res = C.load(os.path.join(tmp, "slow.out.ipynb")) if os.path.exists(os.path.join(tmp, "slow.out.ipynb")) else None
            t.ok(r.returncode == 1 and "timed out after 2 s" in r.stderr and res is not None
                 and [o.get("ename") for o in res["cells"][0]["outputs"] if o["output_type"] == "error"] == ["CellTimeoutError"]
                 and text(res, 0) == "start\n" and res["cells"][1]["execution_count"] is None,
                 "--timeout interrupts R's Sys.sleep: CellTimeoutError, the next cell not run, exit 1", r.stderr)
            t.ok(r_processes() <= before, "no IRkernel process left behind", r_processes() - before)

        if not installed("xpython"):
            t.skip("xeus-python notebooks", "xeus-python is not installed (apt-get install xpython)")
        else:
            xnb = write_nb(os.path.join(tmp, "x.ipynb"), [
                ("print('hello')\nimport sys\nprint('err', file=sys.stderr)", None),
                ("6 * 7", None),
                ("from IPython.display import display, HTML, Markdown\ndisplay(HTML('<b>b</b>'), Markdown('*m*'))", None),
                ("h = display('first', display_id=True)\nh.update('second')", None),
                ("raise ValueError('v')", ["raises-exception"]),
                ("'after'", None)], XPY)
            out = os.path.join(tmp, "x.out.ipynb")
            r = run("run", "-k", "xpython", xnb, "-o", out)
            res = C.load(out) if os.path.exists(out) else None
            t.ok(r.returncode == 0 and res is not None and res["metadata"]["kernelspec"]["name"] == "xpython",
                 "cellbox run -k xpython exits 0", r.stderr)
            if res:
                try:
                    ref = C.nbclient_execute(xnb, "xpython", tmp)
                    a, b = C.normalize(res), C.normalize(ref)
                    for nb in (a, b):   # cellbox records the installed spec's display name (checked above)
                        nb["metadata"].pop("kernelspec", None)
                    d = C.first_difference(a, b)
                    t.ok(d is None, "a Python notebook: cellbox run -k xpython == nbclient with xpython", d)
                except Exception as e:
                    t.ok(False, "nbclient ran the xpython notebook", "%s: %s" % (type(e).__name__, e))

        if installed("ir") and installed("xpython"):
            outdir = os.path.join(tmp, "both")
            r = run("run", "-j", "2", "--output-dir", outdir, os.path.join(tmp, "r.ipynb"), os.path.join(tmp, "x.ipynb"),
                    "-p", "n", "2", "-y", "l: [1, two]")
            ok = r.returncode == 0 and all(os.path.exists(os.path.join(outdir, n)) for n in ("r.ipynb", "x.ipynb"))
            if ok:
                rr, xx = C.load(os.path.join(outdir, "r.ipynb")), C.load(os.path.join(outdir, "x.ipynb"))
                ok = (rr["metadata"]["kernelspec"]["name"] == "ir" and xx["metadata"]["kernelspec"]["name"] == "xpython"
                      and text(rr, 2) == "[1] 4\nx \n")
            t.ok(ok, "-j 2 over an R and an xpython notebook, each with its own kernel", r.stderr)
    finally:
        C.rmtree(tmp)
    return t.done()


if __name__ == "__main__":
    sys.exit(C.tap_main(main))
