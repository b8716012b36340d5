"""tests/sandbox_contexts.py: code contexts of `cellbox serve` (a cellbox
Python kernel per context, running inside the sandbox and driven over the
Jupyter protocol by the server), with the real server, real namespaces and
Python's http.client. Prints TAP.

Sections: context records (create, list, get, delete, errors), running code
(state, execution counts, stdout/stderr, errors, validation, concurrent
runs), rich results (HTML, pandas, matplotlib, every MIME key, display ids,
clear_output), timeouts, isolation of the kernel (user, files, hostname,
cwd, env, cgroup), two contexts, the default context (also its concurrent
first use, and its deletion), SSE (events, errors, a client that goes away),
a streamed run whose client stops reading (interrupt, restart, timeout and
the runs behind it go on; its events wait, at most 32 MiB of them), the
kernel as a process, bounds on what a kernel (hostile code in it) can
make the server hold, restart (a new kernel in place: a run in progress
ends, runs waiting go on with the new kernel; restarts and interrupts
during one, races with deletes), a kernel that exits, sleep, deletion (of a
context, of a sandbox), and JavaScript / TypeScript contexts (node inside
the sandbox: results, display.*, errors, timeouts, input() from "stdin"
lines and POST .../input, a default context per language).
Waits use deadlines, never fixed sleeps.
"""
import base64
import json
import os
import re
import signal
import socket
import sys
import threading
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sandbox_lib import TAP, Server, can_sandbox, in_threads, parse_sse, wait_until  # noqa: E402

t = TAP()
if not can_sandbox():
    t.skip_all("needs root for namespaces and cgroups")

MAIN, GONE, NAP, RACE = "cx-main", "cx-gone", "cx-nap", "cx-race"
IDS = [MAIN, GONE, NAP, RACE]
SB = "/v1/sandboxes/" + MAIN
CTX_ID = re.compile(r"^ctx-[0-9a-f]{12}$")
ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:?\d\d)$")
# A start may take seconds on a loaded 2-core machine, and a first matplotlib
# import builds its font cache in the fresh workspace: be generous.
HTTP_TIMEOUT = 180

srv = Server()
state = {}


def section(fn):
    """Runs one section; an unexpected exception is one failed case (with its
    traceback) and the next section still runs."""
    try:
        fn()
    except Exception:  # noqa: BLE001
        t.ok(False, "%s: no unexpected exception" % fn.__name__, traceback.format_exc())


def code(src, ctx=None, sid=MAIN, **extra):
    """POST …/code; ctx None means no "context" field (the default one)."""
    body = dict(extra, code=src)
    if ctx is not None:
        body["context"] = ctx
    return srv.post("/v1/sandboxes/%s/code" % sid, body, timeout=HTTP_TIMEOUT)


def run(src, ctx=None, sid=MAIN, **extra):
    """A run that must be answered with 200: the reply's JSON."""
    r = code(src, ctx, sid, **extra)
    if r.status != 200:
        raise RuntimeError("run %r: %r" % (src, r))
    return r.json()


def ok_run(src, ctx=None, **extra):
    """A run that must also end without a Python error."""
    j = run(src, ctx, **extra)
    if j.get("error") is not None:
        raise RuntimeError("run %r: %r" % (src, j["error"]))
    return j


def out(j, stream="stdout"):
    return "".join(j["logs"][stream])


def main_text(j):
    """text/plain of the run's main result (the last expression's value)."""
    mains = [r for r in j["results"] if r.get("isMainResult") is True]
    return mains[0].get("text") if len(mains) == 1 else None


def new_context(sid=MAIN, **body):
    r = srv.post("/v1/sandboxes/%s/contexts" % sid, body, timeout=HTTP_TIMEOUT)
    if r.status != 201:
        raise RuntimeError("create context: %r" % r)
    return r.json()


def sse(src, ctx=None, sid=MAIN, **extra):
    """The same run with Accept: text/event-stream: (status, content type, raw
    body, events)."""
    body = dict(extra, code=src)
    if ctx is not None:
        body["context"] = ctx
    c = srv.conn(HTTP_TIMEOUT)
    c.request("POST", "/v1/sandboxes/%s/code" % sid, body=json.dumps(body).encode(),
              headers={"Authorization": "Bearer " + srv.token, "Accept": "text/event-stream",
                       "Content-Type": "application/json"})
    r = c.getresponse()
    raw = r.read().decode()
    ctype = r.getheader("Content-Type", "")
    c.close()
    events = parse_sse(raw) if "text/event-stream" in ctype else []
    return r.status, ctype, raw, events


def stream_until(src, ctx, marker, seconds=60, sid=MAIN):
    """Start a streamed run and read it until marker shows up:
    -> (connection, response, bytes read so far, deadline)."""
    c = srv.conn(HTTP_TIMEOUT)
    c.request("POST", "/v1/sandboxes/%s/code" % sid, body=json.dumps({"code": src, "context": ctx}).encode(),
              headers={"Authorization": "Bearer " + srv.token, "Accept": "text/event-stream",
                       "Content-Type": "application/json"})
    resp = c.getresponse()
    buf = b""
    deadline = time.time() + seconds
    while marker not in buf and time.time() < deadline:
        chunk = resp.fp.read1(4096)
        if not chunk:
            break
        buf += chunk
    return c, resp, buf, deadline


def stream_until_input(src, ctx, sid=MAIN):
    """A streamed run read up to its whole input_request event:
    -> (connection, response, bytes read so far)."""
    c, resp, buf, deadline = stream_until(src, ctx, b"input_request", sid=sid)
    while b"\n\n" not in buf.split(b"input_request", 1)[-1] and time.time() < deadline:
        buf += resp.fp.read1(4096)
    return c, resp, buf


def process(sid, pid):
    """The record of background process pid in sandbox sid, or None."""
    r = srv.get("/v1/sandboxes/%s/processes" % sid)
    for p in r.json().get("processes", []) if r.status == 200 else []:
        if p.get("id") == pid:
            return p
    return None


def sandbox_group(sid):
    """The name of sid's cgroup below cellbox/ (pool-<server>-<n>, or the id)."""
    agent = srv.get("/v1/sandboxes/" + sid).json()["agentPid"]
    with open("/proc/%d/cgroup" % agent) as f:
        m = re.search(r"/cellbox/([^/\n]+)", f.read())
    return m.group(1)


def host_pid(sid, inner_pid):
    """The host pid of the process that is inner_pid in sid's pid namespace
    and in sid's cgroup (None if there is none)."""
    group = "/cellbox/" + sandbox_group(sid)
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open("/proc/%s/cgroup" % pid) as f:
                cg = f.read()
            with open("/proc/%s/status" % pid) as f:
                nspid = [ln.split()[1:] for ln in f if ln.startswith("NSpid:")]
        except OSError:
            continue
        if (group + "\n" in cg or group + "/" in cg) and nspid and nspid[0][-1] == str(inner_pid):
            return int(pid)
    return None


def records(ctx):
    """A context record without the fields that change between calls."""
    return {k: v for k, v in ctx.items() if k != "executionCount"}


def s_records():
    # ---- context records ---------------------------------------------------
    r = srv.post(SB + "/contexts", {}, timeout=HTTP_TIMEOUT)
    j = r.json() if r.status == 201 else {}
    state["a"] = a = j.get("id")
    t.ok(r.status == 201 and CTX_ID.match(a or "") and j.get("language") == "python"
         and j.get("cwd") == "/workspace" and j.get("executionCount") == 0,
         "create a context with no body: 201, ctx-<12 hex>, python, /workspace, executionCount 0", r)
    t.ok(ISO.match(str(j.get("createdAt"))) and j.get("processId") == "context-%s" % a,
         "the record has an ISO createdAt and processId context-<id>", j)
    r = srv.post(SB + "/contexts", {"language": "python", "cwd": "/tmp", "env": {"K": "V"}},
                 timeout=HTTP_TIMEOUT)
    j = r.json() if r.status == 201 else {}
    state["b"] = b = j.get("id")
    t.ok(r.status == 201 and CTX_ID.match(b or "") and b != a and j.get("cwd") == "/tmp",
         "create a context with language, cwd and env: 201, its own id, cwd /tmp", r)
    r = srv.get(SB + "/contexts")
    ids = [c.get("id") for c in r.json().get("contexts", [])] if r.status == 200 else []
    t.ok(r.status == 200 and a in ids and b in ids, "list contexts: both are there", r)
    first = r.json()["contexts"][ids.index(a)] if a in ids else None
    r = srv.get(SB + "/contexts/" + a)
    t.ok(r.status == 200 and first is not None and records(r.json()) == records(first),
         "get one context: the same record as in the list", (r, first))
    r = srv.post(SB + "/contexts", {"language": "r"})
    t.ok(r.status == 400 and r.code == "VALIDATION_FAILED",
         "language other than python/javascript/typescript: 400 VALIDATION_FAILED", r)
    r = srv.get(SB + "/contexts/ctx-000000000000")
    t.ok(r.status == 404 and r.code == "CONTEXT_NOT_FOUND", "get an unknown context: 404 CONTEXT_NOT_FOUND", r)
    r = srv.delete(SB + "/contexts/ctx-000000000000")
    t.ok(r.status == 404 and r.code == "CONTEXT_NOT_FOUND", "delete an unknown context: 404 CONTEXT_NOT_FOUND", r)
    r = srv.post("/v1/sandboxes/cx-nowhere/contexts", {})
    t.ok(r.status == 404 and r.code == "SANDBOX_NOT_FOUND", "context in an unknown sandbox: 404 SANDBOX_NOT_FOUND", r)
    # an interpreter that cannot start (no standard library under PYTHONHOME)
    before = [c["id"] for c in srv.get(SB + "/contexts").json()["contexts"]]
    # (three times: the kernel answers kernel_info before its interpreter has
    # started, so a server that takes that for readiness is caught at once)
    rs = [srv.post(SB + "/contexts", {"env": {"PYTHONHOME": "/nonexistent"}}, timeout=HTTP_TIMEOUT)
          for _ in range(3)]
    t.ok(all(r.status == 503 and r.code == "INTERPRETER_NOT_READY" for r in rs),
         "a kernel that cannot start: 503 INTERPRETER_NOT_READY (3 tries)", rs)
    after = [c["id"] for c in srv.get(SB + "/contexts").json()["contexts"]]
    t.eq(sorted(after), sorted(before), "a context that failed to start is not listed")


def s_code():
    # ---- running code ----------------------------------------------------------
    a = state["a"]
    j = run("x = 1", a)
    t.ok(j["context"] == a and j["results"] == [] and j["error"] is None and j["executionCount"] == 1
         and j["timedOut"] is False and isinstance(j["durationMs"], (int, float)) and j["durationMs"] >= 0
         and j["logs"] == {"stdout": [], "stderr": []},
         "a statement: 200, no results, no error, executionCount 1, timedOut false, durationMs", j)
    j = run("x + 1", a)
    t.ok(main_text(j) == "2" and len(j["results"]) == 1 and j["executionCount"] == 2,
         "state persists: x + 1 gives the main result text '2', executionCount 2", j)
    j = run("y = x * 10", a)
    t.eq(j["executionCount"], 3, "executionCount goes on: 3")
    r = srv.get(SB + "/contexts/" + a)
    t.eq(r.json().get("executionCount"), 3, "the context record shows executionCount 3")
    j = run('print("hi")', a)
    t.ok(out(j) == "hi\n" and j["logs"]["stderr"] == [] and j["results"] == [],
         "print: logs.stdout joined is 'hi\\n', no stderr, no results", j)
    j = run('import sys; print("e", file=sys.stderr)', a)
    t.ok(out(j, "stderr") == "e\n" and j["logs"]["stdout"] == [], "print to sys.stderr goes to logs.stderr", j)
    j = run("for i in range(3):\n    print(i, flush=True)\nprint('end')", a)
    t.ok(out(j) == "0\n1\n2\nend\n" and all(isinstance(s, str) for s in j["logs"]["stdout"]),
         "stdout chunks, joined, keep their order", j)
    r = code('raise ValueError("boom")', a)
    e = r.json().get("error") if r.status == 200 else None
    t.ok(r.status == 200 and e and e.get("name") == "ValueError" and e.get("value") == "boom"
         and isinstance(e.get("traceback"), list) and len(e["traceback"]) > 0
         and all(isinstance(s, str) for s in e["traceback"]),
         "a Python exception: 200 with error name, value and a traceback", r)
    j = run("x, y", a)
    t.ok(j["error"] is None and main_text(j) == "(1, 10)", "after an exception the state is still there", j)
    r = srv.post(SB + "/code", {"context": a}, timeout=HTTP_TIMEOUT)
    t.ok(r.status == 400 and r.code == "VALIDATION_FAILED", "code missing: 400 VALIDATION_FAILED", r)
    r = srv.post(SB + "/code", {"code": 123, "context": a}, timeout=HTTP_TIMEOUT)
    t.ok(r.status == 400 and r.code == "VALIDATION_FAILED", "code not a string: 400 VALIDATION_FAILED", r)
    r = code("1", "ctx-000000000000")
    t.ok(r.status == 404 and r.code == "CONTEXT_NOT_FOUND", "run in an unknown context: 404 CONTEXT_NOT_FOUND", r)
    r = code("1", a, sid="cx-nowhere")
    t.ok(r.status == 404 and r.code == "SANDBOX_NOT_FOUND", "run in an unknown sandbox: 404 SANDBOX_NOT_FOUND", r)
    got = {}

    def runner(i):
        try:
            got[i] = run("import time; time.sleep(0.05); print(%d); %d * 10" % (i, i), a)
        except Exception as e:  # noqa: BLE001
            got[i] = repr(e)
    in_threads(runner, 4)
    good = all(isinstance(got[i], dict) and out(got[i]) == "%d\n" % i and main_text(got[i]) == str(i * 10)
               for i in range(4))
    counts = sorted(got[i]["executionCount"] for i in range(4)) if good else []
    t.ok(good and counts == list(range(counts[0], counts[0] + 4)),
         "4 concurrent runs in one context: each gets its own output, one execution after the other", got)


def s_rich():
    # ---- rich results ----------------------------------------------------------
    a = state["a"]
    j = ok_run('from IPython.display import display, HTML\ndisplay(HTML("<b>x</b>"))', a)
    res = j["results"]
    t.ok(len(res) == 1 and res[0].get("html") == "<b>x</b>" and res[0].get("isMainResult") is False,
         "display(HTML(...)): a result with html, isMainResult false", j)
    j = ok_run("from IPython.display import display\ndisplay('shown')\n6 * 7", a)
    t.ok([(r.get("text"), r.get("isMainResult")) for r in j["results"]] == [("'shown'", False), ("42", True)],
         "a display() output then the main result, in order", j)
    j = ok_run("import pandas as pd\npd.DataFrame({'a': [1, 2], 'b': ['x', 'y']})", a)
    mains = [r for r in j["results"] if r.get("isMainResult") is True]
    t.ok(len(mains) == 1 and "<table" in mains[0].get("html", "") and "text" in mains[0],
         "a pandas DataFrame: main result with html <table> and text", j)
    j = ok_run("import matplotlib.pyplot as plt\nplt.plot([1, 2, 3])\nplt.show()", a)
    pngs = [r["png"] for r in j["results"] if "png" in r]
    t.ok(len(pngs) == 1 and base64.b64decode(pngs[0]).startswith(b"\x89PNG"),
         "matplotlib plt.show(): a result whose png is base64 of a PNG", {
             "results": [{k: (v[:60] if isinstance(v, str) else v) for k, v in r.items()} for r in j["results"]],
             "error": j["error"]})
    bundle = {
        "text/plain": "plain", "text/html": "<i>h</i>", "text/markdown": "**m**",
        "image/svg+xml": "<svg xmlns='http://www.w3.org/2000/svg'/>",
        "image/png": base64.b64encode(b"\x89PNG fake").decode(),
        "image/jpeg": base64.b64encode(b"\xff\xd8\xff fake").decode(),
        "application/pdf": base64.b64encode(b"%PDF-1.4 fake").decode(),
        "text/latex": "$x^2$", "application/json": {"a": [1, 2], "b": None},
        "application/javascript": "console.log(1)",
    }
    j = ok_run("from IPython.display import display\ndisplay(%r, raw=True)" % bundle, a)
    want = {"text": "plain", "html": "<i>h</i>", "markdown": "**m**", "svg": bundle["image/svg+xml"],
            "png": bundle["image/png"], "jpeg": bundle["image/jpeg"], "pdf": bundle["application/pdf"],
            "latex": "$x^2$", "json": {"a": [1, 2], "b": None}, "javascript": "console.log(1)",
            "isMainResult": False}
    got = j["results"][0] if len(j["results"]) == 1 else None
    t.eq(got, want, "every MIME type gets its key (json as a JSON value, png/jpeg/pdf as base64)")
    j = ok_run("from IPython.display import display, HTML\n"
               "h = display(HTML('<i>v1</i>'), display_id='d1')\nh.update(HTML('<i>v2</i>'))", a)
    t.ok(len(j["results"]) == 1 and j["results"][0].get("html") == "<i>v2</i>"
         and j["results"][0].get("displayId") == "d1",
         "an output with a display_id carries displayId; its update replaces it", j)
    j = ok_run("from IPython.display import display\ndisplay('before')\n"
               "h = display('v1', display_id='d2')\ndisplay('after')\nh.update('v2')", a)
    t.ok([r.get("text") for r in j["results"]] == ["'before'", "'v2'", "'after'"]
         and j["results"][1].get("displayId") == "d2" and "displayId" not in j["results"][0],
         "an update replaces the output in place (its position is kept)", j)
    j = ok_run("from IPython.display import display, clear_output\n"
               "display('a')\nclear_output()\ndisplay('b')", a)
    t.eq([r.get("text") for r in j["results"]], ["'b'"], "clear_output() empties the results shown before")
    j = ok_run("from IPython.display import display, clear_output\n"
               "for i in range(3):\n    display(i)\n    clear_output(wait=True)", a)
    t.eq([r.get("text") for r in j["results"]], ["2"],
         "clear_output(wait=True) clears only when the next output comes (the last one stays)")


def s_timeout():
    # ---- timeouts ----------------------------------------------------------
    a = state["a"]
    ok_run("keep = 41", a)
    t0 = time.time()
    r = code("import time; time.sleep(30)", a, timeoutMs=1500)
    took = time.time() - t0
    j = r.json() if r.status == 200 else {}
    t.ok(r.status == 200 and j.get("timedOut") is True
         and (j.get("error") or {}).get("name") in ("KeyboardInterrupt", "TimeoutError"),
         "timeoutMs: 200, timedOut true, error KeyboardInterrupt or TimeoutError", r)
    t.ok(took < 25 and j.get("durationMs", 0) >= 1000,
         "the timed-out run is interrupted, not waited for (%.1f s)" % took, (took, j.get("durationMs")))
    j = run("1 + 1", a)
    j2 = run("keep + 1", a)
    t.ok(main_text(j) == "2" and j["timedOut"] is False and main_text(j2) == "42",
         "after a timeout the context runs again and keeps its state", (j, j2))
    # code that swallows the interrupt: the context is ended after a grace period
    c = new_context()["id"]
    t0 = time.time()
    r = code("import time\nwhile True:\n    try:\n        time.sleep(10)\n    except KeyboardInterrupt:\n        pass",
             c, timeoutMs=1000)
    took = time.time() - t0
    j = r.json() if r.status == 200 else {}
    t.ok(r.status == 200 and j.get("timedOut") is True and (j.get("error") or {}).get("name") == "TimeoutError"
         and took < 40, "code that ignores the interrupt: 200, timedOut, TimeoutError (%.1f s)" % took, r)
    r = srv.get(SB + "/contexts/" + c)
    t.ok(r.status == 404 and r.code == "CONTEXT_NOT_FOUND"
         and wait_until(lambda: (process(MAIN, "context-" + c) or {}).get("status") != "running", timeout=30),
         "and its context is ended (404, its kernel no longer running)", r)


def s_isolation():
    # ---- the kernel runs inside the sandbox -----------------------------------
    a, b = state["a"], state["b"]
    j = ok_run("import os; os.getuid()", a)
    t.ok(main_text(j) not in (None, "0") and main_text(j).isdigit(), "the kernel does not run as root", j)
    j = run("open('/etc/shadow').read()", a)
    t.ok(j["error"] is not None and j["error"]["name"] in ("FileNotFoundError", "PermissionError"),
         "/etc/shadow cannot be read from code", j)
    j = ok_run("import socket; socket.gethostname()", a)
    t.eq(main_text(j), repr(MAIN), "socket.gethostname() is the sandbox id")
    j = run("import socket; socket.create_connection(('1.1.1.1', 53), timeout=3)", a)
    t.ok(j["error"] is not None and "Error" in j["error"]["name"], "no network (network none)", j)
    j = ok_run("import os; os.getcwd()", a)
    t.eq(main_text(j), "'/workspace'", "the kernel's cwd is the context cwd (/workspace by default)")
    j = ok_run("import os; (os.getcwd(), os.environ.get('K'), os.environ.get('SBV'))", b)
    t.eq(main_text(j), "('/tmp', 'V', 'sandbox')",
         "a context created with cwd /tmp and env K=V has them (on top of the sandbox's env)")
    ok_run("with open('from_code.txt', 'w') as f:\n    f.write('written by python')", a)
    r = srv.post(SB + "/files/read", {"path": "/workspace/from_code.txt"})
    t.ok(r.status == 200 and r.json()["content"] == "written by python",
         "a file written from code is in /workspace (files API)", r)
    j = ok_run("import os; os.getpid()", a)
    pid = wait_until(lambda: host_pid(MAIN, int(main_text(j))), timeout=10)
    state["a_host_pid"] = pid
    t.ok(pid is not None, "the kernel is a process of the sandbox (its pid namespace and cgroup)", j)


def s_two():
    # ---- two contexts are isolated -----------------------------------------
    a, b = state["a"], state["b"]
    ok_run("secret = 'only in a'", a)
    j = run("secret", b)
    t.ok(j["error"] is not None and j["error"]["name"] == "NameError",
         "a name set in one context is unknown in another", j)
    j = ok_run("secret", a)
    t.eq(main_text(j), "'only in a'", "and still known in the first")
    j = ok_run("import os; os.getpid()", b)
    j2 = ok_run("import os; os.getpid()", a)
    t.ok(main_text(j) != main_text(j2), "each context has its own kernel process", (j, j2))


def s_default():
    # ---- the default context -------------------------------------------------
    j = run("d = 5")
    t.ok(j["context"] == "default" and j["error"] is None, "no context field: the run goes to context 'default'", j)
    j = run("d * 2")
    t.ok(j["context"] == "default" and main_text(j) == "10", "the default context is reused (state kept)", j)
    r = srv.get(SB + "/contexts/default")
    t.ok(r.status == 200 and r.json()["id"] == "default" and r.json()["processId"] == "context-default",
         "GET contexts/default: its record", r)
    ids = [c["id"] for c in srv.get(SB + "/contexts").json()["contexts"]]
    t.ok("default" in ids, "the default context is listed", ids)
    j = run("d", state["a"])
    t.ok(j["error"] is not None and j["error"]["name"] == "NameError", "the default context is isolated too", j)
    r = srv.delete(SB + "/contexts/default")
    t.ok(r.status == 200 and r.json() == {"success": True, "id": "default"}, "the default context can be deleted", r)
    # (three rounds: the old kernel may still be ending when the next run comes)
    rs = [code("'d' in dir()")]
    for _ in range(2):
        wait_until(lambda: code("d = 1").status == 200, timeout=30)
        srv.delete(SB + "/contexts/default")
        rs.append(code("'d' in dir()"))
    t.ok(all(r.status == 200 and r.json()["context"] == "default" and main_text(r.json()) == "False"
             and r.json()["executionCount"] == 1 for r in rs),
         "the next run without a context starts a fresh default context at once (3 rounds)", rs)


def s_process():
    # ---- the kernel as a background process ---------------------------------
    a = state["a"]
    p = process(MAIN, "context-" + a)
    t.ok(p is not None and p.get("status") == "running",
         "the kernel is listed in processes as context-<id>, running", p)


def s_sse():
    # ---- SSE --------------------------------------------------------------------
    a = state["a"]
    st, ctype, raw, ev = sse("import sys\nprint('a')\nprint('b', file=sys.stderr)\n"
                             "from IPython.display import display, HTML\ndisplay(HTML('<b>s</b>'))\n6 * 7", a)
    names = [e for e, _ in ev]
    t.ok(st == 200 and "text/event-stream" in ctype and names and names[-1] == "execution_complete"
         and names.count("execution_complete") == 1,
         "SSE: 200 text/event-stream, execution_complete is the last event", raw)
    t.ok("".join(d["text"] for e, d in ev if e == "stdout") == "a\n"
         and "".join(d["text"] for e, d in ev if e == "stderr") == "b\n",
         "SSE: stdout and stderr events carry text", ev)
    res = [d for e, d in ev if e == "result"]
    t.ok(len(res) == 2 and res[0].get("html") == "<b>s</b>" and res[0].get("isMainResult") is False
         and res[1].get("text") == "42" and res[1].get("isMainResult") is True,
         "SSE: result events, the display then the main result", res)
    done = ev[-1][1] if ev else {}
    t.ok(isinstance(done.get("executionCount"), int) and done["executionCount"] > 0
         and isinstance(done.get("durationMs"), (int, float)) and done.get("timedOut") is False,
         "SSE: execution_complete has executionCount, durationMs, timedOut false", done)
    st, ctype, raw, ev = sse("raise ValueError('boom')", a)
    errs = [d for e, d in ev if e == "error"]
    t.ok(st == 200 and len(errs) == 1 and errs[0].get("name") == "ValueError" and errs[0].get("value") == "boom"
         and isinstance(errs[0].get("traceback"), list) and ev[-1][0] == "execution_complete",
         "SSE: an exception is an error event, then execution_complete", raw)
    st, ctype, raw, ev = sse("import time; time.sleep(30)", a, timeoutMs=1500)
    t.ok(st == 200 and ev and ev[-1][0] == "execution_complete" and ev[-1][1].get("timedOut") is True,
         "SSE: a timed-out run ends with execution_complete timedOut true", raw)
    st, ctype, raw, ev = sse("1", "ctx-000000000000")
    err = json.loads(raw).get("error", {}) if "json" in ctype else {}
    t.ok(st == 404 and err.get("code") == "CONTEXT_NOT_FOUND",
         "SSE with an unknown context: a plain 404 CONTEXT_NOT_FOUND, not a stream", (st, ctype, raw))

    # A client that goes away mid-run gets the run interrupted.
    ok_run("survivor = 'kept'", a)
    c, resp, seen, _ = stream_until("import time; print('start', flush=True); time.sleep(60)", a, b"start",
                                    seconds=90)
    t.ok(resp.status == 200 and b"start" in seen, "SSE: output arrives while the run goes on", seen)
    c.sock.shutdown(socket.SHUT_RDWR)
    c.close()
    t0 = time.time()
    j = None
    while time.time() - t0 < 90:
        r = code("1 + 1", a)
        if r.status == 200 and main_text(r.json()) == "2":
            j = r.json()
            break
        time.sleep(0.2)
    took = time.time() - t0
    t.ok(j is not None and took < 12,
         "after the client disconnects, the next run completes at once (%.1f s, the run slept 60)" % took, (took, j))
    j = ok_run("survivor", a)
    t.eq(main_text(j), "'kept'", "the context keeps its state after a disconnect")
    # the same for a plain JSON request
    srv.post(SB + "/files/delete", {"path": "started"})
    c = srv.conn(HTTP_TIMEOUT)
    c.request("POST", SB + "/code",
              body=json.dumps({"code": "open('/workspace/started', 'w').close()\nimport time; time.sleep(60)",
                               "context": a}).encode(),
              headers={"Authorization": "Bearer " + srv.token, "Content-Type": "application/json"})
    started = wait_until(lambda: srv.post(SB + "/files/exists", {"path": "started"}).json().get("exists"),
                         timeout=60)
    c.sock.shutdown(socket.SHUT_RDWR)
    c.close()
    t0 = time.time()
    j = run("survivor", a)
    took = time.time() - t0
    t.ok(started and main_text(j) == "'kept'" and took < 12,
         "a JSON client that disconnects also gets its run interrupted (%.1f s)" % took, (started, took, j))


def s_delete():
    # ---- deleting contexts and sandboxes ---------------------------------------
    b = state["b"]
    r = srv.delete(SB + "/contexts/" + b)
    t.ok(r.status == 200 and r.json() == {"success": True, "id": b}, "delete a context: 200 success and id", r)
    r = srv.get(SB + "/contexts/" + b)
    t.ok(r.status == 404 and r.code == "CONTEXT_NOT_FOUND", "a deleted context: 404 CONTEXT_NOT_FOUND", r)
    ids = [c["id"] for c in srv.get(SB + "/contexts").json()["contexts"]]
    t.ok(b not in ids and state["a"] in ids, "a deleted context is no longer listed (the others are)", ids)
    r = code("1", b)
    t.ok(r.status == 404 and r.code == "CONTEXT_NOT_FOUND", "run in a deleted context: 404", r)
    gone = wait_until(lambda: (process(MAIN, "context-" + b) or {}).get("status") != "running", timeout=30)
    t.ok(gone, "the deleted context's kernel process is no longer running", process(MAIN, "context-" + b))
    j = ok_run("x", state["a"])
    t.eq(main_text(j), "1", "the other context is untouched")

    # deleting a sandbox ends its contexts' kernels
    srv.create(GONE)
    firsts = {}

    def first_use(i):
        firsts[i] = code("import os; os.getpid()", sid=GONE)
    in_threads(first_use, 4)
    pids = set(main_text(r.json()) if r.status == 200 else r for r in firsts.values())
    procs = [p["id"] for p in srv.get("/v1/sandboxes/%s/processes" % GONE).json()["processes"]]
    t.ok(len(pids) == 1 and None not in pids and procs == ["context-default"],
         "4 concurrent first runs without a context share one default context", (firsts, procs))
    g = new_context(GONE)
    j = ok_run("import os; os.getpid()", g["id"], sid=GONE)
    inner = int(main_text(j))
    pid = wait_until(lambda: host_pid(GONE, inner), timeout=10)
    t.ok(pid is not None, "a context in a second sandbox (default limits) runs", j)
    with open("/proc/%d/stat" % pid) as f:
        start = f.read().rsplit(")", 1)[1].split()[19]

    def ended():
        try:
            with open("/proc/%d/stat" % pid) as f:
                return f.read().rsplit(")", 1)[1].split()[19] != start
        except OSError:
            return True
    r = srv.delete("/v1/sandboxes/" + GONE)
    t.ok(r.status == 200 and wait_until(ended, timeout=30), "deleting the sandbox ends its context's kernel", r)
    r = srv.get("/v1/sandboxes/%s/contexts" % GONE)
    t.ok(r.status == 404 and r.code == "SANDBOX_NOT_FOUND", "contexts of a deleted sandbox: 404 SANDBOX_NOT_FOUND", r)


def s_exit():
    # ---- a kernel that exits -------------------------------------------------
    c = new_context()["id"]
    r = code("import os; os._exit(3)", c)
    t.ok(r.status == 503 and r.code == "INTERPRETER_NOT_READY",
         "code that ends the interpreter: 503 INTERPRETER_NOT_READY", r)
    r = srv.get(SB + "/contexts/" + c)
    r2 = code("1", c)
    t.ok(r.status == 404 and r.code == "CONTEXT_NOT_FOUND" and r2.status == 404,
         "that context is gone (404 CONTEXT_NOT_FOUND)", (r, r2))
    j = ok_run("x", state["a"])
    t.eq(main_text(j), "1", "the other contexts live on")


def s_sleep():
    # ---- sleep ends contexts; a long run keeps the sandbox awake -------------
    srv.create(NAP, sleepAfter="1s")
    c = new_context(NAP)["id"]
    j = run("import time; time.sleep(3); 'awake'", c, sid=NAP)
    t.ok(main_text(j) == "'awake'" and j["error"] is None,
         "a run longer than sleepAfter is not cut by sleep (it is a request)", j)

    def asleep():
        for s in srv.get("/v1/sandboxes").json()["sandboxes"]:
            if s["id"] == NAP:
                return s["status"] == "stopped"
        return False
    t.ok(wait_until(asleep, timeout=60), "the idle sandbox goes to sleep, contexts and all")
    r = srv.get("/v1/sandboxes/%s/contexts/%s" % (NAP, c))
    r2 = srv.get("/v1/sandboxes/%s/contexts" % NAP)
    t.ok(r.status == 404 and r.code == "CONTEXT_NOT_FOUND" and r2.status == 200 and r2.json()["contexts"] == [],
         "after a sleep its contexts are gone: 404 CONTEXT_NOT_FOUND, empty list", (r, r2))
    j = run("'new'", sid=NAP)
    t.eq(main_text(j), "'new'", "and code runs again in a new default context (the sandbox wakes)")


def s_flood():
    # ---- a run that prints 40 MB: the reply keeps 16 MB of it and says so ---------
    a = state["a"]
    j = run("for i in range(400):\n    print('x' * 100000)\n'done'", a)
    kept = len(out(j))
    t.ok(j.get("logsTruncated") is True and 8 << 20 <= kept <= 16 << 20 and main_text(j) == "'done'",
         "40 MB of stdout: the reply keeps 16 MB, says logsTruncated, the run completes", (kept, j.get("logsTruncated")))
    st, ctype, raw, ev = sse("for i in range(200):\n    print('y' * 100000)", a)
    got = sum(len(d["text"]) for e, d in ev if e == "stdout")
    t.ok(st == 200 and got == 200 * 100001 and ev[-1][0] == "execution_complete",
         "a streamed run sends all of it (20 MB)", (st, got))
    r = srv.get("/v1/health", token=False)
    t.eq(r.status, 200, "the server is fine after both")


def s_input():
    # ---- input(): lines given with the request, or answered while streaming --------
    a = state["a"]
    j = run("n = input('name? ')\nage = input('age? ')\nf'{n} is {age}'", a, stdin="Bob\n42\n")
    t.ok(j["error"] is None and main_text(j) == "'Bob is 42'" and out(j) == "name? Bob\nage? 42\n",
         "stdin as text: one line per input(), prompts and answers in stdout", j)
    j = run("import getpass\np = getpass.getpass('pw: ')\nlen(p)", a, stdin=["secret"])
    t.ok(j["error"] is None and main_text(j) == "6" and "secret" not in out(j),
         "stdin as a list; a password answer is not echoed", j)
    j = run("x1 = input('a ')\nx2 = input('b ')", a, stdin=["only one"])
    t.ok(j["error"] is not None and j["error"]["name"] == "EOFError" and out(j) == "a only one\n",
         "more input() than lines given: EOFError", j)
    j = run("x1", a)
    t.eq(main_text(j), "'only one'", "and the context goes on, with what was read")
    j = run("input('q ')", a)
    t.ok(j["error"] is not None and j["error"]["name"] == "StdinNotImplementedError",
         "no stdin and no stream: input() raises StdinNotImplementedError (as in nbclient)", j)
    r = code("1", a, stdin=5)
    t.ok(r.status == 400 and r.code == "VALIDATION_FAILED", "stdin of another type: 400", r)
    r = srv.post(SB + "/contexts/%s/input" % a, {"value": "nobody asked"})
    t.ok(r.status == 400 and r.code == "VALIDATION_FAILED", "input while no run waits for it: 400", r)
    r = srv.post(SB + "/contexts/ctx-000000000000/input", {"value": "x"})
    t.ok(r.status == 404 and r.code == "CONTEXT_NOT_FOUND", "input to an unknown context: 404", r)

    # streamed: an input_request event, answered with POST .../input
    c, resp, buf = stream_until_input("v = input('say: ')\nprint('got', v)", a)
    ev = parse_sse(buf.decode())
    asked = [d for e, d in ev if e == "input_request"]
    t.ok(asked and asked[0].get("prompt") == "say: " and asked[0].get("password") is False,
         "SSE: input() sends an input_request event with the prompt", ev)
    r = srv.post(SB + "/contexts/%s/input" % a, {"value": "typed"})
    t.ok(r.status == 200 and r.json().get("success") is True, "POST .../input answers it", r)
    rest = resp.read()
    c.close()
    ev = parse_sse((buf + rest).decode())
    t.ok("".join(d["text"] for e, d in ev if e == "stdout") == "got typed\n" and ev[-1][0] == "execution_complete",
         "the code goes on with the answer", ev)
    st, ctype, raw, ev = sse("input('never answered ')", a, timeoutMs=1500)
    t.ok(ev and ev[-1][0] == "execution_complete" and ev[-1][1].get("timedOut") is True,
         "an unanswered input() ends at timeoutMs", raw)
    j = run("'after'", a)
    t.eq(main_text(j), "'after'", "and the context is usable")


def s_restart_interrupt():
    # ---- restart (E2B's restartCodeContext) and interrupt ----------------------
    import threading
    ctx = new_context(cwd="/tmp", env={"RK": "rv"})["id"]
    ok_run("x = 41\nimport os", ctx)
    t.eq(main_text(ok_run("x + 1", ctx)), "42", "restart: the context has state before")
    r = srv.post(SB + "/contexts/%s/restart" % ctx, {}, timeout=HTTP_TIMEOUT)
    j = r.json() if r.status == 200 else {}
    t.ok(r.status == 200 and j.get("id") == ctx and j.get("language") == "python" and j.get("cwd") == "/tmp"
         and j.get("executionCount") == 0,
         "restart: 200, the same id, language and cwd, executionCount 0", r)
    j = run("x", ctx)
    t.ok((j.get("error") or {}).get("name") == "NameError" and j.get("executionCount") == 1,
         "restart: the old state is gone (NameError) and the count starts again at 1", j)
    j = ok_run("import os\n(os.environ.get('RK'), os.getcwd())", ctx)
    t.eq(main_text(j), "('rv', '/tmp')", "restart: the new kernel has the context's env and cwd")
    r = srv.post(SB + "/contexts/ctx-000000000000/restart", {})
    t.ok(r.status == 404 and r.json()["error"]["code"] == "CONTEXT_NOT_FOUND", "restart an unknown context: 404", r)

    r = srv.post(SB + "/contexts/%s/interrupt" % ctx, {})
    t.ok(r.status == 200 and r.json().get("interrupted") is False,
         "interrupt with nothing running: 200, interrupted false", r)
    ok_run("kept = 'still here'", ctx)
    done = {}

    def long_run():
        done["r"] = code("import time\nwhile True:\n    time.sleep(0.01)", ctx, timeoutMs=60000)
        done["t"] = time.time()
    th = threading.Thread(target=long_run)
    th.start()
    asked = wait_until(lambda: srv.post(SB + "/contexts/%s/interrupt" % ctx, {}).json().get("interrupted"), 60)
    t0 = time.time()
    th.join(60)
    r = done.get("r")
    j = r.json() if r is not None and r.status == 200 else {}
    t.ok(asked and (j.get("error") or {}).get("name") == "KeyboardInterrupt" and j.get("timedOut") is False
         and done["t"] - t0 < 10,
         "interrupt a running loop: the run ends with KeyboardInterrupt, not a timeout", (asked, r))
    t.eq(main_text(ok_run("kept", ctx)), "'still here'", "after an interrupt the context keeps its state")
    # an interrupt that reaches the kernel before it has taken the run's
    # request: here the kernel is busy between runs (an asyncio callback of
    # the run before sleeps 1.5 s in the loop's turn), so it would land there
    # and be dropped as an interrupt of an idle kernel is, and the loop would
    # run on. The server holds it until the kernel says busy for the run.
    ok_run("import asyncio, time\nasyncio.get_event_loop().call_later(0.3, time.sleep, 1.5)", ctx)
    time.sleep(0.6)   # the callback sleeps now
    done2 = {}

    def long_run2():
        done2["r"] = code("import time\nwhile True:\n    time.sleep(0.01)", ctx, timeoutMs=60000)
    th = threading.Thread(target=long_run2)
    th.start()
    asked = wait_until(lambda: srv.post(SB + "/contexts/%s/interrupt" % ctx, {}).json().get("interrupted"), 30)
    th.join(30)
    r = done2.get("r")
    j = r.json() if r is not None and r.status == 200 else {}
    t.ok(asked and (j.get("error") or {}).get("name") == "KeyboardInterrupt" and j.get("timedOut") is False,
         "an interrupt asked while the kernel is still busy between runs (it has not taken the run's request): "
         "the run ends with KeyboardInterrupt", (asked, r))
    if r is None:   # the loop runs on (the binary before): end it for the cases below
        srv.post(SB + "/contexts/%s/interrupt" % ctx, {})
        th.join(30)
    r = srv.post(SB + "/contexts/ctx-000000000000/interrupt", {})
    t.ok(r.status == 404, "interrupt an unknown context: 404", r)

    done.clear()
    th = threading.Thread(target=long_run)
    th.start()
    wait_until(lambda: srv.get(SB + "/contexts/" + ctx).json().get("status") == "busy", 30)
    r = srv.post(SB + "/contexts/%s/restart" % ctx, {}, timeout=HTTP_TIMEOUT)
    th.join(60)
    rr = done.get("r")
    t.ok(r.status == 200 and rr is not None and not th.is_alive()
         and (rr.status != 200 or rr.json().get("error") is not None),
         "restart while code runs: the run ends (with an error) and the restart succeeds", (r, rr))
    t.eq(main_text(ok_run("6 * 7", ctx)), "42", "the restarted context runs code")
    r = srv.post(SB + "/contexts", {"language": "javascript"}, timeout=HTTP_TIMEOUT)
    js = r.json().get("id") if r.status == 201 else None
    if js:
        ok_run("var jv = 5", js)
        r = srv.post(SB + "/contexts/%s/restart" % js, {}, timeout=HTTP_TIMEOUT)
        j = run("typeof jv", js)
        t.ok(r.status == 200 and r.json().get("language") == "javascript" and main_text(j) == "'undefined'",
             "restart a javascript context: still javascript, its variables gone", (r, j))
        srv.delete(SB + "/contexts/" + js)
    srv.delete(SB + "/contexts/" + ctx)


# an old kernel that ignores SIGTERM: its replacement waits a second for
# the KILL, so a restart lasts long enough to be seen (status "restarting")
SLOW_TO_END = "import signal\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)"
LOOP = "import time\nwhile True:\n    time.sleep(0.01)"
ASKED = "restarted by the API (POST .../restart)"


def ctx_record(c, sid=MAIN):
    r = srv.get("/v1/sandboxes/%s/contexts/%s" % (sid, c))
    return r.json() if r.status == 200 else {}


def restart(c, sid=MAIN):
    return srv.post("/v1/sandboxes/%s/contexts/%s/restart" % (sid, c), {}, timeout=HTTP_TIMEOUT)


def later(got, name, fn, *args, **kw):
    """fn(*args, **kw) in a thread: got[name] is its value, got[name + "-t"]
    when it came."""
    def go():
        got[name] = fn(*args, **kw)
        got[name + "-t"] = time.time()
    th = threading.Thread(target=go)
    th.start()
    return th


def reply(r):
    """A 200 reply's JSON, else {} (so that a check fails, not the section)."""
    return r.json() if r is not None and r.status == 200 else {}


def text_of(j):
    return main_text(j) if "results" in j else None


# POST .../restart gives the context a new kernel in place (as a cut does):
# the same context, so runs waiting for it go on with the new kernel; the
# record counts it; a run in progress ends at once with ContextRestarted.

def s_restart_idle():
    # an idle context: the reply is its record, counted and said why; the
    # next run of the caller who asked is not told
    c = new_context()["id"]
    ok_run("x = 41", c)
    r = restart(c)
    j = reply(r)
    t.ok(j.get("id") == c and j.get("executionCount") == 0 and j.get("status") == "ready"
         and j.get("restarts") == 1 and j.get("restartReason") == ASKED and ISO.match(j.get("restartedAt", "")),
         "restart an idle context: 200, its record: executionCount 0, ready, restarts 1, restartReason says the "
         "API asked, restartedAt", r)
    j = reply(code("globals().get('x', 'gone')", c))
    t.ok(text_of(j) == "'gone'" and j.get("executionCount") == 1 and "restarted" not in j
         and j["logs"]["stderr"] == [],
         "the next run: the state is gone, executionCount 1, and no notice (its caller asked)", j)
    srv.delete(SB + "/contexts/" + c)


def s_restart_waiting_run():
    # a run waiting behind a long run: the long run ends at once with
    # ContextRestarted, the waiting one runs on the new kernel and is told
    c = new_context()["id"]
    ok_run("x = 41\n" + SLOW_TO_END, c)
    got = {}
    ta = later(got, "long", code, LOOP, c, timeoutMs=60000)
    wait_until(lambda: ctx_record(c).get("status") == "busy", timeout=30)
    tb = later(got, "wait", code, "globals().get('x', 'gone')", c)
    t0 = time.time()
    r = restart(c)
    ta.join(60)
    tb.join(60)
    a, b = got.get("long"), got.get("wait")
    aj = reply(a)
    t.ok((aj.get("error") or {}).get("name") == "ContextRestarted" and "POST" in aj["error"].get("value", "")
         and aj.get("timedOut") is False and got["long-t"] - t0 < 5,
         "the run in progress when the restart is asked: 200 at once, error ContextRestarted (not a timeout)", a)
    j = reply(r)
    t.ok(j.get("id") == c and j.get("restarts") == 1 and j.get("executionCount") == 0
         and j.get("restartReason") == ASKED,
         "the restart: 200, the same context, restarts 1, executionCount 0", r)
    bj = reply(b)
    errs = (bj.get("logs") or {}).get("stderr") or [""]
    t.ok(text_of(bj) == "'gone'" and bj.get("executionCount") == 1
         and (bj.get("restarted") or {}).get("reason") == ASKED
         and errs[0].startswith("[cellbox] this context was restarted at") and ASKED in errs[0],
         "the run waiting behind it runs on the new kernel: state gone, executionCount 1, told so (restarted, "
         "the notice first on stderr)", b)
    j = reply(code("1 + 1", c))
    t.ok(text_of(j) == "2" and "restarted" not in j and j.get("executionCount") == 2,
         "the run after it: no notice", j)
    srv.delete(SB + "/contexts/" + c)


def s_restart_interrupt_during():
    # a streamed long run cut by a restart: an error event ContextRestarted,
    # then the end; an interrupt during the restart interrupts nothing (the
    # run ends with the restart's error), and not the next run either
    c = new_context()["id"]
    ok_run(SLOW_TO_END, c)
    got = {}
    ta = later(got, "sse", sse, LOOP, c)
    wait_until(lambda: ctx_record(c).get("status") == "busy", timeout=30)
    tr = later(got, "restart", restart, c)
    seen = wait_until(lambda: ctx_record(c).get("status") == "restarting", timeout=30, step=0.02)
    i = srv.post(SB + "/contexts/%s/interrupt" % c, {})
    tr.join(60)
    ta.join(60)
    st, ctype, raw, ev = got.get("sse") or (0, "", "", [])
    errs = [d for e, d in ev if e == "error"]
    t.ok(st == 200 and [d.get("name") for d in errs] == ["ContextRestarted"] and ev[-1][0] == "execution_complete",
         "a streamed run cut by a restart: one error event ContextRestarted, then execution_complete", ev[-3:])
    r = got.get("restart")
    t.ok(seen and i.status == 200 and i.json().get("interrupted") is False and r is not None and r.status == 200,
         "an interrupt during a restart (status restarting): 200, interrupted false; the restart succeeds",
         (seen, i, r))
    j = reply(code("import time\ntime.sleep(0.5)\n2", c))
    t.ok(text_of(j) == "2" and j.get("error", 0) is None, "the next run is not interrupted", j)
    srv.delete(SB + "/contexts/" + c)


def s_restart_twice():
    # a restart during a restart: both answered by one new kernel
    c = new_context()["id"]
    ok_run("x = 41\n" + SLOW_TO_END, c)
    got = {}
    tr = later(got, "first", restart, c)
    seen = wait_until(lambda: ctx_record(c).get("status") == "restarting", timeout=30, step=0.02)
    r2 = restart(c)
    tr.join(60)
    r1 = got.get("first")
    t.ok(seen and reply(r1).get("id") == c and reply(r2).get("id") == c and ctx_record(c).get("restarts") == 1,
         "a restart during a restart: both 200, the same context, one new kernel (restarts 1)", (seen, r1, r2))
    j = reply(code("globals().get('x', 'gone')", c))
    t.ok(text_of(j) == "'gone'" and j.get("executionCount") == 1 and "restarted" not in j,
         "then the state is gone, executionCount 1, no notice", j)

    # a context whose kernel died: a restart gives it a new one
    srv.delete(SB + "/processes/context-" + c)
    dead = wait_until(lambda: (process(MAIN, "context-" + c) or {}).get("status") != "running", timeout=30)
    r = restart(c)
    j = reply(code("6 * 7", c))
    t.ok(dead and r.status == 200 and text_of(j) == "42" and "restarted" not in j,
         "restart a context whose kernel was killed: 200, it runs code again", (dead, r, j))
    srv.delete(SB + "/contexts/" + c)


def s_restart_races():
    # a restart racing the delete of the context, and of its sandbox
    c = new_context()["id"]
    ok_run(SLOW_TO_END, c)
    got = {}
    tr = later(got, "restart", restart, c)
    seen = wait_until(lambda: ctx_record(c).get("status") == "restarting", timeout=30, step=0.02)
    d = srv.delete(SB + "/contexts/" + c)
    tr.join(60)
    r = got.get("restart")
    gone = wait_until(lambda: (process(MAIN, "context-" + c) or {}).get("status") != "running", timeout=30)
    t.ok(seen and d.status == 200 and r is not None and r.status == 404 and r.code == "CONTEXT_NOT_FOUND"
         and srv.get(SB + "/contexts/" + c).status == 404 and gone,
         "a restart racing the context's delete: the delete 200, the restart 404 CONTEXT_NOT_FOUND, no kernel "
         "left", (seen, d, r))
    srv.create(RACE)
    c = new_context(RACE)["id"]
    run(SLOW_TO_END, c, sid=RACE)
    got.clear()
    tr = later(got, "restart", restart, c, RACE)
    seen = wait_until(lambda: ctx_record(c, RACE).get("status") == "restarting", timeout=30, step=0.02)
    d = srv.delete("/v1/sandboxes/" + RACE)
    tr.join(60)
    r = got.get("restart")
    h = srv.get("/v1/health", token=False)
    t.ok(seen and d.status == 200 and r is not None and r.status == 404 and r.code == "CONTEXT_NOT_FOUND"
         and h.status == 200,
         "a restart racing its sandbox's delete: the delete 200, the restart 404 CONTEXT_NOT_FOUND, the server "
         "answers", (seen, d, r))


def s_javascript():
    # ---- JavaScript and TypeScript contexts (a node child of the kernel) -------
    r = srv.post(SB + "/contexts", {"language": "javascript"}, timeout=HTTP_TIMEOUT)
    j = r.json() if r.status == 201 else {}
    js = j.get("id")
    t.ok(r.status == 201 and CTX_ID.match(js or "") and j.get("language") == "javascript",
         "create a javascript context: 201, language javascript (node runs inside the sandbox)", r)
    r = srv.post(SB + "/contexts", {"language": "ts", "cwd": "/tmp"}, timeout=HTTP_TIMEOUT)
    j = r.json() if r.status == 201 else {}
    tsc = j.get("id")
    t.ok(r.status == 201 and j.get("language") == "typescript", "language 'ts' makes a typescript context", r)
    if not js:
        return
    j = run("let n = 40; const f = (x) => x + 2", js)
    t.ok(j["error"] is None and j["results"] == [] and j["executionCount"] == 1,
         "JS: declarations, no result, executionCount 1", j)
    j = run("f(n)", js)
    t.eq(main_text(j), "42", "JS: state persists; the last expression is the main result")
    j = run("({a: 1, b: [1, 2]})", js)
    t.eq(main_text(j), "{ a: 1, b: [ 1, 2 ] }", "JS: an object's text is util.inspect's")
    j = run("console.log('out'); console.error('err'); console.log('out2')", js)
    t.ok(out(j) == "out\nout2\n" and out(j, "stderr") == "err\n", "JS: console.log / console.error in logs", j)
    j = run("null.x", js)
    e = j.get("error") or {}
    t.ok(e.get("name") == "TypeError" and "null" in e.get("value", "") and e.get("traceback"),
         "JS: an exception gives error name, value and traceback", j)
    j = ok_run("display.html('<b>js</b>'); display.png(Buffer.from([137, 80, 78, 71]));"
               " display.json({k: [1, null]}); display.svg('<svg/>'); display.markdown('*m*'); 7", js)
    res = j["results"]
    t.eq([(r.get("html"), r.get("png"), r.get("json"), r.get("svg"), r.get("markdown"), r.get("isMainResult"))
          for r in res],
         [("<b>js</b>", None, None, None, None, False), (None, "iVBORw==", None, None, None, False),
          (None, None, {"k": [1, None]}, None, None, False), (None, None, None, "<svg/>", None, False),
          (None, None, None, None, "*m*", False), (None, None, None, None, None, True)],
         "JS: display.html/png/json/svg/markdown come back as results like Python's, then the main result")
    j = ok_run("const os = require('os'); [process.getuid() === 0, os.hostname(), process.cwd()]", js)
    t.eq(main_text(j), "[ false, '%s', '/workspace' ]" % MAIN,
         "JS: node runs in the sandbox (not root, its hostname, cwd /workspace)")
    j = ok_run("await new Promise(r => setTimeout(() => r('later'), 50))", js)
    t.eq(main_text(j), "'later'", "JS: top-level await")
    t0 = time.time()
    r = code("while (true) {}", js, timeoutMs=1500)
    took = time.time() - t0
    j = r.json() if r.status == 200 else {}
    t.ok(r.status == 200 and j.get("timedOut") is True and took < 25,
         "JS: timeoutMs interrupts a busy loop (%.1f s)" % took, r)
    j = run("n", js)
    t.eq(main_text(j), "40", "JS: after the timeout the context keeps its state")
    j = run("const who = await input('name? ');\nconst age = await prompt('age? ');\n`${who} is ${age}`", js,
            stdin="Bob\n42\n")
    t.ok(j["error"] is None and main_text(j) == "'Bob is 42'" and out(j) == "name? Bob\nage? 42\n",
         "JS: input() / prompt() answered from the run's stdin lines, prompts and answers in stdout", j)
    j = run("(await input('pw: ', {password: true})).length", js, stdin=["secret"])
    t.ok(j["error"] is None and main_text(j) == "6" and "secret" not in out(j),
         "JS: a password input() is not echoed", j)
    j = run("var x1 = await input('a ');\nvar x2 = await input('b ')", js, stdin=["only one"])
    t.ok((j.get("error") or {}).get("name") == "EOFError" and out(j) == "a only one\n",
         "JS: more input() than lines given: EOFError", j)
    j = run("[x1, n]", js)
    t.eq(main_text(j), "[ 'only one', 40 ]", "JS: and the context goes on, with what was read")
    j = run("await input('q ')", js)
    t.ok((j.get("error") or {}).get("name") == "StdinNotImplementedError",
         "JS: no stdin and no stream: input() is rejected with StdinNotImplementedError", j)
    c, resp, buf = stream_until_input("console.log('got', await input('say: '))", js)
    asked = [d for e, d in parse_sse(buf.decode()) if e == "input_request"]
    r = srv.post(SB + "/contexts/%s/input" % js, {"value": "typed"})
    ev = parse_sse((buf + resp.read()).decode())
    c.close()
    t.ok(asked and asked[0].get("prompt") == "say: " and r.status == 200
         and "".join(d["text"] for e, d in ev if e == "stdout") == "got typed\n" and ev[-1][0] == "execution_complete",
         "JS, streamed: an input_request event, answered with POST .../input", (asked, r, ev))
    if tsc:
        j = run("interface P { x: number }\nconst p: P = {x: 5};\n"
                "function dbl(v: number): number { return v * 2 }\ndbl(p.x)", tsc)
        t.ok(j["error"] is None and main_text(j) == "10", "TS: a cell with types runs; main result 10", j)
        j = run("let bad: number = ;", tsc)
        t.ok((j.get("error") or {}).get("name") == "SyntaxError", "TS: a syntax error is an error SyntaxError", j)
        j = ok_run("display.html('<i>ts</i>'); process.cwd()", tsc)
        t.eq([(r.get("html"), r.get("text")) for r in j["results"]], [("<i>ts</i>", None), (None, "'/tmp'")],
             "TS: display.html and the main result; cwd /tmp")
    # no context, language javascript: a default context of that language
    j = run("typeof display + ' ' + (1 + 1)", language="javascript")
    t.ok(j["error"] is None and main_text(j) == "'function 2'" and j["context"] == "default-javascript",
         "a run with language javascript and no context uses the context default-javascript", j)
    for c in (js, tsc, "default-javascript"):
        if c:
            r = srv.delete(SB + "/contexts/" + c)
            t.ok(r.status in (200, 204), "delete the %s context" % c, r)


# Code in a context owns its kernel's process: it can write to the kernel's
# own connections to the server (their fds are its fds; the sockets' paths
# are in the connection file named on its command line) whatever it likes.
# This finds the accepted connection of the kernel's unix socket for `chan`
# (s: a socket on a dup of its fd: the connected one whose own address is
# that path; the listening one has SO_ACCEPTCONN); HOSTILE then writes ZMTP frames (flags, 64-bit size,
# body) on it, body bytes sent as 16 MiB slices of zeros; PARTS writes one
# message of `parts` empty parts (2 bytes each on the wire).
OWN_CONNECTION = r"""
import json, os, socket, struct
argv = open('/proc/self/cmdline', 'rb').read().split(b'\0')
conn = json.load(open(argv[argv.index(b'-f') + 1]))
path = '%%s-%%d' %% (conn['ip'], conn['%(chan)s_port'])
fd = None
for n in os.listdir('/proc/self/fd'):
    try:
        if not os.readlink('/proc/self/fd/' + n).startswith('socket:'):
            continue
        t = socket.socket(fileno=os.dup(int(n)))
        try:
            if (t.family == socket.AF_UNIX and t.getsockname() == path
                    and not t.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)):
                fd = int(n)
        finally:
            t.close()
    except OSError:
        pass
s = socket.socket(fileno=os.dup(fd))
s.settimeout(120)
"""
# (in a cell) libzmq's I/O thread may still be writing what the kernel queued
# on the connection before the cell ran (status busy, execute_input): bytes
# written meanwhile would cut into its frames (a CI run got "malformed frame"
# instead of the bound under test). The kernel sends nothing else meanwhile.
SETTLE = "import time\ntime.sleep(0.3)\n"
HOSTILE = OWN_CONNECTION + SETTLE + r"""
zeros = memoryview(bytes(16 << 20))
sent, err = 0, None
try:
    for i in range(%(frames)d):
        s.sendall(bytes([2 | (i + 1 < %(frames)d)]) + struct.pack('>Q', %(size)d))
        left = %(size)d
        while left:
            n = min(len(zeros), left)
            s.sendall(zeros[:n])
            left -= n
            sent += n
except OSError as e:
    err = repr(e)
s.close()
"""
# A thread that goes on after its run: once /tmp/flood-go exists (its run
# has ended: the kernel writes nothing then), `msgs` messages of one 48 MiB
# part each (complete, within the bounds), counted in /tmp/flood-sent.
BACKGROUND = OWN_CONNECTION + r"""
import threading, time
def flood():
    zeros = memoryview(bytes(16 << 20))
    while not os.path.exists('/tmp/flood-go'):
        time.sleep(0.01)
    try:
        for i in range(%(msgs)d):
            s.sendall(b'\x02' + struct.pack('>Q', 48 << 20))
            for k in range(3):
                s.sendall(zeros)
            with open('/tmp/flood-sent', 'w') as f:
                f.write(str(i + 1))
    except OSError:
        pass
threading.Thread(target=flood, daemon=True).start()
"""
# A thread that cuts its kernel's connection after its run: once the file
# `flag` exists, a frame announcing 768 MiB on the kernel's `chan` connection.
LATER = OWN_CONNECTION + r"""
import threading, time
def cut():
    while not os.path.exists('%(flag)s'):
        time.sleep(0.01)
    try:
        s.sendall(b'\x02' + struct.pack('>Q', 768 << 20) + bytes(1 << 20))
    except OSError:
        pass
threading.Thread(target=cut, daemon=True).start()
"""
# usercustomize.py for the sandbox's user: a kernel started with CUT_AT_START
# in its environment cuts its IOPub connection 5 s after it is connected,
# once /tmp/cut-start exists: every new kernel of that context does.
AT_START = r"""
import os
if os.environ.get('CUT_AT_START'):
    import threading, time
    def _cut():
        import json, os, socket, struct  # (the lines below import them too: locals)
        while not os.path.exists('/tmp/cut-start'):
            time.sleep(0.01)
        for _ in range(3000):
            try:
%s
                break
            except Exception:
                time.sleep(0.01)
        time.sleep(5)
        s.sendall(b'\x02' + struct.pack('>Q', 768 << 20) + bytes(1 << 20))
    threading.Thread(target=_cut, daemon=True).start()
"""
PARTS = OWN_CONNECTION + SETTLE + r"""
try:
    s.sendall(b'\x01\x00' * %(parts)d + b'\x00\x00')
except OSError as e:
    err = repr(e)
s.close()
"""


def server_peak_mib(reset=False):
    """The server's peak RSS (VmHWM) in MiB; reset: start a new peak from
    the current RSS (clear_refs 5)."""
    if reset:
        with open("/proc/%d/clear_refs" % srv.server_pid, "w") as f:
            f.write("5")
    with open("/proc/%d/status" % srv.server_pid) as f:
        return int([ln for ln in f if ln.startswith("VmHWM:")][0].split()[1]) >> 10


def s_bounds():
    # ---- what a context's kernel can make the server hold ---------------------------
    # The kernel sends a big print as stream messages of at most about 8 MiB
    # each, cut between characters (multi-byte ones and \u00XX escapes too)
    a = state["a"]
    text = "é" * 3_000_000 + "\x01" * 1_000_000 + "x" * 9_000_000
    st, ctype, raw, ev = sse("import sys\nsys.stdout.write('é' * 3_000_000 + '\\x01' * 1_000_000 + 'x' * 9_000_000)"
                             "\nsys.stdout.flush()", a)
    parts = [d["text"] for e, d in ev if e == "stdout"]
    sizes = [len(json.dumps(p, ensure_ascii=False).encode()) for p in parts]
    t.ok(st == 200 and "".join(parts) == text and len(parts) >= 3 and max(sizes) <= 8 << 20,
         "one 22 MB write comes as several stream parts of at most 8 MiB of JSON each, joined back exactly",
         (st, len(parts), sizes))

    # a legitimate 300 MB print: truncated logs and the flag, as before; the
    # server holds a small part of it at a time
    c = new_context()["id"]
    before = server_peak_mib(reset=True)
    r = code("print('x' * 300_000_000)\n'done'", c)
    peak = server_peak_mib()
    j = r.json() if r.status == 200 else {"logs": {"stdout": []}, "results": [], "error": r.body[:300]}
    kept = len(out(j))
    t.ok(j.get("logsTruncated") is True and 8 << 20 <= kept <= 16 << 20 and main_text(j) == "'done'"
         and j["error"] is None,
         "print('x' * 300_000_000): 200, 16 MiB of it kept, logsTruncated, the run completes",
         (r.status, kept, {k: v for k, v in j.items() if k != "logs"}))
    t.ok(peak - before < 256, "and the server's peak RSS grew by less than 256 MiB", (before, peak))
    srv.delete(SB + "/contexts/" + c)

    # hostile code: one 768 MiB frame on the kernel's own IOPub connection
    c = new_context()["id"]
    ok_run("state = 'before'", c)
    before = server_peak_mib(reset=True)
    r = code(HOSTILE % dict(chan="iopub", frames=1, size=768 << 20), c, timeoutMs=120000)
    peak = server_peak_mib()
    msg = (r.json().get("error") or {}).get("message", "") if r.status != 200 else ""
    t.ok(r.status == 502 and r.code == "SERVICE_NOT_RESPONDING" and "over 64 MiB on iopub" in msg
         and "restarted" in msg,
         "a 768 MiB frame on IOPub: 502 SERVICE_NOT_RESPONDING naming the 64 MiB bound and the restart", r)
    t.ok(peak - before < 256, "the server's peak RSS grew by less than 256 MiB (not by the frame)", (before, peak))
    h = srv.get("/v1/health", token=False)
    j = run("1 + 1", c)
    j2 = run("state", c)
    t.ok(h.status == 200 and main_text(j) == "2" and j["error"] is None
         and (j2.get("error") or {}).get("name") == "NameError",
         "the server answers; the context (restarted: its state is gone) runs 1 + 1", (h, j, j2))

    # the same on the shell connection, streamed: an error event, then the end
    before = server_peak_mib(reset=True)
    st, ctype, raw, ev = sse(HOSTILE % dict(chan="shell", frames=1, size=512 << 20), c, timeoutMs=120000)
    peak = server_peak_mib()
    errs = [d for e, d in ev if e == "error"]
    t.ok(st == 200 and errs and errs[0].get("code") == "SERVICE_NOT_RESPONDING"
         and "over 16 MiB on shell" in errs[0].get("error", "") and ev[-1][0] == "execution_complete"
         and peak - before < 256,
         "a 512 MiB frame on shell, streamed: an error event naming the bound (16 MiB there), execution_complete; "
         "the server's peak grew by less than 256 MiB", (st, ev[-3:], before, peak))
    t.eq(main_text(run("2 + 2", c)), "4", "and the context runs code again")

    # many parts: 600 parts of 1 MiB in one message, then 8 million empty
    # parts (libzmq would keep 64 bytes for each)
    before = server_peak_mib(reset=True)
    r = code(HOSTILE % dict(chan="iopub", frames=600, size=1 << 20), c, timeoutMs=120000)
    peak = server_peak_mib()
    msg = (r.json().get("error") or {}).get("message", "") if r.status != 200 else ""
    t.ok(r.status == 502 and "over 64 MiB on iopub" in msg and peak - before < 256,
         "600 parts of 1 MiB in one IOPub message: 502 naming the bound; the server's peak grew by less "
         "than 256 MiB", (r, before, peak))
    before = server_peak_mib(reset=True)
    r = code(PARTS % dict(chan="iopub", parts=8_000_000), c, timeoutMs=120000)
    peak = server_peak_mib()
    msg = (r.json().get("error") or {}).get("message", "") if r.status != 200 else ""
    t.ok(r.status == 502 and "more than 4096 parts on iopub" in msg and peak - before < 256,
         "8 million empty parts in one IOPub message: 502 naming the 4096-part bound; the server's peak grew by "
         "less than 256 MiB", (r, before, peak))
    h = srv.get("/v1/health", token=False)
    t.ok(h.status == 200 and main_text(run("3 + 3", c)) == "6", "the server answers and the context runs code", h)

    # between runs no one reads the context's messages: at most three wait
    # on IOPub, and the code's sender is held back
    before = server_peak_mib(reset=True)
    ok_run(BACKGROUND % dict(chan="iopub", msgs=10), c)
    srv.sh(MAIN, "touch /tmp/flood-go")

    def sent():
        x = srv.sh(MAIN, "cat /tmp/flood-sent 2>/dev/null || echo 0")
        return int(x["stdout"].strip() or 0)
    wait_until(lambda: sent() == 10, timeout=10)  # all sent: the bound failed (held back: it never is)
    n, peak = sent(), server_peak_mib()
    t.ok(n < 10 and peak - before < 400,
         "a thread sending ten 48 MiB messages on IOPub after its run: held back, the server's "
         "peak grew by less than 400 MiB", (n, before, peak))
    r = srv.delete(SB + "/contexts/" + c)
    h = srv.get("/v1/health", token=False)
    t.ok(r.status in (200, 204) and h.status == 200, "that context is deleted, the server answers", (r, h))
    c = new_context()["id"]
    r = srv.delete(SB + "/contexts/" + c)
    t.ok(r.status in (200, 204), "delete that context", r)


def s_cut_between_runs():
    # ---- a cut while no run is going on ------------------------------------------
    # the context is restarted at once (not when the next run comes): its
    # record says when and why; the next run runs on the new kernel and says so
    c = new_context()["id"]

    def record():
        r = srv.get(SB + "/contexts/" + c)
        return r.json() if r.status == 200 else {}
    ok_run("state = 'before'", c)
    ok_run(LATER % dict(chan="iopub", flag="/tmp/cut-1"), c)
    srv.sh(MAIN, "touch /tmp/cut-1")
    rec = wait_until(lambda: (lambda j: j.get("restarts") == 1 and j.get("status") == "ready" and j)(record()),
                     timeout=60) or record()
    t.ok(rec.get("restarts") == 1 and rec.get("status") == "ready" and rec.get("executionCount") == 0
         and "over 64 MiB on iopub" in rec.get("restartReason", "") and ISO.match(rec.get("restartedAt", "")),
         "a cut between runs (a thread of the code sends a 768 MiB frame on its kernel's IOPub connection after "
         "its run): the context is restarted without waiting for a run; its record: restarts 1, restartedAt, "
         "restartReason naming the bound, executionCount 0", rec)
    listed = [x for x in srv.get(SB + "/contexts").json()["contexts"] if x["id"] == c]
    t.ok(listed and listed[0].get("restarts") == 1 and listed[0].get("restartReason") == rec.get("restartReason"),
         "the listing shows the same", listed)
    r = code("state", c)
    j = r.json() if r.status == 200 else {}
    errs = j.get("logs", {}).get("stderr", [])
    t.ok(r.status == 200 and (j.get("error") or {}).get("name") == "NameError" and j.get("executionCount") == 1
         and errs and "was restarted" in errs[0] and rec.get("restartReason", "?") in errs[0]
         and (j.get("restarted") or {}).get("reason") == rec.get("restartReason")
         and j["restarted"].get("at") == rec.get("restartedAt"),
         "the next run runs on the new kernel: 200, NameError (the state is gone), executionCount 1; its first "
         "stderr line and its 'restarted' {at, reason} say so", r)
    j = ok_run("1 + 1", c)
    t.ok(main_text(j) == "2" and "restarted" not in j and j["logs"]["stderr"] == [],
         "the run after that one has no notice", j)
    ok_run(LATER % dict(chan="shell", flag="/tmp/cut-2"), c)
    srv.sh(MAIN, "touch /tmp/cut-2")
    rec = wait_until(lambda: (lambda j: j.get("restarts") == 2 and j.get("status") == "ready" and j)(record()),
                     timeout=60) or record()
    st, ctype, raw, ev = sse("6 * 7", c)
    t.ok(rec.get("restarts") == 2 and "over 16 MiB on shell" in rec.get("restartReason", "") and st == 200
         and ev and ev[0][0] == "stderr" and "was restarted" in ev[0][1].get("text", "")
         and [d.get("text") for e, d in ev if e == "result"] == ["42"] and ev[-1][0] == "execution_complete",
         "a cut on shell between runs: restarts 2; a streamed run's first event is the notice (stderr), then "
         "its result", (rec, ev))
    # a run waiting for its turn behind a run whose connection is cut goes on
    # with the new kernel
    got = {}

    def first():
        got["a"] = code("import time\ntime.sleep(1)\n" + HOSTILE % dict(chan="iopub", frames=1, size=768 << 20), c,
                        timeoutMs=120000)
    th = threading.Thread(target=first)
    th.start()
    wait_until(lambda: record().get("status") == "busy", timeout=30)
    b = code("1 + 1", c)
    th.join()
    a = got.get("a")
    t.ok(a is not None and a.status == 502 and b.status == 200 and main_text(b.json()) == "2"
         and record().get("restarts") == 3,
         "a run sent while another is cut: the cut one 502, the waiting one runs on the new kernel (200, 2)", (a, b))
    bj = b.json() if b.status == 200 else {}
    errs = (bj.get("logs") or {}).get("stderr") or [""]
    t.ok(isinstance(bj.get("restarted"), dict) and "over 64 MiB on iopub" in bj["restarted"].get("reason", "")
         and errs[0].startswith("[cellbox] this context was restarted at"),
         "the waiting run is told its context was restarted under it (restarted, and the notice first on stderr): "
         "it was sent to the old kernel's state", bj)
    r = code("3", c)
    t.ok(r.status == 200 and "restarted" not in r.json(), "the run after it is not told again", r)
    # an interrupt asked while the kernel is being replaced (the old one
    # ignores SIGTERM: that takes a second) interrupts nothing, and not the
    # next run either
    ok_run("import signal\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
           + LATER % dict(chan="iopub", flag="/tmp/cut-3"), c)
    srv.sh(MAIN, "touch /tmp/cut-3")
    seen = wait_until(lambda: record().get("status") == "restarting", timeout=30, step=0.02)
    r = srv.post(SB + "/contexts/%s/interrupt" % c, {})
    rec = wait_until(lambda: (lambda j: j.get("restarts") == 4 and j.get("status") == "ready" and j)(record()),
                     timeout=60) or record()
    j = run("import time\ntime.sleep(0.5)\n2", c)
    t.ok(seen and r.status == 200 and r.json().get("interrupted") is False and rec.get("restarts") == 4
         and main_text(j) == "2" and j["error"] is None,
         "an interrupt while the context restarts: interrupted false, and the next run is not interrupted",
         (seen, r, rec, j))
    r = srv.delete(SB + "/contexts/" + c)
    t.ok(r.status in (200, 204), "delete that context", r)

    # a kernel cut again before any run is not restarted again (each new
    # kernel of this context cuts itself: no loop of restarts)
    own = "\n".join(" " * 16 + ln for ln in (OWN_CONNECTION % dict(chan="iopub")).strip().splitlines())
    ok_run("import os, site\nd = site.getusersitepackages()\nos.makedirs(d, exist_ok=True)\n"
           "open(os.path.join(d, 'usercustomize.py'), 'w').write(%r)" % (AT_START % own))
    c = new_context(env={"CUT_AT_START": "1"})["id"]
    srv.sh(MAIN, "touch /tmp/cut-start")
    mark = "context %s: cut again before any run" % c
    wait_until(lambda: mark in open(srv.log_path, errors="replace").read(), timeout=90)
    rec = record()
    t.ok(mark in open(srv.log_path, errors="replace").read() and rec.get("restarts") == 1
         and rec.get("status") == "ready",
         "a context whose every kernel cuts itself between runs: restarted once, then left for the next run "
         "(the log says so; restarts stays 1)", rec)
    j = run("1 + 1", c)
    t.ok(main_text(j) == "2" and "restarted" in j and record().get("restarts") == 2,
         "the next run restarts it and runs (restarts 2, the notice)", (j, record()))
    srv.sh(MAIN, "rm -f /tmp/cut-start")
    ok_run("import os, site\nos.remove(os.path.join(site.getusersitepackages(), 'usercustomize.py'))")
    r = srv.delete(SB + "/contexts/" + c)
    t.ok(r.status in (200, 204), "delete that context", r)


# ---- a streamed run whose client stops reading --------------------------------
# The run has a thread of its own: it goes on (interrupts, restarts, its
# timeout, the runs behind it) while its client reads nothing, and its events
# wait for the client, at most 32 MiB of them (output past that is dropped,
# with one notice where it was; the end always comes).

def stalled_stream(src, ctx, **extra):
    """A streamed run whose client then stops reading: a raw socket with a
    small receive buffer that sends the request and reads nothing until
    read_stalled()."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect((srv.host, srv.port))
    body = json.dumps(dict(extra, code=src, context=ctx)).encode()
    head = ("POST /v1/sandboxes/%s/code HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\n"
            "Accept: text/event-stream\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
            "Connection: close\r\n\r\n" % (MAIN, srv.host, srv.token, len(body)))
    s.sendall(head.encode() + body)
    return s


def read_stalled(s, seconds=120):
    """The stalled client reads at last, to the end: (status, events)."""
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)  # the small window would read at ~200 KB/s
    s.settimeout(seconds)
    buf = b""
    deadline = time.time() + seconds
    try:
        while time.time() < deadline:
            chunk = s.recv(1 << 20)
            if not chunk:
                break
            buf += chunk
    except OSError:
        pass
    s.close()
    head, _, body = buf.partition(b"\r\n\r\n")
    status = int(head.split(b" ")[1]) if head.startswith(b"HTTP/") else 0
    if b"transfer-encoding: chunked" in head.lower():
        plain, i = b"", 0
        while i < len(body):
            j = body.find(b"\r\n", i)
            if j < 0:
                break
            n = int(body[i:j].split(b";")[0], 16)
            if n == 0:
                break
            plain += body[j + 2:j + 2 + n]
            i = j + 2 + n + 2
        body = plain
    return status, parse_sse(body.decode(errors="replace"))


def vm_rss_kib():
    with open("/proc/%d/status" % srv.server_pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def exists(path):
    return srv.post(SB + "/files/exists", {"path": path}).json().get("exists")


# 8 MB of output (far more than the sockets' buffers hold), then a mark,
# then a loop
FLOOD_THEN = ("import os, time\nfor i in range(80):\n    print('s' * 100000)\n"
              "open('/workspace/%s', 'w').close()\n")


def s_stalled():
    # each case: what must happen while the client reads nothing, then what
    # the client reads at last
    c = new_context()["id"]
    ok_run("kept = 'yes'", c)
    srv.post(SB + "/files/delete", {"path": "st-1"})
    s = stalled_stream(FLOOD_THEN % "st-1" + LOOP, c)
    flowed = wait_until(lambda: exists("st-1"), timeout=30)
    t0 = time.time()
    i = srv.post(SB + "/contexts/%s/interrupt" % c, {})
    freed = wait_until(lambda: ctx_record(c).get("status") == "ready", timeout=20)
    took = time.time() - t0
    st, ev = read_stalled(s)
    got = sum(len(d.get("text", "")) for e, d in ev if e == "stdout")
    errs = [d.get("name") for e, d in ev if e == "error"]
    j = run("kept", c)
    t.ok(flowed and i.json().get("interrupted") is True and freed and took < 5
         and st == 200 and got == 80 * 100001 and errs == ["KeyboardInterrupt"] and ev[-1][0] == "execution_complete"
         and main_text(j) == "'yes'",
         "a streaming client that stops reading (8 MB of output, then a loop): an interrupt ends the run at once "
         "(%.1f s, the context is free); the client then reads every event in order, the KeyboardInterrupt "
         "error, execution_complete; the context keeps its state" % took,
         (flowed, i, took, st, got, errs, ev[-3:] if ev else ev, j))

    # a restart answers at once, the run gets ContextRestarted
    srv.post(SB + "/files/delete", {"path": "st-2"})
    s = stalled_stream(FLOOD_THEN % "st-2" + LOOP, c)
    flowed = wait_until(lambda: exists("st-2"), timeout=30)
    t0 = time.time()
    try:
        r = srv.post(SB + "/contexts/%s/restart" % c, {}, timeout=30)
    except OSError as e:
        r = e
    took = time.time() - t0
    st, ev = read_stalled(s)
    errs = [d.get("name") for e, d in ev if e == "error"]
    t.ok(flowed and getattr(r, "status", 0) == 200 and took < 15
         and st == 200 and errs == ["ContextRestarted"] and ev[-1][0] == "execution_complete",
         "a restart while the streaming client reads nothing answers at once (%.1f s); the client then reads the "
         "ContextRestarted error and the end" % took, (flowed, r, took, st, errs, ev[-3:] if ev else ev))

    # the run's timeout fires on time, and a run waiting behind it runs
    srv.post(SB + "/files/delete", {"path": "st-3"})
    s = stalled_stream(FLOOD_THEN % "st-3" + LOOP, c, timeoutMs=4000)
    t0 = time.time()
    flowed = wait_until(lambda: exists("st-3"), timeout=30)
    try:
        r = srv.post(SB + "/code", {"code": "6 * 7", "context": c}, timeout=40)
    except OSError as e:
        r = e
    took = time.time() - t0
    j = reply(r) if not isinstance(r, Exception) else {}
    st, ev = read_stalled(s)
    got = sum(len(d.get("text", "")) for e, d in ev if e == "stdout")
    t.ok(flowed and text_of(j) == "42" and took < 20
         and st == 200 and got == 80 * 100001 and ev and ev[-1][0] == "execution_complete"
         and ev[-1][1].get("timedOut") is True,
         "a streaming client that reads nothing: its run's timeout (4 s) fires and the run queued behind it runs "
         "(%.1f s); the client then reads all of its output and execution_complete timedOut true" % took,
         (flowed, r, took, st, got, ev[-2:] if ev else ev))

    # 200 MB of output for a client that reads nothing: the server holds at
    # most 32 MiB of it (the rest is dropped, said by one notice), the run
    # ends, and the one behind it runs
    samples = []
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            samples.append(vm_rss_kib())
            time.sleep(0.05)
    base = vm_rss_kib()
    th = threading.Thread(target=sample)
    th.start()
    s = stalled_stream("for i in range(2000):\n    print('f' * 100000)\n'end'", c)
    wait_until(lambda: ctx_record(c).get("status") == "busy", timeout=30, step=0.02)
    try:
        r = srv.post(SB + "/code", {"code": "6 * 7", "context": c}, timeout=HTTP_TIMEOUT)
    except OSError as e:
        r = e
    stop.set()
    th.join()
    grew = (max(samples) - base) // 1024 if samples else -1
    j = reply(r) if not isinstance(r, Exception) else {}
    st, ev = read_stalled(s)
    got = sum(len(d.get("text", "")) for e, d in ev if e == "stdout")
    notes = [d.get("text", "") for e, d in ev if e == "stderr"]
    results = [d.get("text") for e, d in ev if e == "result"]
    t.ok(text_of(j) == "42" and 0 <= grew < 128
         and st == 200 and (31 << 20) <= got <= (56 << 20) and len(notes) == 1 and "dropped" in notes[0]
         and results == ["'end'"] and ev[-1][0] == "execution_complete" and ev[-1][1].get("eventsDropped", 0) > 0,
         "200 MB of output to a client that reads nothing: the run ends and the one behind it runs; the server's "
         "RSS grows by %d MiB (< 128: 32 MiB of events held, copies of the message in hand, the allocator's "
         "slack); the client then reads the first 32 MiB, one notice of what was dropped, the main result, "
         "execution_complete with eventsDropped" % grew, (r, base, grew, st, got, notes, results, ev[-1] if ev else ev))
    srv.delete(SB + "/contexts/" + c)


try:
    srv.create(MAIN, instanceType="heavy", env={"SBV": "sandbox"})  # several kernels with pandas and matplotlib
    for fn in (s_records, s_code, s_rich, s_timeout, s_isolation, s_two, s_default, s_process, s_sse,
               s_input, s_flood, s_bounds, s_cut_between_runs, s_restart_interrupt, s_restart_idle,
               s_restart_waiting_run, s_restart_interrupt_during, s_restart_twice, s_restart_races, s_javascript,
               s_stalled, s_exit, s_sleep, s_delete):
        section(fn)
finally:
    srv.finish(t, IDS, "SIGTERM: graceful exit 0 with contexts running")


def guard_root(server):
    """The folder of a server's context sockets: the one whose lock it holds."""
    fd_dir = "/proc/%d/fd" % server.server_pid
    for fd in os.listdir(fd_dir):
        try:
            target = os.readlink(os.path.join(fd_dir, fd))
        except OSError:
            continue
        if re.fullmatch(r"/tmp/cellbox-ctx-\w+/lock", target):
            return os.path.dirname(target)
    return None


# the sockets' folder of a SIGKILLed server is removed by the next server
killed = Server()
try:
    killed.create("ctx-gone")
    r = killed.post("/v1/sandboxes/ctx-gone/contexts", {"language": "python"}, timeout=HTTP_TIMEOUT)
    root_a = guard_root(killed)
    t.ok(r.status in (200, 201) and root_a and os.path.isdir(root_a) and len(os.listdir(root_a)) == 2,
         "a server keeps its contexts' sockets in one folder of its own (a lock and the context's folder)",
         (r, root_a, root_a and os.listdir(root_a)))
    killed.stop(signal.SIGKILL)
    t.ok(root_a and os.path.isdir(root_a), "a SIGKILLed server leaves that folder", root_a)
    nxt = Server()
    try:
        nxt.create("ctx-next")
        r = nxt.post("/v1/sandboxes/ctx-next/contexts", {"language": "python"}, timeout=HTTP_TIMEOUT)
        root_b = guard_root(nxt)
        t.ok(r.status in (200, 201) and root_b and root_b != root_a and not os.path.exists(root_a or "/x"),
             "the next server's first context removes it (its lock is free) and makes its own",
             (r, root_a, root_b))
    finally:
        nxt.finish(t, ["ctx-next"], "the next server stops")
    t.ok(root_b and not os.path.exists(root_b), "a server that stops removes its folder", root_b)
finally:
    killed.cleanup()
t.done()
