"""asyncio in the cellbox kernel, against ipykernel.

ipykernel runs cells inside its asyncio loop, and notebooks written for
Jupyter rely on that: asyncio.get_running_loop() and create_task() work in a
plain cell, asyncio.run() refuses, tasks go on running between cells and
during a later top-level await, other threads hand coroutines to the loop
(run_coroutine_threadsafe), and a background task's output reaches the
frontend under the cell that started it. Each cell runs in a cellbox kernel
and in Debian's ipykernel; the replies and IOPub messages must be the same.
Then what only cellbox does: an interrupted top-level await cancels the
cell's task (ipykernel cannot interrupt one), a kernel whose loop waits on a
long timer does not spin, and asyncio is not imported before the notebook
imports it. Output: TAP.
"""
import queue
import time

import display_util as du
import kutil

tap = kutil.TAP()

# (name, code, seconds to wait after the cell before the next one)
PARITY = [
    ("a plain cell sees a running loop", "import asyncio\nprint(asyncio.get_running_loop().is_running())", 0),
    ("get_event_loop() is the running loop",
     "loop = asyncio.get_event_loop()\nprint(loop is asyncio.get_running_loop(), loop.is_running())", 0),
    ("asyncio.run() refuses, as in Jupyter",
     "async def c():\n    return 1\ncoro = c()\ntry:\n    asyncio.run(coro)\nexcept RuntimeError as e:\n    print(e)\n"
     "coro.close()", 0),
    ("run_until_complete() refuses",
     "s = asyncio.sleep(0)\ntry:\n    loop.run_until_complete(s)\nexcept RuntimeError as e:\n    print(e)\ns.close()", 0),
    ("create_task() in a plain cell",
     "ticks = []\nasync def tick():\n    for i in range(5):\n        ticks.append(i)\n        await asyncio.sleep(0.02)\n"
     "task = asyncio.create_task(tick())\ntype(task).__name__", 0.6),
    ("the task ran between cells", "ticks, task.done()", 0),
    ("tasks run during a top-level await",
     "seen = []\nasync def spin():\n    while True:\n        seen.append(1)\n        await asyncio.sleep(0.01)\n"
     "k = asyncio.ensure_future(spin())\nawait asyncio.sleep(0.3)\nk.cancel()\nlen(seen) > 5", 0),
    ("a background task's output, after the cell",
     "async def later():\n    await asyncio.sleep(0.1)\n    print('printed later')\nasyncio.ensure_future(later())\nNone",
     "iopub"),
    ("run_in_executor", "await loop.run_in_executor(None, sum, [1, 2, 3])", 0),
    ("run_coroutine_threadsafe from a thread, between cells",
     "import threading\nres = []\ndef worker():\n    f = asyncio.run_coroutine_threadsafe(asyncio.sleep(0.05, result=42), loop)\n"
     "    res.append(f.result(10))\nth = threading.Thread(target=worker)\nth.start()", 0.8),
    ("the thread got its result", "th.join(5)\nres", 0),
    ("an error raised in an awaited coroutine",
     "async def boom():\n    raise ValueError('in a coroutine')\nawait boom()", 0),
    ("gather of tasks", "async def sq(x):\n    await asyncio.sleep(0.01)\n    return x * x\n"
     "await asyncio.gather(*(sq(i) for i in range(5)))", 0),
    ("a future resolved by call_later between cells",
     "fut = loop.create_future()\nloop.call_later(0.1, fut.set_result, 'resolved')\nfut.done()", 0.5),
    ("... is resolved", "fut.result()", 0),
    ("nest_asyncio (Debian's) lets asyncio.run work, as under ipykernel",
     "import nest_asyncio\nnest_asyncio.apply()\nasyncio.run(asyncio.sleep(0, result=5))", 0),
]


def late_output(kc, msg_id, seconds):
    """Stream text that arrives under msg_id within seconds (after idle)."""
    text, end = "", time.time() + seconds
    while time.time() < end:
        try:
            m = kc.get_iopub_msg(timeout=0.2)
        except queue.Empty:
            continue
        if m["msg_type"] == "stream" and m["parent_header"].get("msg_id") == msg_id:
            text += m["content"]["text"]
    return text


def run_all(name):
    km, kc = du.start(name)
    try:
        res = []
        for _, code, after in PARITY:
            if after == "iopub":
                out = []
                reply = kc.execute_interactive(code, timeout=60, stop_on_error=False,
                                               output_hook=lambda m: out.append(m))
                late = late_output(kc, reply["parent_header"]["msg_id"], 1.0)
                res.append(((reply["content"]["status"],), [("late stream", late)]))
                continue
            reply, out = du.collect(kc, code)
            n = du.Normalizer()
            # the traceback runs through each kernel's own code: the error's class and text only
            res.append(((reply["status"], reply.get("ename"), reply.get("evalue")),
                        n.messages(du.merge_streams([o for o in out if o[0] != "error"]))
                        + [("error", o[1]["ename"], o[1]["evalue"]) for o in out if o[0] == "error"]))
            if after:
                time.sleep(after)
        return res
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


ours = run_all("cellbox")
theirs = run_all("python3")
for (name, code, _), a, b in zip(PARITY, ours, theirs):
    tap.ok(a == b and a[0][0] in ("ok", "error"), "same as ipykernel: %s" % name, "cellbox:   %r\nipykernel: %r" % (a, b))


def queued_after_task(name):
    """A task a cell makes gets its first turn before the next request, even
    one already waiting (asyncio runs ready callbacks before new I/O):
    two executes sent back to back. -> the second one's stdout."""
    km, kc = du.start(name)
    try:
        du.collect(kc, "import asyncio")
        first = kc.execute("started = []\nasync def s():\n    started.append(1)\nt = asyncio.ensure_future(s())")
        second = kc.execute("print(started)")
        text, end = "", time.time() + 30
        while time.time() < end:
            m = kc.get_iopub_msg(timeout=30)
            if m["parent_header"].get("msg_id") != second:
                continue
            if m["msg_type"] == "stream":
                text += m["content"]["text"]
            if m["msg_type"] == "status" and m["content"]["execution_state"] == "idle":
                break
        return first and text
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


# (ipykernel answers either way, depending on timing: cellbox always gives the task its turn first,
# which is what ipywidgets' documented "await the next change" pattern needs)
tap.eq(queued_after_task("cellbox"), "[1]\n", "a cell's new task runs before a request already queued behind it")


def kernel_pid(km):
    return km.provisioner.process.pid


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    import os
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@tap.case
def cellbox_only():
    km, kc = du.start("cellbox")
    try:
        reply, out = du.collect(kc, "import sys\n'asyncio' in sys.modules")
        tap.eq(kutil.results([(t, c) for t, c, b in out]), ["False"],
               "asyncio is not imported before the notebook imports it")
        reply, out = du.collect(kc, "import asyncio\nasync def f():\n    await asyncio.sleep(3600)\n"
                                    "sleeper = asyncio.ensure_future(f())")
        tap.eq(reply["status"], "ok", "a task waiting on a one-hour timer")
        pid = kernel_pid(km)
        c0, t0 = cpu_seconds(pid), time.time()
        time.sleep(1.5)
        used = cpu_seconds(pid) - c0
        tap.ok(used < 0.5, "the idle kernel sleeps until the timer (no spinning): %.2f s of CPU in %.1f s"
               % (used, time.time() - t0))

        mid = kc.execute("done = []\nawait asyncio.sleep(60)\ndone.append(1)")
        time.sleep(1.0)
        km.interrupt_kernel()
        reply = kc.get_shell_msg(timeout=20)
        tap.ok(reply["parent_header"]["msg_id"] == mid and reply["content"]["status"] == "error"
               and reply["content"]["ename"] == "KeyboardInterrupt",
               "an interrupt stops a top-level await", reply["content"])
        time.sleep(0.3)
        reply, out = du.collect(kc, "done, [t for t in asyncio.all_tasks() if not t.done()] == [sleeper]")
        tap.eq(kutil.results([(t, c) for t, c, b in out]), ["([], True)"],
               "the interrupted cell's task is cancelled, not left to finish between cells")
        reply, out = du.collect(kc, "sleeper.cancel()\nawait asyncio.sleep(0)\nsleeper.cancelled()")
        tap.eq(kutil.results([(t, c) for t, c, b in out]), ["True"], "the loop still works after the interrupt")
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
