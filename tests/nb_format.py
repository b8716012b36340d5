#!/usr/bin/python3
"""cellbox's nbformat layer against nbformat itself: notebooks read and
written by cellbox (tests/t_nb_rewrite) are byte-identical to what
nbformat.write() makes of the same notebook: indent 1, sorted keys, non-ASCII
kept, Python's number spellings (1.0, 1e-05, big ints, NaN), lines split like
nbformat (\\r, \\u2028...), transient fields dropped, multi-line text joined
and split again. Inputs: a notebook made to be awkward, the test corpus, and
every .ipynb shipped in Debian's Python packages."""
import glob
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import nb_common as C  # noqa: E402

REWRITE = os.path.join(C.BUILDDIR, "tests", "t_nb_rewrite")


def awkward(path):
    import nbformat
    from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output
    from nbformat.v4.nbbase import new_raw_cell
    nb = new_notebook()
    nb.metadata["floats"] = [1.0, 0.1, 1e-05, 1e16, 1.5e300, -0.0, 123456789012345.0, 1234567890123456.0,
                             3.141592653589793, 2.5e-7, 1e22, 5e-324, float("inf"), float("-inf"), float("nan"), 0.0001]
    nb.metadata["ints"] = [0, -1, 12345678901234567890123, 2 ** 53 + 1]
    nb.metadata["strs"] = ["é\u2028x\x7f\x01\x1f\"\\/\t\b\f", "😀", "", "\u0085", "\ufeff"]
    nb.metadata["keys"] = {"a": [], "b": {}, "": 1, "Z": 2, "a1": 3, "é": 4, "😀": 5}
    nb.metadata["signature"] = "transient"
    c = new_code_cell("a = 1\r\nb = 2\rc\x0b\x0cd\x1c\u2028e\u0085\n\n")
    c.outputs = [new_output("stream", name="stdout", text="x\ry\n\n"),
                 new_output("display_data", data={"text/plain": "a\nb", "image/png": "iVBOR\nw0K",
                                                  "application/json": {"x": [1, 2.0, "s\n"]},
                                                  "image/svg+xml": "<svg>\n</svg>",
                                                  "application/javascript": "1\n2",
                                                  "application/vnd.foo+json": {"a": None}},
                            metadata={"image/png": {"width": 10, "height": 2.5}}),
                 new_output("execute_result", data={"text/plain": ""}, execution_count=3),
                 new_output("error", ename="E", evalue="v", traceback=["a\nb", "c"])]
    c.execution_count = 3
    c.metadata["trusted"] = True
    nb.cells = [c, new_markdown_cell("# hi\n"), new_raw_cell("")]
    nb.cells[1].attachments = {"x.png": {"image/png": "AAA\nBBB", "text/plain": "t\nu"}}
    with open(path, "w") as fh:
        nbformat.write(nb, fh)


def main():
    C.quiet_logs()
    import nbformat
    t = C.Tap()
    tmp = C.tempdir()
    try:
        odd = os.path.join(tmp, "awkward.ipynb")
        awkward(odd)
        inputs = [odd] + sorted(glob.glob(os.path.join(C.CORPUS, "*.ipynb")))
        inputs += sorted(glob.glob("/usr/lib/python3/dist-packages/**/*.ipynb", recursive=True))
        for path in inputs:
            try:
                nb = nbformat.read(path, as_version=nbformat.NO_CONVERT)
                if nb.nbformat != 4:
                    continue
                ref = nbformat.writes(nb)
            except Exception:  # nbformat itself cannot handle it: not a reference
                continue
            ref = ref if ref.endswith("\n") else ref + "\n"
            r = subprocess.run([REWRITE, path, "-"], capture_output=True, text=True)
            if nb.nbformat_minor >= 5 and any("id" not in c for c in nb.cells):
                # ids are random on both sides: compare what nbformat makes of cellbox's file
                ref = C.nbformat_rewrite_text(r.stdout) if r.returncode == 0 else ref
            label = os.path.relpath(path, tmp) if path.startswith(tmp) else path
            t.ok(r.returncode == 0 and r.stdout == ref, "%s: cellbox's write == nbformat.write" % label,
                 r.stderr or first_diff_line(r.stdout, ref))
        for path in sorted(glob.glob(os.path.join(C.BAD, "*.ipynb"))):
            r = subprocess.run([REWRITE, path, os.path.join(tmp, "never.ipynb")], capture_output=True, text=True)
            t.ok(r.returncode == 2 and r.stderr.strip() and not os.path.exists(os.path.join(tmp, "never.ipynb")),
                 "%s is refused with a message and nothing is written" % os.path.basename(path))
    finally:
        C.rmtree(tmp)
    return t.done()


def first_diff_line(a, b):
    for i, (x, y) in enumerate(zip(a.splitlines(), b.splitlines())):
        if x != y:
            return "line %d:\n cellbox:  %r\n nbformat: %r" % (i + 1, x, y)
    return "lengths differ: %d vs %d" % (len(a), len(b))


if __name__ == "__main__":
    sys.exit(C.tap_main(main))
