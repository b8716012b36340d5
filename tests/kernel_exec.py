"""The cellbox kernel driven by Debian's jupyter_client: execution semantics
as users know them from IPython, streams, stdin, comms, magics, completion,
inspection, history. Output: TAP."""
import json
import os
import re
import time

import kutil
from kutil import run, stream_text, results

tap = kutil.TAP()
km, kc = kutil.start()


@tap.case
def kernel_info():
    kc.kernel_info()
    c = kc.get_shell_msg(timeout=10)["content"]
    li = c["language_info"]
    tap.eq(c["status"], "ok", "kernel_info status ok")
    tap.ok(c["protocol_version"] >= "5.3", "protocol version 5.3 or later")
    for key in ("name", "version", "mimetype", "file_extension", "pygments_lexer", "codemirror_mode", "nbconvert_exporter"):
        tap.ok(key in li, "language_info has %s" % key)
    tap.eq(li["name"], "python", "language is python")
    tap.ok(c["implementation"] == "cellbox" and c["implementation_version"] and c["banner"] and c["help_links"],
           "implementation, implementation_version, banner, help_links")


@tap.case
def parent_header():
    msg_id = kc.execute("import _cellbox_c, json\njson.loads(_cellbox_c.parent_header())['msg_id']")
    got = None
    while got is None:
        m = kc.get_iopub_msg(timeout=10)
        if m["msg_type"] == "execute_result" and m["parent_header"]["msg_id"] == msg_id:
            got = m["content"]["data"]["text/plain"]
    kc.get_shell_msg(timeout=10)
    tap.eq(got, repr(msg_id), "the interpreter sees the header of the request it runs")


@tap.case
def lightweight_start():
    r, out = run(kc, "import sys\nsorted(m for m in ('IPython', 'numpy', 'matplotlib', 'jedi', 'pandas') if m in sys.modules)")
    tap.eq(results(out), ["[]"], "nothing heavy (IPython, numpy, matplotlib, jedi) is imported by the kernel itself")


@tap.case
def results_and_history_vars():
    r, out = run(kc, "x = 21\nx * 2")
    tap.eq(results(out), ["42"], "final expression becomes execute_result")
    n = r["execution_count"]
    r, out = run(kc, "_ + 1")
    tap.eq(results(out), ["43"], "_ is the last result")
    r, out = run(kc, "(__, _%d, Out[%d], In[%d])" % (n, n, n))
    tap.eq(results(out), ["(42, 42, 42, 'x = 21\\nx * 2')"], "__, _N, Out[N], In[N]")
    r, out = run(kc, "x * 3;")
    tap.eq(results(out), [], "trailing ; suppresses the result")
    r, out = run(kc, "x * 3  ;  # comment")
    tap.eq(results(out), [], "trailing ; with a comment suppresses the result")
    r, out = run(kc, "print('a')\nNone")
    tap.eq(results(out), [], "None is not displayed")
    r, out = run(kc, "for i in range(2):\n    i")
    tap.eq(results(out), [], "expressions inside blocks are not displayed")
    r, out = run(kc, "y = 5")
    tap.eq(results(out), [], "an assignment has no result")
    r, out = run(kc, "import asyncio\nawait asyncio.sleep(0)\n7")
    tap.eq(results(out), ["7"], "top-level await works")


@tap.case
def counter_rules():
    r1, _ = run(kc, "1")
    r2, _ = run(kc, "2")
    tap.eq(r2["execution_count"], r1["execution_count"] + 1, "counter advances with store_history")
    r3, out = run(kc, "3", store_history=False)
    tap.eq(r3["execution_count"], r2["execution_count"], "store_history=False does not advance it")
    r4, out = run(kc, "4", silent=True)
    tap.eq([t for t, _ in out], [], "silent: no execute_input, no result")
    r5, out = run(kc, "")
    r6, _ = run(kc, "6")
    tap.eq(r6["execution_count"], r2["execution_count"] + 1, "silent and empty cells do not advance the counter")
    ins = [c for t, c in out if t == "execute_input"]


@tap.case
def errors():
    r, out = run(kc, "1/0")
    tap.eq((r["status"], r["ename"], r["evalue"]), ("error", "ZeroDivisionError", "division by zero"),
           "exception: ename is the class name")
    errs = [c for t, c in out if t == "error"]
    tap.eq(len(errs), 1, "exactly one error output")
    tb = re.sub(r"\x1b\[[0-9;]*m", "", "\n".join(errs[0]["traceback"]))
    tap.ok("1/0" in tb and "_kernel.py" not in tb and "<cellbox>" not in tb,
           "traceback shows the user's code, no kernel frames", tb)
    r, out = run(kc, "def f():\n    return g()\ndef g():\n    raise KeyError('k')\nf()")
    tb = re.sub(r"\x1b\[[0-9;]*m", "", "\n".join(r["traceback"]))
    tap.ok(r["ename"] == "KeyError" and "return g()" in tb and "raise KeyError" in tb,
           "nested frames are all shown", tb)
    r, out = run(kc, "x = (1,")
    tap.eq((r["status"], r["ename"]), ("error", "SyntaxError"), "SyntaxError reported")
    r, out = run(kc, "raise SystemExit(3)")
    tap.eq((r["status"], r["ename"]), ("error", "SystemExit"), "SystemExit is an error")
    r, out = run(kc, "import sys; sys.exit()")
    r, out = run(kc, "'still alive'")
    tap.eq(results(out), ["'still alive'"], "SystemExit does not kill the kernel")


@tap.case
def stop_on_error():
    ids = [kc.execute("raise ValueError('boom')"), kc.execute("print('never')"), kc.execute("2")]
    replies = {}
    deadline = time.time() + 20
    while len(replies) < 3 and time.time() < deadline:
        m = kc.get_shell_msg(timeout=10)
        replies[m["parent_header"]["msg_id"]] = m["content"]["status"]
    tap.eq([replies.get(i) for i in ids], ["error", "aborted", "aborted"],
           "queued executes after an error are aborted")
    ids = [kc.execute("raise ValueError('boom')", stop_on_error=False), kc.execute("3")]
    replies = {}
    while len(replies) < 2 and time.time() < deadline + 20:
        m = kc.get_shell_msg(timeout=10)
        replies[m["parent_header"]["msg_id"]] = m["content"]["status"]
    tap.eq([replies.get(i) for i in ids], ["error", "ok"], "stop_on_error=False runs the next cell")
    # a client that sends the next cell as soon as it sees the error reply
    # (before the idle status): that cell was not queued behind the error
    got = []
    for _ in range(5):
        kc.execute("1/0")
        kc.get_shell_msg(timeout=10)
        nxt = kc.execute("4")
        while True:
            m = kc.get_shell_msg(timeout=10)
            if m["parent_header"]["msg_id"] == nxt:
                got.append(m["content"]["status"])
                break
    tap.eq(got, ["ok"] * 5, "a cell sent on receiving an error reply runs (is not aborted)")
    time.sleep(0.2)
    while True:
        try:
            kc.get_iopub_msg(timeout=0.2)
        except Exception:
            break


@tap.case
def user_expressions():
    r, out = run(kc, "a = 6", user_expressions={"double": "a*2", "bad": "1/0"})
    ue = r["user_expressions"]
    tap.eq(ue["double"], {"status": "ok", "data": {"text/plain": "12"}, "metadata": {}}, "user expression ok")
    tap.eq((ue["bad"]["status"], ue["bad"]["ename"]), ("error", "ZeroDivisionError"), "user expression error")


@tap.case
def streams():
    r, out = run(kc, "import sys\nprint('o1')\nprint('e1', file=sys.stderr)\nprint('o2')")
    seq = [(c["name"], c["text"]) for t, c in out if t == "stream"]
    tap.eq(seq, [("stdout", "o1\n"), ("stderr", "e1\n"), ("stdout", "o2\n")], "stdout/stderr order kept")
    r, out = run(kc, "import os\nos.system('echo from-subprocess; echo to-stderr 1>&2')")
    tap.eq(stream_text(out), "from-subprocess\n", "subprocess fd 1 captured")
    tap.eq(stream_text(out, "stderr"), "to-stderr\n", "subprocess fd 2 captured")
    # what a subprocess wrote before the print that follows it comes first
    # (the kernel reads the fd pipes before a print, not only when its pump
    # gets to it); an os.write before a print likewise
    r, out = run(kc, "import subprocess\nfor i in range(300):\n    subprocess.run(['echo', 'c%d' % i])\n"
                     "    print('p%d' % i)", timeout=120)
    want = "".join("c%d\np%d\n" % (i, i) for i in range(300))
    got = stream_text(out)
    tap.ok(got == want, "300 times a subprocess's line then a print: in that order",
           next(("line %d: %r" % (i, got.split("\n")[i - 2:i + 3]) for i, (a, b) in
                 enumerate(zip(got.split("\n"), want.split("\n"))) if a != b), got[-200:]))
    r, out = run(kc, "import os\nos.write(1, b'raw\\n')\nprint('a\\x00b')")
    tap.eq(stream_text(out), "raw\na\x00b\n", "an os.write then a print: in that order")
    r, out = run(kc, "import ctypes\nlibc = ctypes.CDLL(None)\nlibc.printf(b'from C\\n'); None")
    tap.eq(stream_text(out), "from C\n", "C-level printf captured")
    r, out = run(kc, "for i in range(100000): print(i)", timeout=120)
    text = stream_text(out)
    lines = text.split("\n")
    tap.ok(len(lines) == 100001 and lines[0] == "0" and lines[99999] == "99999" and
           all(lines[i] == str(i) for i in range(0, 100000, 997)), "100k printed lines arrive complete and in order",
           "got %d lines" % len(lines))
    tap.ok(sum(1 for t, _ in out if t == "stream") < 1000, "stream output is batched")
    r, out = run(kc, "print('caf\\u00e9 \\u2603 \\U0001F600')")
    tap.eq(stream_text(out), "caf\u00e9 \u2603 \U0001F600\n", "non-ASCII text kept")
    r, out = run(kc, "import os; os.write(1, b'bad \\xff\\xfe bytes\\n'); None")
    tap.eq(stream_text(out), "bad \ufffd\ufffd bytes\n", "invalid UTF-8 from fd 1 is replaced, not lost")
    r, out = run(kc, "import sys; sys.stdout.write('no newline'); sys.stdout.flush()")
    tap.eq(stream_text(out), "no newline", "partial line is published at the end of the cell")
    r, out = run(kc, "import time\nprint('before', flush=True)\ntime.sleep(0.5)\nprint('after')")
    tap.eq(stream_text(out), "before\nafter\n", "output across a sleep")
    # output is published while the cell still runs, not only at its end
    msg_id = kc.execute("import time\nprint('early')\ntime.sleep(3)\nprint('late')")
    first = None
    deadline = time.time() + 20
    while first is None and time.time() < deadline:
        m = kc.get_iopub_msg(timeout=10)
        if m["parent_header"].get("msg_id") == msg_id and m["msg_type"] == "stream":
            first = m["content"]["text"]
    try:
        kc.get_shell_msg(timeout=0)
        got_reply = True
    except Exception:
        got_reply = False
    tap.ok(first == "early\n" and not got_reply, "output appears while the cell runs", (first, got_reply))
    if not got_reply:
        kc.get_shell_msg(timeout=10)
    while True:
        m = kc.get_iopub_msg(timeout=10)
        if m["parent_header"].get("msg_id") == msg_id and m["msg_type"] == "status" and m["content"]["execution_state"] == "idle":
            break
    r, out = run(kc, "import multiprocessing as mp\ndef sq(x):\n    print('child', x)\n    return x * x\n"
                     "with mp.Pool(2) as p:\n    print(sorted(p.map(sq, [1, 2, 3])))\n"
                     "import os\npid = os.fork()\nif pid == 0:\n    print('forked'); os._exit(0)\nos.waitpid(pid, 0); None",
             timeout=60)
    text = stream_text(out)
    tap.ok(r["status"] == "ok" and "[1, 4, 9]" in text and "child 2" in text and "forked" in text,
           "multiprocessing and os.fork children: output captured", (r.get("evalue"), text, stream_text(out, "stderr")))


@tap.case
def big_writes():
    """A huge write is not held whole by the kernel: it leaves in messages
    straight from the string (VmHWM, the peak resident size, is reset by
    /proc/PID/clear_refs before the cell). The bound: the string itself plus
    64 MiB for the messages in flight (one being escaped, ZeroMQ's copies);
    the kernel used to copy the string (300 MB more), and a non-ASCII str
    twice more (its UTF-8 cached on the str, then copied)."""
    import hashlib
    pid = km.provisioner.process.pid

    def peak_during(code, want):
        """-> (stream runs as [(name, bytes, sha256)], stream messages, VmHWM growth in MiB)"""
        runs = []

        def hook(m):
            if m["msg_type"] != "stream":
                return
            c = m["content"]
            if not runs or runs[-1][0] != c["name"]:
                runs.append([c["name"], 0, hashlib.sha256(), 0])
            b = c["text"].encode()
            runs[-1][1] += len(b)
            runs[-1][2].update(b)
            runs[-1][3] += 1
        kutil.run(kc, "import gc; gc.collect()")
        with open("/proc/%d/status" % pid) as f:
            rss0 = [int(l.split()[1]) for l in f if l.startswith("VmRSS")][0]
        with open("/proc/%d/clear_refs" % pid, "w") as f:
            f.write("5")
        kc.execute_interactive(code, output_hook=hook, timeout=300)
        with open("/proc/%d/status" % pid) as f:
            hwm = [int(l.split()[1]) for l in f if l.startswith("VmHWM")][0]
        got = [(n, size, h.hexdigest()) for n, size, h, _ in runs]
        exp = [(n, len(t), hashlib.sha256(t).hexdigest()) for n, t in want]
        return got == exp, [k for _, _, _, k in runs], (hwm - rss0) / 1024

    n = 300_000_000
    same, parts, grew = peak_during(
        "import sys\nsys.stdout.write('a\\u00e9'); sys.stderr.write('E1')\nprint('x' * %d)\n"
        "sys.stderr.write('E2'); print('end')" % n,
        [("stdout", "aé".encode()), ("stderr", b"E1"), ("stdout", b"x" * n + b"\n"), ("stderr", b"E2"),
         ("stdout", b"end\n")])
    tap.ok(same and parts[2] >= 30, "print of a 300 MB str: every byte, in order, in several messages",
           (same, parts))
    tap.ok(grew < n / 2**20 + 64, "...the kernel's peak grew by %d MiB: the string and at most 64 MiB more" % grew)

    k = 10_000_000  # 30M characters of 4 bytes (120 MB), 90 MB of UTF-8
    same, parts, grew = peak_during(
        "s = '\\u00e9\\u2603\\U0001F600' * %d\nprint('<', end='')\nsys.stdout.write(s)\nprint('>')\ndel s" % k,
        [("stdout", "<".encode() + "\u00e9\u2603\U0001F600".encode() * k + b">\n")])
    tap.ok(same and parts[0] >= 10, "write of a 90 MB non-ASCII str: every character, in order, in several messages",
           (same, parts))
    tap.ok(grew < 4 * 3 * k / 2**20 + 64,
           "...the kernel's peak grew by %d MiB: the string and at most 64 MiB more" % grew)


@tap.case
def stdin():
    r, out = run(kc, "input('x')", allow_stdin=False)
    tap.ok(r["status"] == "error" and "StdinNotImplementedError" in r["ename"],
           "input() with allow_stdin=False fails at once", r)
    prompts = []

    def answer(m):
        prompts.append((m["content"]["prompt"], m["content"]["password"]))
        kc.input("secret" if m["content"]["password"] else "Ada")

    r = kc.execute_interactive("name = input('Name? ')\nimport getpass\npw = getpass.getpass('PW: ')\n(name, pw)",
                               stdin_hook=answer, output_hook=lambda m: None, allow_stdin=True, timeout=30)
    tap.eq(prompts, [("Name? ", False), ("PW: ", True)], "input and getpass prompts, password flag")
    r, out = run(kc, "(name, pw)")
    tap.eq(results(out), ["('Ada', 'secret')"], "the values reach the code")


@tap.case
def comms():
    msg = kc.session.msg("comm_open", {"comm_id": "c1", "target_name": "no.such.target", "data": {}})
    kc.shell_channel.send(msg)
    closed = False
    deadline = time.time() + 10
    while time.time() < deadline and not closed:
        m = kc.get_iopub_msg(timeout=5)
        closed = m["msg_type"] == "comm_close" and m["content"]["comm_id"] == "c1"
    tap.ok(closed, "comm_open to an unknown target is answered with comm_close")
    r, out = run(kc, "from cellbox._comm import get_comm_manager\n"
                     "got = []\n"
                     "def target(comm, msg):\n"
                     "    comm.on_msg(lambda m: (got.append(m['content']['data']), comm.send({'echo': m['content']['data']})))\n"
                     "get_comm_manager().register_target('echo', target)")
    kc.shell_channel.send(kc.session.msg("comm_open", {"comm_id": "c2", "target_name": "echo", "data": {}}))
    kc.shell_channel.send(kc.session.msg("comm_msg", {"comm_id": "c2", "data": {"v": 1}}))
    echo = None
    deadline = time.time() + 10
    while time.time() < deadline and echo is None:
        m = kc.get_iopub_msg(timeout=5)
        if m["msg_type"] == "comm_msg" and m["content"]["comm_id"] == "c2":
            echo = m["content"]["data"]
    tap.eq(echo, {"echo": {"v": 1}}, "comm_msg reaches the target and it answers")
    kc.comm_info(target_name="echo")
    info = kc.get_shell_msg(timeout=10)["content"]
    tap.eq(info["comms"], {"c2": {"target_name": "echo"}}, "comm_info lists open comms by target")


@tap.case
def magics():
    r, out = run(kc, "%pwd")
    tap.eq(results(out), [repr(os.getcwd())], "%pwd")
    r, out = run(kc, "%cd /tmp")
    tap.ok(stream_text(out).strip() == "/tmp", "%cd changes folder")
    r, out = run(kc, "import os; os.getcwd()")
    tap.eq(results(out), ["'/tmp'"], "%cd persists")
    r, out = run(kc, "%env CELLBOX_T=1\nimport os; os.environ['CELLBOX_T']")
    tap.eq(results(out), ["'1'"], "%env sets a variable")
    r, out = run(kc, "%time sum(range(10))")
    tap.ok("Wall time" in stream_text(out) and results(out) == ["45"], "%time prints timing and returns the value")
    r, out = run(kc, "%%time\nz = 3\n")
    tap.ok("Wall time" in stream_text(out), "%%time")
    r, out = run(kc, "%timeit -n 10 -r 2 sum(range(10))")
    tap.ok("per loop" in stream_text(out), "%timeit", stream_text(out))
    r, out = run(kc, "!echo bang")
    tap.eq(stream_text(out), "bang\r\n", "!command output streamed (on a terminal, as IPython)")
    r, out = run(kc, "!python3 -c 'import sys; print(sys.stdout.isatty())'; exit 3\n_exit_code")
    tap.eq((stream_text(out), results(out)), ("True\r\n", ["3"]), "!command runs on a terminal; _exit_code")
    r, out = run(kc, "files = !echo one; echo two\nfiles")
    tap.eq(results(out), ["['one', 'two']"], "x = !command captures lines")
    r, out = run(kc, "%%capture cap\nprint('hidden out')\nimport sys; print('hidden err', file=sys.stderr)\n"
                     "from IPython.display import HTML, display\ndisplay(HTML('<i>hidden</i>'))\n42")
    tap.eq([t for t, _ in out if t != "execute_input"], [], "%%capture shows nothing")
    r, out = run(kc, "(cap.stdout, cap.stderr, [o.data.get('text/html') or o.data['text/plain'] for o in cap.outputs])")
    tap.eq(results(out), ["('hidden out\\n', 'hidden err\\n', ['<i>hidden</i>', '42'])"], "%%capture keeps stdout, stderr and outputs")
    r, out = run(kc, "cap()")
    tap.ok(stream_text(out) == "hidden out\n" and any(t == "display_data" for t, _ in out), "a CapturedIO replays its outputs")
    r, out = run(kc, "%nosuchmagic")
    tap.ok(r["status"] == "error" and r["ename"] == "UsageError" and "nosuchmagic" in r["evalue"],
           "unknown magic: a clear UsageError, not a SyntaxError", r)
    r, out = run(kc, "%matplotlib inline")
    tap.eq(r["status"], "ok", "%matplotlib inline")
    r, out = run(kc, "len?")
    pages = [p for p in r["payload"] if p["source"] == "page"]
    tap.ok(len(pages) == 1 and "Return the number of items" in pages[0]["data"]["text/plain"], "obj? gives a page payload")
    r, out = run(kc, "def documented():\n    'doc here'\n    return 1")
    r, out = run(kc, "documented??")
    page = re.sub(r"\x1b\[[0-9;]*m", "", r["payload"][0]["data"]["text/plain"])   # coloured, as ipykernel's
    tap.ok("return 1" in page, "obj?? shows the source")


@tap.case
def completion():
    def complete(code, pos=None):
        kc.complete(code, len(code) if pos is None else pos)
        return kc.get_shell_msg(timeout=10)["content"]

    run(kc, "import os\nmy_dict = {'alpha': 1, 'beta': 2}\nclass K:\n    attr_one = 1\n    def meth(self): pass\nk = K()")
    c = complete("my_d")
    tap.ok("my_dict" in c["matches"] and c["cursor_start"] == 0 and c["cursor_end"] == 4, "names", c)
    c = complete("os.pa")
    tap.ok("os.path" not in c["matches"] and "path" in c["matches"] and c["cursor_start"] == 3, "attributes", c)
    c = complete("k.at")
    tap.eq(c["matches"], ["attr_one"], "attributes of user objects")
    c = complete("whil")
    tap.ok("while" in c["matches"], "keywords")
    c = complete("from os import pat")
    tap.ok("path" in c["matches"], "names after from ... import", c)
    c = complete("import json.dec")
    tap.ok("json.decoder" in c["matches"], "submodules", c)
    c = complete("my_dict['al")
    tap.ok(c["matches"] == ["alpha"] and c["cursor_start"] == len("my_dict['"), "dict keys", c)
    os.makedirs(os.path.join(kutil.TMP, "compdir", "sub_folder"), exist_ok=True)
    p = os.path.join(kutil.TMP, "compdir", "sub_f")
    c = complete("open('%s" % p)
    tap.ok(any(m.endswith("sub_folder/") for m in c["matches"]), "file paths in strings", c)
    code = "é = 1; éé = 2; é"
    c = complete(code)
    tap.ok("éé" in c["matches"] and c["cursor_start"] == len(code) - 1 and c["cursor_end"] == len(code),
           "cursor positions count code points", c)
    c = complete("np.linspa")
    tap.eq(c["matches"], [], "unknown object: no matches, no error")
    c = complete("pri", 2)
    tap.ok(c["cursor_end"] == 3 and "print" in c["matches"], "cursor inside a word replaces the whole word", c)
    c = complete("[1, 2].ap")
    tap.ok("append" in c["matches"], "jedi completes what the built-in completer cannot", c)


@tap.case
def inspection():
    run(kc, "def doc_fn(a, b=2):\n    '''Adds things.'''\n    return a + b")
    kc.inspect("doc_fn", 3, 0)
    c = kc.get_shell_msg(timeout=10)["content"]
    ansi = re.compile(r"\x1b\[[0-9;]*m")   # IPython's page is coloured, as ipykernel's
    txt = ansi.sub("", c["data"].get("text/plain", ""))
    tap.ok(c["found"] and "doc_fn(a, b=2)" in txt and "Adds things." in txt and "return a + b" not in txt,
           "detail 0: signature and docstring", txt)
    kc.inspect("doc_fn", 3, 1)
    txt = ansi.sub("", kc.get_shell_msg(timeout=10)["content"]["data"].get("text/plain", ""))
    tap.ok("return a + b" in txt, "detail 1: source", txt)
    kc.inspect("doc_fn(1, ", 9, 0)
    c = kc.get_shell_msg(timeout=10)["content"]
    tap.ok(c["found"], "inside a call: the callee is inspected")
    kc.inspect("no_such_name", 5, 0)
    tap.eq(kc.get_shell_msg(timeout=10)["content"]["found"], False, "unknown name: found false")


@tap.case
def is_complete():
    for code, want in (("x = 1", "complete"), ("if x:", "incomplete"), ("x = (1,", "incomplete"),
                       ("x = )", "invalid"), ("%time 1", "complete")):
        kc.is_complete(code)
        c = kc.get_shell_msg(timeout=10)["content"]
        tap.eq(c["status"], want, "is_complete %r" % code)
    kc.is_complete("def f():\n    if x:")
    c = kc.get_shell_msg(timeout=10)["content"]
    tap.eq(c.get("indent"), "        ", "indent of an incomplete block")


@tap.case
def scientific_stack():
    r, out = run(kc, "import numpy, pandas, matplotlib\nnumpy.arange(3).sum()", timeout=120)
    tap.eq((r["status"], results(out)), ("ok", ["3"]), "numpy, pandas and matplotlib import")
    r, out = run(kc, "import sys; sys.executable, sys.prefix")
    tap.eq(results(out), ["('/usr/bin/python3.11', '/usr')"], "sys.executable and sys.prefix are the system's")


@tap.case
def history_persists():
    global km, kc
    run(kc, "marker_for_history = 1234")
    kc.history(hist_access_type="tail", n=1)
    last = kc.get_shell_msg(timeout=10)["content"]["history"]
    session = last[-1][0]
    km.restart_kernel(now=False)
    kc.wait_for_ready(timeout=60)
    kc.history(hist_access_type="search", pattern="marker_for_*")
    h = kc.get_shell_msg(timeout=10)["content"]["history"]
    tap.ok(any(e[2] == "marker_for_history = 1234" and e[0] == session for e in h),
           "history survives a restart with its session number", h)
    kc.history(hist_access_type="range", session=-1, start=1, stop=1000)
    h = kc.get_shell_msg(timeout=10)["content"]["history"]
    tap.ok(h and all(e[0] == session for e in h), "range with session -1 is the previous session", h)
    r, out = run(kc, "1")
    tap.eq(r["execution_count"], 1, "a restarted kernel counts from 1")


@tap.case
def background_shell():
    r, out = run(kc, "!echo never &")
    errs = [c for t, c in out if t == "error"]
    tap.ok(r["status"] == "error" and errs and errs[0]["ename"] == "OSError"
           and errs[0]["evalue"] == "Background processes not supported." and stream_text(out) == "",
           "!cmd & is refused as IPython does (its output could not be read)", (r, out))
    r, out = run(kc, "x = !echo never &")
    tap.ok(r["status"] == "error" and r["evalue"] == "Background processes not supported.",
           "x = !cmd & too", r)


# shutdown_reply is broadcast on IOPub as well (ipykernel): another client of
# the kernel learns that it is going away
import queue  # noqa: E402
observer = km.client()
observer.start_channels(shell=False, stdin=False, hb=False, control=False)
time.sleep(0.5)
while True:
    try:
        observer.get_iopub_msg(timeout=0.2)
    except queue.Empty:
        break
kc.stop_channels()
km.shutdown_kernel(now=False)
tap.ok(not km.is_alive(), "kernel shut down")
seen = []
while True:
    try:
        m = observer.get_iopub_msg(timeout=1)
    except queue.Empty:
        break
    seen.append((m["msg_type"], m["content"]))
tap.ok(("shutdown_reply", {"status": "ok", "restart": False}) in seen,
       "another client sees shutdown_reply on IOPub", seen)
observer.stop_channels()

# the ipc transport
from jupyter_client.manager import KernelManager
ikm = KernelManager(kernel_name="cellbox", transport="ipc", ip=os.path.join(kutil.TMP, "kipc"))
ikm.start_kernel()
ikc = ikm.client()
ikc.start_channels()
ikc.wait_for_ready(timeout=60)
r, out = run(ikc, "'over ipc'")
tap.eq(results(out), ["'over ipc'"], "ipc transport")
ikc.stop_channels()
ikm.shutdown_kernel(now=False)
