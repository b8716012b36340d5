#!/usr/bin/python3
"""The last output before a kernel crashes reaches the frontend.

A cell that prints and then crashes the process (a segfault in a C
extension, abort(), Python's fatal errors, a kill -SEGV from outside) must
not lose what it printed: the frontend is where the user looks for why. The
kernel's handler of fatal signals (interp/python.c) has the capture publish
what is pending and gives ZeroMQ's I/O thread a moment before the default
action. ipykernel loses such output (measured here: a print before a
segfault or abort() lost in 3 of 3 runs; flushed first, in 1-2 of 3). Each case runs in a
fresh kernel, three times. Also: a signal the handler catches still kills
the kernel (it is not swallowed), a forked child that crashes does not
disturb the kernel, and flush() in a loop still makes few messages.
Output: TAP.
"""
import os
import signal
import threading
import time

import kutil

tap = kutil.TAP()

CASES = {
    "a segfault in a C call (ctypes), print without flush":
        "import ctypes\nprint('LAST WORDS')\nctypes.string_at(0)",
    "abort(), print without flush":
        "import os\nprint('LAST WORDS')\nos.abort()",
    "printf from C, then a segfault":
        "import ctypes\nlibc = ctypes.CDLL(None)\nlibc.printf(b'LAST WORDS\\n')\nctypes.string_at(0)",
    "a segfault in another thread, print without flush":
        "import ctypes, threading, time\nprint('LAST WORDS')\n"
        "threading.Thread(target=ctypes.string_at, args=(0,)).start()\ntime.sleep(30)",
    "stderr, then a Python fatal error (abort)":
        "import sys, ctypes\nprint('LAST WORDS', file=sys.stderr)\n"
        "ctypes.pythonapi.Py_FatalError(b'cellbox test')",
}


def crash_once(code, signal_from_outside=None):
    """Runs code in a fresh kernel until it dies: (the text its streams
    published, how the kernel ended, seconds from the request to the end)."""
    km, kc = kutil.start()
    try:
        msg_id = kc.execute(code)
        text = ""
        t0 = time.time()
        if signal_from_outside:
            time.sleep(1.0)
            os.kill(km.provisioner.process.pid, signal_from_outside)
        while time.time() - t0 < 30:
            try:
                m = kc.get_iopub_msg(timeout=0.2)
            except Exception:  # noqa: BLE001 (queue.Empty)
                if not km.is_alive():
                    break
                continue
            if m["parent_header"].get("msg_id") == msg_id and m["msg_type"] == "stream":
                text += m["content"]["text"]
        # what arrived just before the death was noticed
        try:
            while True:
                m = kc.get_iopub_msg(timeout=0.3)
                if m["parent_header"].get("msg_id") == msg_id and m["msg_type"] == "stream":
                    text += m["content"]["text"]
        except Exception:  # noqa: BLE001
            pass
        rc = km.provisioner.process.wait(timeout=10)
        return text, rc, time.time() - t0
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


for name, code in CASES.items():
    got = [crash_once(code) for _ in range(3)]
    tap.ok(all("LAST WORDS" in text for text, _, _ in got),
           "%s: the output reaches the frontend (3 of 3 runs)" % name, got)
    tap.ok(all(rc is not None and rc < 0 for _, rc, _ in got),
           "%s: the kernel dies of the signal" % name, [rc for _, rc, _ in got])

text, rc, took = crash_once("print('LAST WORDS')\nimport time\ntime.sleep(60)", signal.SIGSEGV)
tap.ok("LAST WORDS" in text and rc == -signal.SIGSEGV and took < 20,
       "kill -SEGV from outside: the kernel still dies of it (not swallowed), its output first", (text, rc, took))

km, kc = kutil.start()
try:
    r, out = kutil.run(kc, "import os, ctypes\npid = os.fork()\nif pid == 0:\n    ctypes.string_at(0)\n"
                           "_, status = os.waitpid(pid, 0)\nprint('child', os.WIFSIGNALED(status) and os.WTERMSIG(status))")
    tap.ok(r["status"] == "ok" and kutil.stream_text(out) == "child %d\n" % signal.SIGSEGV,
           "a forked child that segfaults dies of it at once; the kernel goes on", (r, out))
    t0 = time.time()
    r, out = kutil.run(kc, "for i in range(20000):\n    print(i, flush=True)", timeout=60)
    msgs = [c for t, c in out if t == "stream"]
    tap.ok(r["status"] == "ok" and "".join(c["text"] for c in msgs) == "".join("%d\n" % i for i in range(20000))
           and len(msgs) < 1000,
           "flush() in a loop: all the text, in few messages (not one a flush)", len(msgs))
finally:
    kc.stop_channels()
    km.shutdown_kernel(now=True)
