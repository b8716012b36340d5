"""Findings of an adversarial audit of the kernel face, each checked against
ipykernel (kernelspec `python3`) on the same cells where ipykernel is the
reference. Output: TAP.

- Repeated frames in tracebacks: IPython 8 (stack_data) shows a frame whose
  code and line come more than 3 times in a run only at its first two and
  last places, with one "[... skipping similar frames: f at line 1 (N
  times)]" line for the others. cellbox printed every frame: a plain
  RecursionError made a ~1 MB error message, and after
  sys.setrecursionlimit(100000) a ~40 MB one built in 16 s.
- Warnings are shown once per location, as under ipykernel: IPython clears
  __main__'s __warningregistry__ before each cell. cellbox kept it, so a
  warning at line 2 of one cell hid any later warning with the same text at
  line 2 of another cell, and running a cell again showed no warning.
- _i, _ii, _iii are the inputs of the three cells before the current one,
  as in IPython; cellbox had them one cell late (_i was the running cell's
  own input), so exec(_i) ran the current cell again until RecursionError
  instead of rerunning the previous one.
- An input_reply of "\x04" is the end of input: jupyter_client and jupyter
  console send it when their own input ends (Ctrl-D), and ipykernel raises
  EOFError. cellbox returned the character: input() gave "\x04",
  sys.stdin.read() "\x04\n", and pdb (breakpoint(), %debug) read it as a
  command, failed and asked again forever, the kernel busy until
  interrupted.
- os._exit() in a cell publishes what the cell printed first (Python-level
  writes, flushed or not, and fds 1 and 2), then ends the kernel with that
  status: `print('bye', flush=True); os._exit(1)` showed nothing (ipykernel
  shows it), the capture publishing in batches that _exit cut short. A
  forked child's os._exit writes its last partial line.
- %%capture NAME around a cell that raises: as under ipykernel, the error is
  shown with the cell's frames, the cell goes on, and NAME holds what was
  captured until the error. cellbox raised out of the magic: NAME was never
  set (the captured output was lost) and the traceback showed seven frames
  of the kernel's own code.
- SystemExit in a cell (sys.exit(), raise SystemExit(3)) is reported as
  IPython does: "An exception has occurred, use %tb to see the full
  traceback." and the exception's line, then the warning "To exit: use
  'exit', 'quit', or Ctrl-D."; %tb shows the traceback. cellbox showed the
  whole traceback, as for a bug in the code.
- complete_request and inspect_request on a line holding a long name: the
  completer's and the inspector's regular expressions were searched from
  every position of the name, quadratic: 20,000 characters took 2.5 s (5 s
  for `aaa…a+(` in inspect), 300,000 would take minutes, the shell channel
  blocked meanwhile. Now a name chain only starts where a name can, and
  `x[0].re` is completed with x[0]'s attributes (as ipykernel) rather than
  with the global names starting with "re".
- inspect_request (Shift+Tab) on an object whose __doc__ property, or
  signature, raises: the page shows what can be found. The whole request
  failed with "InternalError: inspect_request" (ipykernel sends no reply at
  all).
- history_request "range" in the current session reads start and stop as
  IPython does: negative values count from the end (start -2: the last two
  cells; stop -1: all but the last), a stop of 0 or null is the end.
  cellbox ignored a negative start (returning every cell) and read any
  negative stop as "to the end".
- PEP 678 notes (exc.add_note(), used by pytest, hypothesis, pydantic...)
  are printed under the exception's line, as Python's traceback module
  prints them, in every %xmode. They were left out (as IPython 8.5 does),
  so the explanation they carry was shown nowhere.
- Exception groups (asyncio.TaskGroup's): the sub-exceptions are drawn under
  the group's line as Python's traceback module draws them, with their
  tracebacks. Only "ExceptionGroup: unhandled errors in a TaskGroup (1
  sub-exception)" was shown (as IPython 8.5 does): the error itself was
  hidden.
- An error in a top-level await: the traceback starts at the cell, as under
  ipykernel; it started with asyncio's run_until_complete frame (the
  kernel's runner).
- user_expressions are evaluated only after a cell that succeeded, as
  ipykernel does ({} after an error, an interrupt, and in an aborted
  reply). cellbox evaluated them after a failed cell too (running their
  side effects).
- A forked child's writes (multiprocessing.Pool workers) reach the
  frontend at once, as under ipykernel, and before what the kernel prints
  after hearing from the child. cellbox held a child's partial line until
  the child's exit: it came after the parent's `print(p.map(...))`, and was
  lost when the worker was ended by SIGTERM (Pool.terminate, the end of a
  `with` block). A child's print() is still one write (lines of several
  children do not interleave mid-line, as they do under ipykernel).
- history_request answers as ipykernel (IPython's history manager): a
  range of the current session asked as session 0 says session 0 (cellbox
  said its number) and starts at line 0 (an empty input); raw false gives
  the parsed source (get_ipython().run_line_magic(...)), cellbox gave the
  raw cell; inputs are stored without their trailing newlines; outputs are
  told for the current session's range only (ipykernel keeps no others);
  tail with a negative n leaves out the |n| oldest; search patterns are
  SQLite's GLOB ([^x] negates, [!x] does not, no escape, ? one character).
  Asked by its number, the current session's range keeps that number
  (jupyter_kernel_test's test_history wants it; ipykernel says 0 and fails
  it there).
- A cell's result is shown before it is stored, as IPython's displayhook:
  `_oh` (or `Out`) showed itself among its values ({6: 45, 30: {...}}).
  `_`, `__`, `___` are left alone once the user assigned one of them (the
  `_ = plt.plot(...)` idiom: cellbox overwrote it with the next result),
  and %reset removes them as IPython does.
- `?` alone pages IPython's introduction (cellbox: SyntaxError); %set_env
  takes VAR=VALUE as well as VAR VALUE (cellbox set a variable named
  "ABC=1", an error); %psearch searches the builtins too (f* gave f but not
  filter, float...), with IPython's options (-a, -i, -e/-s NAMESPACE, -l),
  type filter and dotted patterns (re.e*). A name of the kernel's own
  (get_ipython, exit, In...) is the user's once rebound: `from IPython
  import get_ipython` then %who listed nothing; get_ipython is shown as
  IPython's function (was get_shell); __main__.__doc__ is IPython's.
- An interrupted !cmd shows the terminal's ^C and what the command prints
  on its way out (its KeyboardInterrupt handler's "bye"), as under
  ipykernel, which types ^C on the command's terminal; cellbox showed
  neither. An interrupted input() says "Interrupted by user".
"""
import os
import re
import time
from queue import Empty

import display_util as du
import kutil

tap = kutil.TAP()
ANSI = re.compile(r"\x1b\[[0-9;]*m")
TIMES = re.compile(r"\(\d+ times\)")


def strip(s):
    return ANSI.sub("", s)


def error_of(kc, code):
    reply, out = du.collect(kc, code)
    errs = [c for t, c, b in out if t == "error"]
    return reply, (errs[0] if errs else None)


RECURSION_CELLS = [
    # exactly the same blocks as ipykernel (colours aside: IPython leaves
    # some failing expressions, a raise statement's, unhighlighted)
    ("five levels of recursion then an error", "def c(n):\n    if n < 5: return c(n+1)\n    raise ValueError(n)\nc(0)", True),
    ("a method recursing through a helper",
     "class R:\n    def m(self, n):\n        return helper(self, n)\ndef helper(o, n):\n    if n > 6: raise KeyError(n)\n"
     "    return o.m(n + 1)\nR().m(0)", True),
    # deep recursions: the same blocks once the counts of skipped frames
    # (which depend on each kernel's own stack depth) are set aside
    ("RecursionError", "def f(n): return f(n+1)\nf(0)", False),
    ("mutual RecursionError", "def a(n): return b(n)\ndef b(n): return a(n+1)\na(0)", False),
]


def recursion_errors(kernel):
    with du.running(kernel) as (km, kc):
        return [error_of(kc, code) for _, code, _ in RECURSION_CELLS]


@tap.case
def repeated_frames():
    mine = recursion_errors("cellbox")
    ref = recursion_errors("python3")
    for (name, code, exact), (r1, e1), (r2, e2) in zip(RECURSION_CELLS, mine, ref):
        if not tap.ok(e1 is not None and e2 is not None, "%s: an error message from both kernels" % name):
            continue
        t1, t2 = [strip(x) for x in e1["traceback"]], [strip(x) for x in e2["traceback"]]
        if not exact:
            t1 = [TIMES.sub("(N times)", x) for x in t1]
            t2 = [TIMES.sub("(N times)", x) for x in t2]
        tap.eq(t1, t2, "%s: the traceback's blocks are ipykernel's%s" % (name, "" if exact else " (counts aside)"))
        tap.ok(any("skipping similar frames" in strip(x) for x in e1["traceback"]),
               "%s: similar frames are skipped" % name)


@tap.case
def deep_recursion():
    with du.running("cellbox") as (km, kc):
        reply, err = error_of(kc, "import sys\nsys.setrecursionlimit(30000)\ndef g(n): return g(n+1)\ng(0)")
        tap.eq(reply["status"], "error", "RecursionError after setrecursionlimit(30000): an error reply")
        tb = strip("\n".join(err["traceback"])) if err else ""
        tap.ok(len(tb) < 5000, "...its traceback is a few frames, not 30,000", "%d characters" % len(tb))
        m = re.search(r"\[\.\.\. skipping similar frames: g at line 3 \((\d+) times\)\]", tb)
        tap.ok(m is not None and int(m.group(1)) > 20000, "...and says how many frames it skipped",
               tb[-1500:])
        reply, out = du.collect(kc, "sys.setrecursionlimit(3000)\n'still here'")
        tap.eq([c["data"]["text/plain"] for t, c, b in out if t == "execute_result"], ["'still here'"],
               "the kernel goes on")


WARNING_CELLS = [
    "import warnings\ndef w(): warnings.warn('careful', UserWarning)\nw()",
    "w()",                                   # the same function, a later cell
    "warnings.warn('same text, same line')",
    "warnings.warn('same text, same line')",  # another cell, same line number
    "for i in range(3): warnings.warn('in a loop')",   # once within a cell
    "for i in range(3): w()",
]


def warning_counts(kernel):
    with du.running(kernel) as (km, kc):
        counts = []
        for code in WARNING_CELLS:
            reply, out = du.collect(kc, code)
            text = "".join(c["text"] for t, c, b in out if t == "stream" and c["name"] == "stderr")
            counts.append(text.count("Warning: "))
        return counts


@tap.case
def warnings_per_cell():
    mine = warning_counts("cellbox")
    tap.eq(mine, warning_counts("python3"), "warnings shown per cell as under ipykernel")
    tap.eq(mine, [1, 1, 1, 1, 1, 1], "...once per location in each cell")


INPUT_CELLS = [
    ("counter = 0", {}),
    ("counter += 1", {}),
    ("exec(_i); counter", {}),               # reruns `counter += 1`
    ("'c4'", {}),
    ("(_i, _ii, _iii, In[-1] == _i5, len(In))", {}),
    ("'not stored'", {"store_history": False}),   # leaves _i alone
    ("(_i, _ii, _iii)", {}),
]


def input_results(kernel):
    with du.running(kernel) as (km, kc):
        res = []
        for code, kw in INPUT_CELLS:
            reply, out = du.collect(kc, code, **kw)
            res.append((reply["status"], [c["data"]["text/plain"] for t, c, b in out if t == "execute_result"]))
        return res


@tap.case
def previous_inputs():
    mine, ref = input_results("cellbox"), input_results("python3")
    for (code, kw), got, want in zip(INPUT_CELLS, mine, ref):
        tap.eq(got, want, "%r%s: as under ipykernel" % (code, " (store_history false)" if kw else ""))
    tap.eq(mine[2], ("ok", ["2"]), "exec(_i) reruns the previous cell")


EOF_CELLS = [
    ("input() at the end of input", "try:\n    input('name? ')\nexcept EOFError as e:\n    print('EOFError', repr(e))"),
    ("a loop over input() ends", "n = 0\ntry:\n    while n < 100:\n        input(); n += 1\nexcept EOFError:\n    pass\nprint('lines', n)"),
    ("pdb ends at the end of input", "import pdb; pdb.set_trace(); print('after')"),
]


def eof_runs(kernel, cells, answer="\x04"):
    with du.running(kernel) as (km, kc):
        res = []
        for name, code in cells:
            asked = []

            def reply(msg, asked=asked):
                asked.append(msg["content"]["prompt"])
                # an endless debugger gets 'c' (continue) after 50 questions
                kc.input(answer if len(asked) <= 50 else "c")

            out = []
            r = kc.execute_interactive(code, allow_stdin=True, stdin_hook=reply, stop_on_error=False, timeout=60,
                                       output_hook=lambda m: out.append((m["msg_type"], m["content"])))
            text = "".join(c["text"] for t, c in out if t == "stream" and c["name"] == "stdout")
            res.append((r["content"]["status"], r["content"].get("ename"), len(asked), text))
        return res


@tap.case
def end_of_input():
    mine, ref = eof_runs("cellbox", EOF_CELLS), eof_runs("python3", EOF_CELLS)
    for (name, code), got, want in zip(EOF_CELLS, mine, ref):
        tap.ok(got[2] <= 2, "%s: asked %d time(s)" % (name, got[2]), got)
        tap.eq(got[:3], want[:3], "%s: status, error and questions as under ipykernel" % name)
    tap.ok("EOFError EOFError()" in mine[0][3], "input() raises EOFError", mine[0])
    tap.ok("lines 0" in mine[1][3], "...which ends a loop over input()", mine[1])
    stdin_cells = [("sys.stdin", "import sys\nprint(repr(sys.stdin.readline()), repr(sys.stdin.read()), [l for l in sys.stdin])")]
    got = eof_runs("cellbox", stdin_cells)[0]
    tap.ok(got[0] == "ok" and "'' '' []" in got[3], "sys.stdin at the end of input reads '' as a file does", got)
    got = eof_runs("cellbox", [("a line", "print(repr(input()))")], answer="\x04 not alone")[0]
    tap.ok("'\\x04 not alone'" in got[3], "a line holding more than U+0004 is a line", got)


@tap.case
def stdin_without_frontend():
    """allow_stdin false (nbclient, papermill, cellbox run): sys.stdin is at
    its end, as ipykernel's; input() fails as there."""
    cells = ["import sys\nprint(repr(sys.stdin.readline()), repr(sys.stdin.read()), sum(1 for l in sys.stdin), "
             "sys.stdin.readlines())",
             "import fileinput\nprint(sum(1 for l in fileinput.input('-')))",
             "input('x')"]
    res = {}
    for name in ("cellbox", "python3"):
        km, kc = kutil.start(name)
        try:
            res[name] = []
            for code in cells:
                out = []
                r = kc.execute_interactive(code, allow_stdin=False, stop_on_error=False, timeout=30,
                                           output_hook=lambda m: out.append((m["msg_type"], m["content"])))
                res[name].append((r["content"]["status"], r["content"].get("ename"),
                                  "".join(c["text"] for t, c in out if t == "stream" and c["name"] == "stdout")))
        finally:
            kc.stop_channels()
            km.shutdown_kernel(now=True)
    tap.ok(res["cellbox"][0] == ("ok", None, "'' '' 0 []\n"), "sys.stdin reads '' (was StdinNotImplementedError)",
           res["cellbox"][0])
    tap.eq(res["cellbox"], res["python3"], "sys.stdin, fileinput and input() without a frontend: as under ipykernel")


def output_until_death(km, kc, code):
    """Run code that ends the kernel -> ({stream name: text}, exit status)."""
    kc.execute(code)
    texts = {}
    proc = km.provisioner.process
    while True:
        try:
            m = kc.get_iopub_msg(timeout=1)
        except Empty:
            if proc.poll() is not None:
                break   # dead, and nothing more came in a second
            continue
        if m["msg_type"] == "stream":
            name = m["content"]["name"]
            texts[name] = texts.get(name, "") + m["content"]["text"]
    return texts, proc.poll()


@tap.case
def exit_publishes_output():
    with du.running("cellbox") as (km, kc):
        for i in range(3):
            texts, status = output_until_death(km, kc, "import os, sys\nprint('before', flush=True)\n"
                                               "sys.stderr.write('err not flushed\\n')\nos.system('echo from fd 1')\n"
                                               "print('last, no newline', end='')\nos._exit(3)")
            out = texts.get("stdout", "")
            tap.ok("before\n" in out and "from fd 1\n" in out and "last, no newline" in out,
                   "os._exit: what the cell printed is published first (run %d)" % (i + 1), texts)
            tap.eq(texts.get("stderr"), "err not flushed\n", "...stderr too (run %d)" % (i + 1))
            tap.eq(status, 3, "...and the kernel exits with the status given (run %d)" % (i + 1))
            km.restart_kernel(now=True)
            kc.wait_for_ready(timeout=60)
        reply, out = du.collect(kc, "import os\npid = os.fork()\nif pid == 0:\n    print('in the child', end='')\n    os._exit(7)\n"
                                    "_, st = os.waitpid(pid, 0)\nprint('', os.waitstatus_to_exitcode(st))")
        text = "".join(c["text"] for t, c, b in out if t == "stream")
        tap.eq(text, "in the child 7\n", "a forked child's os._exit writes its partial line and exits with its status")


CAPTURE_CELLS = [
    "%%capture cap\nprint('captured')\nimport sys; print('err', file=sys.stderr)\n1/0",
    "cap.stdout, cap.stderr",
    "%%capture\nprint('x')\nraise KeyError('k')",
    "'next'",
]


def capture_runs(kernel):
    with du.running(kernel) as (km, kc):
        res = []
        for code in CAPTURE_CELLS:
            reply, out = du.collect(kc, code)
            res.append((reply["status"], [(t, strip("\n".join(c["traceback"])) if t == "error" else c.get("data"))
                                          for t, c, b in out]))
        return res


@tap.case
def capture_with_error():
    mine, ref = capture_runs("cellbox"), capture_runs("python3")
    for code, got, want in zip(CAPTURE_CELLS, mine, ref):
        tap.eq(got, want, "%r: status and outputs as under ipykernel" % code.split("\n")[0])
    tap.eq(mine[1][1], [("execute_result", {"text/plain": "('captured\\n', 'err\\n')"})],
           "what %%capture kept before the error is in its variable")


EXIT_CELLS = ["import sys; sys.exit()", "raise SystemExit(3)", "%tb", "def f():\n    sys.exit('bye')\nf()"]


def exit_runs(kernel):
    with du.running(kernel) as (km, kc):
        res = []
        for code in EXIT_CELLS:
            reply, out = du.collect(kc, code)
            errs = [c for t, c, b in out if t == "error"]
            stderr = "".join(c["text"] for t, c, b in out if t == "stream" and c["name"] == "stderr")
            tb = errs[0]["traceback"] if errs else None
            if tb and code == "%tb":
                tb = [strip(x) for x in tb]   # IPython leaves a raise unhighlighted
            res.append((reply["status"], reply.get("ename"), reply.get("evalue"),
                        tb, "UserWarning: To exit: use 'exit', 'quit', or Ctrl-D." in stderr))
        return res


def same_as_ipykernel(runs, cells, what):
    """runs(kernel) for cellbox and ipykernel: one comparison per cell."""
    mine, ref = runs("cellbox"), runs("python3")
    for code, got, want in zip(cells, mine, ref):
        tap.eq(got, want, "%r: %s as under ipykernel" % (code, what))


@tap.case
def system_exit():
    same_as_ipykernel(exit_runs, EXIT_CELLS, "reply, error message and warning")


def shell_reply(kc, msg_id, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            m = kc.get_shell_msg(timeout=1)
        except Empty:
            continue
        if m["parent_header"].get("msg_id") == msg_id:
            return m["content"]
    return None


@tap.case
def long_names():
    with du.running("cellbox") as (km, kc):
        name = "a" * 300000
        for code in (name, name + " ", "d['" + name, name + "+(", name + ".x"):
            r = shell_reply(kc, kc.complete(code, len(code)))
            tap.ok(r is not None and r["status"] == "ok", "complete_request on %r (%d characters) is answered"
                   % (code[-4:], len(code)), r and {k: r[k] for k in r if k != "matches"})
            r = shell_reply(kc, kc.inspect(code, len(code)))
            tap.ok(r is not None and r["status"] == "ok", "inspect_request on %r (%d characters) is answered"
                   % (code[-4:], len(code)), r)
        reply, out = du.collect(kc, "'still here'")
        tap.eq(reply["status"], "ok", "the kernel goes on")


def completions(kernel, cells):
    with du.running(kernel) as (km, kc):
        du.collect(kc, "x = [1j]\nrevenue = 1")
        return [shell_reply(kc, kc.complete(code, len(code)))["matches"] for code in cells]


@tap.case
def attribute_of_subscript():
    cells = ["x[0].re", "x[0].imag.re", "reve"]
    for code, got, want in zip(cells, completions("cellbox", cells), completions("python3", cells)):
        tap.eq(got, want, "completion of %r as under ipykernel" % code)


@tap.case
def inspect_hostile_objects():
    with du.running("cellbox") as (km, kc):
        du.collect(kc, "class X:\n    @property\n    def __doc__(self): raise RuntimeError('doc')\n"
                       "    def __getattr__(self, n): raise RuntimeError('getattr ' + n)\nx = X()\n"
                       "class C:\n    def __call__(self): pass\n    @property\n    def __signature__(self): raise RuntimeError('sig')\n"
                       "    @property\n    def __doc__(self): raise RuntimeError('doc')\nc = C()")
        for name, kind in (("x", "X"), ("c", "C")):
            for detail in (0, 1):
                r = shell_reply(kc, kc.inspect(name, len(name), detail))
                text = strip(r.get("data", {}).get("text/plain", "")) if r else ""
                tap.ok(r is not None and r["status"] == "ok" and r["found"] and ("Type: " + kind) in text.replace("  ", " "),
                       "inspect_request on an object whose __doc__ raises (%s, detail %d): its page" % (name, detail), r)


RANGES = [(-2, None), (1, -1), (-3, -1), (2, 4), (3, 0), (5, 100), (-1, -1), (1, None)]


def history_ranges(kernel):
    with du.running(kernel) as (km, kc):
        for code in ["a = 1", "a = 1", "b = 2", "a = 1", "a + b", "a = 1"]:
            du.collect(kc, code)
        du.collect(kc, "'not stored'", store_history=False)
        res = []
        for start, stop in RANGES:
            kw = {"hist_access_type": "range", "session": 0, "start": start, "raw": True, "output": False}
            if stop is not None:
                kw["stop"] = stop
            r = shell_reply(kc, kc.history(**kw))
            res.append([(line, text) for session, line, text in r["history"]])
        return res


@tap.case
def history_range():
    for (start, stop), got, want in zip(RANGES, history_ranges("cellbox"), history_ranges("python3")):
        tap.eq(got, want, "history range start=%s stop=%s as under ipykernel" % (start, stop))


NOTE_CELLS = [
    "e = ValueError('noted'); e.add_note('note one'); e.add_note('two\\nlines'); raise e",
    "class N:\n    def __str__(self): raise RuntimeError\ne = TypeError('t'); e.__notes__ = [N(), 5]; raise e",
    "e = KeyError('k'); e.__notes__ = 42; raise e",
    "raise ValueError('no notes')",
]


@tap.case
def exception_notes():
    import traceback
    with du.running("cellbox") as (km, kc):
        for mode in ("Context", "Verbose", "Plain", "Minimal"):
            du.collect(kc, "%xmode " + mode)
            for code in NOTE_CELLS:
                reply, err = error_of(kc, code)
                # what Python's own traceback module prints after the exception's line
                ns = {}
                try:
                    exec(code, ns)
                except Exception as e:
                    want = "".join(traceback.format_exception_only(type(e), e)).rstrip("\n")
                got = strip("".join(err["traceback"][-1:])).rstrip("\n") if err else None
                if mode == "Plain":
                    got = got.lstrip() if got else got
                tap.eq(got, want, "%s: the exception's line and its notes as Python prints them (%s)" % (code.split("\n")[0].split(";")[0][:30], mode))


GROUP_CELLS = [
    "raise ExceptionGroup('grp', [ValueError('v1'), ExceptionGroup('nested', [KeyError('k')])])",
    "import asyncio\nasync def bad(): raise RuntimeError('task failed')\nasync def main():\n"
    "    async with asyncio.TaskGroup() as tg:\n        tg.create_task(bad())\nawait main()",
]


@tap.case
def exception_groups():
    with du.running("cellbox") as (km, kc):
        for mode in ("Context", "Plain"):
            du.collect(kc, "%xmode " + mode)
            for code in GROUP_CELLS:
                reply, err = error_of(kc, code)
                last = strip(err["traceback"][-1]) if err else ""
                tap.ok("+-+---------------- 1 ----------------" in last and "+------------------------------------" in last,
                       "%s: the sub-exceptions are drawn under the group (%s)"
                       % ("a nested ExceptionGroup" if "grp" in code else "a TaskGroup's error", mode), last)
                tap.ok(("KeyError: 'k'" in last and "ValueError: v1" in last) if "grp" in code else
                       ("RuntimeError: task failed" in last and "in bad" in last),
                       "...with their messages and tracebacks (%s)" % mode, last)


def await_error_frames(kernel):
    with du.running(kernel) as (km, kc):
        reply, err = error_of(kc, "import asyncio\nasync def boom(): raise ValueError('x')\nawait boom()")
        return [strip(b).split("\n")[0] for b in err["traceback"][2:-1]] if err else None


@tap.case
def top_level_await_error():
    tap.eq(await_error_frames("cellbox"), await_error_frames("python3"),
           "an error in a top-level await: the same frames as under ipykernel (from the cell)")


UE = {"two": "1 + 1", "side": "calls.append('evaluated')"}


def user_expression_runs(kernel):
    with du.running(kernel) as (km, kc):
        res = []
        du.collect(kc, "calls = []")
        for code in ("1/0", "raise KeyboardInterrupt", "x = 1"):
            reply, out = du.collect(kc, code, user_expressions=UE)
            ue = reply.get("user_expressions")
            res.append((code, reply["status"], ue and {k: (v["status"], v.get("data")) for k, v in ue.items()}))
        # an execute queued behind a failing one (stop_on_error) is aborted
        first = kc.execute("import time; time.sleep(0.5); 1/0", stop_on_error=True)
        second = kc.execute("'not run'", user_expressions=UE)
        for mid in (first, second):
            r = shell_reply(kc, mid)
            res.append(("queued", r["status"], r.get("user_expressions", {})))
        # ipykernel aborts what arrives while it still aborts the queue behind
        # the failure (its timing, not the point here): ask again then
        for _ in range(5):
            reply, out = du.collect(kc, "calls")
            if reply.get("status") != "aborted":
                break
        res.append([c["data"]["text/plain"] for t, c, b in out if t == "execute_result"])
        return res


@tap.case
def user_expressions_after_failure():
    mine, ref = user_expression_runs("cellbox"), user_expression_runs("python3")
    for got, want in zip(mine, ref):
        tap.eq(got, want, "user_expressions: %r as under ipykernel" % (got[0] if isinstance(got, tuple) else "calls"))
    tap.eq(mine[-1], ["['evaluated']"], "the expressions ran after the cell that succeeded only")


POOL = "import multiprocessing as mp\ndef f(x):\n    print('partial', x, end='')\n    return x\n"
CHILD_CELLS = [
    ("a Pool's workers (with block)", POOL + "with mp.Pool(2) as p: print(p.map(f, range(4)))"),
    ("a Pool's workers (terminate)", POOL + "p = mp.Pool(2)\nprint(p.map(f, range(4)))\np.terminate()\np.join()"),
    ("an os.fork child", "import os\npid = os.fork()\nif pid == 0:\n    print('child', end='')\n    os._exit(0)\n"
                         "os.waitpid(pid, 0)\nprint('parent')"),
]


def child_outputs(kernel, rounds=3):
    with du.running(kernel) as (km, kc):
        res = []
        for name, code in CHILD_CELLS:
            for i in range(rounds):
                reply, out = du.collect(kc, code)
                res.append((reply["status"], "".join(c["text"] for t, c, b in out
                                                     if t == "stream" and c["name"] == "stdout")))
        return res


@tap.case
def forked_children_partial_lines():
    mine, ref = child_outputs("cellbox"), child_outputs("python3")
    rounds = len(mine) // len(CHILD_CELLS)
    for i, ((s1, t1), (s2, t2)) in enumerate(zip(mine, ref)):
        name, code = CHILD_CELLS[i // rounds]
        tail = "[0, 1, 2, 3]\n" if "Pool" in name else "parent\n"
        # (ipykernel's order is the same, but not checked: not the kernel under test.
        # For os.fork, ipykernel 6.17 now and then loses the child's partial line
        # or puts it after the parent's (a race of its own; CI saw 'parent\n'):
        # the reference is then the text it gives otherwise)
        want = t2 if "Pool" in name or sorted(t2) == sorted("childparent\n") else "childparent\n"
        tap.ok(s1 == s2 == "ok" and t1.endswith(tail) and sorted(t1) == sorted(want),
               "%s, run %d: the children's partial lines come before the parent's line, as under ipykernel "
               "(the same text, the children's in any order)" % (name, i % rounds + 1), "got:  %r\nwant: %r" % (t1, t2))
        if "Pool" in name:
            tap.ok(re.fullmatch(r"(partial [0-3]){4}\[0, 1, 2, 3\]\n", t1),
                   "...each print() of a worker whole", t1)
        else:
            # ipykernel's text, which it gives but for a race of its own (now
            # and then the child's partial line comes after the parent's)
            tap.eq(t1, "childparent\n", "...the same text")


HISTORY_SESSIONS = [
    ["a = 1", "a + 1", "%pwd"],
    ["x = 5", "x * 2", "!true", "y = 1\n\n", "1/0", "%%capture\nprint(1)", "é = 1", "a = 1", "x"],
]
HISTORY_QUERIES = [
    {"hist_access_type": "tail", "n": 4},
    {"hist_access_type": "tail", "n": 20},
    {"hist_access_type": "tail", "n": -2},
    {"hist_access_type": "range", "session": 0, "start": 1},
    {"hist_access_type": "range", "session": 0, "start": 0, "stop": 3},
    {"hist_access_type": "range", "session": -1, "start": 1},
    {"hist_access_type": "range", "session": 1, "start": 2},
    {"hist_access_type": "search", "pattern": "*a*"},
    {"hist_access_type": "search", "pattern": "*a*", "n": 2},
    {"hist_access_type": "search", "pattern": "*", "unique": True},
    {"hist_access_type": "search", "pattern": "x*", "unique": True, "n": 2},
    {"hist_access_type": "search", "pattern": "? = 1"},             # ? is one character, é too
    {"hist_access_type": "search", "pattern": "[^a-p]*"},           # SQLite's GLOB: ^ negates
    {"hist_access_type": "search", "pattern": "[!x]*"},             # ...and ! does not
]


def history_answers(kernel):
    """Two sessions in a history of their own, then every query of
    HISTORY_QUERIES with raw and output true and false, from the second."""
    import os
    import tempfile
    d = tempfile.mkdtemp(dir=kutil.TMP)
    env = dict(os.environ, XDG_DATA_HOME=d, IPYTHONDIR=d)
    for cells in HISTORY_SESSIONS:
        km, kc = kutil.start(kernel, env=env)
        try:
            for code in cells:
                du.collect(kc, code)
            if cells is not HISTORY_SESSIONS[-1]:
                continue
            res = []
            for q in HISTORY_QUERIES:
                res.append([shell_reply(kc, kc.history(**dict(q, raw=raw, output=output)))
                            for raw in (True, False) for output in (False, True)])
            # the current session by its number: IPython numbers its lines 0
            # all the same, cellbox with the number (jupyter_kernel_test's
            # test_history wants it back, and fails ipykernel there)
            res.append(shell_reply(kc, kc.history(hist_access_type="range", session=2, start=-3, raw=True,
                                                  output=False)))
            return res
        finally:
            kc.stop_channels()
            # a first session ends as a frontend ends it: IPython writes its
            # history database from a thread, and at exit
            km.shutdown_kernel(now=cells is HISTORY_SESSIONS[-1])


@tap.case
def history_access():
    mine, ref = history_answers("cellbox"), history_answers("python3")
    for q, got, want in zip(HISTORY_QUERIES, mine, ref):
        tap.eq(got, want, "history_request %s: as under ipykernel (raw and output true and false)"
               % " ".join("%s=%s" % kv for kv in q.items()))
    tap.eq((mine[-1], ref[-1]["history"]),
           ({"status": "ok", "history": [[2, 7, "é = 1"], [2, 8, "a = 1"], [2, 9, "x"]]},
            [[0, 7, "é = 1"], [0, 8, "a = 1"], [0, 9, "x"]]),
           "history_request range of the current session by its number: the entries say that number "
           "(ipykernel's say 0)")


SHELL_CELLS = [
    "print(__doc__)", "10", "20", "_oh", "_, __, ___", "_ = 5", "30", "_, __", "Out", "%reset -f", "_", "50", "_",
    "?", "%set_env ABC=1", "%set_env DEF two words", "%set_env", "%env ABC", "import os; os.environ['DEF']",
    "def f(): pass\nabc = 1", "%psearch f*", "%psearch a*", "%psearch -e builtin a*", "%psearch a* function",
    "import re", "%psearch re.e*", "%psearch -i F*", "%psearch -l",
    "from IPython import get_ipython\n%who_ls", "%whos",
]


def shell_runs(kernel):
    with du.running(kernel) as (km, kc):
        res = []
        for code in SHELL_CELLS:
            reply, out = du.collect(kc, code)
            msgs = [(t, c.get("name"), du.Normalizer().text(c.get("text") or ""), c.get("ename"), c.get("evalue"),
                     (c.get("data") or {}).get("text/plain")) for t, c, b in du.merge_streams(out)]
            res.append(((reply["status"], reply.get("ename"), reply.get("evalue"), reply.get("payload")), msgs))
        return res


@tap.case
def results_and_help():
    same_as_ipykernel(shell_runs, SHELL_CELLS, "reply, payload and output")


# a command that says bye when interrupted
BYE = os.path.join(kutil.TMP, "bye.py")
with open(BYE, "w") as f:
    f.write("import time\nprint('ready', flush=True)\ntry:\n    time.sleep(60)\n"
            "except KeyboardInterrupt:\n    print('bye')\n")
# (code, what comes before the interrupt is sent: a stream text, "stdin" for
# an input request, None for no interrupt)
INTERRUPT_CELLS = [
    ("!python3 " + BYE, "ready"),
    ("input('? ')", "stdin"),
    ("print('alive')", None),
]


def interrupted_runs(kernel):
    with du.running(kernel) as (km, kc):
        res = []
        for code, wait_for in INTERRUPT_CELLS:
            msg_id = kc.execute(code, allow_stdin=True, stop_on_error=False)
            out, sent = [], wait_for is None
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                if wait_for == "stdin" and not sent:
                    try:
                        kc.get_stdin_msg(timeout=0.05)
                        km.interrupt_kernel()
                        sent = True
                    except Empty:
                        pass
                try:
                    m = kc.get_iopub_msg(timeout=0.05)
                except Empty:
                    continue
                if m["parent_header"].get("msg_id") != msg_id:
                    continue
                t, c = m["msg_type"], m["content"]
                if t == "status" and c["execution_state"] == "idle":
                    break
                if t == "stream":
                    if out and isinstance(out[-1], str):
                        out[-1] += c["text"]
                    else:
                        out.append(c["text"])
                    if not sent and wait_for in out[-1]:
                        km.interrupt_kernel()
                        sent = True
                elif t == "error":
                    out.append((c["ename"], c["evalue"]))
            reply = shell_reply(kc, msg_id)
            res.append((reply["status"], reply.get("ename"), reply.get("evalue"), out))
        return res


def input_wait_form(run):
    """ipykernel 6.17 says KeyboardInterrupt('Interrupted by user') when the
    SIGINT lands in its wait for the input_reply, and a bare one when it
    lands just before that wait (its input_request already out): timing
    (CI saw both). cellbox is in its wait once the request is out, so the
    first form is the reference."""
    status, ename, evalue, out = run
    fix = lambda v: "Interrupted by user" if v == "" else v  # noqa: E731
    return (status, ename, fix(evalue) if ename == "KeyboardInterrupt" else evalue,
            [(o[0], fix(o[1])) if isinstance(o, tuple) and o[0] == "KeyboardInterrupt" else o for o in out])


@tap.case
def interrupts():
    mine, ref = interrupted_runs("cellbox"), interrupted_runs("python3")
    for (code, wait_for), got, want in zip(INTERRUPT_CELLS, mine, ref):
        if wait_for == "stdin":
            want = input_wait_form(want)
        tap.eq(got, want, "interrupted %r: reply and output as under ipykernel" % code)
