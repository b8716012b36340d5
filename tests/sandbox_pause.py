"""tests/sandbox_pause.py: pause and resume of a sandbox (E2B's), with the cgroup freezer.

Real freezing, checked from outside the API: a background process appends a
counter to a file every 50 ms; while the sandbox is paused the file (read on
the host through /proc/<agentPid>/root) stops growing and the kernel's own
files say frozen (v1: freezer.state; v2: cgroup.events). After a resume the
same process (same pid) goes on counting where it stopped, and a Python
code context keeps its variables. Requests that use the sandbox's processes
resume it (exec, process start, code, preview URLs, PUT); the sandbox's
record and lists do not. A paused sandbox is exempt from sleepAfter. Stop,
delete, server shutdown and a SIGKILLed server leave nothing behind (v1's
frozen tasks cannot die until thawed). Latencies are printed, never judged.
Prints TAP.
"""
import ctypes
import http.client
import os
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sandbox_lib import TAP, Server, can_sandbox, wait_until  # noqa: E402

t = TAP()
if not can_sandbox():
    t.skip_all("needs root for namespaces and cgroups")

IDS = ["pz-a", "pz-s", "pz-d", "pz-x", "pz-w", "pz-crash", "pz-f", "pz-i"]
COUNTER = "i=0; while :; do i=$((i+1)); echo $i >> /workspace/count; sleep 0.05; done"
srv = Server()


def box(sid, s=None):
    return (s or srv).get("/v1/sandboxes/" + sid).json()


def status(sid, s=None):
    for b in (s or srv).get("/v1/sandboxes").json()["sandboxes"]:
        if b["id"] == sid:
            return b["status"]
    return None


def host_file(pid, path):
    """A file of the sandbox read on the host, through its pid 1's root."""
    try:
        with open("/proc/%d/root%s" % (pid, path)) as f:
            return f.read()
    except OSError:
        return None


def numbers(text):
    return [int(x) for x in (text or "").split()]


def freezer_state(pid):
    """What the kernel says of the group of host pid `pid`: v1 freezer.state
    ("FROZEN", "THAWED"...) or v2 cgroup.events' frozen line ("frozen 1")."""
    try:
        lines = open("/proc/%d/cgroup" % pid).read().splitlines()
    except OSError:
        return None
    for line in lines:
        _, ctrls, path = line.split(":", 2)
        if "freezer" in ctrls.split(","):
            for mnt in ("/sys/fs/cgroup/freezer", "/sys/fs/cgroup/cpu,cpuacct,freezer"):
                try:
                    return open(mnt + path + "/freezer.state").read().strip()
                except OSError:
                    pass
    for line in lines:
        if line.startswith("0::"):
            for mnt in ("/sys/fs/cgroup", "/sys/fs/cgroup/unified"):
                try:
                    ev = open(mnt + line[3:] + "/cgroup.events").read()
                    return [x for x in ev.splitlines() if x.startswith("frozen ")][0]
                except (OSError, IndexError):
                    pass
    return None


def frozen(st):
    return st in ("FROZEN", "frozen 1")


def host_pid_of(agent, sandbox_pid):
    """The host pid of a process of the sandbox (its pid inside is
    sandbox_pid): the task whose NSpid ends with it, below the agent."""
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            st = open("/proc/%s/status" % pid).read()
            cg_mine = open("/proc/%s/cgroup" % pid).read()
        except OSError:
            continue
        ns = [x for x in st.splitlines() if x.startswith("NSpid:")]
        if ns and ns[0].split()[-1] == str(sandbox_pid) and len(ns[0].split()) > 2 \
                and cg_mine == open("/proc/%d/cgroup" % agent).read():
            return int(pid)
    return None


def read_or_empty(path):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


def group_dirs(pid):
    """The cgroup folders of host pid `pid` below a "cellbox" parent, one per
    hierarchy (v1) or one (v2)."""
    dirs = []
    for line in read_or_empty("/proc/%d/cgroup" % pid).splitlines():
        _, ctrls, path = line.split(":", 2)
        if "/cellbox/" not in path:
            continue
        names = [c for c in ctrls.split(",") if c] or [""]
        for root, subs, _ in os.walk("/sys/fs/cgroup"):
            if root.endswith(path) and (not names[0] or names[0] in root):
                dirs.append(root)
                break
            if root.count("/") > 8:
                subs[:] = []
    return dirs


def growth(pid, path, secs):
    """How much the file grew over secs (host view)."""
    a = len(host_file(pid, path) or "")
    time.sleep(secs)
    return len(host_file(pid, path) or "") - a


def post_pause(sid, s=None):
    """POST …/pause. A 503 that says the kernel did not freeze every task in
    time (a task in uninterruptible sleep, e.g. on a disk saturated by the
    tests running alongside) is the documented transient answer: a client
    tries again, and so does this (noted in the output)."""
    for _ in range(3):
        r = (s or srv).post("/v1/sandboxes/%s/pause" % sid)
        if not (r.status == 503 and "did not freeze" in r.body.decode(errors="replace")):
            return r
        print("# note: pause of %s: 503 (%s), tried again" % (sid, r.json()["error"]["message"][:120]))
    return r


class StallFS:
    """A FUSE file system on the host, spoken over /dev/fuse by hand, that
    answers only INIT: a process that looks a name up in it waits in the
    kernel (request_wait_answer) in a sleep the freezer cannot end, until
    release() answers ENOENT. Moved into a sandbox's freezer group, it
    keeps a pause of that sandbox freezing for as long as the test wants (as
    a task blocked on a hung file system would). None when FUSE is missing."""

    def __init__(self):
        self.libc = ctypes.CDLL(None, use_errno=True)
        self.mnt = tempfile.mkdtemp(prefix="cellbox-stallfs-")
        self.fd = os.open("/dev/fuse", os.O_RDWR)
        opts = "fd=%d,rootmode=40000,user_id=0,group_id=0" % self.fd
        if self.libc.mount(b"cellbox-stall", self.mnt.encode(), b"fuse", 0, opts.encode()) != 0:
            e = ctypes.get_errno()
            os.close(self.fd)
            os.rmdir(self.mnt)
            raise OSError(e, "mount fuse: " + os.strerror(e))
        self.pending = []   # unique ids of requests held unanswered
        self.cv = threading.Condition()
        self.th = threading.Thread(target=self._serve, daemon=True)
        self.th.start()

    def _reply(self, unique, error=0, body=b""):
        os.write(self.fd, struct.pack("<IiQ", 16 + len(body), error, unique) + body)

    def _serve(self):
        while True:
            try:
                req = os.read(self.fd, 1 << 20)
            except OSError:
                return   # unmounted
            _, opcode, unique = struct.unpack_from("<IIQ", req)
            if opcode == 26:    # INIT: protocol 7.31, nothing else offered
                self._reply(unique, 0, struct.pack("<IIIIHHIIHHII", 7, 31, 0, 0, 0, 0, 4096, 0, 0, 0, 0, 0)
                            + b"\0" * 24)
            elif opcode not in (2, 36, 42):  # FORGET, INTERRUPT, BATCH_FORGET: no reply
                with self.cv:
                    self.pending.append(unique)
                    self.cv.notify_all()

    def wait_held(self, timeout=30):
        with self.cv:
            return self.cv.wait_for(lambda: self.pending, timeout)

    def release(self):
        with self.cv:
            held, self.pending = self.pending, []
        for unique in held:
            self._reply(unique, -2)  # ENOENT

    def close(self):
        self.release()
        self.libc.umount2(self.mnt.encode(), 2)  # MNT_DETACH
        os.close(self.fd)
        self.th.join(10)
        os.rmdir(self.mnt)


def freezer_group(pid):
    """The folder of the freezer group of host pid `pid` (v1: the freezer
    hierarchy's; v2: its one group)."""
    dirs = group_dirs(pid)
    v1 = [d for d in dirs if "freezer" in d]
    return v1[0] if v1 else (dirs[0] if len(dirs) == 1 else None)


def freezing(group):
    """Has a freeze of the group begun without ending (v1 FREEZING; v2
    cgroup.freeze 1 but cgroup.events not yet frozen 1)?"""
    if os.path.exists(group + "/freezer.state"):
        return read_or_empty(group + "/freezer.state").strip() == "FREEZING"
    return (read_or_empty(group + "/cgroup.freeze").strip() == "1"
            and "frozen 0" in read_or_empty(group + "/cgroup.events"))


def pause(sid, s=None):
    """Pause; True if the server says paused (each test of what follows a
    pause includes this, so none passes on a server without pause)."""
    r = post_pause(sid, s)
    return r.status == 200 and r.json().get("status") == "paused"


try:
    # ---- pause: the processes stop --------------------------------------------
    srv.create("pz-a")
    r = srv.post("/v1/sandboxes/pz-a/processes", {"command": COUNTER, "processId": "ctr"})
    t.eq(r.status, 201, "counter process started")
    proc_pid = r.json().get("pid")
    agent = box("pz-a")["agentPid"]
    t.ok(wait_until(lambda: len(numbers(host_file(agent, "/workspace/count"))) >= 3, timeout=20),
         "the counter runs (the file grows, seen from the host)")
    ctx = srv.post("/v1/sandboxes/pz-a/contexts", {"language": "python"}, timeout=180)
    ctx_id = ctx.json().get("id") if ctx.status == 201 else None
    if ctx_id:
        srv.post("/v1/sandboxes/pz-a/code", {"code": "kept = 41", "context": ctx_id}, timeout=180)
    host_ctr = host_pid_of(agent, proc_pid)

    t0 = time.monotonic()
    r = post_pause("pz-a")
    pause_ms = (time.monotonic() - t0) * 1000
    j = r.json()
    t.ok(r.status == 200 and j.get("status") == "paused" and j.get("pausedAt") and j.get("agentPid") == agent,
         "pause: 200, status paused, pausedAt, same agent", r)
    print("# pause took %.1f ms (round trip; not a pass/fail figure)" % pause_ms, flush=True)
    st = freezer_state(agent)
    t.ok(frozen(st), "the kernel says the agent's group is frozen", st)
    st2 = freezer_state(host_ctr) if host_ctr else None
    t.ok(host_ctr and frozen(st2), "and the counter process's group too (host pid %s)" % host_ctr, st2)
    state = open("/proc/%d/status" % host_ctr).read().split("\n")[2] if host_ctr else ""
    print("# counter process while paused: %s" % state.strip(), flush=True)
    before = numbers(host_file(agent, "/workspace/count"))
    grew = growth(agent, "/workspace/count", 1.0)
    t.eq(grew, 0, "paused: the file does not grow in 1 s (it grows every 50 ms when running)")
    paused_at = j.get("pausedAt")

    # requests that do not use the processes leave it paused
    g = box("pz-a")
    t.ok(g.get("status") == "paused" and g.get("pausedAt") == paused_at, "GET of the sandbox shows paused, pausedAt", g)
    t.eq(status("pz-a"), "paused", "GET /v1/sandboxes lists it as paused")
    pl = srv.get("/v1/sandboxes/pz-a/processes")
    lg = srv.get("/v1/sandboxes/pz-a/processes/ctr/logs")
    t.ok(pl.status == 200 and lg.status == 200 and status("pz-a") == "paused",
         "process list and logs answer and do not resume", (pl, lg))
    r = post_pause("pz-a")
    t.ok(r.status == 200 and r.json().get("status") == "paused" and r.json().get("pausedAt") == paused_at,
         "pause of a paused sandbox: no-op 200, pausedAt unchanged", r)
    t.eq(grew + growth(agent, "/workspace/count", 0.3), 0, "still frozen after the second pause")
    fr = srv.post("/v1/sandboxes/pz-a/files/read", {"path": "/workspace/count"})
    t.ok(fr.status == 200 and numbers(fr.json().get("content")) == before and status("pz-a") == "paused",
         "files API reads a paused sandbox without resuming it", fr)
    fw = srv.post("/v1/sandboxes/pz-a/files/write", {"path": "/workspace/while-paused.txt", "content": "p"})
    fl = srv.post("/v1/sandboxes/pz-a/files/list", {"path": "/workspace"})
    t.ok(fw.status == 200 and fl.status == 200 and status("pz-a") == "paused"
         and growth(agent, "/workspace/count", 0.3) == 0,
         "files API writes and lists without resuming it (the counter stays frozen)", (fw, fl))
    if status("pz-a") != "paused":
        post_pause("pz-a")

    # ---- resume: the same processes go on -------------------------------------
    t0 = time.monotonic()
    r = srv.post("/v1/sandboxes/pz-a/resume")
    resume_ms = (time.monotonic() - t0) * 1000
    j = r.json()
    resumed = r.status == 200 and j.get("status") == "running"
    t.ok(resumed and "pausedAt" not in j and j.get("agentPid") == agent,
         "resume: 200, status running, no pausedAt, same agent", r)
    print("# resume took %.1f ms (round trip; not a pass/fail figure)" % resume_ms, flush=True)
    t.ok(resumed and frozen(st) and freezer_state(agent) in ("THAWED", "frozen 0"),
         "the kernel says thawed", freezer_state(agent))
    t.ok(resumed and grew == 0 and wait_until(
        lambda: len(numbers(host_file(agent, "/workspace/count"))) > len(before) + 2, timeout=20),
        "resumed: the file grows again (it did not while paused)")
    nums = numbers(host_file(agent, "/workspace/count"))
    t.ok(resumed and grew == 0 and nums == list(range(1, len(nums) + 1)), "the counter went on where it stopped (one run, no restart)",
         nums[:5] + ["..."] + nums[-5:])
    p = srv.get("/v1/sandboxes/pz-a/processes/ctr").json()
    t.ok(resumed and grew == 0 and p.get("status") == "running" and p.get("pid") == proc_pid and host_pid_of(agent, proc_pid) == host_ctr,
         "the same process (same pid inside and on the host) is running", p)
    if ctx_id:
        c = srv.post("/v1/sandboxes/pz-a/code", {"code": "kept + 1", "context": ctx_id}, timeout=180).json()
        texts = [x.get("text") for x in c.get("results", [])]
        t.ok(resumed and grew == 0 and "42" in texts, "a Python code context kept its variable across pause/resume", c)
    else:
        print("ok %d - # SKIP python code context: %r" % (t.n + 1, ctx), flush=True)
        t.n += 1
    r = srv.post("/v1/sandboxes/pz-a/resume")
    t.ok(r.status == 200 and r.json().get("status") == "running", "resume of a running sandbox: no-op 200", r)

    # ---- requests that use the processes resume it ---------------------------
    paused = pause("pz-a")
    t0 = time.monotonic()
    x = srv.exec("pz-a", "tail -n 1 /workspace/count")
    exec_ms = (time.monotonic() - t0) * 1000
    t.ok(paused and x.status == 200 and x.json()["exitCode"] == 0 and x.json()["stdout"].strip().isdigit(),
         "exec on a paused sandbox resumes it and works", x)
    print("# exec on a paused sandbox took %.1f ms" % exec_ms, flush=True)
    t.ok(paused and status("pz-a") == "running", "and it is running afterwards")
    t.ok(paused and growth(agent, "/workspace/count", 0.5) > 0, "its background process runs again")
    paused = pause("pz-a")
    r = srv.post("/v1/sandboxes/pz-a/processes", {"command": "echo started", "processId": "p2"})
    t.ok(paused and r.status == 201 and status("pz-a") == "running", "starting a process resumes it", r)
    paused = pause("pz-a")
    r = srv.put("/v1/sandboxes/pz-a", {})
    t.ok(paused and r.status == 200 and r.json().get("status") == "running", "PUT (connect) resumes it", r)

    # a preview URL resumes it (E2B resumes on connect)
    srv.post("/v1/sandboxes/pz-a/processes", {"command": "exec python3 -m http.server 8080", "processId": "web"})
    w = srv.post("/v1/sandboxes/pz-a/processes/web/wait", {"port": 8080, "timeoutMs": 30000})
    e = srv.post("/v1/sandboxes/pz-a/ports", {"port": 8080})
    if w.status == 200 and e.status in (200, 201) and e.json().get("url"):
        paused = pause("pz-a")
        host = e.json()["url"].split("//")[1].split("/")[0]
        c = http.client.HTTPConnection(srv.host, srv.port, timeout=60)
        c.request("GET", "/", headers={"Host": host})
        resp = c.getresponse()
        resp.read()
        c.close()
        t.ok(paused and resp.status == 200 and status("pz-a") == "running", "a preview-URL request resumes it",
             (resp.status, status("pz-a")))
    else:
        t.ok(False, "preview URL set up", (w, e))

    # ---- errors ---------------------------------------------------------------
    for verb in ("pause", "resume"):
        r = srv.post("/v1/sandboxes/pz-nope/" + verb)
        t.ok(r.status == 404 and r.code == "SANDBOX_NOT_FOUND", "%s of an unknown id: 404 SANDBOX_NOT_FOUND" % verb, r)
    r = srv.get("/v1/sandboxes/pz-a/pause")
    t.ok(r.status == 405, "GET …/pause: 405", r)

    # ---- a freeze that takes long: the sandbox is served meanwhile -----------
    # A host process blocked on a FUSE file system that does not answer is
    # moved into the sandbox's freezer group: the kernel cannot freeze it
    # until the test answers. The pause must not hold the sandbox's lock
    # over that wait: its record, the list and process records are served
    # while the pause is still waiting (an order, not a timing: the freeze
    # cannot end before the test releases the file system).
    srv.create("pz-f")
    srv.post("/v1/sandboxes/pz-f/processes", {"command": "sleep 1000", "processId": "bg"})
    f_agent = box("pz-f")["agentPid"]
    group = freezer_group(f_agent)
    try:
        fs = StallFS() if group else None
    except OSError as e:
        fs = None
        print("# no FUSE here (%s)" % e, flush=True)
    if not fs:
        for name in ("slow freeze: the record is served while the pause waits", "slow freeze: pause ends 200",
                     "slow freeze: a resume sent meanwhile leaves it running"):
            t.n += 1
            print("ok %d - # SKIP %s: needs FUSE (/dev/fuse) and a freezer group (%s)" % (t.n, name, group), flush=True)
    else:
        stuck = subprocess.Popen(["stat", fs.mnt + "/held"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            held = fs.wait_held()
            with open(group + "/cgroup.procs", "w") as f:
                f.write(str(stuck.pid))
            res = {}

            def do(key, verb):
                res[key] = srv.post("/v1/sandboxes/pz-f/" + verb, timeout=90)

            pauser = threading.Thread(target=do, args=("pause", "pause"))
            pauser.start()
            began = wait_until(lambda: freezing(group), timeout=30)
            g = srv.get("/v1/sandboxes/pz-f", timeout=90)
            lst = srv.get("/v1/sandboxes", timeout=90)
            pr = srv.get("/v1/sandboxes/pz-f/processes/bg", timeout=90)
            during = pauser.is_alive() and freezing(group)
            t.ok(held and began and during and g.status == 200 and g.json().get("pausing") is True
                 and g.json().get("status") == "running" and lst.status == 200 and pr.status == 200,
                 "slow freeze: the record (status running, pausing true), the list and a process record "
                 "are served while the pause waits for the kernel",
                 (held, began, during, g, lst.status, pr))
            resumer = threading.Thread(target=do, args=("resume", "resume"))
            resumer.start()
            fs.release()   # the stat ends, the freeze completes
            pauser.join(90)
            p = res.get("pause")
            t.ok(p is not None and p.status == 200 and p.json().get("status") == "paused"
                 and "pausing" not in p.json(), "slow freeze: pause ends 200 paused once the task can freeze", p)
            resumer.join(90)
            r = res.get("resume")
            t.ok(r is not None and r.status == 200 and r.json().get("status") == "running"
                 and status("pz-f") == "running" and not frozen(freezer_state(f_agent)),
                 "slow freeze: a resume sent meanwhile waits for the pause, then leaves it running", (r, status("pz-f")))
        finally:
            srv.post("/v1/sandboxes/pz-f/resume")
            fs.close()
            try:
                stuck.wait(30)
            except subprocess.TimeoutExpired:
                stuck.kill()
                stuck.wait(30)

    # ---- stdin of a process: it resumes the sandbox; a blocked write holds nothing
    srv.create("pz-i")
    srv.post("/v1/sandboxes/pz-i/processes", {"command": "wc -c", "processId": "cat"})
    i_paused = pause("pz-i")
    res = {}

    def stdin(key, n, eof=False):
        try:
            res[key] = srv.post("/v1/sandboxes/pz-i/processes/cat/stdin", {"data": "x" * n, "eof": eof}, timeout=60)
        except Exception as e:  # noqa: BLE001  (a hang: the socket's timeout)
            res[key] = e
    # 2 MB: more than a socket holds, so a frozen agent would block the write
    th = threading.Thread(target=stdin, args=("paused", 2 << 20))
    th.start()
    th.join(60)
    r = res.get("paused")
    t.ok(i_paused and getattr(r, "status", None) == 200 and status("pz-i") == "running",
         "stdin to a paused sandbox's process resumes it and is taken (2 MB)", r)
    # the agent frozen behind the server's back (the kernel's freezer file):
    # a write blocks on the full socket, but must not hold the sandbox's lock
    i_group = freezer_group(box("pz-i")["agentPid"])
    blocked = False
    if i_group:
        with open(i_group + ("/freezer.state" if "freezer" in i_group else "/cgroup.freeze"), "w") as f:
            f.write("FROZEN" if "freezer" in i_group else "1")
        th = threading.Thread(target=stdin, args=("frozen", 2 << 20, True))
        th.start()
        th.join(1.0)   # it cannot finish while the agent is frozen: only lets it start
        blocked = th.is_alive()
        g = srv.get("/v1/sandboxes/pz-i", timeout=60)
        pl = srv.get("/v1/sandboxes/pz-i/processes/cat", timeout=60)
        t.ok(blocked and th.is_alive() and g.status == 200 and pl.status == 200,
             "a stdin write blocked on a frozen agent does not hold the sandbox: its record and the "
             "process record are served meanwhile", (blocked, g, pl))
        with open(i_group + ("/freezer.state" if "freezer" in i_group else "/cgroup.freeze"), "w") as f:
            f.write("THAWED" if "freezer" in i_group else "0")
        th.join(60)
        r = res.get("frozen")
        done = wait_until(lambda: srv.get("/v1/sandboxes/pz-i/processes/cat").json().get("status") == "completed",
                          timeout=30)
        logs = srv.get("/v1/sandboxes/pz-i/processes/cat/logs").json()
        t.ok(getattr(r, "status", None) == 200 and done and logs.get("stdout", "").strip() == str(4 << 20),
             "once thawed the write ends, and the process got all 4 MB and EOF", (r, logs))
        # many operations opened on a frozen agent fill its control
        # socket (the kernel queues a few messages, then the sender
        # blocks): that wait must not hold the sandbox's lock either
        with open(i_group + ("/freezer.state" if "freezer" in i_group else "/cgroup.freeze"), "w") as f:
            f.write("FROZEN" if "freezer" in i_group else "1")
        execs = {}

        def run_exec(i):
            try:
                execs[i] = srv.post("/v1/sandboxes/pz-i/exec", {"command": "echo %d" % i}, timeout=60)
            except Exception as e:  # noqa: BLE001
                execs[i] = e
        ths = [threading.Thread(target=run_exec, args=(i,)) for i in range(300)]
        for th in ths:
            th.start()
        time.sleep(1.5)
        waiting = sum(th.is_alive() for th in ths)
        try:
            g = srv.get("/v1/sandboxes/pz-i", timeout=10)
        except Exception as e:  # noqa: BLE001  (the lock held: the read times out)
            g = e
        t.ok(waiting == 300 and getattr(g, "status", None) == 200,
             "300 operations waiting on a frozen agent's full control socket: the sandbox's record is "
             "served meanwhile", (waiting, g))
        with open(i_group + ("/freezer.state" if "freezer" in i_group else "/cgroup.freeze"), "w") as f:
            f.write("THAWED" if "freezer" in i_group else "0")
        for th in ths:
            th.join(60)
        # (300 at once may pass the sandbox's pids limit: those say so)
        outs = list((getattr(execs.get(i), "status", None) == 200
                     and execs[i].json().get("stdout") == "%d\n" % i)
                    or (getattr(execs.get(i), "status", None) == 500
                        and b"fork: Resource temporarily unavailable" in execs[i].body) for i in range(300))
        t.ok(all(outs) and sum(getattr(execs.get(i), "status", None) == 200 for i in range(300)) > 0,
             "once thawed, all 300 are answered: run, or refused by the sandbox's pids limit",
             [execs.get(i) for i in range(300) if not outs[i]][:3])
    else:
        for name in ("blocked stdin write holds nothing", "blocked stdin write ends",
                     "operations blocked on a frozen agent hold nothing", "they run once thawed"):
            t.n += 1
            print("ok %d - # SKIP %s: no freezer group" % (t.n, name), flush=True)

    # ---- sleepAfter does not apply while paused ------------------------------
    srv.create("pz-s", sleepAfter="1s")
    srv.post("/v1/sandboxes/pz-s/processes", {"command": "sleep 1000", "processId": "bg"})
    s_agent = box("pz-s")["agentPid"]
    r = post_pause("pz-s")
    t.eq(r.status, 200, "sleepAfter 1s: paused")
    time.sleep(3)  # the point of the test: three times sleepAfter
    g = box("pz-s")
    t.ok(g["status"] == "paused" and g.get("agentPid") == s_agent, "still paused after 3 s, same agent", g)
    r = srv.post("/v1/sandboxes/pz-s/resume")
    p = srv.get("/v1/sandboxes/pz-s/processes/bg").json()
    s_resumed = r.status == 200 and g["status"] == "paused"
    t.ok(s_resumed and p.get("status") == "running" and box("pz-s").get("agentPid") == s_agent,
         "resumed: its process is still there", (r, p))
    t.ok(s_resumed and wait_until(lambda: status("pz-s") == "stopped", timeout=30, step=0.2),
         "once resumed, sleepAfter applies again (it goes to sleep)")
    r = srv.post("/v1/sandboxes/pz-s/pause")
    t.ok(r.status == 409 and r.code == "SANDBOX_CONFLICT" and "not running" in r.json()["error"]["message"],
         "pause of an asleep sandbox: 409 SANDBOX_CONFLICT, says not running", r)
    t.ok(r.status == 409 and status("pz-s") == "stopped", "and it stays asleep")
    r = srv.post("/v1/sandboxes/pz-s/resume")
    t.ok(r.status == 200 and r.json().get("status") == "running", "resume of an asleep sandbox wakes it", r)

    # ---- delete while paused ------------------------------------------------
    srv.create("pz-d")
    srv.post("/v1/sandboxes/pz-d/processes", {"command": "sleep 1000", "processId": "bg"})
    d_agent = box("pz-d")["agentPid"]
    d_groups = group_dirs(d_agent)
    d_paused = pause("pz-d")
    t.ok(d_paused and frozen(freezer_state(d_agent)), "pz-d frozen")
    t0 = time.monotonic()
    r = srv.delete("/v1/sandboxes/pz-d")
    t.ok(d_paused and r.status == 200 and (time.monotonic() - t0) < 30, "delete of a paused sandbox: 200", r)
    t.ok(d_paused and not os.path.exists("/proc/%d" % d_agent), "its agent is gone")
    # (srv.leftovers would count the other sandboxes of this running server)
    name = "/" + os.path.basename(d_groups[0]) + "\n" if d_groups else "?"
    left = [g for g in d_groups if os.path.exists(g)] + [
        pid for pid in os.listdir("/proc") if pid.isdigit() and name in (read_or_empty("/proc/%s/cgroup" % pid))]
    t.ok(d_paused and d_groups and not left,
         "nothing of it is left: no process in its groups, no group (%d hierarchies)" % len(d_groups), left)

    # ---- a stop of a paused sandbox for other reasons -----------------------
    # its pid 1 killed from outside while frozen: the next request restarts it
    srv.create("pz-x")
    x_agent = box("pz-x")["agentPid"]
    x_paused = pause("pz-x")
    os.kill(x_agent, signal.SIGKILL)
    x = srv.exec("pz-x", "echo back")
    t.ok(x_paused and x.status == 200 and x.json()["stdout"] == "back\n" and box("pz-x")["agentPid"] != x_agent,
         "a paused sandbox whose pid 1 was SIGKILLed comes back on the next request", x)

    # ---- server shutdown and restart with a paused sandbox -------------------
    srv.create("pz-w")
    srv.post("/v1/sandboxes/pz-w/files/write", {"path": "keep.txt", "content": "kept"})
    srv.post("/v1/sandboxes/pz-w/processes", {"command": "sleep 1000", "processId": "bg"})
    w_paused = pause("pz-a") and pause("pz-w")
    t.ok(w_paused, "two sandboxes paused before the shutdown")
    rc = srv.stop()
    t.ok(w_paused and rc == 0, "SIGTERM with paused sandboxes: exit 0", rc)
    left = srv.leftovers(IDS)
    t.ok(w_paused and not left, "and nothing is left (frozen tasks were thawed to die)", left)
    srv.start()
    g = box("pz-w")
    t.ok(w_paused and g.get("status") == "stopped", "after a restart a paused sandbox is stopped", g)
    x = srv.sh("pz-w", "cat keep.txt")
    p = srv.get("/v1/sandboxes/pz-w/processes/bg").json()
    t.ok(w_paused and x["stdout"] == "kept" and p.get("status") == "killed", "its files are kept, its processes are not", (x, p))

    # ---- a SIGKILLed server with a paused sandbox ---------------------------
    crash = Server()
    try:
        crash.create("pz-crash")
        crash.post("/v1/sandboxes/pz-crash/processes", {"command": "sleep 1000", "processId": "bg"})
        c_agent = box("pz-crash", crash)["agentPid"]
        c_paused = pause("pz-crash", crash)
        t.ok(c_paused and frozen(freezer_state(c_agent)), "crash server: sandbox paused")
        os.kill(crash.server_pid, signal.SIGKILL)
        crash.proc.wait()
        crash.proc.stdout.close()
        crash.log.close()
        crash.proc = None
        crash.start()  # its sweep removes the dead server's groups, frozen or not
        gone = wait_until(lambda: not os.path.exists("/proc/%d" % c_agent), timeout=20, step=0.1)
        t.ok(c_paused and gone, "the next server's sweep thaws and ends a killed server's paused sandbox")
        left = [x for x in crash.leftovers(["pz-crash"]) if "pool-%d-" % crash.pids[0] in x]
        t.ok(c_paused and not left, "and removes its groups", left)
    finally:
        crash.stop()
        crash.cleanup()

    # ---- --isolation none: no cgroups, no pause ------------------------------
    dev = Server(extra_args=["--isolation", "none"])
    try:
        dev.create("pz-dev")
        r = dev.post("/v1/sandboxes/pz-dev/pause")
        t.ok(r.status == 501 and r.code == "PAUSE_NOT_SUPPORTED" and "--isolation none" in r.json()["error"]["message"],
             "--isolation none: pause is 501 PAUSE_NOT_SUPPORTED naming the reason", r)
        r = dev.post("/v1/sandboxes/pz-dev/resume")
        t.ok(r.status == 200 and r.json().get("status") == "running", "and resume is a no-op 200", r)
    finally:
        t.eq(dev.stop(), 0, "--isolation none server stops cleanly")
        dev.cleanup()
finally:
    srv.finish(t, IDS, "final graceful stop")
t.done()
