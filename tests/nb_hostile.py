#!/usr/bin/python3
"""`cellbox run` against a hostile user: odd and broken notebooks (huge
lines, deep nesting, bad UTF-8, lone surrogates, NUL characters, duplicate
keys, BOM, CRLF, odd numbers, 100,000 cells), runaway cells (bad bytes and
NULs on stdout, 200 MB of output, forks, os._exit, closed fds, sys.exit,
ignored SIGINT, infinite recursion, a cell deleting its notebook or the
output folder) and hostile paths (a folder, a symlink, a device node, a
FIFO, /dev/zero, a 2 GB sparse file, odd names).

Every case checks what must hold: the exit status, one clear line naming
the notebook, the input untouched, no temporary file left, the output
valid for nbformat when written, no kernel process left. Nothing depends
on timing."""
import glob
import json
import os
import resource
import stat
import subprocess
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import nb_common as C  # noqa: E402

KS = {"name": "cellbox", "display_name": "Python 3 (cellbox)", "language": "python"}


def make_nb(cells, minor=5, metadata=None):
    nb = {"cells": [], "metadata": dict(metadata or {}, kernelspec=KS), "nbformat": 4, "nbformat_minor": minor}
    for i, src in enumerate(cells):
        cell = {"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [], "source": src}
        if minor >= 5:
            cell["id"] = "c%d" % (i + 1)
        nb["cells"].append(cell)
    return nb


def write(path, content):
    if isinstance(content, dict):
        content = json.dumps(content, indent=1)
    with open(path, "wb" if isinstance(content, bytes) else "w") as fh:
        fh.write(content)
    return path


def text(nb, i):
    return "".join("".join(o["text"]) if isinstance(o["text"], list) else o["text"]
                   for o in nb["cells"][i]["outputs"] if o["output_type"] == "stream")


def source(nb, i):
    src = nb["cells"][i]["source"]
    return "".join(src) if isinstance(src, list) else src


def enames(nb, i):
    return [o.get("ename") for o in nb["cells"][i]["outputs"] if o["output_type"] == "error"]


def valid(path):
    """The notebook at path, read and validated by nbformat; None if not."""
    import nbformat
    try:
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)
        return C.load(path)
    except Exception:  # noqa: BLE001
        return None


def one_line(r, name, last=False):
    """stderr is one line naming the notebook (with last: its last line is;
    ipykernel writes tracebacks of its own there)."""
    lines = r.stderr.strip().splitlines()
    if last:
        lines = lines[-1:]
    return len(lines) == 1 and name in lines[0] and lines[0].startswith("cellbox run: ")


def main():
    C.quiet_logs()
    t = C.Tap()
    tmp = C.tempdir()
    env = C.kernelspec_env(tmp)
    d = os.path.join(tmp, "w")
    os.makedirs(d)
    run = lambda *a, **kw: C.run(list(a), env=env, **kw)  # noqa: E731

    def no_tmp(folder=d):
        return not glob.glob(os.path.join(folder, "*.tmp.*"))

    def case(name, content, *args):
        """Runs the notebook content written as d/name.ipynb; returns
        (CompletedProcess, input path, output dict or None, input unchanged)."""
        p = write(os.path.join(d, name + ".ipynb"), content)
        with open(p, "rb") as fh:
            before = fh.read()
        r = run("run", p, *args)
        out = os.path.join(d, name + ".out.ipynb")
        same = os.path.exists(p) and open(p, "rb").read() == before
        return r, p, (valid(out) if os.path.exists(out) else None), same

    try:
        # ---------------------------------------------------- odd notebooks
        big = "x = '" + "a" * 50_000_000 + "'\nprint(len(x))"
        r, p, res, same = case("bigline", make_nb([big]))
        t.ok(r.returncode == 0 and res and text(res, 0) == "50000000\n" and source(res, 0) == big
             and same and no_tmp(), "a 50 MB source line runs and is kept whole", r.stderr)
        del big, res

        deep = make_nb(["print(1)"])
        deep["metadata"]["deep"] = "DEEP"
        r, p, res, same = case("deep", json.dumps(deep).replace('"DEEP"', '{"a": ' * 100000 + "1" + "}" * 100000))
        t.ok(r.returncode == 1 and one_line(r, p) and "nested too deeply" in r.stderr and res is None and same,
             "metadata nested 100,000 levels: exit 1, one line, nothing written", r.stderr)

        bad = json.dumps(make_nb(["print('AB')"])).encode().replace(b"AB", b"\xff\xfe")
        r, p, res, same = case("badutf8", bad)
        t.ok(r.returncode == 1 and one_line(r, p) and "invalid UTF-8" in r.stderr and res is None and same,
             "invalid UTF-8 bytes in a source: exit 1 naming the notebook, nothing written", r.stderr)

        r, p, res, same = case("surrogate", json.dumps(make_nb(["s = 'X'\nprint(len(s))"])).replace("X", "\\ud800"))
        t.ok(r.returncode == 0 and res and text(res, 0) == "1\n" and source(res, 0) == "s = '\ufffd'\nprint(len(s))",
             "a lone surrogate \\ud800 becomes U+FFFD (UTF-8 cannot hold it); the output is valid", r.stderr)

        nul = make_nb(["s = 'a\\x00b'\nprint(len(s))", "print('x\\x00y')"])
        nul["cells"][0]["metadata"]["note"] = "keep\u0000this"
        nul["cells"][1]["outputs"] = []
        r, p, res, same = case("nul", json.dumps(nul))
        t.ok(r.returncode == 0 and res and text(res, 0) == "3\n" and text(res, 1) == "x\x00y\n"
             and res["cells"][0]["metadata"]["note"] == "keep\x00this",
             "NUL characters: kept in metadata and in a printed stream (were cut off at the NUL)",
             r.stderr + json.dumps(res)[:600] if res else r.stderr)
        src_nul = make_nb(["# before\u0000after\nprint('ran')", "print('next')"])
        r, p, res, same = case("nulsource", json.dumps(src_nul))
        t.ok(res and source(res, 0) == "# before\x00after\nprint('ran')" and source(res, 1) == "print('next')" and same and no_tmp(),
             "a NUL inside a source is written back as \\u0000, not truncated (the kernel decides what it means)",
             r.stderr + (json.dumps(res["cells"][0]["source"]) if res else ""))
        t.ok(r.returncode == 1 and res and enames(res, 0) == ["ValueError"]
             and "null bytes" in res["cells"][0]["outputs"][0]["evalue"] and res["cells"][1]["outputs"] == [],
             "the cellbox kernel refuses that source as Python does (ValueError), it does not run a prefix",
             r.stderr[-600:] + (json.dumps(res["cells"][0]["outputs"]) if res else ""))
        r = run("run", "-k", "python3", p, "-o", os.path.join(d, "nulsource-py.ipynb"), timeout=120)
        res = valid(os.path.join(d, "nulsource-py.ipynb"))
        t.ok(r.returncode == 1 and one_line(r, p, last=True) and "NoReplyError" in r.stderr and res
             and enames(res, 0) == ["NoReplyError"] and res["cells"][1]["outputs"] == [],
             "ipykernel fails on a NUL in a source and never replies: reported, not waited on forever",
             r.stderr[-600:])

        dup = json.dumps(make_nb(["print(1)"])).replace('"source": "print(1)"',
                                                       '"source": "print(0)", "source": "print(2)"')
        many = make_nb(["print(1)"])
        many["metadata"]["big"] = "BIG"
        many = json.dumps(many).replace('"BIG"', "{" + ", ".join('"k%d": %d' % (i, i) for i in range(600))
                                        + ', "k5": "last"}')
        r, p, res, same = case("dupkeys", dup)
        r2, p2, res2, same2 = case("dupkeys600", many)
        raw = C.read_text(os.path.join(d, "dupkeys600.out.ipynb")) if res2 else ""
        t.ok(r.returncode == 0 and res and text(res, 0) == "2\n" and r2.returncode == 0 and res2
             and res2["metadata"]["big"]["k5"] == "last" and raw.count('"k5"') == 1,
             "duplicate keys: the last wins (as json.load), also in an object of 600 keys (written twice before)",
             r.stderr + r2.stderr)

        r, p, res, same = case("bom", b"\xef\xbb\xbf" + json.dumps(make_nb(["print('bom')"])).encode())
        t.ok(r.returncode == 0 and res and text(res, 0) == "bom\n" and same, "a UTF-8 BOM at the start is accepted")
        r, p, res, same = case("crlf", json.dumps(make_nb(["print(1)\r\nprint(2)"]), indent=1).replace("\n", "\r\n"))
        t.ok(r.returncode == 0 and res and text(res, 0) == "1\n2\n" and same, "a CRLF notebook runs", r.stderr)

        nums = make_nb(["print(1)"])
        nums["metadata"]["n"] = "NUMS"
        r, p, res, same = case("nums", json.dumps(nums).replace(
            '"NUMS"', "[1e999, -1e999, -0, -0.0, 123456789012345678901234567890, 1E5, 1.5e-400, NaN]"))
        raw = C.read_text(os.path.join(d, "nums.out.ipynb")) if res else ""
        t.ok(r.returncode == 0 and res and "Infinity,\n   -Infinity,\n   0,\n   -0.0,\n   123456789012345678901234567890,\n"
             "   100000.0,\n   0.0,\n   NaN\n" in raw, "odd numbers written as Python's json writes them", raw[-700:])

        idn = make_nb(["print(1)"])
        idn["cells"][0]["id"] = 7
        r, p, res, same = case("idnumber", json.dumps(idn))
        t.ok(r.returncode == 1 and one_line(r, p) and "'id' must be" in r.stderr and res is None,
             "a cell id that is a number: exit 1, one line", r.stderr)
        r, p, res, same = case("nocells", json.dumps(make_nb([])))
        t.ok(r.returncode == 0 and res and res["cells"] == [], "0 cells: a valid empty notebook", r.stderr)
        p = write(os.path.join(d, "manycells.ipynb"), json.dumps(make_nb([""] * 100000 + ["print('last')"])))
        try:
            r = run("run", p, timeout=60)
            res = valid(os.path.join(d, "manycells.out.ipynb"))
            ok = r.returncode == 0 and res and len(res["cells"]) == 100001 and text(res, 100000) == "last\n"
        except subprocess.TimeoutExpired:
            ok, r = False, None
        t.ok(ok, "100,000 empty cells: run well within a minute (took minutes: quadratic id check, cell lookup)",
             r.stderr if r else "timed out")

        att = make_nb(["print(1)"])
        att["cells"].append({"cell_type": "markdown", "id": "m1", "metadata": {}, "source": "![x](attachment:a b.weird)",
                             "attachments": {"a b.weird": {"application/x-\u00e9\u2028odd+json": {"k": [1]},
                                                           "image/png": "AAAA", "x/y; q=\"1\"": ["a\n", "b"]}}})
        r, p, res, same = case("attach", json.dumps(att))
        joined = lambda b: {k: "".join(v) if isinstance(v, list) and not k.endswith("json") else v  # noqa: E731
                            for k, v in b.items()}
        t.ok(r.returncode == 0 and res and joined(res["cells"][1]["attachments"]["a b.weird"])
             == joined(att["cells"][1]["attachments"]["a b.weird"]),
             "attachments with odd mime types kept", r.stderr)
        lists = make_nb([["print(1)\n", "print(2)"], ["print(3)", "print(4)\n"], ["a = 5\n", "\n", "a"], []])
        r, p, res, same = case("lists", json.dumps(lists))
        t.ok(r.returncode == 1 and res and text(res, 0) == "1\n2\n" and "cell 2 (id 'c2'): SyntaxError" in r.stderr
             and source(res, 1) == "print(3)print(4)\n",
             "sources as lists: joined as nbformat joins them ('print(3)' + 'print(4)' is one line)", r.stderr)
        lists["cells"][1]["source"] = ["print(3)\n", "print(4)"]
        r, p, res, same = case("lists2", json.dumps(lists))
        t.ok(r.returncode == 0 and res and text(res, 1) == "3\n4\n"
             and res["cells"][2]["outputs"][0]["data"]["text/plain"] == ["5"] and res["cells"][3]["outputs"] == [],
             "sources as lists with and without trailing newlines; an empty list is an empty cell", r.stderr)

        # ----------------------------------------------------- runaway cells
        r, p, res, same = case("badbytes", make_nb([
            "import os, sys\nos.write(1, b'raw\\xff\\xfe\\n')\nprint('a\\x00b')\nsys.stdout.flush()\n"
            "os.write(2, b'e\\x00\\n'); None", "print('next')"]))
        out = text(res, 0) if res else ""
        t.ok(r.returncode == 0 and res and "raw\ufffd\ufffd\n" in out and "a\x00b\n" in out and text(res, 1) == "next\n",
             "a cell writing invalid UTF-8 and NUL bytes: U+FFFD for the bad bytes, the NUL kept, nothing lost",
             json.dumps(res["cells"][0]["outputs"]) if res else r.stderr)

        p = write(os.path.join(d, "huge.ipynb"), make_nb([
            "import sys\nchunk = 'y' * (1 << 20)\nfor i in range(200):\n    sys.stdout.write(chunk)\nprint()\nprint('done')",
            "print('after')"]))
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        r = run("run", p)
        rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        out = os.path.join(d, "huge.out.ipynb")
        size = os.path.getsize(out) if os.path.exists(out) else 0
        with open(out, "rb") as fh:
            fh.seek(max(0, size - 4000))
            tail = fh.read()
        t.ok(r.returncode == 0 and size > 200 * (1 << 20) and b'"done\\n"' in tail and b'"after\\n"' in tail
             and no_tmp(), "200 MB on stdout: completes, everything written", r.stderr)
        t.ok(max(rss, before) < 1_500_000, "200 MB on stdout: the largest process stays under 1.5 GB",
             "max rss %d KB" % rss)
        os.remove(out)

        p = write(os.path.join(d, "fork.ipynb"), make_nb([
            "import os, time\npid = os.fork()\nif pid == 0:\n    open('child.pid', 'w').write(str(os.getpid()))\n"
            "    time.sleep(300)\n    os._exit(0)\nwhile not os.path.exists('child.pid'):\n    time.sleep(0.01)\nprint('parent')"]))
        r = run("run", p, timeout=120)
        cpid = int(C.read_text(os.path.join(d, "child.pid"))) if os.path.exists(os.path.join(d, "child.pid")) else 0
        alive = cpid and C.pid_alive(cpid)
        if alive:
            os.kill(cpid, 9)
        t.ok(r.returncode == 0 and cpid and not alive and text(C.load(os.path.join(d, "fork.out.ipynb")), 0) == "parent\n",
             "a cell that forks a long-lived child: the run ends and the child is gone", r.stderr)

        r, p, res, same = case("exit3", make_nb(["import os\nos._exit(3)", "print(1)"]))
        t.ok(r.returncode == 1 and one_line(r, p) and "exited with status 3" in r.stderr and res
             and enames(res, 0) == ["DeadKernelError"], "os._exit(3): DeadKernelError, exit 1", r.stderr)
        r, p, res, same = case("closefds", make_nb(["import os\nos.close(1)\nos.close(2)\nprint('x')", "print('after')"]))
        t.ok(r.returncode == 0 and res and text(res, 1) == "after\n", "a cell closing fds 1 and 2: the run goes on",
             r.stderr)
        r, p, res, same = case("sysexit", make_nb(["import sys\nsys.exit(4)", "print('after')"]))
        t.ok(r.returncode == 1 and one_line(r, p) and "SystemExit: 4" in r.stderr and res
             and enames(res, 0) == ["SystemExit"] and res["cells"][1]["outputs"] == [],
             "sys.exit(4): an error of the cell (as ipykernel), exit 1", r.stderr)
        p = write(os.path.join(d, "deaf.ipynb"), make_nb([
            "import os, signal, time\nopen('deaf.pid', 'w').write(str(os.getpid()))\n"
            "signal.signal(signal.SIGINT, lambda *a: None)\ntime.sleep(300)", "print('never')"]))
        r = run("run", p, "--timeout", "2", "--interrupt-timeout", "1", timeout=120)
        res = valid(os.path.join(d, "deaf.out.ipynb"))
        kpid = int(C.read_text(os.path.join(d, "deaf.pid")))
        t.ok(r.returncode == 1 and one_line(r, p) and "timed out after 2 s" in r.stderr and res
             and enames(res, 0) == ["CellTimeoutError"] and not C.pid_alive(kpid),
             "a SIGINT handler that ignores the interrupt, --timeout 2: kernel stopped, timeout recorded", r.stderr)
        r, p, res, same = case("recursion", make_nb(["def f(): return f()\nf()", "print('never')"]))
        t.ok(r.returncode == 1 and one_line(r, p) and "RecursionError" in r.stderr and res,
             "infinite recursion: RecursionError, exit 1, valid output", r.stderr)
        r, p, res, same = case("selfdelete", make_nb(["import os\nos.remove('selfdelete.ipynb')\nprint('gone')",
                                                      "print('after')"]))
        t.ok(r.returncode == 0 and res and text(res, 1) == "after\n" and not os.path.exists(p),
             "a cell deleting its own notebook: the run completes and is written", r.stderr)
        gone = os.path.join(d, "gone")
        os.makedirs(gone)
        p = write(os.path.join(d, "rmout.ipynb"), make_nb(["import shutil\nshutil.rmtree(%r)" % gone, "print(2)"]))
        r = run("run", p, "-o", os.path.join(gone, "x.ipynb"))
        t.ok(r.returncode == 1 and one_line(r, p) and "cannot write %s" % os.path.join(gone, "x.ipynb") in r.stderr
             and "No such file" in r.stderr, "a cell deleting the output folder: exit 1, one line with the reason",
             r.stderr)

        # ----------------------------------------------------- hostile paths
        src = write(os.path.join(d, "plain.ipynb"), make_nb(["print('plain')"]))
        os.makedirs(os.path.join(d, "adir.ipynb"))
        marker = os.path.join(d, "ran.marker")
        mk = write(os.path.join(d, "marker.ipynb"), make_nb(["open(%r, 'w').close()" % marker]))
        r = run("run", mk, "-o", os.path.join(d, "adir.ipynb"))
        t.ok(r.returncode == 2 and "is a folder" in r.stderr and not os.path.exists(marker)
             and os.listdir(os.path.join(d, "adir.ipynb")) == [],
             "-o onto a folder: exit 2 before running anything (ran the notebook, then failed)", r.stderr)
        victim = write(os.path.join(d, "victim.txt"), "precious\n")
        link = os.path.join(d, "link.ipynb")
        os.symlink(victim, link)
        r = run("run", src, "-o", link)
        t.ok(r.returncode == 0 and C.read_text(victim) == "precious\n" and not os.path.islink(link)
             and text(C.load(link), 0) == "plain\n", "-o onto a symlink: the link is replaced, its target untouched",
             r.stderr)
        if os.geteuid() == 0:
            dev = os.path.join(d, "mynull")
            os.mknod(dev, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
            r = run("run", src, "-o", dev)
            t.ok(r.returncode == 0 and stat.S_ISCHR(os.stat(dev).st_mode) and no_tmp(),
                 "-o onto a device node (like /dev/null): written to, not replaced by a file", r.stderr)
        else:
            t.skip("-o onto a device node", "mknod needs root")
        fifo = os.path.join(d, "out.fifo")
        os.mkfifo(fifo)
        got = []
        reader = threading.Thread(target=lambda: got.append(open(fifo, "rb").read()))
        reader.start()
        r = run("run", src, "-o", fifo, "--autosave-cell-every", "1")
        reader.join(60)
        t.ok(r.returncode == 0 and stat.S_ISFIFO(os.stat(fifo).st_mode) and got and
             json.loads(got[0])["cells"][0]["outputs"][0]["text"] == ["plain\n"],
             "-o onto a FIFO: one notebook through the pipe, the FIFO stays", r.stderr)
        infifo = os.path.join(d, "in.fifo")
        os.mkfifo(infifo)
        data = C.read_text(src)
        writer = threading.Thread(target=lambda: open(infifo, "w").write(data))
        writer.start()
        r = run("run", infifo, "-o", os.path.join(d, "fromfifo.ipynb"))
        writer.join(60)
        t.ok(r.returncode == 0 and text(C.load(os.path.join(d, "fromfifo.ipynb")), 0) == "plain\n",
             "an input that is a FIFO is read", r.stderr)
        for name, path in [("/dev/zero", "/dev/zero"), ("a 2 GB sparse file", os.path.join(d, "sparse.ipynb"))]:
            if path != "/dev/zero":
                with open(path, "wb") as fh:
                    fh.truncate(2 << 30)
            try:
                r = run("run", path, "-o", os.path.join(d, "z.ipynb"), timeout=30)
                ok = r.returncode == 1 and one_line(r, path) and "line 1 column 1" in r.stderr
            except subprocess.TimeoutExpired:
                ok, r = False, None
            t.ok(ok and not os.path.exists(os.path.join(d, "z.ipynb")),
                 "%s as input: exit 1 at once, without reading it all (ran out of memory)" % name,
                 r.stderr if r else "timed out")
        with open("/dev/zero", "rb") as zero:
            r = subprocess.run([C.CELLBOX, "run", "-"], stdin=zero, capture_output=True, text=True, env=env, timeout=30)
        t.ok(r.returncode == 1 and one_line(r, "<stdin>"), "/dev/zero on stdin: exit 1 at once", r.stderr)
        r = run("run", d, "-o", os.path.join(d, "z.ipynb"))
        t.ok(r.returncode == 1 and one_line(r, d) and "Is a directory" in r.stderr, "a folder as input: exit 1",
             r.stderr)
        unread = write(os.path.join(d, "unreadable.ipynb"), make_nb(["print(1)"]))
        os.chmod(unread, 0)
        if os.geteuid() != 0:
            r = run("run", unread)
        else:   # root reads everything: run cellbox as nobody
            r = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", C.CELLBOX, "run",
                                unread, "-o", "-"], env=env, capture_output=True, text=True, timeout=120)
        t.ok(r.returncode == 1 and unread in r.stderr and len(r.stderr.strip().splitlines()) == 1
             and "Permission denied" in r.stderr and r.stdout == "",
             "an unreadable file: exit 1 with the reason", r.stderr)
        odd = os.path.join(d, "new\nline dir é")
        os.makedirs(odd)
        p = write(os.path.join(odd, "sp ace\n\u00e9\u2028.ipynb"), make_nb(["import os\nprint(os.path.basename(os.getcwd()))"]))
        r = run("run", p)
        res = valid(os.path.join(odd, "sp ace\n\u00e9\u2028.out.ipynb"))
        t.ok(r.returncode == 0 and res and text(res, 0) == "new\nline dir é\n" and no_tmp(odd),
             "paths with newlines, spaces and unicode", r.stderr)

        t.ok(no_tmp(), "no temporary file left anywhere", glob.glob(os.path.join(d, "*.tmp.*")))
    finally:
        C.rmtree(tmp)
    return t.done()


if __name__ == "__main__":
    sys.exit(C.tap_main(main))
