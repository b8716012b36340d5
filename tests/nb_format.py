#!/usr/bin/python3
"""cellbox's nbformat layer against nbformat itself: notebooks read and
written by cellbox (tests/t_nb_rewrite) are byte-identical to what
nbformat.write() makes of the same notebook: indent 1, sorted keys, non-ASCII
kept, Python's number spellings (1.0, 1e-05, big ints, NaN), lines split like
nbformat (\\r, \\u2028...), transient fields dropped, multi-line text joined
and split again. Inputs: a notebook made to be awkward, the test corpus, and
every .ipynb shipped in Debian's Python packages.

nbformat 3 notebooks are upgraded when read exactly as nbformat.read(f,
as_version=4) upgrades them (what nbclient and papermill run): the fixtures
in tests/notebooks/v3 and an awkward v3 notebook, written by cellbox, are
byte-identical to nbformat.writes() of nbformat's upgrade (cell ids, random
on both sides, taken from cellbox's file); broken v3 notebooks are refused
with a message naming the field."""
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


V3 = os.path.join(C.SRCDIR, "tests", "notebooks", "v3")


def awkward_v3():
    """A v3 notebook with what the upgrade must get exactly right."""
    return {
        "metadata": {"name": "awkward", "signature": "sha256:ff", "kernelspec": {"name": "python3",
                     "display_name": "Python 3", "language": "python"}},
        "nbformat": 3, "nbformat_minor": 0, "orig_nbformat": 1, "orig_nbformat_minor": 7, "extra": {"kept": True},
        "worksheets": [{"metadata": {"gone": 1}, "cells": [
            {"cell_type": "heading", "level": 0, "source": "zero"},
            {"cell_type": "heading", "level": -2, "source": ["a\rb\x0bc\x1cd\u0085e\u2029f\r\n", "g"]},
            {"cell_type": "heading", "level": 6, "metadata": {"x": 1}},
            {"cell_type": "heading", "level": 2, "source": "\n\n"},
            {"cell_type": "markdown", "source": [], "rendered": "r", "id": "old-id"},
            {"cell_type": "raw", "source": ["a\r", "b"], "id": "not a v4 id!"},
            {"cell_type": "code", "input": ["a\r", "b"], "collapsed": "yes", "language": "julia",
             "metadata": {"collapsed": False, "trusted": False}, "trusted": False, "execution_count": 9,
             "outputs": [
                 {"output_type": "pyout", "text": "no prompt", "execution_count": 3},
                 {"output_type": "pyout", "prompt_number": 4, "text": ["a", "b"], "text/plain": "replaced",
                  "json": "[1, 2.0, NaN, 1e400, -0.0, {\"x\": null}]", "metadata": {"text": {"a": 1}, "svg": {}}},
                 {"output_type": "display_data", "png": ["iVBOR\n", "w0K"], "jpeg": "x", "execution_count": 5,
                  "prompt_number": "kept as data", "text/html": ["<a>", "</a>"], "application/json": "{}"},
                 {"output_type": "display_data", "metadata": {}},
                 {"output_type": "stream", "stream": "stderr", "text": []},
                 {"output_type": "stream", "text": ["x", "y\n"]},
                 {"output_type": "pyerr", "ename": "E", "evalue": "v", "traceback": ["a\nb", "c"], "text": ["j", "k"]},
                 {"output_type": "error", "ename": "E2", "evalue": "", "traceback": []},
             ]},
            {"cell_type": "code", "input": "", "outputs": [], "prompt_number": 0},
        ]}, {"cells": [{"cell_type": "html", "source": ["<p>", "</p>"]}]}],
    }


# broken v3 notebooks made in the test: the change, and what the message says
V3_BAD = [
    (lambda nb: nb.pop("worksheets"), "'worksheets' is missing"),
    (lambda nb: nb.pop("nbformat_minor"), "'nbformat_minor' is missing"),
    (lambda nb: nb.update(metadata=[]), "'metadata' is a list (expected an object)"),
    (lambda nb: nb["worksheets"].append([]), "worksheet 3 must be an object, not a list"),
    (lambda nb: nb["worksheets"][1].pop("cells"), "worksheet 2: 'cells' is missing"),
    (lambda nb: nb["worksheets"][0]["cells"][6].pop("outputs"), "cell 7: 'outputs' is missing"),
    (lambda nb: nb["worksheets"][0]["cells"][6].update(input=[1]), "cell 7: 'input' is a list holding more"),
    (lambda nb: nb["worksheets"][0]["cells"][6].update(prompt_number="1"), "cell 7: 'prompt_number' is a string"),
    (lambda nb: nb["worksheets"][0]["cells"][6]["outputs"][1].update(json="{"),
     "cell 7: output 2 (pyout): 'json' is not JSON text"),
    (lambda nb: nb["worksheets"][0]["cells"][6]["outputs"][1].update(prompt_number=-1),
     "cell 7: output 2 (pyout): 'prompt_number' is a number (expected an integer >= 0 or null)"),
    (lambda nb: nb["worksheets"][0]["cells"][6]["outputs"][2].update(png=7),
     "cell 7: output 3 (display_data): data['image/png'] must be a string or a list of strings, not a number"),
    (lambda nb: nb["worksheets"][0]["cells"][6]["outputs"][4].update(stream=1),
     "cell 7: output 5 (stream): 'stream' is a number"),
    (lambda nb: nb["worksheets"][0]["cells"][6]["outputs"][0].update(output_type="pyin"),
     "cell 7: output 1: unknown output_type 'pyin' (expected pyout, display_data, stream or pyerr)"),
    (lambda nb: nb["worksheets"][0]["cells"][0].update(level="1"), "cell 1: heading 'level' is a string"),
    (lambda nb: nb["worksheets"][0]["cells"][0].update(level=10 ** 9), "cell 1: heading 'level' 1000000000 is not"),
    (lambda nb: nb["worksheets"][0]["cells"][2].update(cell_type="plaintext"), "cell 3: unknown cell_type 'plaintext'"),
    (lambda nb: nb["worksheets"][0]["cells"][5].update(metadata=1), "cell 6: 'metadata' is a number"),
    (lambda nb: nb["worksheets"][0]["cells"][5].pop("source"), "cell 6: 'source' is missing"),
]


def upgraded_by_nbformat(path, ids, reread=False):
    """nbformat.writes(nbformat.read(path, as_version=4)) with the given ids;
    with reread, what nbformat writes of that file when it reads it back
    (lists a v3 reader does not join, such as a png saved as a list, are
    written as lists after the upgrade and joined when read back: cellbox
    writes the file it reads back the same)."""
    import nbformat
    nb = nbformat.read(path, as_version=4)
    if len(ids) == len(nb.cells):
        for cell, i in zip(nb.cells, ids):
            cell.id = i
    text = nbformat.writes(nb)
    if reread:
        text = nbformat.writes(nbformat.reads(text, as_version=nbformat.NO_CONVERT))
    return text if text.endswith("\n") else text + "\n"


def check_v3(t, tmp):
    import copy
    import json
    import re
    odd = os.path.join(tmp, "awkward_v3.ipynb")
    with open(odd, "w") as fh:
        json.dump(awkward_v3(), fh, indent=1)
    for path in sorted(glob.glob(os.path.join(V3, "*.ipynb"))) + [odd]:
        name = os.path.basename(path)
        if name.startswith("bad_"):
            continue
        r = subprocess.run([REWRITE, path, "-"], capture_output=True, text=True)
        try:
            ids = [c.get("id") for c in json.loads(r.stdout)["cells"]]
        except ValueError:
            ids = []
        ref = upgraded_by_nbformat(path, ids, reread=path == odd)
        t.ok(r.returncode == 0 and r.stdout == ref,
             "nbformat 3 %s: cellbox's upgrade == nbformat.read(as_version=4)%s (was refused)"
             % (name, ", read back" if path == odd else ""), r.stderr or first_diff_line(r.stdout, ref))
        if r.returncode == 0:
            again = subprocess.run([REWRITE, "/dev/stdin", "-"], input=r.stdout, capture_output=True, text=True)
            t.ok(again.returncode == 0 and again.stdout == r.stdout,
                 "%s: the v4 file cellbox wrote reads back to the same bytes" % name, again.stderr)
        t.ok(ids and all(re.fullmatch("[0-9a-f]{8}", i or "") for i in ids) and len(set(ids)) == len(ids),
             "%s: every cell has a fresh id of 8 hex digits, as nbformat's" % name, ids)
    expected = {"bad_worksheets_not_list.ipynb": "'worksheets' is an object (expected a list",
                "bad_no_cell_type.ipynb": "cell 2: 'cell_type' is missing",
                "bad_nbformat2.ipynb": "nbformat 2 notebooks are not supported"}
    for name, why in sorted(expected.items()):
        never = os.path.join(tmp, "never-" + name)
        r = subprocess.run([REWRITE, os.path.join(V3, name), never], capture_output=True, text=True)
        t.ok(r.returncode == 2 and why in r.stderr and not os.path.exists(never),
             "%s is refused: %r, nothing written" % (name, why), r.stderr)
    for i, (change, why) in enumerate(V3_BAD):
        nb = copy.deepcopy(awkward_v3())
        change(nb)
        path = os.path.join(tmp, "bad_v3_%d.ipynb" % i)
        with open(path, "w") as fh:
            json.dump(nb, fh)
        never = os.path.join(tmp, "never-bad_v3_%d.ipynb" % i)
        r = subprocess.run([REWRITE, path, never], capture_output=True, text=True)
        t.ok(r.returncode == 2 and (path + ": " + why) in r.stderr and len(r.stderr.splitlines()) == 1
             and not os.path.exists(never), "broken v3 refused: %s" % why, r.stderr)


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
            never = os.path.join(tmp, "never-" + os.path.basename(path))
            r = subprocess.run([REWRITE, path, never], capture_output=True, text=True)
            t.ok(r.returncode == 2 and r.stderr.strip() and not os.path.exists(never),
                 "%s is refused with a message and nothing is written" % os.path.basename(path))
        check_v3(t, tmp)
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
