#!/usr/bin/python3
"""`cellbox run` from the outside: options and output paths, bad notebooks
and bad options, errors, timeouts (signal and message interrupts, a kernel
that ignores them), dead kernels (exit, SIGKILL from outside, heartbeat
loss), SIGINT to cellbox, kernel start failures, kernel choice, -j, cwd,
--log-output, the progress bar on a terminal and quiet output otherwise,
saving progress (a run killed with SIGKILL leaves a valid partial notebook).

Nothing here depends on timing: waits are for events (files a cell writes),
with generous timeouts that only matter when something is broken. Every
kernel a test provokes is checked to be gone afterwards."""
import glob
import json
import os
import pty
import re
import select
import shutil
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import nb_common as C  # noqa: E402

KS = {"name": "cellbox", "display_name": "Python 3 (cellbox)", "language": "python"}


def poll_saved(out_name, cond, found):
    """A cell's source that reads the notebook cellbox run saves (out_name)
    until cond holds of its cells, then runs found; 'not saved' after 15 s."""
    return ("import json, os, time\nt0 = time.time()\nfor _ in range(300):\n"
            "    try:\n"
            "        cells = json.load(open(%r))['cells']\n"
            "        if %s:\n"
            "            %s\n"
            "            break\n"
            "    except (OSError, ValueError, IndexError, KeyError):\n"
            "        pass  # not yet, or saved before that cell ended (papermill's save at the start)\n"
            "    time.sleep(0.05)\nelse:\n    print('not saved')") % (out_name, cond, found)


def write_nb(path, cells, kernelspec=KS, tags=None, minor=5):
    nb = {"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": minor}
    if kernelspec is not None:
        nb["metadata"]["kernelspec"] = kernelspec
    for i, src in enumerate(cells):
        cell = {"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [], "source": src}
        if minor >= 5:
            cell["id"] = "c%d" % (i + 1)
        if tags and i in tags:
            cell["metadata"]["tags"] = tags[i]
        nb["cells"].append(cell)
    with open(path, "w") as fh:
        json.dump(nb, fh, indent=1)
    return path


def outputs(nb, i):
    return nb["cells"][i]["outputs"]


def enames(nb, i):
    return [o.get("ename") for o in outputs(nb, i) if o["output_type"] == "error"]


def text(nb, i):
    return "".join("".join(o["text"]) if isinstance(o["text"], list) else o["text"]
                   for o in outputs(nb, i) if o["output_type"] == "stream")


def main():
    C.quiet_logs()
    t = C.Tap()
    tmp = C.tempdir()
    env = C.kernelspec_env(tmp)
    prefix = os.path.join(tmp, "prefix")
    d = os.path.join(tmp, "w")
    os.makedirs(d)
    leftover_pids = []
    try:
        run = lambda *a, **kw: C.run(list(a), env=env, **kw)  # noqa: E731

        # ------------------------------------------------------------ usage
        r = run("run", "--help")
        t.ok(r.returncode == 0 and "usage: cellbox run" in r.stdout, "--help prints usage, exit 0")
        for args, why in [([], "no notebook given"), (["--bogus", "x.ipynb"], "unknown option '--bogus'"),
                          (["-p", "x"], "needs 2 values"), (["-j", "0", "x.ipynb"], "number of jobs"),
                          (["--timeout", "soon", "x.ipynb"], "number of seconds"),
                          (["-o", "a.ipynb", "x.ipynb", "y.ipynb"], "use --output-dir"),
                          (["-o", "a.ipynb", "--inplace", "x.ipynb"], "choose one of")]:
            r = run("run", *args)
            t.ok(r.returncode == 2 and why in r.stderr and r.stderr.startswith("cellbox run: "),
                 "bad usage %s: exit 2, says %r" % (" ".join(args), why), r.stderr)

        # --------------------------------------------------- bad notebooks
        expected = C.load(os.path.join(C.BAD, "expected.json"))
        for name in sorted(expected):
            src = os.path.join(C.BAD, name)
            dst = os.path.join(d, "bad-" + name)
            shutil.copy(src, dst)
            r = run("run", dst)
            outs = glob.glob(os.path.join(d, "bad-" + name[:-6] + "*out*"))
            line = r.stderr.strip()
            t.ok(r.returncode == 1 and dst in line and expected[name] in line and len(line.splitlines()) == 1
                 and not outs, "bad notebook %s: exit 1, one line naming file and field, nothing written" % name,
                 "rc=%d %s %s" % (r.returncode, r.stderr, outs))

        # ---------------------------------------------------- output paths
        nb = write_nb(os.path.join(d, "paths.ipynb"), ["print('hi')", "6 * 7"])
        before = C.read_text(nb)
        r = run("run", nb)
        out = os.path.join(d, "paths.out.ipynb")
        t.ok(r.returncode == 0 and r.stdout == "" and r.stderr == "",
             "success when stderr is not a terminal: exit 0 and silent", r.stderr)
        t.ok(os.path.exists(out) and C.read_text(nb) == before, "default output NAME.out.ipynb, input untouched")
        res = C.load(out)
        t.ok(text(res, 0) == "hi\n" and outputs(res, 1)[0]["data"]["text/plain"] == ["42"]
             and [c["execution_count"] for c in res["cells"]] == [1, 2], "outputs and execution counts")
        ex = res["cells"][0]["metadata"].get("execution", {})
        t.ok(sorted(ex) == ["iopub.execute_input", "iopub.status.busy", "iopub.status.idle", "shell.execute_reply"]
             and all(v.endswith("Z") and len(v) == 27 for v in ex.values()),
             "cell.metadata.execution holds the four kernel dates", ex)
        t.ok(res["metadata"]["kernelspec"]["name"] == "cellbox" and res["metadata"]["language_info"]["name"] == "python",
             "metadata.kernelspec and language_info filled")
        t.ok(C.read_text(out) == C.nbformat_rewrite(out), "output byte-identical to nbformat.write()")
        t.ok(not glob.glob(os.path.join(d, "*.tmp.*")), "no temporary files left behind")
        r = run("run", "--no-timing", nb, "-o", os.path.join(d, "nt.ipynb"))
        t.ok(r.returncode == 0 and all("execution" not in c["metadata"] for c in C.load(os.path.join(d, "nt.ipynb"))["cells"]),
             "--no-timing records no execution metadata")
        r = run("run", nb, "-o", os.path.join(d, "explicit.ipynb"))
        t.ok(r.returncode == 0 and os.path.exists(os.path.join(d, "explicit.ipynb")), "-o PATH")
        r = run("run", nb, "--output-dir", os.path.join(d, "new", "dir"))
        t.ok(r.returncode == 0 and os.path.exists(os.path.join(d, "new", "dir", "paths.ipynb")),
             "--output-dir DIR (created) gets DIR/NAME.ipynb")
        r = run("run", nb, "-o", "-")
        t.ok(r.returncode == 0 and json.loads(r.stdout)["cells"][0]["outputs"][0]["text"] == ["hi\n"]
             and r.stdout.endswith("}\n"), "-o - writes the notebook to stdout")
        r = run("run", nb, "-o", nb)
        t.ok(r.returncode == 2 and "--inplace" in r.stderr and C.read_text(nb) == before,
             "-o INPUT refuses to overwrite the input", r.stderr)
        r = run("run", nb, "--output-dir", d)
        t.ok(r.returncode == 2 and C.read_text(nb) == before, "--output-dir of the input's folder refuses too")
        os.makedirs(os.path.join(d, "other"))
        twin = write_nb(os.path.join(d, "other", "paths.ipynb"), ["1"])
        r = run("run", nb, twin, "--output-dir", os.path.join(d, "both"))
        t.ok(r.returncode == 2 and "both be written" in r.stderr, "two inputs onto one output: refused", r.stderr)
        inpl = os.path.join(d, "inplace.ipynb")
        shutil.copy(nb, inpl)
        r = run("run", "--inplace", inpl)
        t.ok(r.returncode == 0 and text(C.load(inpl), 0) == "hi\n", "--inplace overwrites the input")
        nosuffix = os.path.join(d, "plain")
        shutil.copy(nb, nosuffix)
        r = run("run", nosuffix)
        t.ok(r.returncode == 0 and os.path.exists(nosuffix + ".out.ipynb"), "an input without .ipynb gets NAME.out.ipynb")
        r = run("run", os.path.join(d, "missing.ipynb"))
        t.ok(r.returncode == 1 and "missing.ipynb: cannot read" in r.stderr, "a missing file: exit 1 with reason")
        r = run("run", nb, os.path.join(d, "papermill-style-out.ipynb"))
        t.ok(r.returncode == 2 and "use: cellbox run %s -o %s" % (nb, os.path.join(d, "papermill-style-out.ipynb"))
             in r.stderr and not os.path.exists(os.path.join(d, "papermill-style-out.ipynb")),
             "papermill's 'IN OUT' with a new OUT: exit 2 saying how to write it with -o", r.stderr)
        # a full disk: the old file stays whole, no temporary file is left
        full = os.path.join(d, "full")
        os.makedirs(full)
        if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", full]).returncode == 0:
            try:
                keep = os.path.join(full, "out.ipynb")
                with open(keep, "w") as fh:
                    fh.write("{}\n")
                big = write_nb(os.path.join(d, "bigout.ipynb"), ["for i in range(40000): print('x' * 20, i)"])
                r = run("run", big, "-o", keep)
                t.ok(r.returncode == 1 and "cannot write %s: No space left on device" % keep in r.stderr
                     and C.read_text(keep) == "{}\n" and os.listdir(full) == ["out.ipynb"],
                     "a full disk: exit 1 naming the file; the old file intact, no temporary file left", r.stderr)
                r = subprocess.run("%s run %s -o - > /dev/full" % (C.CELLBOX, big), shell=True, env=env,
                                   capture_output=True, text=True)
                t.ok(r.returncode == 1 and "cannot write to stdout: No space left on device" in r.stderr,
                     "-o - onto a full device: exit 1 with the reason", r.stderr)
            finally:
                subprocess.run(["umount", full])
        else:
            t.skip("a full disk", "cannot mount a tmpfs (not root)")
        r = run("run", "--version")
        t.ok(r.returncode == 0 and re.fullmatch(r"cellbox \d+\.\d+\.\d+\n", r.stdout), "--version", r.stdout)

        # a parent folder that does not exist fails before any cell runs
        marker = os.path.join(d, "ran-marker")
        mk = write_nb(os.path.join(d, "marker.ipynb"), ["open(%r, 'w').close()" % marker])
        r = run("run", mk, "-o", os.path.join(d, "no-such-dir", "x.ipynb"))
        t.ok(r.returncode == 2 and "no-such-dir does not exist" in r.stderr and not os.path.exists(marker),
             "-o into a missing folder: exit 2 before running anything", r.stderr)

        # ------------------------------------------- stdin (papermill's '-')
        r = run("run", "-", input=C.read_text(nb), cwd=d)
        res = json.loads(r.stdout) if r.returncode == 0 else {}
        t.ok(r.returncode == 0 and text(res, 0) == "hi\n" and r.stdout.endswith("}\n"),
             "'-' reads the notebook from stdin and writes it to stdout", r.stderr)
        where = write_nb(os.path.join(d, "where.ipynb"), ["import os; print(os.getcwd())"])
        sub = os.path.join(d, "cwdhere")
        os.makedirs(sub)
        r = run("run", "-", "-o", os.path.join(d, "fromstdin.ipynb"), input=C.read_text(where), cwd=sub)
        t.ok(r.returncode == 0 and r.stdout == "" and text(C.load(os.path.join(d, "fromstdin.ipynb")), 0) == sub + "\n",
             "stdin's notebook runs in the current folder and can go to -o PATH", r.stderr)
        r = run("run", "-", input='{"cells": [', cwd=d)
        t.ok(r.returncode == 1 and r.stderr.startswith("cellbox run: <stdin>: ") and r.stdout == "",
             "a broken notebook on stdin: exit 1 naming <stdin>, nothing written", r.stderr)
        for args, why in [(["-", "-"], "'-' was given 2 times"), (["-", "--inplace"], "no file to overwrite"),
                          (["-", "--output-dir", d], "use -o PATH")]:
            r = run("run", *args, input="{}")
            t.ok(r.returncode == 2 and why in r.stderr, "stdin with %s: exit 2, says %r" % (" ".join(args), why),
                 r.stderr)

        # --------------------------- papermill's parameterized paths {name}
        pnb = write_nb(os.path.join(d, "rep_eu.ipynb"), ["region = 'x'", "print(region, n)"], tags={0: ["parameters"]})
        r = run("run", os.path.join(d, "rep_{region}.ipynb"), "-p", "region", "eu", "-p", "n", "7",
                "-o", os.path.join(d, "pp", "{region}_{n:03d}_{pm[current_datetime_utc]:%Y}.ipynb"))
        t.ok(r.returncode == 2 and "pp does not exist" in r.stderr, "a parameterized -o into a missing folder: exit 2",
             r.stderr)
        os.makedirs(os.path.join(d, "pp"))
        r = run("run", os.path.join(d, "rep_{region}.ipynb"), "-p", "region", "eu", "-p", "n", "7",
                "-o", os.path.join(d, "pp", "{region}_{n:03d}_{pm[current_datetime_utc]:%Y}.ipynb"))
        want = os.path.join(d, "pp", "eu_007_%s.ipynb" % time.strftime("%Y", time.gmtime()))
        res = C.load(want) if os.path.exists(want) else {}
        t.ok(r.returncode == 0 and text(res, 2) == "eu 7\n" and res["metadata"]["papermill"]["output_path"] == want
             and res["metadata"]["papermill"]["input_path"] == pnb,
             "input and output paths filled from the parameters; papermill's metadata records them", r.stderr)
        r = run("run", pnb, "-p", "region", "eu", "-p", "n", "1", "--output-dir", os.path.join(d, "by-{region}", "{pm[run_uuid]}"))
        made = glob.glob(os.path.join(d, "by-eu", "*", "rep_eu.ipynb"))
        t.ok(r.returncode == 0 and len(made) == 1 and re.fullmatch(r"[0-9a-f-]{36}", made[0].split(os.sep)[-2]),
             "--output-dir with {region} and {pm[run_uuid]}, created", (made, r.returncode, r.stderr))
        r = run("run", pnb, "-o", os.path.join(d, "out_{nope}.ipynb"))
        t.ok(r.returncode == 2 and "Missing parameter 'nope'" in r.stderr and not glob.glob(os.path.join(d, "out_*")),
             "an unknown name in a path: papermill's 'Missing parameter', exit 2", r.stderr)
        r = run("run", pnb, "-p", "n", "1", "-o", os.path.join(d, "lit_{{x}}.ipynb"))
        t.ok(r.returncode == 0 and os.path.exists(os.path.join(d, "lit_{x}.ipynb")), "'{{' and '}}' are braces", r.stderr)
        lit = write_nb(os.path.join(d, "lit_{y}.ipynb"), ["1"])
        r = run("run", lit)
        t.ok(r.returncode == 0 and os.path.exists(os.path.join(d, "lit_{y}.out.ipynb")),
             "an input whose literal name has braces is taken as it is", r.stderr)

        # ---------------------------------------------------------- errors
        err = write_nb(os.path.join(d, "err.ipynb"), ["print('ok')", "1/0", "print('after')", "2"])
        pre = C.load(err)
        pre["cells"][2]["outputs"] = [{"name": "stdout", "output_type": "stream", "text": ["stale\n"]}]
        pre["cells"][2]["execution_count"] = 9
        with open(err, "w") as fh:
            json.dump(pre, fh)
        r = run("run", err)
        res = C.load(os.path.join(d, "err.out.ipynb"))
        t.ok(r.returncode == 1 and r.stderr.count("\n") == 1 and "err.ipynb: cell 2 (id 'c2'): ZeroDivisionError: division by zero"
             in r.stderr, "a failing cell: exit 1, one line naming notebook, cell and error", r.stderr)
        t.ok(enames(res, 1) == ["ZeroDivisionError"] and outputs(res, 2) == [] and res["cells"][2]["execution_count"] is None,
             "the partial notebook has the error; later cells lose stale outputs")
        r = run("run", "--allow-errors", err, "-o", os.path.join(d, "err2.ipynb"))
        res = C.load(os.path.join(d, "err2.ipynb"))
        t.ok(r.returncode == 0 and text(res, 2) == "after\n" and res["cells"][3]["execution_count"] == 4,
             "--allow-errors goes on")
        named = write_nb(os.path.join(d, "named.ipynb"), ["raise ValueError('ok to fail')", "print('went on')",
                                                          "raise KeyError('stops')", "print('never')"])
        r = run("run", "--allow-error-name", "ValueError,TypeError", named, "-o", os.path.join(d, "named.out.ipynb"))
        res = C.load(os.path.join(d, "named.out.ipynb"))
        t.ok(r.returncode == 1 and enames(res, 0) == ["ValueError"] and text(res, 1) == "went on\n"
             and enames(res, 2) == ["KeyError"] and outputs(res, 3) == [] and "KeyError" in r.stderr,
             "--allow-error-name: only the named errors are let through (nbclient's allow_error_names)", r.stderr)
        tagged = write_nb(os.path.join(d, "tagged.ipynb"), ["raise KeyError('k')", "print('went on')", "print('skipped')"],
                          tags={0: ["raises-exception"], 2: ["skip-execution"]})
        r = run("run", tagged)
        res = C.load(os.path.join(d, "tagged.out.ipynb"))
        t.ok(r.returncode == 0 and enames(res, 0) == ["KeyError"] and text(res, 1) == "went on\n"
             and outputs(res, 2) == [] and res["cells"][2]["execution_count"] is None,
             "raises-exception continues, skip-execution is skipped")

        # -------------------------------------------------------- timeouts
        sleeper = ["print('start')", "import time\nprint('sleeping', flush=True)\ntime.sleep(120)", "print('never')"]
        for kernel in ("cellbox", "python3", "cellbox-msg"):
            if kernel == "cellbox-msg":
                subprocess.run([C.CELLBOX, "kernelspec", "install", "--prefix", prefix, "--name", "cellbox-msg",
                                "--interrupt-mode", "message"], check=True, stdout=subprocess.DEVNULL)
            p = write_nb(os.path.join(d, "sleep-%s.ipynb" % kernel), sleeper)
            r = run("run", "-k", kernel, "--timeout", "1", p, timeout=120)
            res = C.load(p.replace(".ipynb", ".out.ipynb"))
            t.ok(r.returncode == 1 and "cell 2 (id 'c2'): timed out after 1 s (the kernel was interrupted)" in r.stderr,
                 "timeout (%s): exit 1, reason names the cell" % kernel, r.stderr)
            t.ok(enames(res, 1) == ["KeyboardInterrupt", "CellTimeoutError"] and text(res, 1) == "sleeping\n"
                 and outputs(res, 2) == [],
                 "timeout (%s, interrupt by %s): kernel interrupted, CellTimeoutError recorded" %
                 (kernel, "message" if kernel.endswith("msg") else "signal"), json.dumps(outputs(res, 1))[:500])
        p = write_nb(os.path.join(d, "deaf.ipynb"), ["import os, signal, time\nopen('deaf.pid', 'w').write(str(os.getpid()))\n"
                                                     "signal.signal(signal.SIGINT, signal.SIG_IGN)\ntime.sleep(120)"])
        r = run("run", "--timeout", "1", "--interrupt-timeout", "1", p, timeout=120)
        res = C.load(os.path.join(d, "deaf.out.ipynb"))
        kpid = int(C.read_text(os.path.join(d, "deaf.pid")))
        leftover_pids.append(kpid)
        t.ok(r.returncode == 1 and "ignored the interrupt and was stopped" in r.stderr and enames(res, 0) == ["CellTimeoutError"]
             and not C.pid_alive(kpid), "a kernel that ignores the interrupt is stopped, the timeout recorded", r.stderr)

        # a kernel that dies of the timeout's interrupt (as xeus-python does)
        p = write_nb(os.path.join(d, "diesint.ipynb"), ["import os, signal, time\n"
                                                        "signal.signal(signal.SIGINT, lambda *a: os._exit(0))\n"
                                                        "time.sleep(120)"])
        r = run("run", "--timeout", "1", p, timeout=120)
        res = C.load(os.path.join(d, "diesint.out.ipynb"))
        t.ok(r.returncode == 1 and "cell 1 (id 'c1'): timed out after 1 s; the kernel died when it was interrupted "
             "(exited with status 0)" in r.stderr and enames(res, 0) == ["CellTimeoutError"],
             "a kernel that dies of the timeout's interrupt: the timeout is reported, then the death", r.stderr)

        # ---------------------------------------------------- dead kernels
        for kernel in ("cellbox", "python3"):
            p = write_nb(os.path.join(d, "exit-%s.ipynb" % kernel), ["print('before')", "import os\nos._exit(3)", "1"])
            r = run("run", "-k", kernel, p, timeout=120)
            res = C.load(p.replace(".ipynb", ".out.ipynb"))
            t.ok(r.returncode == 1 and "cell 2 (id 'c2'): the kernel died (exited with status 3)" in r.stderr
                 and enames(res, 1) == ["DeadKernelError"], "kernel exit mid-run (%s) is reported with its cell" % kernel,
                 r.stderr)
        p = write_nb(os.path.join(d, "stop.ipynb"), ["import os, signal\nopen('stop.pid', 'w').write(str(os.getpid()))\n"
                                                     "os.kill(os.getpid(), signal.SIGSTOP)"])
        r = run("run", "--heartbeat-timeout", "1", p, timeout=120)
        kpid = int(C.read_text(os.path.join(d, "stop.pid")))
        leftover_pids.append(kpid)
        res = C.load(os.path.join(d, "stop.out.ipynb"))
        t.ok(r.returncode == 1 and "the kernel died (no heartbeat for 1 s)" in r.stderr and enames(res, 0) == ["DeadKernelError"]
             and not C.pid_alive(kpid), "heartbeat loss (SIGSTOPped kernel) is a dead kernel, and it is killed", r.stderr)

        # a kernel killed from outside, and SIGINT to cellbox, while a cell runs
        waiter = ["import os\nopen('{name}.pid', 'w').write(str(os.getpid()))",
                  "import time\nopen('{name}.ready', 'w').close()\ntime.sleep(120)", "print('never')"]
        for name in ("killed", "sigint"):
            p = write_nb(os.path.join(d, name + ".ipynb"), [c.format(name=name) for c in waiter])
            # SIGINT at its default in cellbox run, whatever this test inherited (a
            # background job ignores it, and cellbox run rightly keeps that)
            proc = subprocess.Popen([C.CELLBOX, "run", p], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    text=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
            ready = C.wait_for_file(os.path.join(d, name + ".ready"))
            kpid = int(C.read_text(os.path.join(d, name + ".pid"))) if ready else 0
            leftover_pids.append(kpid)
            if name == "killed" and kpid:
                os.kill(kpid, signal.SIGKILL)
            elif kpid:
                proc.send_signal(signal.SIGINT)
            try:
                _, stderr = proc.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                _, stderr = proc.communicate()
            res = C.load(p.replace(".ipynb", ".out.ipynb")) if os.path.exists(p.replace(".ipynb", ".out.ipynb")) else None
            if name == "killed":
                t.ok(ready and proc.returncode == 1 and "cell 2 (id 'c2'): the kernel died (was killed by signal 9" in stderr
                     and res and enames(res, 1) == ["DeadKernelError"], "a kernel killed mid-run: reported, not waited on",
                     stderr)
            else:
                t.ok(ready and proc.returncode == 130 and "interrupted" in stderr and res and enames(res, 1) == ["KeyboardInterrupt"]
                     and not C.pid_alive(kpid), "SIGINT to cellbox run: exit 130, partial notebook, kernel gone", stderr)

        # ------------------------------------------------- saving progress
        # SIGKILL to cellbox during a long cell: the notebook saved while the
        # cell runs (--autosave-cell-every 1) is on disk, valid, with the
        # earlier cells' outputs. The long cell itself waits until it sees
        # that save, so nothing here depends on timing.
        import nbformat
        saver = ["print('one')",
                 "import os\nopen('autosave.pid', 'w').write(str(os.getpid()))\nprint('two')",
                 "import json, os, time\nprint('long cell', flush=True)\n"
                 "for _ in range(1200):\n"
                 "    try:\n"
                 "        cells = json.load(open('autosave.out.ipynb'))['cells']\n"
                 "        if 'two' in ''.join(''.join(o.get('text', '')) for o in cells[1]['outputs']):\n"
                 "            break\n"
                 "    except (OSError, ValueError):\n"
                 "        pass\n"
                 "    time.sleep(0.05)\n"
                 "open('autosave.ready', 'w').close()\ntime.sleep(120)",
                 "print('never')"]
        p = write_nb(os.path.join(d, "autosave.ipynb"), saver)
        proc = subprocess.Popen([C.CELLBOX, "run", p, "--autosave-cell-every", "1"], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        ready = C.wait_for_file(os.path.join(d, "autosave.ready"))
        kpid = int(C.read_text(os.path.join(d, "autosave.pid"))) if os.path.exists(os.path.join(d, "autosave.pid")) else 0
        leftover_pids.append(kpid)
        proc.kill()
        proc.wait(timeout=60)
        C.kill_if_alive(kpid)  # a kernel outlives a SIGKILLed cellbox
        partial = os.path.join(d, "autosave.out.ipynb")
        try:
            res = C.load(partial)
            nbformat.validate(nbformat.read(partial, as_version=4))
            valid = True
        except Exception as e:  # noqa: BLE001
            res, valid = None, e
        t.ok(ready and proc.returncode == -signal.SIGKILL and valid is True
             and text(res, 0) == "one\n" and text(res, 1) == "two\n" and text(res, 2) == "long cell\n"
             and [c["execution_count"] for c in res["cells"]] == [1, 2, 3, None] and outputs(res, 3) == [],
             "SIGKILL during a long cell leaves a valid partial notebook: earlier outputs, the running cell's so far",
             "ready=%s rc=%s valid=%s %s" % (ready, proc.returncode, valid, json.dumps(res)[:600] if res else ""))
        t.ok(C.read_text(partial) == C.nbformat_rewrite(partial), "the partial notebook is what nbformat.write() gives")

        # autosave off, the notebook is saved after a cell (at most once a
        # second): the next cell sees the file. And fast cells followed by a
        # long one: what they printed is on disk within about a second while
        # the long cell runs (papermill saves at every cell's start and end)
        for name, first, cond, found, want, desc in [
                ("aftercell", "import time\ntime.sleep(1.2)\nprint('slept')", "cells[0]['outputs']",
                 "print('saved:', cells[0]['outputs'][0]['text'])", "saved: ['slept\\n']\n",
                 "the notebook is saved after a cell (autosave off): the next cell reads it"),
                ("fastlong", "print('fast')", "cells[0]['outputs'][0]['text'] == ['fast\\n']",
                 "print('saved within', '3 s' if time.time() - t0 < 3 else 'more than 3 s')", "saved within 3 s\n",
                 "a fast cell followed by a long one: its output is saved while the long cell runs (autosave off)")]:
            p = write_nb(os.path.join(d, name + ".ipynb"), [first, poll_saved(name + ".out.ipynb", cond, found)])
            r = run("run", p, "--autosave-cell-every", "0")
            res = C.load(p.replace(".ipynb", ".out.ipynb"))
            t.ok(r.returncode == 0 and text(res, 1) == want, desc, r.stderr + text(res, 1))

        # --no-request-save-on-cell-execute: written only at the end
        p = write_nb(os.path.join(d, "nosave.ipynb"), [
            "import time\ntime.sleep(1.2)\nprint('slept')",
            "import os, time\ntime.sleep(2.5)\nprint('saved' if os.path.exists('nosave.out.ipynb') else 'not saved')"])
        r = run("run", p, "--no-request-save-on-cell-execute", "--autosave-cell-every", "1")
        res = C.load(p.replace(".ipynb", ".out.ipynb"))
        t.ok(r.returncode == 0 and text(res, 1) == "not saved\n",
             "--no-request-save-on-cell-execute: nothing written before the end (autosave off too)", r.stderr)

        # a notebook written to stdout is written once, at the end
        r = run("run", os.path.join(d, "nosave.ipynb"), "--autosave-cell-every", "1", "-o", "-")
        try:
            res = json.loads(r.stdout)
        except ValueError:
            res = None
        t.ok(r.returncode == 0 and res and text(res, 0) == "slept\n" and r.stdout.count('"nbformat": 4') == 1,
             "-o - with autosave: one notebook on stdout, at the end", r.stdout[:300] + r.stderr)

        # fast cells are not saved one by one
        p = write_nb(os.path.join(d, "many.ipynb"), ["import time\ntime.sleep(0.1)\nprint(%d)" % i for i in range(30)])
        t0 = time.monotonic()
        r = C.run(["run", p], env=dict(env, CELLBOX_LOG="debug"))
        took = time.monotonic() - t0
        saves = r.stderr.count("progress saved")
        t.ok(r.returncode == 0 and 1 <= saves <= took + 1 and text(C.load(p.replace(".ipynb", ".out.ipynb")), 29) == "29\n",
             "30 cells of 0.1 s: progress saved about once a second, not after every cell",
             "%d saves in %.1f s" % (saves, took))

        # ------------------------------------------------- kernel problems
        def spec(name, argv):
            kd = os.path.join(prefix, "share", "jupyter", "kernels", name)
            os.makedirs(kd, exist_ok=True)
            with open(os.path.join(kd, "kernel.json"), "w") as fh:
                json.dump({"argv": argv, "display_name": name, "language": "python"}, fh)
        spec("no-such-exe", ["/nonexistent/kernel", "-f", "{connection_file}"])
        spec("exits-at-once", ["/bin/sh", "-c", "exit 4", "{connection_file}"])
        spec("never-ready", ["/bin/sh", "-c", "echo $$ > never-ready.pid; exec sleep 600", "{connection_file}"])
        simple = write_nb(os.path.join(d, "simple.ipynb"), ["print(1)"])
        r = run("run", "-k", "no-such-exe", simple)
        t.ok(r.returncode == 1 and "cannot start kernel 'no-such-exe'" in r.stderr and "No such file" in r.stderr,
             "a kernel that cannot be executed: clear reason", r.stderr)
        r = run("run", "-k", "exits-at-once", simple)
        t.ok(r.returncode == 1 and "kernel 'exits-at-once' exited with status 4 during startup" in r.stderr,
             "a kernel that exits at startup: clear reason", r.stderr)
        r = run("run", "-k", "never-ready", "--startup-timeout", "1", simple, timeout=60)
        spid = int(C.read_text(os.path.join(d, "never-ready.pid"))) if os.path.exists(os.path.join(d, "never-ready.pid")) else 0
        leftover_pids.append(spid)
        t.ok(r.returncode == 1 and "did not become ready within 1 s" in r.stderr and spid and not C.pid_alive(spid),
             "startup timeout: reported, the kernel process killed", r.stderr)
        r = run("run", "-k", "nonexistent-kernel", simple)
        t.ok(r.returncode == 1 and "no kernelspec named 'nonexistent-kernel'" in r.stderr, "an unknown -k: clear reason",
             r.stderr)

        # ----------------------------------------------------- kernel choice
        for label, ks, want in [("the notebook's installed kernelspec (python3)",
                                 {"name": "python3", "display_name": "x", "language": "python"}, "python3"),
                                ("no kernelspec: cellbox", None, "cellbox"),
                                ("a Python kernelspec not installed: cellbox",
                                 {"name": "gone-python", "display_name": "x", "language": "python"}, "cellbox")]:
            p = write_nb(os.path.join(d, "choice.ipynb"), ["import sys\nprint(sys.version_info[0])"], kernelspec=ks)
            r = run("run", p, "-o", os.path.join(d, "choice.out.ipynb"))
            res = C.load(os.path.join(d, "choice.out.ipynb"))
            t.ok(r.returncode == 0 and res["metadata"]["kernelspec"]["name"] == want and text(res, 0) == "3\n",
                 "default kernel: " + label, r.stderr)
            if want == "python3":
                t.ok(res["metadata"]["kernelspec"] == ks,
                     "the notebook's own kernelspec is kept as it was when its kernel ran (nbclient's)",
                     res["metadata"]["kernelspec"])
        p = write_nb(os.path.join(d, "partial-ks.ipynb"), ["1"], kernelspec={"name": "cellbox", "display_name": "My env"})
        r = run("run", p, "-o", os.path.join(d, "partial-ks.out.ipynb"))
        res = C.load(os.path.join(d, "partial-ks.out.ipynb"))
        t.ok(res["metadata"]["kernelspec"] == {"name": "cellbox", "display_name": "My env", "language": "python"},
             "a kernelspec lacking a field: the field is added, the rest kept", res["metadata"]["kernelspec"])
        p = write_nb(os.path.join(d, "jl.ipynb"), ["1 + 1"],
                     kernelspec={"name": "julia-0.1-nowhere", "display_name": "Julia", "language": "julia"})
        r = run("run", p)
        t.ok(r.returncode == 1 and "no kernelspec named 'julia-0.1-nowhere'" in r.stderr
             and "choose one with -k" in r.stderr,
             "a non-Python notebook whose kernel is missing: clear reason", r.stderr)
        if os.path.exists("/usr/share/jupyter/kernels/xpython/kernel.json"):
            r = run("run", "-k", "xpython", simple, "-o", os.path.join(d, "xpy.ipynb"))
            res = C.load(os.path.join(d, "xpy.ipynb")) if r.returncode == 0 else None
            t.ok(res and text(res, 0) == "1\n" and res["metadata"]["kernelspec"]["name"] == "xpython",
                 "another installed kernel (xeus-python) runs the notebook", r.stderr)
        else:
            t.skip("another installed kernel (xeus-python)", "xpython not installed")

        # --------------------------------------------------------------- cwd
        os.makedirs(os.path.join(d, "sub"))
        p = write_nb(os.path.join(d, "sub", "cwd.ipynb"), ["import os\nprint(os.getcwd())"])
        r = run("run", p)
        t.ok(r.returncode == 0 and text(C.load(os.path.join(d, "sub", "cwd.out.ipynb")), 0).strip()
             == os.path.realpath(os.path.join(d, "sub")), "the kernel runs in the notebook's folder")
        r = run("run", "--cwd", tmp, p, "-o", os.path.join(d, "cwd2.ipynb"))
        t.ok(r.returncode == 0 and text(C.load(os.path.join(d, "cwd2.ipynb")), 0).strip() == os.path.realpath(tmp),
             "--cwd DIR")
        r = run("run", "--cwd", os.path.join(d, "nope"), p)
        t.ok(r.returncode == 2 and "not a folder" in r.stderr, "--cwd of a missing folder: bad usage")

        # ---------------------------------------------------------------- -j
        os.makedirs(os.path.join(d, "par"))
        wait_src = ("import os, time\nopen('{me}.flag', 'w').close()\n"
                    "for _ in range(1200):\n    if os.path.exists('{other}.flag'):\n        break\n    time.sleep(0.05)\n"
                    "else:\n    raise RuntimeError('{other} never ran')\nprint('met {other}')")
        a = write_nb(os.path.join(d, "par", "a.ipynb"), [wait_src.format(me="a", other="b")])
        b = write_nb(os.path.join(d, "par", "b.ipynb"), [wait_src.format(me="b", other="a")])
        r = run("run", "-j", "2", a, b, timeout=120)
        t.ok(r.returncode == 0 and text(C.load(a.replace(".ipynb", ".out.ipynb")), 0) == "met b\n"
             and text(C.load(b.replace(".ipynb", ".out.ipynb")), 0) == "met a\n",
             "-j 2 runs two notebooks at once, each with its own kernel", r.stderr)
        many = [write_nb(os.path.join(d, "par", "m%d.ipynb" % i), ["print(%d)" % i]) for i in range(5)]
        bad = os.path.join(d, "par", "m-bad.ipynb")
        shutil.copy(os.path.join(C.BAD, "truncated.ipynb"), bad)
        r = run("run", "-j", "3", *(many + [bad]))
        t.ok(r.returncode == 1 and all(text(C.load(m.replace(".ipynb", ".out.ipynb")), 0) == "%d\n" % i
                                       for i, m in enumerate(many))
             and r.stderr.count("\n") == 1 and "m-bad.ipynb" in r.stderr,
             "-j 3 over six notebooks: five written, the bad one reported on one line", r.stderr)
        # the kernels' ports: read back from each kernel's own connection file
        ports_src = ("import json, sys\nargv = open('/proc/self/cmdline').read().split('\\0')\n"
                     "conn = json.load(open(argv[argv.index('-f') + 1]))\n"
                     "print(' '.join(str(conn[k]) for k in sorted(conn) if k.endswith('_port')))")
        pnbs = [write_nb(os.path.join(d, "par", "p%d.ipynb" % i), [ports_src]) for i in range(6)]
        r = run("run", "-j", "3", *pnbs)
        seen = [int(x) for p in pnbs for x in text(C.load(p.replace(".ipynb", ".out.ipynb")), 0).split()]
        lo, hi = (int(x) for x in open("/proc/sys/net/ipv4/ip_local_port_range").read().split())
        t.ok(r.returncode == 0 and len(seen) == 30 and len(set(seen)) == 30
             and all(10000 <= p < lo or p > hi for p in seen),
             "kernel ports: all different across -j, outside the ephemeral range %d-%d (no TCP self-connect)"
             % (lo, hi), "%s %s" % (r.stderr, seen))

        # ------------------------------------------- ipywidgets.Output (Debian's 6)
        p = write_nb(os.path.join(d, "outw.ipynb"), [
            "from ipywidgets import Output\nfrom IPython.display import display, HTML\nout = Output()\ndisplay(out)",
            "with out:\n    print('inside one')\n    display(HTML('<b>inside</b>'))\nprint('outside')"])
        r = run("run", p)
        nb = C.load(p.replace(".ipynb", ".out.ipynb")) if r.returncode == 0 else {"cells": [{}, {"outputs": []}]}
        states = nb.get("metadata", {}).get("widgets", {}).get("application/vnd.jupyter.widget-state+json", {}) \
            .get("state", {})
        w_outs = [s["state"].get("outputs") for s in states.values() if s.get("model_name") == "OutputModel"]
        t.ok(r.returncode == 0 and text(nb, 1) == "outside\n" and len(outputs(nb, 1)) == 1
             and w_outs and [o["output_type"] for o in w_outs[0]] == ["stream", "display_data"]
             and w_outs[0][0]["text"] == "inside one\n",
             "`with out:` of an ipywidgets Output goes into the widget's stored state, not the cell "
             "(nbclient's Output-widget emulation)", (r.stderr, w_outs, outputs(nb, 1)))

        # ------------------------------------------------------- log output
        p = write_nb(os.path.join(d, "log.ipynb"), ["print('alpha')\nimport sys\nprint('beta', file=sys.stderr)", "'gamma'",
                                                    "print('no newline', end='')", "print('delta')"])
        r = run("run", "--log-output", p)
        t.ok(r.returncode == 0 and r.stdout == "alpha\n'gamma'\nno newline\ndelta\n" and "beta\n" in r.stderr,
             "--log-output streams cell outputs (stdout/stderr) in order", repr(r.stdout) + repr(r.stderr))

        # ---------------------------------------------- progress on a terminal
        master, slave = pty.openpty()
        proc = subprocess.Popen([C.CELLBOX, "run", p, "-o", os.path.join(d, "tty.ipynb")], env=env,
                                stdout=subprocess.DEVNULL, stderr=slave)
        os.close(slave)
        chunks = []
        while True:
            rl, _, _ = select.select([master], [], [], 60)
            if not rl:
                break
            try:
                data = os.read(master, 4096)
            except OSError:
                break
            if not data:
                break
            chunks.append(data)
        proc.wait(timeout=60)
        os.close(master)
        screen = b"".join(chunks).decode(errors="replace")
        t.ok(proc.returncode == 0 and "\r" in screen and "4/4 cells" in screen and "[####" in screen
             and "ok %s" % p in screen, "a progress bar on a terminal (cells done/total, elapsed) and a summary",
             repr(screen[-400:]))
    finally:
        for pid in leftover_pids:
            C.kill_if_alive(pid)
        C.rmtree(tmp)
    return t.done()


if __name__ == "__main__":
    sys.exit(C.tap_main(main))
