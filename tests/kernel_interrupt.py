"""Interrupts in both modes (SIGINT to the process group from
jupyter_client, and interrupt_request on the control channel): running code,
including code blocked in time.sleep, input() and a subprocess, gets
KeyboardInterrupt; the kernel replies with an error and stays alive.
Also: control answers while a cell runs, and shutdown of a busy kernel.
Output: TAP."""
import json
import os
import tempfile
import time

import kutil
from kutil import run, results

tap = kutil.TAP()
kutil.install_kernelspec("cellbox-msg", interrupt_mode="message")


def install_deaf_kernelspec(name, base, mode):
    """A kernelspec that starts the kernel with SIGINT ignored, as anything
    started from a background job or under nohup inherits it (a notebook
    server run as `jupyter notebook &` from a script): interrupts are the
    kernel's protocol and must still work."""
    kdir = os.path.join(kutil.JUPYTER_PREFIX, "share", "jupyter", "kernels")
    with open(os.path.join(kdir, base, "kernel.json")) as f:
        spec = json.load(f)
    spec["argv"] = ["/bin/sh", "-c", "trap '' INT; exec \"$0\" \"$@\""] + spec["argv"]
    spec["interrupt_mode"] = mode
    os.makedirs(os.path.join(kdir, name), exist_ok=True)
    with open(os.path.join(kdir, name, "kernel.json"), "w") as f:
        json.dump(spec, f)
    return name


install_deaf_kernelspec("cellbox-deaf", "cellbox", "signal")
install_deaf_kernelspec("cellbox-deaf-msg", "cellbox", "message")


def interrupt_case(km, kc, code, desc, delay=0.5, **kw):
    msg_id = kc.execute(code, **kw)
    time.sleep(delay)
    t0 = time.time()
    km.interrupt_kernel()
    reply = None
    while reply is None and time.time() - t0 < 15:
        m = kc.get_shell_msg(timeout=15)
        if m["parent_header"].get("msg_id") == msg_id:
            reply = m["content"]
    tap.ok(reply is not None and reply["status"] == "error" and reply["ename"] == "KeyboardInterrupt",
           "%s: KeyboardInterrupt" % desc, reply)
    # drain IOPub of that request
    deadline = time.time() + 5
    while time.time() < deadline:
        try:
            m = kc.get_iopub_msg(timeout=1)
        except Exception:
            break
        if m["parent_header"].get("msg_id") == msg_id and m["msg_type"] == "status" and m["content"]["execution_state"] == "idle":
            break
    while True:  # an input_request of the interrupted input() must not be answered later
        try:
            kc.get_stdin_msg(timeout=0.2)
        except Exception:
            break
    r, out = run(kc, "'alive'")
    tap.eq(results(out), ["'alive'"], "%s: kernel alive afterwards" % desc)


def main(name, mode):
    km, kc = kutil.start(name)
    interrupt_case(km, kc, "import time\ntime.sleep(30)", "%s mode, time.sleep" % mode)
    interrupt_case(km, kc, "while True:\n    pass", "%s mode, busy loop" % mode)
    interrupt_case(km, kc, "input('wait: ')", "%s mode, input()" % mode, allow_stdin=True)
    interrupt_case(km, kc, "import subprocess\nsubprocess.run(['sleep', '30'])", "%s mode, subprocess" % mode)
    # !command: like IPython, the command is stopped and the cell goes on
    msg_id = kc.execute("!sleep 30\nprint('went on')")
    time.sleep(0.5)
    km.interrupt_kernel()
    out = []
    while True:
        m = kc.get_iopub_msg(timeout=15)
        if m["parent_header"].get("msg_id") != msg_id:
            continue
        if m["msg_type"] == "stream":
            out.append(m["content"]["text"])
        if m["msg_type"] == "status" and m["content"]["execution_state"] == "idle":
            break
    reply = kc.get_shell_msg(timeout=10)["content"]
    tap.ok(reply["status"] == "ok" and "went on\n" in "".join(out), "%s mode: an interrupted !command stops, the cell goes on" % mode,
           (reply, out))

    # control is served on its own thread: kernel_info answers while code runs
    msg_id = kc.execute("import time\ntime.sleep(3)")
    time.sleep(0.3)
    t0 = time.time()
    msg = kc.session.msg("kernel_info_request", {})
    kc.control_channel.send(msg)
    reply = kc.get_control_msg(timeout=5)
    tap.ok(reply["msg_type"] == "kernel_info_reply" and time.time() - t0 < 2,
           "%s mode: kernel_info on control while a cell runs" % mode)
    kc.get_shell_msg(timeout=10)

    # an interrupt while idle does not hit the next cell
    km.interrupt_kernel()
    time.sleep(0.3)
    r, out = run(kc, "'after idle interrupt'")
    tap.eq((r["status"], results(out)), ("ok", ["'after idle interrupt'"]),
           "%s mode: an interrupt while idle is harmless" % mode)

    # an interrupt that lands in the kernel's own code around a cell (here:
    # while it stores the cell's input, before the cell's code; while it
    # formats a cell's error) is that cell's KeyboardInterrupt, with its
    # error output, not an InternalError; the input is stored once
    setup = ("import sys, os, signal\n"
             "def _tr(frame, event, arg):\n"
             "    if event == 'call' and frame.f_code.co_name == %r:\n"
             "        sys.setprofile(None)\n"
             "        os.kill(os.getpid(), signal.SIGINT)\n"
             "sys.setprofile(_tr)\n")
    run(kc, setup % "_store_input")
    r, out = run(kc, "'never shown'")
    r2, out2 = run(kc, "In[-2], len(In) - 1 == _ih.index(In[-2]) + 1")
    tap.ok(r["status"] == "error" and r.get("ename") == "KeyboardInterrupt"
           and [t for t, c in out] == ["execute_input", "error"],
           "%s mode: an interrupt as the kernel stores a cell's input: that cell's KeyboardInterrupt" % mode, (r, out))
    tap.eq(results(out2), ["(\"'never shown'\", True)"],
           "%s mode: that cell's input is stored once" % mode)
    r, out = run(kc, setup % "_error" + "1/0")
    r2, out2 = run(kc, "41 + 1")
    tap.ok(r["status"] == "error" and r.get("ename") == "KeyboardInterrupt" and results(out2) == ["42"],
           "%s mode: an interrupt while a cell's error is formatted: KeyboardInterrupt; the next cell runs" % mode,
           (r, out, out2))

    # an interrupt that lands in the asyncio loop's turn between cells (a
    # SIGINT just after a cell's reply): it interrupts nothing, and tasks
    # still run between cells afterwards (it used to stop the loop's turns
    # for good: "the shell's background step failed")
    run(kc, setup % "background")
    r, out = run(kc, "import asyncio\n"
                     "async def _later():\n"
                     "    await asyncio.sleep(0.1)\n"
                     "    return 'ran'\n"
                     "_task = asyncio.get_event_loop().create_task(_later())")
    time.sleep(1.0)
    r, out = run(kc, "_task.done() and _task.result()")
    tap.eq(results(out), ["'ran'"],
           "%s mode: an interrupt in the loop's turn between cells: tasks still run between cells" % mode)

    # shutdown while busy
    kc.execute("while True:\n    pass")
    time.sleep(0.3)
    t0 = time.time()
    km.shutdown_kernel(now=False)
    tap.ok(not km.is_alive() and time.time() - t0 < 15, "%s mode: a busy kernel shuts down" % mode)
    kc.stop_channels()


def shutdown_case(name, mode):
    """An interrupt that lands as the kernel shuts down (jupyter_client
    sends one before every shutdown_request) does not cut the shutdown's
    own steps short: atexit functions run (and the debugger's cell files
    go, tests/kernel_debugger.py)."""
    km, kc = kutil.start(name)
    flag = os.path.join(tempfile.gettempdir(), "cellbox-atexit-%d-%d" % (os.getpid(), time.monotonic_ns()))
    run(kc, "import atexit\natexit.register(lambda: open(%r, 'w').write('ran'))" % flag)
    run(kc, "import sys, os, signal\n"
            "def _tr(frame, event, arg):\n"
            "    if event == 'call' and frame.f_code.co_name == 'shutdown':\n"
            "        sys.setprofile(None)\n"
            "        os.kill(os.getpid(), signal.SIGINT)\n"
            "sys.setprofile(_tr)\n")
    kc.stop_channels()
    km.shutdown_kernel(now=False)
    ran = os.path.exists(flag)
    tap.ok(ran, "%s mode: an interrupt as the kernel shuts down: its atexit functions still run" % mode)
    if ran:
        os.unlink(flag)


for name, mode in (("cellbox", "signal"), ("cellbox-msg", "message"),
                   ("cellbox-deaf", "signal (started with SIGINT ignored)"),
                   ("cellbox-deaf-msg", "message (started with SIGINT ignored)")):
    try:
        main(name, mode)
        shutdown_case(name, mode)
    except Exception:
        import traceback
        tap.ok(False, "%s mode raised" % mode, traceback.format_exc())
