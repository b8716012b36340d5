#!/usr/bin/python3
"""papermill compatibility of `cellbox run`: -p/-r/-f/-y parameters reach the
kernel with papermill's types, the injected cell lands where papermill puts
it (in Python, R or bash), metadata.papermill and cell.metadata.papermill
have papermill's fields and values, a failure inserts papermill's error
cells, --prepare-only does not execute. Also papermill's other options:
-b (base64 parameters), --inject-paths, --report-mode, --help-notebook,
--stdout-file/--stderr-file and papermill's spellings of cellbox options."""
import datetime
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import nb_common as C  # noqa: E402


def code(src, tags=None):
    return {"cell_type": "code", "execution_count": None, "metadata": {"tags": tags} if tags else {},
            "outputs": [], "source": src}


def md(src):
    return {"cell_type": "markdown", "metadata": {}, "source": src}


def write(path, cells, ks=None, minor=4):
    nb = {"cells": cells, "metadata": {"kernelspec": ks or {"name": "cellbox", "display_name": "c",
                                                            "language": "python"}},
          "nbformat": 4, "nbformat_minor": minor}
    with open(path, "w") as fh:
        json.dump(nb, fh)
    return path


def src(cell):
    return "".join(cell["source"])


def stdout(cell):
    return "".join("".join(o["text"]) for o in cell["outputs"] if o["output_type"] == "stream")


def naive_iso(s):
    try:
        return datetime.datetime.fromisoformat(s).tzinfo is None
    except (TypeError, ValueError):
        return False


def main():
    C.quiet_logs()
    t = C.Tap()
    tmp = C.tempdir()
    env = C.kernelspec_env(tmp)
    try:
        run = lambda *a: C.run(list(a), env=env)  # noqa: E731
        report = write(os.path.join(tmp, "report.ipynb"), [
            md("# Report"),
            code("alpha = 0.1\nname = 'default'\nn = 1\nflag = False\nnothing = 'x'", ["parameters"]),
            code("print(repr((alpha, name, n, flag, nothing)))"),
            code("print(repr((raw, big, lst, d)))"),
        ])
        pfile = os.path.join(tmp, "params.json")
        with open(pfile, "w") as fh:
            json.dump({"lst": [1, "two", None, 2.5], "d": {"k": True}, "n": 5}, fh)
        out = os.path.join(tmp, "report.out.ipynb")
        r = run("run", report, "-f", pfile, "-p", "alpha", "0.5", "-p", "name", "it's \"é\"\\n", "-p", "n", "1_000",
                "-p", "flag", "True", "-p", "nothing", "None", "-r", "raw", "12", "-y", '{"big": 12345678901234567890}')
        res = C.load(out) if os.path.exists(out) else None
        t.ok(r.returncode == 0 and res, "a parameterized run succeeds", r.stderr)
        cells = res["cells"]
        t.ok(len(cells) == 5 and cells[2]["metadata"]["tags"] == ["injected-parameters"],
             "the injected cell comes right after the cell tagged parameters")
        t.ok(src(cells[2]) == '# Parameters\nlst = [1, "two", None, 2.5]\nd = {"k": True}\nn = 1000\nalpha = 0.5\n'
             'name = "it\'s \\"\\xe9\\"\\\\n"\nflag = True\nnothing = None\nraw = "12"\nbig = 12345678901234567890\n',
             "the injected code is papermill's (order: -f, -y, -p, -r; types; escapes)", repr(src(cells[2])))
        t.ok(stdout(cells[3]) == "(0.5, 'it\\'s \"é\"\\\\n', 1000, True, None)\n"
             and stdout(cells[4]) == "('12', 12345678901234567890, [1, 'two', None, 2.5], {'k': True})\n",
             "the kernel sees the values with papermill's types", stdout(cells[3]) + stdout(cells[4]))
        pm = res["metadata"]["papermill"]
        t.ok(sorted(pm) == ["default_parameters", "duration", "end_time", "environment_variables", "exception",
                            "input_path", "output_path", "parameters", "start_time", "version"],
             "metadata.papermill has papermill's fields", sorted(pm))
        t.ok(pm["input_path"] == report and pm["output_path"] == out and pm["exception"] is None
             and isinstance(pm["duration"], float) and naive_iso(pm["start_time"]) and naive_iso(pm["end_time"])
             and pm["parameters"] == {"lst": [1, "two", None, 2.5], "d": {"k": True}, "n": 1000, "alpha": 0.5,
                                      "name": "it's \"é\"\\n", "flag": True, "nothing": None, "raw": "12",
                                      "big": 12345678901234567890},
             "metadata.papermill values (paths, naive UTC times, float duration, typed parameters)", pm)
        per = [c["metadata"].get("papermill") for c in cells]
        t.ok(all(p and sorted(p) == ["duration", "end_time", "exception", "start_time", "status"]
                 and p["status"] == "completed" and p["exception"] is False and isinstance(p["duration"], float)
                 and naive_iso(p["start_time"]) for p in per), "every cell has papermill's start/end/duration/status", per)
        t.ok(all("tags" in c["metadata"] for c in cells) and res["nbformat_minor"] == 5 and all("id" in c for c in cells),
             "cells get tags lists and ids (papermill upgrades to nbformat 4.5)")
        t.ok(C.read_text(out) == C.nbformat_rewrite(out), "the output is byte-identical to nbformat.write()")

        # a second run replaces the injected cell
        r = run("run", out, "-p", "alpha", "2", "--prepare-only", "-o", os.path.join(tmp, "again.ipynb"))
        again = C.load(os.path.join(tmp, "again.ipynb"))
        t.ok(r.returncode == 0 and len(again["cells"]) == 5 and src(again["cells"][2]) == "# Parameters\nalpha = 2\n",
             "re-running an output replaces the injected cell", r.stderr)

        # no parameters cell: on top, with a warning
        plain = write(os.path.join(tmp, "plain.ipynb"), [code("print(x)")])
        r = run("run", plain, "-p", "x", "3")
        res = C.load(os.path.join(tmp, "plain.out.ipynb"))
        t.ok(r.returncode == 0 and "no cell tagged 'parameters'" in r.stderr and src(res["cells"][0]).endswith("x = 3\n")
             and stdout(res["cells"][1]) == "3\n", "without a parameters cell: injected at the top with a warning")

        # failure: papermill's error cells and statuses
        failing = write(os.path.join(tmp, "failing.ipynb"), [code("x = 1", ["parameters"]), code("print(x)\nraise ValueError('bad')"),
                                                              code("print('never')"), md("after")])
        r = run("run", failing, "-p", "x", "2")
        res = C.load(os.path.join(tmp, "failing.out.ipynb"))
        cells = res["cells"]
        tags = [c["metadata"].get("tags") for c in cells]
        t.ok(r.returncode == 1 and "ValueError: bad" in r.stderr, "a failing parameterized run exits 1", r.stderr)
        t.ok(len(cells) == 7 and tags[0] == ["papermill-error-cell-tag"] and tags[3] == ["papermill-error-cell-tag"]
             and "In [3]" in src(cells[0]) and 'id="papermill-error-cell"' in src(cells[3]),
             "papermill's error cells: a red banner on top, an anchor before the failing cell", tags)
        statuses = [c["metadata"].get("papermill", {}).get("status") for c in cells]
        t.ok(statuses == [None, "completed", "completed", None, "failed", "pending", "pending"]
             and cells[4]["metadata"]["papermill"]["exception"] is True and res["metadata"]["papermill"]["exception"] is True,
             "statuses: completed, failed, pending after the failure; exception flags", statuses)
        r = run("run", os.path.join(tmp, "failing.out.ipynb"), "-p", "x", "3", "--allow-errors",
                "-o", os.path.join(tmp, "failing2.ipynb"))
        res = C.load(os.path.join(tmp, "failing2.ipynb"))
        t.ok(r.returncode == 0 and not any("papermill-error-cell-tag" in (c["metadata"].get("tags") or [])
                                           for c in res["cells"]),
             "a new run drops the error cells of the previous one")

        # --prepare-only
        r = run("run", report, "--prepare-only", "-p", "alpha", "9", "-o", os.path.join(tmp, "prep.ipynb"))
        res = C.load(os.path.join(tmp, "prep.ipynb"))
        t.ok(r.returncode == 0 and src(res["cells"][2]) == "# Parameters\nalpha = 9\n"
             and all(c.get("execution_count") is None and not c.get("outputs") for c in res["cells"])
             and res["metadata"]["papermill"]["parameters"] == {"alpha": 9} and "start_time" not in res["metadata"]["papermill"],
             "--prepare-only injects and writes without executing", r.stderr)

        # R and bash notebooks (prepared: no R or bash kernel needed)
        for ks, want in [({"name": "ir", "display_name": "R", "language": "R"},
                          '# Parameters\nx = 1\ns = "a b"\nb = TRUE\nn = NULL\nl = list(1, "two")\nd = list("k" = 1.5)\n'),
                         ({"name": "bash", "display_name": "Bash", "language": "bash"},
                          "# Parameters\nx=1\ns='a b'\nb=true\nn=\nl=(1 two)\n")]:
            p = write(os.path.join(tmp, "lang.ipynb"), [code("x = 0", ["parameters"])], ks=ks)
            extra = ["-y", '{"d": {"k": 1.5}}'] if ks["name"] == "ir" else []
            r = run("run", p, "--prepare-only", "-p", "x", "1", "-p", "s", "a b", "-p", "b", "True", "-p", "n", "None",
                    "-y", '{"l": [1, "two"]}', *extra, "-o", os.path.join(tmp, "lang.out.ipynb"))
            res = C.load(os.path.join(tmp, "lang.out.ipynb")) if r.returncode == 0 else None
            t.ok(res and src(res["cells"][1]) == want, "parameters written in %s" % ks["language"],
                 r.stderr + (repr(src(res["cells"][1])) if res else ""))
        p = write(os.path.join(tmp, "jl.ipynb"), [code("x = 0", ["parameters"])],
                  ks={"name": "julia-1.9", "display_name": "Julia", "language": "julia"})
        r = run("run", p, "--prepare-only", "-p", "x", "1")
        t.ok(r.returncode == 1 and "no parameter translator" in r.stderr, "an unsupported language is refused", r.stderr)

        # parameters files
        bad = os.path.join(tmp, "bad.json")
        with open(bad, "w") as fh:
            fh.write("[1, 2]")
        r = run("run", report, "-f", bad)
        t.ok(r.returncode == 2 and "must hold a mapping" in r.stderr, "-f with a non-mapping: bad usage", r.stderr)
        r = run("run", report, "-f", os.path.join(tmp, "nope.json"))
        t.ok(r.returncode == 2 and "cannot read parameters file" in r.stderr, "-f with a missing file: bad usage")
        yml = os.path.join(tmp, "params.yaml")
        with open(yml, "w") as fh:
            fh.write("alpha: 1.5e+3\nname: yes\nn: 0x10\nflag: off\nnothing: ~\nraw: '7'\nbig: 1\nlst: [a, 1]\nd: {k: v}\n")
        r = run("run", report, "-f", yml, "-o", os.path.join(tmp, "yaml.ipynb"))
        if "libyaml" in r.stderr and r.returncode == 2:
            t.skip("-f params.yaml", "this cellbox is built without libyaml (its error says so: %s)" % r.stderr.strip().splitlines()[0])
        else:
            res = C.load(os.path.join(tmp, "yaml.ipynb")) if r.returncode == 0 else {"cells": [{}, {}, {}, {"outputs": []}]}
            t.ok(r.returncode == 0 and stdout(res["cells"][3]) == "(1500.0, True, 16, False, None)\n",
                 "-f params.yaml typed like papermill's YAML loader", r.stderr)

        # ------------------------------------------------ -b, --parameters_base64
        import base64
        b64 = base64.b64encode("alpha: 0.25\nname: from base64\nlst: [1, two]\n".encode()).decode()
        out = os.path.join(tmp, "b64.ipynb")
        r = run("run", report, "-b", b64, "-p", "n", "7", "-y", '{"raw": "r", "big": 1, "d": {}}', "-o", out)
        res = C.load(out) if r.returncode == 0 else None
        t.ok(res and src(res["cells"][2]) == '# Parameters\nalpha = 0.25\nname = "from base64"\nlst = [1, "two"]\nn = 7\n'
             'raw = "r"\nbig = 1\nd = {}\n'
             and stdout(res["cells"][3]).startswith("(0.25, 'from base64', 7,"),
             "-b decodes base64 YAML and merges it like -y (the kernel sees the values)", r.stderr)
        url = base64.urlsafe_b64encode(json.dumps({"alpha": 2, "name": "é>>?"}).encode()).decode().rstrip("=")
        r = run("run", report, "--parameters_base64", url, "--prepare-only", "-o", out)
        t.ok(r.returncode == 0 and C.load(out)["metadata"]["papermill"]["parameters"] == {"alpha": 2, "name": "é>>?"},
             "--parameters_base64 of JSON, URL-safe alphabet, no padding", r.stderr)
        for bad, why in [("not*base64", "not valid base64"), (base64.b64encode(b"[1, 2]").decode(), "mapping"),
                         (base64.b64encode(b"a: [1").decode(), "-b")]:
            dest = os.path.join(tmp, "never.ipynb")
            r = run("run", report, "-b", bad, "-o", dest)
            t.ok(r.returncode == 2 and why in r.stderr and r.stderr.startswith("cellbox run: -b: ")
                 and not os.path.exists(dest), "-b %r: exit 2, %r, nothing written" % (bad, why), r.stderr)

        # ------------------------------------------------- --inject-*-path(s)
        paths_nb = write(os.path.join(tmp, "paths.ipynb"), [
            code("x = 0", ["parameters"]),
            code("print(repr((globals().get('PAPERMILL_INPUT_PATH'), globals().get('PAPERMILL_OUTPUT_PATH'))))")])
        rel_in = os.path.relpath(paths_nb, tmp)
        r = C.run(["run", rel_in, "--inject-paths", "-p", "x", "1"], env=env, cwd=tmp)
        res = C.load(os.path.join(tmp, "paths.out.ipynb")) if r.returncode == 0 else None
        t.ok(res and src(res["cells"][1]) == '# Parameters\nPAPERMILL_INPUT_PATH = "paths.ipynb"\n'
             'PAPERMILL_OUTPUT_PATH = "paths.out.ipynb"\nx = 1\n'
             and stdout(res["cells"][2]) == "('paths.ipynb', 'paths.out.ipynb')\n"
             and res["metadata"]["papermill"]["parameters"]["PAPERMILL_OUTPUT_PATH"] == "paths.out.ipynb",
             "--inject-paths: PAPERMILL_INPUT_PATH/PAPERMILL_OUTPUT_PATH as given (the default output), first",
             r.stderr + (src(res["cells"][1]) if res else ""))
        r = C.run(["run", rel_in, "--inject-input-path", "-o", "sub-out.ipynb"], env=env, cwd=tmp)
        res = C.load(os.path.join(tmp, "sub-out.ipynb")) if r.returncode == 0 else None
        t.ok(res and stdout(res["cells"][2]) == "('paths.ipynb', None)\n"
             and res["metadata"]["papermill"]["parameters"] == {"PAPERMILL_INPUT_PATH": "paths.ipynb"},
             "--inject-input-path alone (no other parameter needed)", r.stderr)
        r = C.run(["run", rel_in, "--inject-output-path", "-o", "-", "-p", "PAPERMILL_OUTPUT_PATH", "mine"],
                  env=env, cwd=tmp)
        res = json.loads(r.stdout) if r.returncode == 0 else None
        t.ok(res and src(res["cells"][1]) == '# Parameters\nPAPERMILL_OUTPUT_PATH = "mine"\n'
             and stdout(res["cells"][2]) == "(None, 'mine')\n",
             "--inject-output-path: a -p of the same name wins (dict update)", r.stderr)
        r = C.run(["run", rel_in, "--inject-output-path", "-o", "-"], env=env, cwd=tmp)
        res = json.loads(r.stdout) if r.returncode == 0 else None
        t.ok(res and stdout(res["cells"][2]) == "(None, '-')\n", "-o -: PAPERMILL_OUTPUT_PATH is '-' (papermill's)",
             r.stderr)

        # -------------------------------------------------------- --report-mode
        rm_nb = write(os.path.join(tmp, "rm.ipynb"), [
            md("# Title"), code("x = 1", ["parameters"]),
            dict(code("print(x)"), metadata={"jupyter": {"outputs_hidden": True}})])
        r = run("run", rm_nb, "--report-mode", "-p", "x", "2", "-o", os.path.join(tmp, "rm.out.ipynb"))
        res = C.load(os.path.join(tmp, "rm.out.ipynb")) if r.returncode == 0 else None
        hidden = [c["metadata"].get("jupyter") for c in res["cells"]] if res else None
        t.ok(hidden == [None, {"source_hidden": True}, {"source_hidden": True},
                        {"outputs_hidden": True, "source_hidden": True}]
             and stdout(res["cells"][3]) == "2\n",
             "--report-mode: every code cell, the injected one too, gets jupyter.source_hidden; markdown untouched",
             r.stderr + str(hidden))
        t.ok(C.read_text(os.path.join(tmp, "rm.out.ipynb")) == C.nbformat_rewrite(os.path.join(tmp, "rm.out.ipynb")),
             "--report-mode output is valid and byte-identical to nbformat.write()")
        r = run("run", rm_nb, "--report-mode", "--prepare-only", "-o", os.path.join(tmp, "rm.prep.ipynb"))
        res = C.load(os.path.join(tmp, "rm.prep.ipynb")) if r.returncode == 0 else None
        t.ok(res and res["cells"][1]["metadata"]["jupyter"] == {"source_hidden": True}
             and "start_time" not in res["metadata"]["papermill"],
             "--report-mode with --prepare-only (papermill applies it when preparing)", r.stderr)
        r = run("run", rm_nb, "--report-mode", "--no-report-mode", "-o", os.path.join(tmp, "rm.no.ipynb"))
        res = C.load(os.path.join(tmp, "rm.no.ipynb")) if r.returncode == 0 else None
        t.ok(res and all("source_hidden" not in c["metadata"].get("jupyter", {}) for c in res["cells"]),
             "--no-report-mode turns it off again", r.stderr)

        # ------------------------------------------------------- --help-notebook
        helped = write(os.path.join(tmp, "helped.ipynb"), [
            md("# Doc"),
            code("# the knobs\nalpha: float = 0.5  # learning rate\nname = 'world'  # who to greet\n"
                 "ratios: List[float] = [\n    0.1,  # small\n    0.9,\n]  # the split\n"
                 "seed = None  # type: int random seed\ncolor = '#ff0000'\n%matplotlib inline\n"
                 "def helper():\n    hidden = 1\n", ["parameters"]),
            code("raise SystemExit('must not run')")])
        r = run("run", "--help-notebook", helped)
        want = ("usage: cellbox run [OPTIONS] NOTEBOOK.ipynb [MORE.ipynb ...]\n\n"
                "Parameters inferred for notebook '%s':\n"
                "  alpha: float (default 0.5)      learning rate\n"
                "  name: Unknown type (default 'world')\n"
                "                                  who to greet\n"
                "  ratios: List[float] (default [0.1,0.9,])\n"
                "                                  the split\n"
                "  seed: int (default None)        random seed\n"
                "  color: Unknown type (default '#ff0000')\n" % helped)
        t.ok(r.returncode == 0 and r.stdout == want and not os.path.exists(os.path.join(tmp, "helped.out.ipynb")),
             "--help-notebook: name, type (annotation or type comment), default, help; exit 0; nothing run or written",
             "rc=%d\n%s\n%s" % (r.returncode, r.stdout, r.stderr))
        r = run("run", "--help-notebook", plain)
        t.ok(r.returncode == 1 and "No cell tagged 'parameters'" in r.stdout
             and "plain.ipynb has no cell tagged 'parameters'" in r.stderr,
             "--help-notebook without a parameters cell: papermill's message, exit 1, a clear error", r.stderr)
        r = run("run", "--help-notebook", os.path.join(tmp, "missing.ipynb"))
        t.ok(r.returncode == 1 and "missing.ipynb" in r.stderr and "cannot read" in r.stderr,
             "--help-notebook of a missing notebook: a clear error", r.stderr)

        # ------------------------------------------ --stdout-file, --stderr-file
        streams = write(os.path.join(tmp, "streams.ipynb"), [
            code("import sys\nprint('out one')\nprint('err one', file=sys.stderr)\nprint('no newline', end='')"),
            code("'a result is not a stream'"),
            code("import sys\nsys.stdout.write('out two\\n')\nsys.stderr.write('err two\\n')")])
        so, se = os.path.join(tmp, "cells.out"), os.path.join(tmp, "cells.err")
        with open(so, "w") as fh:
            fh.write("old content that must go\n")
        r = run("run", streams, "--stdout-file", so, "--stderr-file", se, "-o", os.path.join(tmp, "streams.out.ipynb"))
        t.ok(r.returncode == 0 and C.read_text(so) == "out one\nno newlineout two\n" and C.read_text(se) == "err one\nerr two\n",
             "--stdout-file/--stderr-file: the stream text of all cells, in order, the file truncated first",
             r.stderr + repr((C.read_text(so), C.read_text(se))))
        both = os.path.join(tmp, "both.log")
        r = run("run", streams, "--stdout-file", both, "--stderr-file", both, "-o", os.path.join(tmp, "streams.out.ipynb"))
        t.ok(r.returncode == 0 and C.read_text(both) == "out one\nerr one\nno newlineout two\nerr two\n",
             "one file for both streams: interleaved as they arrived", repr(C.read_text(both)))
        r = run("run", streams, "--stdout-file", "-", "-o", os.path.join(tmp, "streams.out.ipynb"))
        t.ok(r.returncode == 0 and r.stdout == "out one\nno newlineout two\n", "--stdout-file - is cellbox's stdout",
             repr(r.stdout))
        before = C.read_text(streams)
        for args, why in [(["--stdout-file", os.path.join(tmp, "no", "such", "dir.log")], "cannot write"),
                          (["--stderr-file", tmp], "is a folder"),
                          (["--stdout-file", streams], "is a notebook of this run"),
                          (["--stdout-file", "-", "-o", "-"], "both write to stdout")]:
            dest = ["-o", os.path.join(tmp, "never.ipynb")] if "-o" not in args else []
            r = run("run", streams, *(args + dest))
            t.ok(r.returncode == 2 and why in r.stderr and r.stdout == "" and not os.path.exists(os.path.join(tmp, "never.ipynb"))
                 and C.read_text(streams) == before, "%s: exit 2, %r, nothing written" % (" ".join(args[:2]), why), r.stderr)

        # ---------------------------------------------- papermill's spellings
        quick = write(os.path.join(tmp, "quick.ipynb"), [code("x = 1", ["parameters"]), code("print(x)")])
        qout = os.path.join(tmp, "quick.out.ipynb")
        for args in (["--start-timeout", "30"], ["--start_timeout", "30"], ["--execution-timeout", "60"],
                     ["--progress-bar"], ["--no-progress-bar"], ["--engine", "nbclient"], ["--engine", "cellbox"],
                     ["--log-output", "--no-log-output"], ["--prepare-only", "--prepare-execute"],
                     ["--request-save-on-cell-execute"], ["--not-report-mode"], ["--log-level", "ERROR"]):
            if os.path.exists(qout):
                os.unlink(qout)
            r = run("run", quick, *args, "-o", qout)
            res = C.load(qout) if r.returncode == 0 and os.path.exists(qout) else None
            t.ok(res and stdout(res["cells"][1]) == "1\n" and r.stdout == "", "papermill's %s is accepted" % " ".join(args),
                 r.stderr)
        slow = write(os.path.join(tmp, "slow.ipynb"), [code("import time\ntime.sleep(60)")])
        r = C.run(["run", slow, "--execution-timeout", "1"], env=env, timeout=120)
        t.ok(r.returncode == 1 and "timed out after 1 s" in r.stderr, "--execution-timeout is --timeout", r.stderr)
        for args in (["--execution-timeout", "-1"], ["-t", "-1"], ["--timeout", "0"]):
            r = run("run", quick, *args, "-o", qout)
            res = C.load(qout) if r.returncode == 0 and os.path.exists(qout) else None
            t.ok(res and stdout(res["cells"][1]) == "1\n", "%s: no timeout, as nbclient and papermill read it"
                 % " ".join(args), r.stderr)
        r = run("run", quick, "--log-level", "DEBUG", "-o", qout)
        t.ok(r.returncode == 0 and "level=debug" in r.stderr, "--log-level DEBUG shows cellbox's debug log", r.stderr[:300])
        nolang = os.path.join(tmp, "nolang.ipynb")
        with open(nolang, "w") as fh:
            json.dump({"cells": [code("x = 0", ["parameters"])], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}, fh)
        r = run("run", nolang, "--prepare-only", "--language", "R", "-p", "x", "True", "-o", qout)
        t.ok(r.returncode == 0 and src(C.load(qout)["cells"][1]) == "# Parameters\nx = TRUE\n",
             "--language R: parameters written in R when the notebook names no language", r.stderr)
        r = run("run", nolang, "--prepare-only", "-l", "bash", "-p", "x", "a b", "-o", qout)
        t.ok(r.returncode == 0 and src(C.load(qout)["cells"][1]) == "# Parameters\nx='a b'\n", "-l bash", r.stderr)
        for args, why in [(["--language", "cobol", "-p", "x", "1"], "writes parameters in python, R, bash, javascript and typescript"),
                          (["--engine", "papermill_origami"], "one engine"),
                          (["--log-level", "LOUD"], "NOTSET, DEBUG, INFO, WARNING, ERROR, CRITICAL"),
                          (["--autosave-cell-every", "-1"], "number of seconds"),
                          (["--autosave-cell-every", "soon"], "number of seconds"),
                          (["--start-timeout", "x"], "number of seconds"),
                          (["--stdout-file"], "needs 1 value")]:
            if os.path.exists(qout):
                os.unlink(qout)
            r = run("run", quick, "-o", qout, *args)
            t.ok(r.returncode == 2 and why in r.stderr and r.stderr.startswith("cellbox run: ") and not os.path.exists(qout),
                 "bad %s: exit 2, says %r, nothing written" % (" ".join(args), why), r.stderr)
    finally:
        C.rmtree(tmp)
    return t.done()


if __name__ == "__main__":
    sys.exit(C.tap_main(main))
