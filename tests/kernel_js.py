#!/usr/bin/python3
"""The JavaScript and TypeScript kernels (`cellbox kernel --language
javascript|typescript`, interp/node.c + interp/js/runner.js) driven by
Debian's jupyter_client: state across cells, results, console order,
errors, top-level await, display.*, interrupts (one while node starts
included), input() / prompt() over the
stdin channel, is_complete / complete / inspect, kernel_info, TypeScript
cells (and input() in one), `cellbox run -k cellbox-javascript`
on a notebook, and the message when node is missing. TAP output."""
import json
import os
import shutil
import subprocess
import threading
import time

import kutil
from kutil import CELLBOX, TAP, run, stream_text, results

t = TAP()

if not shutil.which("node") and not os.path.exists("/usr/bin/node"):
    t.skip("the JavaScript kernel", "node is not installed (Debian: nodejs)")
    raise SystemExit(0)

for lang in ("javascript", "typescript"):
    subprocess.run([CELLBOX, "kernelspec", "install", "--prefix", kutil.JUPYTER_PREFIX, "--language", lang],
                   check=True, stdout=subprocess.DEVNULL)

# the node the kernel runs (CELLBOX_NODE overrides the search, as in the kernel)
NODE_VERSION = subprocess.run([os.environ.get("CELLBOX_NODE") or "node", "--version"], capture_output=True,
                              text=True).stdout.strip().lstrip("v")
HAVE_TS = os.path.exists("/usr/share/nodejs/typescript/package.json")


def kinds(out):
    return [m for m, c in out]


def late_stream(kc, until, seconds=5):
    """Stream text published after a cell ended (timers), up to `until`."""
    late, deadline = "", time.time() + seconds
    while time.time() < deadline and until not in late:
        try:
            m = kc.get_iopub_msg(timeout=0.5)
        except Exception:
            continue
        if m["msg_type"] == "stream":
            late += m["content"]["text"]
    return late


def interrupt_during(km, kc, code, delay=1.0, timeout=20):
    """Runs code, interrupts it after delay s; -> (reply content, out, seconds)."""
    timer = threading.Timer(delay, km.interrupt_kernel)
    timer.start()
    t0 = time.monotonic()
    try:
        reply, out = run(kc, code, timeout=timeout)
    finally:
        timer.cancel()
    return reply, out, time.monotonic() - t0


# ------------------------------------------------------------------ JavaScript

km, kc = kutil.start("cellbox-javascript")
try:
    @t.case
    def kernel_info():
        kc.kernel_info()
        info = kc.get_shell_msg(timeout=10)["content"]
        li = info.get("language_info", {})
        t.eq((li.get("name"), li.get("file_extension"), li.get("mimetype"), li.get("pygments_lexer"),
              li.get("codemirror_mode")),
             ("javascript", ".js", "application/javascript", "javascript", "javascript"),
             "kernel_info: language_info of JavaScript")
        t.eq(li.get("version"), NODE_VERSION, "kernel_info: version is node's")
        t.eq((info.get("implementation"), info.get("status")), ("cellbox", "ok"), "kernel_info: implementation cellbox")

    @t.case
    def state_and_results():
        r, out = run(kc, "let a = 2; const b = 3; function sq(x) { return x * x }")
        t.eq((r["status"], results(out)), ("ok", []), "declarations: ok, no result (undefined is not shown)")
        r, out = run(kc, "sq(a + b)")
        t.eq(results(out), ["25"], "let/const/function persist across cells; last expression is the result")
        t.eq(r["execution_count"], [c for m, c in out if m == "execute_result"][0]["execution_count"],
             "execute_result carries the cell's execution_count")
        r, out = run(kc, "a = 10; ({x: 1, y: [1, 2], s: 'str'})")
        t.eq(results(out), ["{ x: 1, y: [ 1, 2 ], s: 'str' }"], "objects shown as util.inspect does")
        r, out = run(kc, "'hi'")
        t.eq(results(out), ["'hi'"], "a string result is quoted like the REPL")
        r, out = run(kc, "a")
        t.eq(results(out), ["10"], "an assignment to a let persists")
        r, out = run(kc, "var g1 = 5; globalThis.g2 = 6; class K { m() { return 7 } }")
        r, out = run(kc, "[g1, g2, new K().m()]")
        t.eq(results(out), ["[ 5, 6, 7 ]"], "var, globals and classes persist")
        cell = "const again = 1; let again2 = 2; class Again {}; again + again2"
        r1, out1 = run(kc, cell)
        r2, out2 = run(kc, cell)
        t.eq((r1["status"], r2["status"], results(out2)), ("ok", "ok", ["3"]),
             "a cell with const/let/class runs again (no 'already been declared')")
        r, out = run(kc, "const {da, db} = {da: 1, db: 2}; const [e1, e2] = [3, 4]; da + db + e1 + e2")
        t.eq(results(out), ["10"], "destructuring declarations")

    @t.case
    def console_order():
        r, out = run(kc, "console.log('o1'); console.error('e1'); console.log('o2'); console.warn('e2');"
                         " console.info('o3'); process.stdout.write('o4\\n'); process.stderr.write('e3\\n')")
        streams = [(c["name"], c["text"]) for m, c in out if m == "stream"]
        t.eq(streams, [("stdout", "o1\n"), ("stderr", "e1\n"), ("stdout", "o2\n"), ("stderr", "e2\n"),
                       ("stdout", "o3\no4\n"), ("stderr", "e3\n")], "console.* and process.std*: order kept")
        r, out = run(kc, "console.log('x=%d', 5, {a: 1}); 1")
        t.eq([k for k in kinds(out) if k != "execute_input"], ["stream", "execute_result"], "stream before the result")
        t.eq(stream_text(out), "x=5 { a: 1 }\n", "console.log formats like Node")
        r, out = run(kc, "require('child_process').execSync('echo from-subprocess', {stdio: 'inherit'}); 0")
        t.ok("from-subprocess" in stream_text(out), "a subprocess's stdout becomes a stream message",
             stream_text(out))

    @t.case
    def errors():
        r, out = run(kc, "null.x")
        t.eq((r["status"], r.get("ename")), ("error", "TypeError"), "TypeError: error reply with ename")
        t.ok("Cannot read properties of null" in r.get("evalue", ""), "evalue is the message", r)
        err = [c for m, c in out if m == "error"]
        t.ok(len(err) == 1 and err[0]["ename"] == "TypeError" and err[0]["traceback"][0].startswith("TypeError"),
             "an error message on IOPub with a traceback", out)
        r, out = run(kc, "function inner() { throw new RangeError('deep') }\nfunction outer() { inner() }\nouter()")
        tb = "\n".join(r.get("traceback", []))
        t.ok(r.get("ename") == "RangeError" and "at inner" in tb and "at outer" in tb and "runner" not in tb,
             "traceback is the user's stack, without the runner's frames", tb)
        r, out = run(kc, "class MyErr extends Error { constructor(m) { super(m); this.name = 'MyErr' } }\n"
                         "throw new MyErr('boom')")
        t.eq((r.get("ename"), r.get("evalue")), ("MyErr", "boom"), "a custom error's name and message")
        r, out = run(kc, "throw 5")
        t.eq((r["status"], r.get("evalue")), ("error", "5"), "a thrown non-Error value")
        r, out = run(kc, "let = ;")
        t.eq((r["status"], r.get("ename")), ("error", "SyntaxError"), "a syntax error")
        r, out = run(kc, "sq(3)")
        t.eq(results(out), ["9"], "the kernel works after errors")
        r1, _ = run(kc, "1")
        r2, _ = run(kc, "2")
        t.eq(r2["execution_count"], r1["execution_count"] + 1, "execution_count advances")

    @t.case
    def top_level_await():
        r, out = run(kc, "const v = await new Promise(r => setTimeout(() => r(7), 50)); v * 6")
        t.eq((r["status"], results(out)), ("ok", ["42"]), "top-level await with a result")
        r, out = run(kc, "v + 1")
        t.eq(results(out), ["8"], "a const declared with await persists")
        r, out = run(kc, "for (const i of [1, 2]) { await null; console.log('i', i) }")
        t.eq((r["status"], stream_text(out), results(out)), ("ok", "i 1\ni 2\n", []), "await in a loop")
        r, out = run(kc, "await Promise.reject(new TypeError('rejected'))")
        t.eq((r["status"], r.get("ename"), r.get("evalue")), ("error", "TypeError", "rejected"),
             "a rejected await is an error reply")

    @t.case
    def display_api():
        code = ("display.html('<b>bold</b>'); display.markdown('# T'); display.png(Buffer.from([137, 80, 78, 71]));"
                " display.svg('<svg xmlns=\"http://www.w3.org/2000/svg\"></svg>'); display.json({k: [1, 2]});"
                " display.text('plain'); display.mimeBundle({'text/html': '<i>i</i>', 'text/plain': 'i'});"
                " display({a: 1})")
        r, out = run(kc, code)
        dd = [c for m, c in out if m == "display_data"]
        t.eq(r["status"], "ok", "display.* cell runs")
        mimes = [sorted(c["data"]) for c in dd]
        t.eq(mimes, [["text/html"], ["text/markdown"], ["image/png"], ["image/svg+xml"],
                     ["application/json", "text/plain"], ["text/plain"], ["text/html", "text/plain"],
                     ["text/plain"]], "display_data with the right MIME types, in order")
        t.eq(dd[2]["data"]["image/png"], "iVBORw==", "display.png(Buffer) is base64")
        t.eq(dd[4]["data"]["application/json"], {"k": [1, 2]}, "display.json sends the object as JSON")
        t.eq(dd[7]["data"]["text/plain"], "{ a: 1 }", "display(value) shows util.inspect text")
        r, out = run(kc, "display.png('iVBORw==')")
        t.eq([c["data"] for m, c in out if m == "display_data"], [{"image/png": "iVBORw=="}],
             "display.png(base64 string)")
        r, out = run(kc, "display.html('<p>a</p>', {display_id: 'd1'}); display.html('<p>b</p>', "
                         "{display_id: 'd1', update: true})")
        t.eq([(m, c.get("transient")) for m, c in out if m.endswith("display_data")],
             [("display_data", {"display_id": "d1"}), ("update_display_data", {"display_id": "d1"})],
             "display_id and updates")

    @t.case
    def background_output():
        r, out = run(kc, "setTimeout(() => console.log('late'), 200); 'now'")
        t.eq(results(out), ["'now'"], "the cell returns before its timer")
        late = late_stream(kc, "late")
        t.ok("late" in late, "a timer's output after the cell still becomes a stream message", late)

    @t.case
    def interrupts():
        reply, out, secs = interrupt_during(km, kc, "let spins = 0; while (true) { spins++ }")
        t.ok(reply["status"] == "error" and "interrupted" in reply.get("evalue", "") and secs < 10,
             "an interrupt stops a busy loop (breakOnSigint)", (reply, secs))
        r, out = run(kc, "sq(4)")
        t.eq(results(out), ["16"], "state kept after interrupting a busy loop")
        reply, out, secs = interrupt_during(km, kc, "await new Promise(() => {})")
        t.ok(reply["status"] == "error" and "interrupted" in reply.get("evalue", "") and secs < 10,
             "an interrupt stops a pending top-level await", (reply, secs))
        r, out = run(kc, "v")
        t.eq(results(out), ["7"], "state kept after interrupting an await")
        reply, out, secs = interrupt_during(km, kc, "await null; while (true) {}", timeout=30)
        t.ok(reply["status"] == "error" and reply.get("ename") == "Interrupted" and secs < 15,
             "a busy loop after an await: node is restarted after the grace time", (reply, secs))
        r, out = run(kc, "typeof sq")
        t.eq((r["status"], results(out)), ("ok", ["'undefined'"]), "...and the next cell runs in a fresh node")
        run(kc, "function sq(x) { return x * x }; let a = 10; const v = 7")

    @t.case
    def stdin():
        asked = []

        def answer(m):
            c = m["content"]
            asked.append((c["prompt"], c["password"]))
            kc.input("pw%d" % len(asked) if c["password"] else "Ada%d" % len(asked))

        r, out = run(kc, "console.log('before');\nconst who = await input('Name? ');\n"
                         "const secret = await input('PW: ', {password: true});\n"
                         "async function twice() { return [await prompt('p3'), await input()] }\n"
                         "[who, secret, ...(await twice())]", stdin_hook=answer, allow_stdin=True)
        t.eq((r["status"], results(out)), ("ok", ["[ 'Ada1', 'pw2', 'Ada3', 'Ada4' ]"]),
             "input(): several in one cell, inside a function, prompt(); the values reach the code")
        t.eq(asked, [("Name? ", False), ("PW: ", True), ("p3", False), ("", False)],
             "input_request: the prompts and the password flag")
        t.eq(stream_text(out), "before\n", "what was printed before the prompt is shown")
        r, out = run(kc, "[who, typeof input, typeof prompt, input.name, input('x') instanceof Promise]",
                     stdin_hook=answer, allow_stdin=True)
        t.eq(results(out), ["[ 'Ada1', 'function', 'function', 'input', true ]"],
             "the values persist; input returns a Promise (of the cell's realm)")
        r, out = run(kc, "await input('x')", allow_stdin=False)
        t.ok(r["status"] == "error" and r.get("ename") == "StdinNotImplementedError"
             and "does not support input requests" in r.get("evalue", ""),
             "allow_stdin=False: rejected with StdinNotImplementedError at once", r)
        r, out = run(kc, "let caught; try { await input('x') } catch (e) { caught = [e.name, e instanceof Error] }\n"
                         "caught", allow_stdin=False)
        t.eq(results(out), ["[ 'StdinNotImplementedError', true ]"], "... which a cell can catch")

        waiting = []
        timer = threading.Timer(1.0, km.interrupt_kernel)
        timer.start()
        t0 = time.monotonic()
        try:
            reply, out = run(kc, "await input('never answered ')", stdin_hook=lambda m: waiting.append(m),
                             allow_stdin=True)
        finally:
            timer.cancel()
        secs = time.monotonic() - t0
        t.eq([m["content"]["prompt"] for m in waiting], ["never answered "], "the frontend was asked")
        t.ok(reply["status"] == "error" and "interrupted" in reply.get("evalue", "") and secs < 10,
             "an interrupt while input() waits ends the cell with the interrupt error", (reply, secs))
        kc.input("too late")  # an answer to the interrupted request
        time.sleep(0.3)
        asked.clear()
        r, out = run(kc, "[await input('again? '), who]", stdin_hook=answer, allow_stdin=True)
        t.eq((r["status"], results(out), asked), ("ok", ["[ 'Ada1', 'Ada1' ]"], [("again? ", False)]),
             "an answer arriving after the interrupt does not reach the next cell's input()")

        # the runner got the SIGINT before the kernel asked: it cancels the input_request itself
        waiting.clear()
        t0 = time.monotonic()
        r, out = run(kc, "const pending = input('cancelled ');\n"
                         "setTimeout(() => process.kill(process.pid, 'SIGINT'), 300);\nawait pending",
                     stdin_hook=lambda m: waiting.append(m), allow_stdin=True, timeout=20)
        t.ok(r["status"] == "error" and "interrupted" in r.get("evalue", "") and len(waiting) == 1
             and time.monotonic() - t0 < 10, "an input() ended by the runner's own SIGINT stops waiting", r)

        answered = []
        r, out = run(kc, "const ticker = setInterval(() => console.log('tick'), 100);\n"
                         "const got = await input('slow ');\nclearInterval(ticker);\ngot",
                     stdin_hook=lambda m: answered.append(threading.Timer(0.6, kc.input, ["done"]).start()),
                     allow_stdin=True)
        t.ok(r["status"] == "ok" and results(out) == ["'done'"] and stream_text(out).count("tick") >= 3,
             "output printed while input() waits is shown at once, in the cell", (results(out), stream_text(out)))

        r, out = run(kc, "setTimeout(() => input('later').catch(e => console.log('late:', e.name)), 50); 0")
        late = late_stream(kc, "late:")
        t.eq(late, "late: StdinNotImplementedError\n", "input() between cells is rejected (no request to ask in)")
        r, out = run(kc, "1 + 1")
        t.eq(results(out), ["2"], "the kernel works after that")

    @t.case
    def is_complete():
        def ic(code):
            kc.is_complete(code)
            return kc.get_shell_msg(timeout=10)["content"]
        c = ic("for (let i = 0; i < 3; i++) {")
        t.ok(c["status"] == "incomplete" and c.get("indent", "").strip() == "" and c.get("indent"),
             "an unterminated block is incomplete, with an indent", c)
        t.eq(ic("let x = [1,")["status"], "incomplete", "an open array is incomplete")
        t.eq(ic("let x = 1")["status"], "complete", "a statement is complete")
        t.eq(ic("await 5")["status"], "complete", "top-level await is complete")
        t.eq(ic("let = ;")["status"], "invalid", "a syntax error is invalid")

    @t.case
    def complete_inspect():
        code = "Math.fl"
        kc.complete(code, len(code))
        c = kc.get_shell_msg(timeout=10)["content"]
        t.ok("floor" in c["matches"] and c["cursor_start"] == 5 and c["cursor_end"] == 7,
             "properties of an object before a dot", c)
        kc.complete("s", 1)
        c = kc.get_shell_msg(timeout=10)["content"]
        t.ok("sq" in c["matches"] and "setTimeout" in c["matches"], "global names, functions of earlier cells", c)
        run(kc, "const myObject = {alpha: 1, beta: 2}")
        kc.complete("myObject.a", 10)
        c = kc.get_shell_msg(timeout=10)["content"]
        t.eq(c["matches"], ["alpha"], "properties of a const of an earlier cell")
        kc.complete("myOb", 4)
        c = kc.get_shell_msg(timeout=10)["content"]
        t.eq(c["matches"], ["myObject"], "a const's name (lexical, not on the global object)")
        kc.inspect("sq", 2)
        c = kc.get_shell_msg(timeout=10)["content"]
        t.ok(c["found"] and "sq(x)" in c["data"].get("text/plain", ""), "inspect: a function's signature", c)
        kc.inspect("myObject", 8)
        c = kc.get_shell_msg(timeout=10)["content"]
        t.ok(c["found"] and "Object" in c["data"]["text/plain"] and "alpha" in c["data"]["text/plain"],
             "inspect: a value's type and text", c)
        kc.inspect("nothingHere", 5)
        t.eq(kc.get_shell_msg(timeout=10)["content"]["found"], False, "inspect: unknown name not found")

    @t.case
    def process_exit():
        r, out = run(kc, "process.exit(3)")
        t.ok(r["status"] == "error" and r.get("ename") == "NodeExited" and "status 3" in r.get("evalue", ""),
             "process.exit(): an error reply that says node ended", r)
        r, out = run(kc, "1 + 1")
        t.eq(results(out), ["2"], "the next cell starts a new node")
finally:
    kc.stop_channels()
    km.shutdown_kernel(now=True)

# ------------------------------------------------------------------ TypeScript

if not HAVE_TS:
    t.skip("the TypeScript kernel", "node-typescript is not installed")
else:
    km, kc = kutil.start("cellbox-typescript")
    try:
        @t.case
        def ts_kernel_info():
            kc.kernel_info()
            li = kc.get_shell_msg(timeout=10)["content"]["language_info"]
            t.eq((li["name"], li["file_extension"], li["mimetype"], li["version"]),
                 ("typescript", ".ts", "text/typescript", NODE_VERSION), "kernel_info: language_info of TypeScript")

        @t.case
        def ts_cells():
            cell = ("interface P { x: number; y?: string }\nconst p: P = {x: 4};\n"
                    "function dbl(n: number): number { return n * 2 }\n"
                    "enum Color { Red, Green }\n"
                    "type Pair<T> = [T, T];\nconst pr: Pair<number> = [1, 2];")
            r, out = run(kc, cell)
            t.eq((r["status"], results(out)), ("ok", []), "a cell with interfaces, types, generics and an enum")
            r, out = run(kc, cell)
            t.eq(r["status"], "ok", "the same TypeScript cell runs again")
            r, out = run(kc, "dbl(p.x) + Color.Green + pr[1]")
            t.eq(results(out), ["11"], "TypeScript declarations persist across cells")
            r, out = run(kc, "const t: number = await Promise.resolve(3); t * 2")
            t.eq(results(out), ["6"], "top-level await in TypeScript")
            r, out = run(kc, "const s: string = 5 as any as string; console.log(typeof s); s")
            t.eq((r["status"], stream_text(out), results(out)), ("ok", "number\n", ["5"]),
                 "types are not checked (transpile-only)")
            r, out = run(kc, "let bad: number = ;")
            t.ok(r["status"] == "error" and r.get("ename") == "SyntaxError" and "TS1109" in r.get("evalue", ""),
                 "a TypeScript syntax error is reported with its TS code", r)
            t.ok(any("In[" in line for line in r.get("traceback", [])), "the traceback says where", r)
            r, out = run(kc, "display.html('<b>ts</b>'); class A { constructor(private n: number) {} get() "
                             "{ return this.n } }\nnew A(9).get()")
            t.eq(([c["data"] for m, c in out if m == "display_data"], results(out)),
                 ([{"text/html": "<b>ts</b>"}], ["9"]), "display.* and classes with parameter properties")
            r, out = run(kc, "const o: {a: number} = null as any; o.a")
            t.eq((r["status"], r.get("ename")), ("error", "TypeError"), "a runtime error in TypeScript")

        @t.case
        def ts_input():
            asked = []

            def answer(m):
                asked.append(m["content"]["prompt"])
                kc.input("21")

            r, out = run(kc, "const raw: string = await input('n? ');\nconst n: number = Number(raw);\nn * 2",
                         stdin_hook=answer, allow_stdin=True)
            t.eq((r["status"], results(out), asked), ("ok", ["42"], ["n? "]), "TypeScript: await input() in a cell")

        @t.case
        def ts_is_complete():
            kc.is_complete("function f(a: number) {")
            c = kc.get_shell_msg(timeout=10)["content"]
            t.eq(c["status"], "incomplete", "TypeScript: an open block is incomplete")
            kc.is_complete("let x: number = 1")
            t.eq(kc.get_shell_msg(timeout=10)["content"]["status"], "complete", "TypeScript: complete")
            kc.is_complete("let x: number = ) 1")
            t.eq(kc.get_shell_msg(timeout=10)["content"]["status"], "invalid", "TypeScript: invalid")
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)

# ------------------------------------------------------------------ cellbox run, missing node


@t.case
def run_notebook():
    nb = {"nbformat": 4, "nbformat_minor": 5,
          "metadata": {"kernelspec": {"name": "cellbox-javascript", "display_name": "JavaScript (cellbox)",
                                      "language": "javascript"}},
          "cells": [{"cell_type": "code", "id": "c%d" % i, "metadata": {}, "execution_count": None,
                     "outputs": [], "source": src}
                    for i, src in enumerate(["const xs = [1, 2, 3];\nconsole.log('sum', xs.reduce((a, b) => a + b))",
                                             "await new Promise(r => setTimeout(r, 10));\nxs.map(x => x * 2)",
                                             "display.html('<b>hi</b>')"])]}
    d = os.path.join(kutil.TMP, "jsnb")
    os.makedirs(d, exist_ok=True)
    path = os.path.join(d, "small.ipynb")
    with open(path, "w") as f:
        json.dump(nb, f)
    r = subprocess.run([CELLBOX, "run", "-k", "cellbox-javascript", path], capture_output=True, text=True, timeout=120)
    t.eq(r.returncode, 0, "cellbox run -k cellbox-javascript exits 0") or print("# " + r.stderr[-500:])
    with open(os.path.join(d, "small.out.ipynb")) as f:
        out = json.load(f)
    cells = out["cells"]

    def joined(v):
        return "".join(v) if isinstance(v, list) else v
    for c in cells:
        for o in c["outputs"]:
            if "text" in o:
                o["text"] = joined(o["text"])
            for k in o.get("data", {}):
                o["data"][k] = joined(o["data"][k])
    t.eq([o.get("text") for o in cells[0]["outputs"]], ["sum 6\n"], "notebook: console output in a stream output")
    t.eq([o.get("data", {}).get("text/plain") for o in cells[1]["outputs"]], ["[ 2, 4, 6 ]"],
         "notebook: state and the result after an await")
    t.eq([o.get("data") for o in cells[2]["outputs"]], [{"text/html": "<b>hi</b>"}], "notebook: display.html")
    t.eq(out["metadata"].get("language_info", {}).get("name"), "javascript", "notebook: language_info javascript")

    # a JavaScript notebook whose own kernel is not installed (ijavascript's "javascript"), with no
    # kernelspec of cellbox's either: cellbox's own JavaScript kernel runs it, as cellbox's
    # Python kernel runs a Python notebook whose kernel is missing
    foreign = dict(nb, metadata={"kernelspec": {"name": "javascript", "display_name": "Javascript (Node.js)",
                                                "language": "javascript"}})
    fpath = os.path.join(d, "foreign.ipynb")
    with open(fpath, "w") as f:
        json.dump(foreign, f)
    env = dict(os.environ, JUPYTER_PATH=os.path.join(d, "no-kernels"))
    r = subprocess.run([CELLBOX, "run", fpath], capture_output=True, text=True, timeout=120, env=env)
    t.eq(r.returncode, 0, "a JavaScript notebook whose kernel is not installed runs on cellbox's") \
        or print("# " + r.stderr[-500:])
    with open(os.path.join(d, "foreign.out.ipynb")) as f:
        fout = json.load(f)
    t.eq([joined(o.get("text", "")) for o in fout["cells"][0]["outputs"]], ["sum 6\n"],
         "... and its cells ran in JavaScript")
    r = subprocess.run([CELLBOX, "run", "-k", "cellbox-typescript", fpath, "-o", os.path.join(d, "f-ts.ipynb")],
                       capture_output=True, text=True, timeout=120, env=env)
    t.eq(r.returncode, 0, "-k cellbox-typescript works without an installed kernelspec") \
        or print("# " + r.stderr[-500:])

    # papermill-style parameters, written as JavaScript / TypeScript assignments
    for lang in ("javascript", "typescript"):
        pnb = {"nbformat": 4, "nbformat_minor": 5,
               "metadata": {"kernelspec": {"name": "cellbox-" + lang, "display_name": lang, "language": lang}},
               "cells": [{"cell_type": "code", "id": "p0", "metadata": {"tags": ["parameters"]},
                          "execution_count": None, "outputs": [],
                          "source": "let n = 1\nlet title = 'default'\nlet opts = {}" if lang == "javascript"
                          else "let n: number = 1\nlet title: string = 'default'\nlet opts: any = {}"},
                         {"cell_type": "code", "id": "p1", "metadata": {}, "execution_count": None, "outputs": [],
                          "source": "console.log(title, n * 2, JSON.stringify(opts))"}]}
        ppath = os.path.join(d, "params-%s.ipynb" % lang)
        pfile = os.path.join(d, "params.json")
        with open(ppath, "w") as f:
            json.dump(pnb, f)
        with open(pfile, "w") as f:
            json.dump({"opts": {"k": [1, None, "\u00e9\"q\""]}}, f)
        r = subprocess.run([CELLBOX, "run", ppath, "-p", "n", "21", "-p", "title", 'say "hi"', "-f", pfile],
                           capture_output=True, text=True, timeout=120)
        t.eq(r.returncode, 0, "%s parameters: cellbox run -p/-f exits 0" % lang) or print("# " + r.stderr[-500:])
        with open(os.path.join(d, "params-%s.out.ipynb" % lang)) as f:
            pout = json.load(f)
        inj = pout["cells"][1]
        t.ok("injected-parameters" in inj["metadata"].get("tags", []) and inj["outputs"] == []
             and "n = 21;" in joined(inj["source"]),
             "%s parameters: an injected cell of assignments that shows no value" % lang, joined(inj["source"]))
        t.eq([joined(o.get("text", "")) for o in pout["cells"][2]["outputs"]],
             ['say "hi" 42 {"k":[1,null,"\u00e9\\"q\\""]}\n'], "%s parameters: the cells see the values" % lang)


@t.case
def node_missing():
    env = dict(os.environ, CELLBOX_NODE="/nonexistent/node")
    conn = os.path.join(kutil.TMP, "no-such-conn.json")
    r = subprocess.run([CELLBOX, "kernel", "-f", conn, "--language", "javascript"], capture_output=True,
                       text=True, env=env, timeout=30)
    lines = r.stderr.strip().splitlines()
    t.ok(r.returncode == 1 and len(lines) == 1 and "nodejs" in lines[0] and lines[0].startswith("cellbox kernel: "),
         "no node: one clear line naming Debian's nodejs package, exit 1", (r.returncode, r.stderr))
    r = subprocess.run([CELLBOX, "kernel", "-f", conn, "--language", "cobol"], capture_output=True, text=True)
    t.ok(r.returncode == 2 and "unknown language" in r.stderr, "an unknown language is refused", r.stderr)


@t.case
def interrupt_while_starting():
    # node made slow to start (a wrapper that waits 3 s before it runs the
    # runner; the version probe is left alone): kernel_info is answered
    # meanwhile, so a client may already send a cell and interrupt
    real = os.environ.get("CELLBOX_NODE") or shutil.which("node") or "/usr/bin/node"
    slow = os.path.join(kutil.TMP, "slow-node")
    with open(slow, "w") as f:
        f.write('#!/bin/sh\ncase "$1" in --expose-internals) sleep 3;; esac\nexec "%s" "$@"\n' % real)
    os.chmod(slow, 0o755)
    km, kc = kutil.start("cellbox-javascript", env=dict(os.environ, CELLBOX_NODE=slow))
    try:
        out = []
        msg_id = kc.execute("'ran'")
        km.interrupt_kernel()
        reply = kc.get_shell_msg(timeout=30)["content"]
        while True:
            m = kc.get_iopub_msg(timeout=30)
            if m["parent_header"].get("msg_id") != msg_id:
                continue
            if m["msg_type"] == "status" and m["content"]["execution_state"] == "idle":
                break
            out.append(m["msg_type"])
        t.ok(reply["status"] == "error" and "interrupted" in reply.get("evalue", "") and "execute_result" not in out
             and "error" in out, "an interrupt while node starts: the first cell ends with the interrupt error, "
             "its code not run (as the Python kernel's KeyboardInterrupt)", (reply, out))
        r, out = run(kc, "1 + 1")
        t.eq((r["status"], results(out)), ("ok", ["2"]), "...and the next cell runs")
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
