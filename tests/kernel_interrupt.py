"""Interrupts in both modes (SIGINT to the process group from
jupyter_client, and interrupt_request on the control channel): running code,
including code blocked in time.sleep, input() and a subprocess, gets
KeyboardInterrupt; the kernel replies with an error and stays alive.
Also: control answers while a cell runs, and shutdown of a busy kernel.
Output: TAP."""
import json
import os
import shutil
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


def sigint_blocked(pid):
    """Is SIGINT blocked on the kernel's main thread?"""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("SigBlk:"):
                return bool(int(line.split()[1], 16) & (1 << (2 - 1)))
    return False


def startup_queue_case():
    """An interrupt that lands after the interpreter has started but before
    the cell that came during startup begins (the kernel paused there by a
    tests-only knob): the cell gets it (it was cleared as an idle kernel's
    interrupt, and the cell slept on; seen by `cellbox run --timeout 0.001`
    under load)."""
    from jupyter_client.manager import KernelManager
    import queue
    # a sitecustomize that makes the interpreter's start last 2 s: the cell
    # is sent (and kept by the kernel) while Python starts
    slow = tempfile.mkdtemp(prefix="cellbox-slowsite-")
    with open(os.path.join(slow, "sitecustomize.py"), "w") as f:
        f.write("import time\ntime.sleep(2)\n")
    km = KernelManager(kernel_name="cellbox")
    km.start_kernel(env=dict(os.environ, CELLBOX_TEST_STARTUP_QUEUE_DELAY_MS="3000", PYTHONPATH=slow))
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=60)
        pid = km.provisioner.process.pid
        queued = sigint_blocked(pid)
        mid = kc.execute("import time\ntime.sleep(30)\nprint('not interrupted')")
        end = time.time() + 60
        while time.time() < end and sigint_blocked(pid):
            time.sleep(0.005)
        started = not sigint_blocked(pid)
        t0 = time.time()
        km.interrupt_kernel()
        reply = None
        while time.time() < t0 + 20:
            try:
                m = kc.get_shell_msg(timeout=1)
            except queue.Empty:
                continue
            if m["parent_header"].get("msg_id") == mid:
                reply = m["content"]
                break
        tap.ok(queued and started and reply is not None and reply.get("ename") == "KeyboardInterrupt",
               "an interrupt between the interpreter's start and the cell that came meanwhile: the cell "
               "gets KeyboardInterrupt (%.1f s)" % (time.time() - t0),
               "sent while Python started=%s, started=%s reply=%r"
               % (queued, started, reply and (reply.get("status"), reply.get("ename"))))
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
        shutil.rmtree(slow, ignore_errors=True)


try:
    startup_queue_case()
except Exception:
    import traceback
    tap.ok(False, "the startup-queue interrupt case raised", traceback.format_exc())

for name, mode in (("cellbox", "signal"), ("cellbox-msg", "message"),
                   ("cellbox-deaf", "signal (started with SIGINT ignored)"),
                   ("cellbox-deaf-msg", "message (started with SIGINT ignored)")):
    try:
        main(name, mode)
        shutdown_case(name, mode)
    except Exception:
        import traceback
        tap.ok(False, "%s mode raised" % mode, traceback.format_exc())


# ---------------------------------------------------------------- IOPub flow control
# A frontend that stays subscribed to IOPub but stops reading (a jupyter
# console suspended with Ctrl-Z: here a raw SUB client stopped with SIGSTOP)
# must not make the kernel's memory grow without limit, and must not hang a
# cell for ever; a slow reader slows the cell down and loses nothing.
# The test's own client does not subscribe to IOPub (it would be one more
# reader, and the slowest sets the pace); a reader process reports what it
# got as JSON lines.

import signal
import subprocess
import sys
import threading
import queue as _queue

READER = r'''
import json, sys, time, zmq
url, rate = sys.argv[1], float(sys.argv[2])   # rate: MB/s the reader takes (0: all it can)
ctx = zmq.Context()
s = ctx.socket(zmq.SUB)
s.setsockopt(zmq.RCVHWM, 4)       # a stopped reader holds little in its own queue
s.setsockopt(zmq.RCVBUF, 1 << 16)
s.setsockopt(zmq.SUBSCRIBE, b"")
s.connect(url)
print(json.dumps({"t": "ready"}), flush=True)
cells = {}   # parent msg_id -> [lines, in order so far, carry]
t0 = time.monotonic(); got = 0
while True:
    frames = s.recv_multipart()
    size = sum(len(f) for f in frames)
    got += size
    if rate:
        ahead = got / (rate * 1e6) - (time.monotonic() - t0)
        if ahead > 0:
            time.sleep(ahead)
    i = frames.index(b"<IDS|MSG>")
    header, parent, content = (json.loads(frames[i + k]) for k in (2, 3, 5))
    mt, pid = header["msg_type"], parent.get("msg_id", "")
    if mt == "stream" and content["text"].startswith("[cellbox]"):
        print(json.dumps({"t": "notice", "p": pid, "text": content["text"]}), flush=True)
    elif mt == "stream" and content["name"] == "stdout":
        c = cells.setdefault(pid, [0, True, ""])
        text = c[2] + content["text"]
        lines = text.split("\n")
        c[2] = lines.pop()
        for line in lines:
            if c[1] and not line.startswith("%d " % c[0]):
                c[1] = False
            c[0] += 1
    elif mt == "status":
        st = content["execution_state"]
        ev = {"t": "status", "p": pid, "s": st}
        if st == "idle" and pid in cells:
            ev["lines"], ev["ordered"] = cells[pid][0], cells[pid][1]
            ev["last"] = cells[pid][2]
        print(json.dumps(ev), flush=True)
    else:
        print(json.dumps({"t": mt, "p": pid}), flush=True)
'''

FLOW_LIMIT_MB = 200   # kernel memory above its start while a reader does not keep up
PAD = "x" * 100


def proc_status(pid, field):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) // 1024   # MB
    return 0


def proc_cpu(pid):
    with open("/proc/%d/stat" % pid) as f:
        parts = f.read().rsplit(")", 1)[1].split()
    return (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")


class Reader:
    def __init__(self, km, rate=0):
        info = km.get_connection_info()
        url = "%s://%s:%d" % (info["transport"], info["ip"], info["iopub_port"])
        self.p = subprocess.Popen([sys.executable, "-c", READER, url, str(rate)], stdout=subprocess.PIPE, text=True)
        self.q = _queue.Queue()
        self.events = []
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self):
        for line in self.p.stdout:
            self.q.put(json.loads(line))

    def wait(self, pred, timeout):
        """-> the first new event matching pred (all events are kept in self.events), or None."""
        end = time.time() + timeout
        while time.time() < end:
            try:
                ev = self.q.get(timeout=max(0.01, end - time.time()))
            except _queue.Empty:
                break
            self.events.append(ev)
            if pred(ev):
                return ev
        return None

    def idle_of(self, msg_id, timeout=60):
        return self.wait(lambda e: e["t"] == "status" and e["p"] == msg_id and e["s"] == "idle", timeout)

    def stop(self):
        os.kill(self.p.pid, signal.SIGSTOP)

    def cont(self):
        os.kill(self.p.pid, signal.SIGCONT)

    def close(self):
        if self.p.poll() is None:
            self.p.kill()
            self.p.wait()


def heartbeat(km):
    import zmq
    info = km.get_connection_info()
    ctx = zmq.Context()
    s = ctx.socket(zmq.REQ)
    s.setsockopt(zmq.LINGER, 0)
    s.connect("%s://%s:%d" % (info["transport"], info["ip"], info["hb_port"]))
    s.send(b"ping")
    ok = s.poll(5000) and s.recv() == b"ping"
    s.close()
    ctx.term()
    return bool(ok)


def flow_start(name="cellbox"):
    """A kernel and a client without IOPub (shell, control, hb)."""
    from jupyter_client.manager import KernelManager
    km = KernelManager(kernel_name=name)
    km.start_kernel()
    kc = km.client()
    kc.start_channels(shell=True, iopub=False, stdin=False, hb=False, control=True)
    kc.kernel_info()
    kc.get_shell_msg(timeout=60)
    return km, kc, km.provisioner.process.pid


def shell_reply(kc, msg_id, timeout):
    end = time.time() + timeout
    while time.time() < end:
        try:
            m = kc.get_shell_msg(timeout=max(0.1, end - time.time()))
        except _queue.Empty:
            break
        if m["parent_header"].get("msg_id") == msg_id:
            return m["content"]
    return None


def subscribed_reader(km, kc, rate=0):
    r = Reader(km, rate)
    r.wait(lambda e: e["t"] == "ready", 30)
    for _ in range(50):  # until its subscription has arrived: a probe cell's idle reaches it
        mid = kc.execute("pass")
        shell_reply(kc, mid, 30)
        if r.idle_of(mid, 0.5):
            return r
    raise RuntimeError("the IOPub reader never saw a status")


def wait_blocked(pid, base_mb, most=12.0):
    """Waits until the kernel uses (almost) no CPU: its cell waits for the
    reader. -> (blocked, peak MB above base_mb); gives up early once memory
    grows past the limit (the kernel before flow control)."""
    end, peak, last = time.time() + most, 0, proc_cpu(pid)
    while time.time() < end:
        time.sleep(1.0)
        peak = max(peak, proc_status(pid, "VmRSS") - base_mb)
        cpu = proc_cpu(pid)
        if cpu - last < 0.15:
            return True, peak
        last = cpu
        if peak > FLOW_LIMIT_MB:
            return False, peak
    return False, peak


def flow_blocked_interrupt(name, mode):
    """A print blocked on a stopped reader: memory bounded, control and
    heartbeat answer, the interrupt ends the wait (the notice says so), the
    notice reaches the reader once it reads again, and output continues."""
    km, kc, pid = flow_start(name)
    r = subscribed_reader(km, kc)
    # a thread of the cell writes a count to a file every 50 ms
    tick = os.path.join(tempfile.gettempdir(), "cellbox-tick-%d-%s" % (os.getpid(), mode.split()[0]))
    try:
        base = proc_status(pid, "VmRSS")
        r.stop()
        mid = kc.execute("import os, threading, time\n"
                         "def _ticker(n=0):\n"
                         "    while True:\n"
                         "        n += 1\n"
                         "        with open(%r + '.new', 'w') as f:\n"
                         "            f.write(str(n))\n"
                         "        os.replace(%r + '.new', %r)\n"
                         "        time.sleep(0.05)\n"
                         "threading.Thread(target=_ticker, daemon=True).start()\n"
                         "i = 0\nwhile True:\n    print(i, %r)\n    i += 1" % (tick, tick, tick, PAD))
        blocked, peak = wait_blocked(pid, base)
        tap.ok(blocked and peak < FLOW_LIMIT_MB,
               "%s mode, reader stopped: the printing cell waits, memory bounded" % mode,
               "blocked=%s, %d MB above the start" % (blocked, peak))

        def ticks():
            try:
                with open(tick) as f:
                    return int(f.read() or 0)
            except (OSError, ValueError):
                return 0
        t1 = ticks()
        time.sleep(1.0)
        t2 = ticks()
        tap.ok(blocked and t2 - t1 >= 5,
               "%s mode: while the print waits, the cell's other threads run (the GIL is given up)" % mode,
               "ticks %d -> %d in 1 s" % (t1, t2))
        kc.control_channel.send(kc.session.msg("kernel_info_request", {}))
        ctl = kc.get_control_msg(timeout=10)
        tap.ok(blocked and ctl["msg_type"] == "kernel_info_reply" and heartbeat(km),
               "%s mode: control and heartbeat answer while a print waits" % mode)
        km.interrupt_kernel()
        reply = shell_reply(kc, mid, 30)
        hwm = proc_status(pid, "VmHWM") - base
        print("# %s mode: kernel peak %d MB above its %d MB at the start" % (mode, hwm, base), flush=True)
        tap.ok(reply is not None and reply.get("ename") == "KeyboardInterrupt" and hwm < FLOW_LIMIT_MB,
               "%s mode: the waiting print is interrupted; peak memory bounded" % mode,
               "reply=%r, peak %d MB above the start" % (reply and reply.get("ename"), hwm))
        r.cont()
        idle = r.idle_of(mid, 60)
        notices = [e for e in r.events if e["t"] == "notice"]
        tap.ok(idle is not None and len(notices) == 1 and notices[0]["p"] == mid
               and "interrupted" in notices[0]["text"] and r.events.index(notices[0]) < r.events.index(idle),
               "%s mode: the reader, reading again, gets one notice of the dropped output, before the idle" % mode,
               (notices, idle, r.events[-5:]))
        mid2 = kc.execute("for i in range(1000):\n    print(i, %r)" % PAD)
        shell_reply(kc, mid2, 30)
        idle2 = r.idle_of(mid2, 30)
        tap.ok(idle2 is not None and idle2.get("lines") == 1000 and idle2.get("ordered")
               and len([e for e in r.events if e["t"] == "notice"]) == 1,
               "%s mode: the next cell's output reaches the reader whole, no other notice" % mode, idle2)
    finally:
        r.close()
        kc.stop_channels()
        km.shutdown_kernel(now=True)
        for p in (tick, tick + ".new"):
            if os.path.exists(p):
                os.unlink(p)


def flow_display_interrupt():
    """display() calls waiting on a stopped reader (published with the GIL
    released, not through the stream capture): memory bounded, the
    interrupt ends the wait, one notice once the reader reads again."""
    km, kc, pid = flow_start()
    r = subscribed_reader(km, kc)
    try:
        base = proc_status(pid, "VmRSS")
        r.stop()
        mid = kc.execute("from IPython.display import display\ni = 0\nwhile True:\n"
                         "    display({'text/plain': str(i) + %r * 10}, raw=True)\n    i += 1" % PAD)
        blocked, peak = wait_blocked(pid, base)
        km.interrupt_kernel()
        reply = shell_reply(kc, mid, 30)
        hwm = proc_status(pid, "VmHWM") - base
        r.cont()
        idle = r.idle_of(mid, 60)
        notices = [e for e in r.events if e["t"] == "notice"]
        tap.ok(blocked and reply is not None and reply.get("ename") == "KeyboardInterrupt" and hwm < FLOW_LIMIT_MB
               and idle is not None and len(notices) == 1 and "interrupted" in notices[0]["text"],
               "display() calls waiting on a stopped reader: memory bounded, interrupted, one notice",
               "blocked=%s, reply=%r, peak %d MB above the start, notices %r"
               % (blocked, reply and reply.get("ename"), hwm, notices))
    finally:
        r.close()
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def reply_within_bound(km, kc, pid, mid, base):
    """Waits up to 300 s for mid's reply while the kernel stays within
    FLOW_LIMIT_MB of base; past it (or the time) the cell is interrupted.
    -> (reply or None, when the wait began)."""
    reply, peak, t0 = None, 0, time.time()
    while reply is None and time.time() - t0 < 300 and peak < FLOW_LIMIT_MB:
        reply = shell_reply(kc, mid, 1)
        peak = max(peak, proc_status(pid, "VmRSS") - base)
    if reply is None:
        km.interrupt_kernel()
        shell_reply(kc, mid, 30)
    return reply, t0


def flow_stall_drops():
    """A reader stopped for longer than the stall limit: the cell goes on
    after it (its output dropped), memory stays bounded, one notice."""
    km, kc, pid = flow_start()
    r = subscribed_reader(km, kc)
    try:
        base = proc_status(pid, "VmRSS")
        r.stop()
        # ~2 GB of small lines
        mid = kc.execute("for i in range(20000000):\n    print(i, %r)" % PAD)
        reply, t0 = reply_within_bound(km, kc, pid, mid, base)
        hwm = proc_status(pid, "VmHWM") - base
        print("# stopped reader, ~2 GB printed: kernel peak %d MB above its %d MB at the start" % (hwm, base), flush=True)
        tap.ok(reply is not None and reply["status"] == "ok" and hwm < FLOW_LIMIT_MB,
               "reader stopped: a cell printing ~2 GB ends, its kernel's memory bounded",
               "reply=%r, peak %d MB above the start" % (reply and reply["status"], hwm))
        r.cont()
        idle = r.idle_of(mid, 60)
        notices = [e for e in r.events if e["t"] == "notice"]
        tap.ok(idle is not None and len(notices) == 1 and notices[0]["p"] == mid
               and "read none of the kernel's output" in notices[0]["text"]
               and r.events.index(notices[0]) < r.events.index(idle),
               "the reader, reading again, gets one notice of what the stall dropped, before the idle",
               (notices, idle))
        # the reader goes away with output waiting for it (it read again
        # just now; stop it first): output goes on for the next one
        r.stop()
        run_big = kc.execute("for i in range(1000000):\n    print(i, %r)" % PAD)
        wait_blocked(pid, base)
        r.close()
        big = shell_reply(kc, run_big, 60)
        r2 = subscribed_reader(km, kc)
        try:
            mid2 = kc.execute("print('after')")
            shell_reply(kc, mid2, 30)
            tap.ok(len(notices) == 1 and big is not None and big["status"] == "ok"
                   and r2.idle_of(mid2, 30) is not None and not [e for e in r2.events if e["t"] == "notice"],
                   "after the stall, a reader that left with output waiting: the cell ends, a new reader "
                   "gets the next cell, no notice", big)
        finally:
            r2.close()
    finally:
        r.close()
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def flow_slow_reader():
    """A reader slower than the cell: every line arrives, in order, no
    notice; the kernel's memory stays bounded (the cell waits instead)."""
    km, kc, pid = flow_start()
    r = subscribed_reader(km, kc, rate=40)
    try:
        base = proc_status(pid, "VmRSS")
        n = 4000000   # ~430 MB
        mid = kc.execute("for i in range(%d):\n    print(i, %r)" % (n, PAD))
        reply, t0 = reply_within_bound(km, kc, pid, mid, base)
        idle = r.idle_of(mid, 300)
        hwm = proc_status(pid, "VmHWM") - base
        print("# slow reader: kernel peak %d MB above its %d MB at the start, %.1f s" % (hwm, base, time.time() - t0),
              flush=True)
        tap.ok(reply is not None and reply["status"] == "ok" and hwm < FLOW_LIMIT_MB,
               "a slow reader: the cell ends, the kernel's memory bounded",
               "reply=%r, peak %d MB above the start" % (reply and reply["status"], hwm))
        tap.ok(idle is not None and idle.get("lines") == n and idle.get("ordered")
               and not [e for e in r.events if e["t"] == "notice"],
               "a slow reader gets every line, in order, and no notice", idle)
    finally:
        r.close()
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def flow_shutdown_blocked():
    """shutdown_request ends a kernel whose print waits for a stopped reader."""
    km, kc, pid = flow_start()
    r = subscribed_reader(km, kc)
    try:
        base = proc_status(pid, "VmRSS")
        r.stop()
        kc.execute("i = 0\nwhile True:\n    print(i, %r)\n    i += 1" % PAD)
        blocked, peak = wait_blocked(pid, base)
        kc.shutdown()
        try:
            rc = km.provisioner.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            rc = None
        tap.ok(blocked and peak < FLOW_LIMIT_MB and rc == 0,
               "shutdown_request ends a kernel whose print waits for a stopped reader",
               "blocked=%s, %d MB above the start, exit status %r" % (blocked, peak, rc))
    finally:
        r.close()
        kc.stop_channels()
        km.shutdown_kernel(now=True)


for _case in (lambda: flow_blocked_interrupt("cellbox", "signal"),
              lambda: flow_blocked_interrupt("cellbox-msg", "message"),
              flow_display_interrupt, flow_stall_drops, flow_slow_reader, flow_shutdown_blocked):
    try:
        _case()
    except Exception:
        import traceback
        tap.ok(False, "IOPub flow control case raised", traceback.format_exc())
