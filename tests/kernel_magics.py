"""IPython's magics in the cellbox kernel, against ipykernel.

The same cells run in a cellbox kernel and in Debian's ipykernel (IPython
8.5); the IOPub messages, the reply (status, ename, evalue), its payloads
(pager text, set_next_input) and the prompts of the input requests must be
the same once what differs by nature is normalized: memory addresses, the
name of a cell's code (/tmp/ipykernel_N/N.py there, <ipython-input-N-HASH>
here) and profiler timings. Covered: the debugger (%debug post-mortem and
on a statement, %%debug, %pdb, with a real stdin round trip answering the
ipdb> prompts), %prun, %xmode in its four modes and %tb, %%file, %sx /
%system, the %%script family, %who / %whos with types, %rerun, %recall,
%save, %alias, !cmd and !!cmd (in $SHELL), input() and getpass() without
stdin. breakpoint() and pdb.set_trace() are checked in cellbox
alone (ipykernel's debugpy turns breakpoint() into a no-op). Output: TAP.
"""
import os
import queue
import re
import time

import display_util as du
import kutil

tap = kutil.TAP()
# the shell of !cmd (IPython's: $SHELL) is the same for both kernels
os.environ["SHELL"] = "/bin/bash"

CELL_FILE = re.compile(r"/tmp/ipykernel_\d+/\d+\.py|<ipython-input-\d+-[0-9a-f]+>|(?<![\w/.])\d{6,}\.py")
WORK_DIR = re.compile(r"magics-(cellbox|python3)")
WARN_PREFIX = re.compile(r"^\S+:\d+: UserWarning: ", re.M)
WARN_SOURCE = re.compile(r"^  (warnings\.)?warn\(.*\n(.*%\n)?", re.M)   # the warning's source line
ANSI = re.compile(r"\x1b\[[0-9;]*m")


class Norm(du.Normalizer):
    def text(self, s):
        s = WORK_DIR.sub("magics-K", CELL_FILE.sub("<cell>", s))
        s = WARN_SOURCE.sub("", WARN_PREFIX.sub("UserWarning: ", s))
        return super().text(s)


def collect(kc, code, answers=(), allow_stdin=True, timeout=60):
    """Execute, answering input requests from answers (then "q").
    -> (reply content, [(msg_type, content, buffers)], [prompts])"""
    answers, prompts, out = list(answers), [], []

    def on_input(msg):
        prompts.append(msg["content"]["prompt"])
        if len(prompts) > 20:
            raise RuntimeError("too many input requests: %r" % prompts[-3:])
        kc.input(answers.pop(0) if answers else "q")

    def on_output(m):
        if m["msg_type"] not in ("status", "execute_input"):
            out.append((m["msg_type"], m["content"], m.get("buffers") or []))

    reply = kc.execute_interactive(code, output_hook=on_output, stdin_hook=on_input, allow_stdin=allow_stdin,
                                   stop_on_error=False, timeout=timeout)
    return reply["content"], out, prompts


def prun_page(text):
    """A profile report without its timings, the rows sorted (rows of equal
    time come in any order)."""
    text = re.sub(r"\d+\.\d{3}", "T", text)
    head, sep, rows = text.partition("filename:lineno(function)\n")
    return head + sep + "\n".join(sorted(rows.splitlines()))


def norm_reply(n, reply):
    keep = {"status": reply.get("status")}
    if reply.get("status") == "error":
        keep["ename"] = reply.get("ename")
        keep["evalue"] = n.text(reply.get("evalue", ""))
    payload = []
    for p in reply.get("payload") or []:
        p = dict(p)
        if p.get("source") == "page":
            p["data"] = {k: prun_page(n.text(v)) for k, v in p["data"].items()}
        elif "text" in p:
            p["text"] = n.text(p["text"])
        payload.append(p)
    keep["payload"] = payload
    return keep


def view(result, how="all"):
    reply, out, prompts = result
    n = Norm()
    if how == "reply":
        return norm_reply(n, reply), [m for m in n.messages(out) if m[0] == "error"], prompts
    msgs = n.messages(du.merge_streams(out))
    if how in ("tb", "tb text"):   # the error's traceback too
        strip = (lambda s: s) if how == "tb" else (lambda s: ANSI.sub("", s))
        msgs.append([[strip(n.text(b)) for b in c["traceback"]] for t, c, b in out if t == "error"])
    return norm_reply(n, reply), msgs, prompts


# (name, code, answers to the input requests, allow_stdin[, what to compare]):
# everything; "tb" the error's traceback too ("tb text": without colours,
# see TB_CELLS); or "reply" (and the error) only where the output differs by
# nature (ipykernel runs each statement of a cell apart: its pdb.set_trace()
# stops on the statement's return)
DEBUG_SETUP = "def f(x):\n    y = x * 2\n    return 1/0\n"
PARITY = [
    # %debug, %pdb
    ("%debug before any error", "%debug", (), True),
    ("a function that fails", DEBUG_SETUP, (), True),
    ("an error", "f(3)", (), True),
    ("%debug: post-mortem, p x, p y, up, quit", "%debug", ("p x", "p y", "u", "q"), True),
    ("%debug: continue leaves it", "%debug", ("c",), True),
    ("%debug: where, up, down, list, pp, help", "%debug", ("w", "u", "d", "l", "pp x", "h p", "q"), True),
    ("%debug STATEMENT: next, p, continue", "%debug x = 1 + 2", ("n", "p x", "c"), True),
    ("%debug STATEMENT: step into a function", "%debug f(5)", ("s", "n", "p x", "q"), True),
    ("%debug STATEMENT whose error is printed", "%debug f(3)", ("c",), True),
    ("%debug 1/0", "%debug 1/0", ("c",), True),
    ("%%debug", "%%debug\na = 1\nb = a + 1\n", ("n", "n", "p a", "c"), True),
    ("%debug -b without its argument", "%debug -b", (), True),
    ("%debug -b on a file that is not there", "%debug -b /nonexistent_cbx.py:3 f(3)", ("c",), True),
    ("a module to debug", "%%file helper_cbx.py\ndef g(a):\n    b = a + 1\n    return b * 2\n", (), True),
    ("%debug -b FILE:LINE STATEMENT: stops at the breakpoint", "import helper_cbx\n%debug -b helper_cbx.py:3 helper_cbx.g(4)",
     ("p a, b", "c"), True),
    ("forget the module (its path differs between the kernels)", "del helper_cbx", (), True),
    ("an error again", "f(4)", (), True),
    ("%debug without stdin: StdinNotImplementedError", "%debug", (), False),
    ("input() without stdin", "input('name? ')", (), False),
    ("getpass() without stdin: its own message", "import getpass\ngetpass.getpass()", (), False),
    ("%pdb toggles on", "%pdb", (), True),
    ("%pdb on", "%pdb on", (), True),
    ("%pdb on: an error opens the debugger", "f(7)", ("p x", "q"), True),
    ("%pdb off", "%pdb off", (), True),
    ("%pdb with a wrong argument", "%pdb maybe", (), True),
    ("an error with %pdb off: no debugger", "f(8)", (), True),
    ("pdb.set_trace() without stdin", "import pdb; pdb.set_trace()\nw = 2", (), False, "reply"),
    # %prun
    ("%prun", "%prun sum(range(1000))", (), True),
    ("a function to profile", "def work(n):\n    return sorted(range(n), key=lambda v: -v)\n", (), True),
    ("%prun -l 2 -s calls", "%prun -l 2 -s calls work(100)", (), True),
    ("%prun -l NAME -s name", "%prun -l work -s name work(3)", (), True),
    ("%prun -r -q: the Stats object", "x = %prun -r -q work(3)\ntype(x).__name__", (), True),
    ("%%prun", "%%prun -s cumulative\nwork(5)\nwork(6)", (), True),
    ("%prun -q -T -D", "%prun -q -T prun.txt -D prun.bin work(2)", (), True),
    ("the -T and -D files", "import os\nos.path.getsize('prun.bin') > 0, open('prun.txt').read().split()[1:3]", (),
     True),
    ("%prun of failing code", "%prun 1/0", (), True),
    ("%prun with an unknown option", "%prun -z 1", (), True),
    ("%prun -T without its argument", "%prun -T", (), True),
    ("%prun -s with an unknown key", "%prun -s nonsense work(1)", (), True),
    ("%prun with nothing to run", "%prun", (), True),
    # %xmode, %tb
    ("%tb: the last error (of %prun)", "%tb", (), True),
    ("%xmode without a name: the next mode", "%xmode", (), True),
    ("%xmode plain", "%xmode plain", (), True),
    ("%xmode with an unknown name", "%xmode foo", (), True),
    ("%xmode context", "%xmode context", (), True),
    ("an error for %tb", "f(9)", (), True, "tb text"),
    ("%tb shows the last error", "%tb", (), True, "tb text"),
    ("%tb plain", "%tb plain", (), True, "tb"),
    ("%tb minimal", "%tb minimal", (), True, "tb"),
    ("%tb with an unknown mode", "%tb foo", (), True),
    ("%tb left the mode as it was", "f(10)", (), True, "tb text"),
    # files and the shell
    ("%%file", "%%file f1.txt\nhello\n", (), True),
    ("%%file again: overwriting", "%%file f1.txt\nhello again\n", (), True),
    ("%%file -a", "%%file -a f1.txt\nmore\n", (), True),
    ("%%file -a of a new file", "%%file -a f2.txt\nnew\n", (), True),
    ("%%writefile wrote the text", "print(open('f1.txt').read(), end='')", (), True),
    ("%%file without a name", "%%file\nx\n", (), True),
    ("%sx", "%sx echo hi; echo there", (), True),
    ("%system", "%system echo sys", (), True),
    ("x = %sx", "r = %sx echo a b\nr", (), True),
    ("%sx without a command", "%sx", (), True),
    ("%%sx", "%%sx\necho one\necho two", (), True),
    # ! and !! run in $SHELL (bash here: set at the top), as IPython
    ("!cmd in $SHELL: bash's brace expansion", "!echo {1..3}", (), True),
    ("!cmd: bash's printf \\x, bytes that are not UTF-8 replaced", "!printf 'bad \\xff\\xfe bytes\\n'", (), True),
    ("!!cmd in $SHELL", "!!echo {1..3}", (), True),
    ("x = !cmd in $SHELL", "x = !echo {4..5}\nx", (), True),
    ("%%python3", "%%python3\nimport sys\nprint('py3', sys.version_info[0])\n", (), True),
    ("%%python", "%%python\nprint('py', 1 + 1)\n", (), True),
    ("%%perl", "%%perl\nprint \"perl\\n\";\n", (), True),
    ("%%ruby (or its absence)", "%%ruby\nputs 'rb'\n", (), True),
    ("%%bash", "%%bash\necho bash $((1 + 2))\n", (), True),
    ("%%bash failing: CalledProcessError", "%%bash\necho before; exit 3\n", (), True),
    ("%%script --no-raise-error", "%%script --no-raise-error bash\necho x; exit 3\n", (), True),
    ("%%sh --out", "%%sh --out shout\necho captured\n", (), True),
    ("the --out variable", "shout", (), True),
    ("%%bash --err", "%%bash --err errtext\necho oops >&2\n", (), True),
    ("the --err variable", "errtext", (), True),
    ("%%script with a missing program", "%%script no_such_program_cbx\nx\n", (), True),
    ("%%capture of %%bash: both streams", "%%capture cap\n%%bash\necho hi\necho err >&2\n", (), True),
    ("what %%capture kept", "cap.stdout, cap.stderr", (), True),
    # the namespace
    ("variables of several types", "alpha = 123\nbeta = 'test'\nimport os\ndef fn(): pass\nlst = [1, 2, 3]\n"
     "long_s = 'x' * 80 + '\\nnl'\nfrac = 0.5", (), True),
    ("%who", "%who", (), True),
    ("%who int str", "%who int str", (), True),
    ("%who complex: none", "%who complex", (), True),
    ("%who_ls function", "%who_ls function", (), True),
    ("%whos", "%whos", (), True),
    ("%whos list", "%whos list", (), True),
    ("%whos complex: none", "%whos complex", (), True),
    # input history
    ("a result", "1 + 1", (), True),
    ("%rerun: the previous cell", "%rerun", (), True),
    ("%rerun N", "%rerun 1", (), True),
    ("%rerun -g TEXT", "%rerun -g 1 + 1", (), True),
    ("%rerun -l with a word", "%rerun -l x", (), True),
    ("%rerun of nothing", "%rerun 999", (), True),
    ("%recall: the last result", "%recall", (), True),
    ("%recall N", "%recall 1", (), True),
    ("%recall N-M", "%recall 1-2", (), True),
    ("%recall EXPR", "%recall alpha + 1", (), True),
    ("%recall TEXT not found", "%recall nosuchthing_xyz", (), True),
    ("%save FILE N-M", "%save s1 1-2", (), True),
    ("%save over a file: the question, answered no", "%save s1 9", ("n",), True),
    ("%save over a file without stdin", "%save s1 9", (), False),
    ("%save -f", "%save -f s1 1 9", (), True),
    ("%save -r", "%save -r s2.py 2", (), True),
    ("%save -a", "%save -a s2.py 1", (), True),
    ("%save of a string variable", "%save -f s3 beta", (), True),
    ("%save of a function: neither a string nor a macro", "%save s4 fn", (), True),
    ("%save without a name", "%save", (), True),
    ("what %save wrote", "print(open('s1.py').read()); print(open('s2.py').read())", (), True),
    # aliases
    ("%alias lists them", "%alias", (), True),
    ("%alias NAME CMD %s", "%alias hello echo hello %s world", (), True),
    ("the alias", "%hello there", (), True),
    ("an alias with two %s", "%alias parts echo first %s second %s", (), True),
    ("its arguments", "%parts A B", (), True),
    ("too few arguments", "%parts A", (), True),
    ("an alias with %l", "%alias withl echo line %l end", (), True),
    ("the whole line", "%withl a b c", (), True),
    ("%alias over a magic", "%alias who echo no", (), True),
    ("%unalias", "%unalias hello", (), True),
    ("the alias is gone", "%hello x", (), True),
    ("%unalias of something else", "%unalias nothere", (), True),
    ("%mkdir (a default alias)", "%mkdir made_dir", (), True),
    ("%cat", "%cat f1.txt", (), True),
]

# (name, code, answers): %xmode cells, each mode in turn
TB_CELLS = [
    ("define functions", "def inner(x):\n    return 1 / x\n\ndef outer(y, *rest, k=3, **kw):\n    z = y - 1\n"
     "    big = list(range(30))\n    s = 'text'\n    return inner(z)"),
    ("error two frames deep", "outer(1)"),
    ("error in the standard library", "import json\njson.loads('{bad')"),
    ("bare raise", "raise ValueError"),
    ("chained with from", "try:\n    1/0\nexcept Exception as e:\n    raise KeyError('x') from e"),
    ("chained while handling", "try:\n    [][1]\nexcept IndexError:\n    int('x')"),
    ("syntax error", "def f(:\n    pass"),
    ("method of a class", "class K:\n    def m(self, a):\n        return a.missing\nK().m(3)"),
    ("message on two lines", "raise RuntimeError('multi\\nline')"),
    ("error in a block, a local variable", "q = 5\nfor i in range(3):\n    if i == 2:\n        undefined_name + q"),
]


def run_parity(kernel_name):
    km, kc = du.start(kernel_name)
    work = os.path.join(kutil.TMP, "magics-" + kernel_name)
    os.makedirs(work)
    try:
        collect(kc, "import os\nos.chdir(%r)" % work)
        res = []
        for name, code, answers, allow, *_ in PARITY:
            try:
                res.append(collect(kc, code, answers, allow))
            except Exception as e:
                res.append(({"status": "timeout", "error": repr(e)}, [], []))
        tb = {}
        for mode in ("Plain", "Minimal", "Verbose"):
            collect(kc, "%xmode " + mode)
            tb[mode] = [collect(kc, code) for name, code in TB_CELLS]
        collect(kc, "%xmode Context")
        return res, tb
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


ours, ours_tb = run_parity("cellbox")
theirs, theirs_tb = run_parity("python3")
for (name, code, answers, allow, *how), r1, r2 in zip(PARITY, ours, theirs):
    v1, v2 = view(r1, *how), view(r2, *how)
    if code == "%alias":   # cellbox's %ls shows no colours (ls --color=never): the one alias that differs
        v1 = eval(repr(v1).replace("--color=never", "--color"))
    tap.ok(v1 == v2 and v1[0]["status"] in ("ok", "error"), "same as ipykernel: %s" % name,
           "cellbox:   %r\nipykernel: %r" % (v1, v2))


def tracebacks(result, colours):
    """The error's traceback blocks; without colours, the text only (code is
    coloured by cellbox's own highlighter, not pygments: see display_traceback.py)."""
    n = Norm()
    reply, out, _ = result
    strip = (lambda s: s) if colours else (lambda s: ANSI.sub("", s))
    return [(c["ename"], n.text(c["evalue"]), [strip(n.text(b)) for b in c["traceback"]])
            for t, c, b in out if t == "error"]


for mode in ("Plain", "Minimal", "Verbose"):
    colours = mode != "Verbose"
    for (name, code), r1, r2 in zip(TB_CELLS, ours_tb[mode], theirs_tb[mode]):
        t1, t2 = tracebacks(r1, colours), tracebacks(r2, colours)
        tap.ok(t1 == t2, "%%xmode %s, same traceback as ipykernel%s: %s" % (mode, "" if colours else " (text)", name),
               "cellbox:   %r\nipykernel: %r" % (t1, t2))


# -- cellbox alone: breakpoint(), pdb.set_trace(), interrupts ----------------------------------
def cellbox_only():
    km, kc = du.start("cellbox")
    try:
        reply, out, prompts = collect(kc, "x = 41\nbreakpoint()\nx += 1\nprint('after', x)", ("p x", "n", "p x", "c"))
        text = kutil.stream_text([(t, c) for t, c, b in out])
        tap.ok(reply["status"] == "ok" and prompts == ["(Pdb) "] * 4 and "\n41\n" in text and "\n42\n" in text
               and text.endswith("after 42\n"),
               "breakpoint(): the debugger through input requests, then the cell goes on", (reply, prompts, text))
        reply, out, prompts = collect(kc, "import pdb; pdb.set_trace()\nw = 1\nw", ("n", "p w", "c"))
        text = kutil.stream_text([(t, c) for t, c, b in out])
        tap.ok(reply["status"] == "ok" and len(prompts) == 3 and "\n1\n" in text
               and kutil.results([(t, c) for t, c, b in out]) == ["1"],
               "pdb.set_trace(): next, p, continue; the cell's result", (reply, prompts, text))
        reply, out, prompts = collect(kc, "breakpoint()\nz = 6", (), allow_stdin=False, timeout=20)
        errs = [c for t, c, b in out if t == "error"]
        tap.ok(reply["status"] == "error" and reply["ename"] == "StdinNotImplementedError" and not prompts
               and len(errs) == 1, "breakpoint() without stdin fails at once with StdinNotImplementedError", reply)
        tb = "".join(errs[0]["traceback"]) if errs else ""
        tap.ok(len(re.findall(r"Cell .*In \[\d+\], line 2", tb)) == 1,
               "its traceback shows the cell's frame once", tb[:600])
        reply, out, prompts = collect(kc, "print('alive')")
        tap.ok(kutil.stream_text([(t, c) for t, c, b in out]) == "alive\n", "the kernel goes on after it")

        # %pdb on without stdin: the error alone (ipykernel never replies)
        collect(kc, DEBUG_SETUP + "%pdb on")
        reply, out, prompts = collect(kc, "f(1)", (), allow_stdin=False, timeout=20)
        tap.ok(reply["status"] == "error" and reply["ename"] == "ZeroDivisionError" and not prompts
               and [t for t, c, b in out] == ["error"],
               "%pdb on, a frontend without stdin: the error, no debugger, a reply", (reply, out))
        reply, out, prompts = collect(kc, "f(2)", ("c",))
        tap.ok(reply["status"] == "error" and prompts == ["ipdb> "], "%pdb on with stdin: the debugger", prompts)
        collect(kc, "%pdb off")

        # an interrupt at the debugger's prompt ends the debugger and the cell
        msg_id = kc.execute("%debug", allow_stdin=True)
        req = kc.get_stdin_msg(timeout=30)
        km.interrupt_kernel()
        reply = kc.get_shell_msg(timeout=30)
        while reply["parent_header"].get("msg_id") != msg_id:
            reply = kc.get_shell_msg(timeout=30)
        tap.ok(req["content"]["prompt"] == "ipdb> " and reply["content"]["status"] in ("ok", "error"),
               "an interrupt at the ipdb> prompt ends the debugger", reply["content"])
        time.sleep(0.5)
        while True:   # the interrupted input request must not be answered later
            try:
                kc.get_stdin_msg(timeout=0.2)
            except queue.Empty:
                break
        reply, out, prompts = collect(kc, "print('alive')")
        tap.ok(kutil.stream_text([(t, c) for t, c, b in out]) == "alive\n" and not prompts,
               "the kernel goes on after it, without a debugger", (out, prompts))

        # %%script: a cell and an output larger than a pipe's buffer; an interrupt
        big = "x" * 300000
        reply, out, prompts = collect(kc, "%%%%python3\nimport sys\ndata = %r\nsys.stdout.write(data)\n" % big)
        text = kutil.stream_text([(t, c) for t, c, b in out])
        tap.ok(reply["status"] == "ok" and text == big, "%%python3: 300 kB in and out through the pipes",
               (reply, len(text)))
        msg_id = kc.execute("%%bash\nsleep 30\n")
        time.sleep(1.5)
        t0 = time.time()
        km.interrupt_kernel()
        reply = kc.get_shell_msg(timeout=30)
        while reply["parent_header"].get("msg_id") != msg_id:
            reply = kc.get_shell_msg(timeout=30)
        out = []
        while True:
            m = kc.get_iopub_msg(timeout=10)
            if m["parent_header"].get("msg_id") == msg_id:
                if m["msg_type"] == "status" and m["content"]["execution_state"] == "idle":
                    break
                if m["msg_type"] == "stream":
                    out.append(m["content"]["text"])
        tap.ok(reply["content"]["status"] == "ok" and "".join(out) == "Process is interrupted.\n"
               and time.time() - t0 < 10, "an interrupt stops a %%bash program: 'Process is interrupted.'",
               (reply["content"], out))

        # Verbose mode: argument values, the failing statement's variables;
        # without stack_data, the statement's plain names
        reply, out, prompts = collect(kc, "%xmode Verbose\ndef g(a, b=2):\n    c = a + b\n    return c / 0\ng(1)")
        tb = "".join(c["traceback"][-2] for t, c, b in out if t == "error")
        tap.ok("g\x1b[0;34m(a=1, b=2)" in tb and "c \x1b[0;34m= 3\x1b[0m" in tb,
               "%xmode Verbose: argument values and the failing statement's variables", tb)
        reply, out, prompts = collect(kc, "import sys\nsys.modules['stack_data'] = None\n"
                                          "def h(items, k):\n    total = len(items)\n    return items[k] / total\nh([1], 3)")
        tb = ANSI.sub("", "".join(c["traceback"][-2] for t, c, b in out if t == "error"))
        tap.ok("in h(items=[1], k=3)" in tb and re.search(r"\n {8}total = 1\n {8}items = \[1\]\n {8}k = 3\n", tb),
               "%xmode Verbose without stack_data: the statement's names and values", tb)
        collect(kc, "del sys.modules['stack_data']\n%xmode Context")
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


tap.case(cellbox_only)


@tap.case
def no_import_at_start():
    """The kernel's hot path: nothing of the magics is imported when the
    kernel starts or runs a plain cell."""
    km, kc = du.start("cellbox")
    try:
        collect(kc, "1 + 1")
        reply, out, _ = collect(kc, "import sys\nsorted(m for m in ('pdb', 'bdb', 'cProfile', 'pstats', 'argparse', "
                                    "'getopt', 'IPython', 'stack_data', 'pydoc', 'cellbox._magics') if m in sys.modules)")
        tap.eq(kutil.results([(t, c) for t, c, b in out]), ["[]"],
               "no debugger, profiler, IPython or magics module loaded by a plain cell")
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
