"""tests/sandbox_lifecycle.py: persistence and lifecycle of `cellbox serve`.

Restart with state intact (workspace, sessions, process records and logs),
sleepAfter (an idle sandbox stops and wakes transparently), keepAlive, a
sandbox whose pid 1 dies, and SIGTERM shutdown; each sandbox's host id
range across restarts, and a state folder of before id ranges. Waits use
deadlines, never fixed sleeps. Prints TAP.
"""
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sandbox_lib import CELLBOX, TAP, Server, can_sandbox, parse_sse, wait_until  # noqa: E402

t = TAP()
if not can_sandbox():
    t.skip_all("needs root for namespaces and cgroups")

IDS = ["life-a", "life-s", "life-k", "life-s2", "life-dp"]
srv = Server()


def status(sid):
    for s in srv.get("/v1/sandboxes").json()["sandboxes"]:
        if s["id"] == sid:
            return s["status"]
    return None


def agent_pid(sid):
    r = srv.get("/v1/sandboxes/" + sid)
    return r.json().get("agentPid") if r.status == 200 else None


try:
    srv.create("life-a")
    srv.post("/v1/sandboxes/life-a/files/write", {"path": "keep/me.txt", "content": "persisted"})
    srv.sh("life-a", "cd /workspace/keep && export COLOR=blue && hi() { echo hi $1; }")
    srv.post("/v1/sandboxes/life-a/sessions", {"id": "side", "cwd": "/tmp", "env": {"SIDE": "1"}})
    srv.post("/v1/sandboxes/life-a/processes", {"command": "echo finished-output", "processId": "done"})
    srv.post("/v1/sandboxes/life-a/processes/done/wait", {"exit": True, "timeoutMs": 20000})
    srv.post("/v1/sandboxes/life-a/processes", {"command": "echo running-output; sleep 1000", "processId": "long"})
    srv.post("/v1/sandboxes/life-a/processes/long/wait", {"log": "running-output", "timeoutMs": 20000})
    t.eq(status("life-a"), "running", "sandbox running before the restart")

    # ---- restart -----------------------------------------------------------------
    rc = srv.stop()
    t.eq(rc, 0, "SIGTERM: exit 0")
    t.ok(not srv.leftovers(IDS), "SIGTERM stopped every sandbox", srv.leftovers(IDS))
    srv.start()
    t.eq(status("life-a"), "stopped", "after a restart the sandbox is known, stopped")
    x = srv.sh("life-a", "cat me.txt; echo; echo $COLOR; hi there")
    t.eq(x["stdout"], "persisted\nblue\nhi there\n",
         "next request restores it: workspace, cwd, exports and functions intact")
    t.eq(status("life-a"), "running", "and it runs again")
    x = srv.sh("life-a", "pwd; echo $SIDE", sessionId="side")
    t.eq(x["stdout"], "/tmp\n1\n", "named session survived the restart")
    procs = {p["id"]: p for p in srv.get("/v1/sandboxes/life-a/processes").json()["processes"]}
    t.ok(procs.get("done", {}).get("status") == "completed" and procs["done"]["exitCode"] == 0,
         "finished process record kept", procs)
    t.ok(procs.get("long", {}).get("status") == "killed" and procs["long"]["endTime"],
         "process that was running is reported killed", procs)
    logs = srv.get("/v1/sandboxes/life-a/processes/long/logs").json()
    t.eq(logs["stdout"], "running-output\n", "its logs survived")

    # ---- pid 1 dies ------------------------------------------------------------------
    pid = agent_pid("life-a")
    t.ok(pid is not None, "found the sandbox's agent", pid)
    if pid:
        os.kill(pid, signal.SIGKILL)
    x = srv.sh("life-a", "cat me.txt")
    t.eq(x["stdout"], "persisted", "a sandbox whose pid 1 died is restarted on the next request")

    # a stream whose sandbox dies ends with an error event, it does not hang
    c = srv.conn()
    c.request("POST", "/v1/sandboxes/life-a/exec", body=json.dumps({"command": "echo up; sleep 300"}).encode(),
              headers={"Authorization": "Bearer " + srv.token, "Accept": "text/event-stream"})
    resp = c.getresponse()
    buf = b""
    while b"up" not in buf:
        buf += resp.fp.read1(4096)
    os.kill(agent_pid("life-a"), signal.SIGKILL)
    ev = parse_sse((buf + resp.read()).decode())
    c.close()
    t.ok(ev[-1][0] == "error" and "stopped" in ev[-1][1]["error"], "a stream ends with an error event when its sandbox dies", ev)
    x = srv.sh("life-a", "cat me.txt")
    t.eq(x["stdout"], "persisted", "and the sandbox comes back on the next request")

    # ---- sleepAfter / keepAlive ----------------------------------------------------
    srv.create("life-k", sleepAfter="1s", keepAlive=True)
    srv.create("life-s", sleepAfter="1s")
    srv.sh("life-s", "echo data > /workspace/f; echo tmp > /tmp/t")
    slept = wait_until(lambda: status("life-s") == "stopped", timeout=60, step=0.2)
    t.ok(slept, "an idle sandbox goes to sleep after sleepAfter")
    t.eq(status("life-k"), "running", "keepAlive: a sandbox idle just as long stays up")
    t.ok(agent_pid("life-s") is None, "a sleeping sandbox has no agent")
    x = srv.sh("life-s", "cat /workspace/f; cat /tmp/t 2>/dev/null || echo no-tmp")
    t.eq(x["stdout"], "data\nno-tmp\n", "it wakes on the next request: /workspace kept, /tmp fresh")
    t.eq(status("life-s"), "running", "awake again")
    srv.create("life-s2", sleepAfter="1s")
    r = srv.post("/v1/sandboxes/life-s2/processes", {"command": "sleep 1000", "processId": "bg"})
    slept = wait_until(lambda: status("life-s2") == "stopped", timeout=60, step=0.2)
    p = srv.get("/v1/sandboxes/life-s2/processes/bg").json()
    t.ok(slept and p["status"] == "killed", "sleeping ends the sandbox's processes", p)
    st, ev = srv.sse("/v1/sandboxes/life-s2/exec", {"command": "sleep 2.5; echo late"})
    t.ok(ev[-1][0] == "complete" and ev[-1][1]["exitCode"] == 0,
         "a running stream keeps the sandbox awake past sleepAfter", ev)
    # ---- a server killed with SIGKILL -------------------------------------------
    # Its groups (pool-<pid>-<n>, also those its sandboxes live in) stay
    # behind; the next server to start removes them and whatever is in them.
    crash = Server()
    try:
        crash.create("life-crash")
        crash.post("/v1/sandboxes/life-crash/processes", {"command": "sleep 1000", "processId": "bg"})
        crash_pid = crash.server_pid
        os.kill(crash_pid, signal.SIGKILL)
        crash.proc.wait()

        def groups_of(pid):
            found = []
            for root, dirs, _ in os.walk("/sys/fs/cgroup"):
                if root.endswith("/cellbox"):
                    found += [root + "/" + d for d in dirs if d.startswith("pool-%d-" % pid)]
                if root.count("/") > 8:
                    dirs[:] = []
            return found
        before = groups_of(crash_pid)
        t.ok(before, "a SIGKILLed server leaves its cgroups behind", before)
        crash.proc.stdout.close()
        crash.log.close()
        crash.proc = None
        crash.start()
        after = wait_until(lambda: not groups_of(crash_pid), timeout=20, step=0.1)
        t.ok(after, "the next server removes them (and the processes left in them)", groups_of(crash_pid))
        t.ok("left by servers that are gone" in crash.server_log(), "and says so in its log")
        t.eq([x for x in crash.leftovers(["life-crash"]) if "pool-%d-" % crash_pid in x], [],
             "no process of the killed server's sandboxes is left")
    finally:
        crash.stop()
        crash.cleanup()

    # ---- --isolation none (development only) ------------------------------------
    dev = Server(extra_args=["--isolation", "none"])
    try:
        dev.create("life-dev")
        x = dev.sh("life-dev", "cd /tmp && export D=1 && pwd")
        y = dev.sh("life-dev", "echo $D; pwd")
        r = dev.post("/v1/sandboxes/life-dev/files/write", {"path": "f.txt", "content": "dev"})
        t.ok(x["exitCode"] == 0 and y["stdout"] == "1\n/tmp\n" and r.status == 200,
             "--isolation none runs commands, sessions and files", (x, y, r))
        t.ok("WITHOUT any isolation" in dev.server_log(), "--isolation none warns loudly")
    finally:
        t.eq(dev.stop(), 0, "--isolation none server stops cleanly")
        dev.cleanup()

    # ---- DELETE and PUT of one id at once -------------------------------------
    # The delete removes the sandbox's folder (20000 files: it takes a
    # while); a PUT of the same id meanwhile must create a sandbox that the
    # removal does not touch: its sandbox.json on disk, a workspace that is
    # empty (not the old one's) and writable. Whatever the interleaving, a
    # 201 must be a working sandbox (a 200: the PUT came first, then the
    # delete took it).
    broken = []
    for rnd in range(3):
        srv.create("life-dp")
        srv.sh("life-dp", "mkdir old && cd old && seq 1 20000 | xargs touch")
        res = {}
        th = threading.Thread(target=lambda: res.update(d=srv.delete("/v1/sandboxes/life-dp")))
        th.start()
        time.sleep(0.05)  # the PUT lands inside the removal (most of the time; any order must be right)
        put = srv.put("/v1/sandboxes/life-dp", {})
        th.join()
        if put.status == 201:
            meta = os.path.exists(os.path.join(srv.state, "sandboxes", "life-dp", "sandbox.json"))
            x = srv.post("/v1/sandboxes/life-dp/exec", {"command": "ls /workspace | wc -l; echo new > n.txt && cat n.txt"})
            if not (meta and x.status == 200 and x.json()["stdout"] == "0\nnew\n" and res["d"].status == 200):
                broken.append((rnd, "sandbox.json there: %s" % meta, x, res["d"]))
        elif put.status != 200 or res["d"].status != 200:
            broken.append((rnd, put, res["d"]))
        srv.delete("/v1/sandboxes/life-dp")
    t.ok(not broken, "DELETE and PUT of one id at once: a new sandbox is whole (its files, its workspace), "
         "never emptied by the old one's removal (3 rounds)", broken)

    # ---- one sandbox's slow start does not hold up requests to others ----------
    # The pool's warm agents are frozen (cgroup freezer) by the test, so the
    # next sandbox's start waits for its agent, holding that sandbox's lock.
    # A lookup used to take each sandbox's lock under the registry's lock:
    # a GET of that sandbox then held up every request to every other one.
    slow = Server()
    frozen_groups = []
    try:
        slow.create("life-o")
        o_agent = slow.get("/v1/sandboxes/life-o").json()["agentPid"]
        roots = ["/sys/fs/cgroup/freezer/cellbox", "/sys/fs/cgroup/cellbox"]

        def warm_groups(busy=(str(o_agent),)):
            """The freezer groups of this server's agents not in busy (pids):
            its warm agents."""
            out = []
            for root in roots:
                try:
                    names = os.listdir(root)
                except OSError:
                    continue
                for n in names:
                    g = os.path.join(root, n)
                    if not n.startswith("pool-%d-" % slow.server_pid):
                        continue
                    try:
                        procs = open(g + "/cgroup.procs").read().split()
                    except OSError:
                        continue
                    if procs and not set(busy) & set(procs):
                        out.append(g)
            return out

        def freeze(g, on):
            f = "/freezer.state" if os.path.exists(g + "/freezer.state") else "/cgroup.freeze"
            with open(g + f, "w") as fh:
                fh.write(("FROZEN" if on else "THAWED") if f == "/freezer.state" else ("1" if on else "0"))

        # (a group exists from the agent's start; the agent is warm a few ms
        # later: one frozen before it said so would hold up the pool's refill)
        ready = wait_until(lambda: len(warm_groups()) >= 2, timeout=30)
        time.sleep(1)
        for g in warm_groups():
            freeze(g, True)
            frozen_groups.append(g)
        res = {}

        def call(key, method, path):
            res[key] = slow.request(method, path, timeout=120)

        put = threading.Thread(target=call, args=("put", "PUT", "/v1/sandboxes/life-slow"))
        put.start()
        # the start took a frozen agent once the pool refills (a new warm group)
        took = wait_until(lambda: any(g not in frozen_groups for g in warm_groups()), timeout=30)
        get_slow = threading.Thread(target=call, args=("get-slow", "GET", "/v1/sandboxes/life-slow"))
        get_slow.start()
        time.sleep(0.3)  # lets that GET reach the starting sandbox (a missed wait only weakens the check)
        get_o = threading.Thread(target=call, args=("get-o", "GET", "/v1/sandboxes/life-o"))
        get_o.start()
        get_o.join(20)
        served = not get_o.is_alive() and put.is_alive()
        t.ok(ready and took and served and res.get("get-o") is not None and res["get-o"].status == 200,
             "a sandbox whose start waits for its agent does not hold up a GET of another sandbox",
             (ready, took, served, res.get("get-o")))
        # nor its own record, nor the list: the start waits without its lock
        get_slow.join(20)
        lst = threading.Thread(target=call, args=("list", "GET", "/v1/sandboxes"))
        lst.start()
        lst.join(20)
        g = res.get("get-slow")
        mine = [x for x in res["list"].json()["sandboxes"] if x["id"] == "life-slow"] if res.get("list") else []
        t.ok(put.is_alive() and g is not None and g.status == 200 and g.json().get("starting") is True
             and g.json().get("status") == "stopped" and mine and mine[0].get("starting") is True,
             "its own record and the list are served meanwhile: status stopped, starting true",
             (put.is_alive(), g, mine))
        for g in frozen_groups:
            freeze(g, False)
        frozen_groups = []
        put.join(120)
        get_slow.join(120)
        get_o.join(120)
        t.ok(res.get("put") is not None and res["put"].status == 201 and res["put"].json().get("status") == "running",
             "once its agent thaws, the slow start ends: 201 running", res.get("put"))

        # an agent that never answers: the start gives up after 20 s and says so
        # (it said "sandbox agent exited during setup")
        busy = {str(o_agent), str(slow.get("/v1/sandboxes/life-slow").json().get("agentPid"))}
        ready = wait_until(lambda: len(warm_groups(busy)) >= 2, timeout=30)
        time.sleep(1)
        for g in warm_groups(busy):
            freeze(g, True)
            frozen_groups.append(g)
        put = threading.Thread(target=call, args=("put-stuck", "PUT", "/v1/sandboxes/life-stuck"))
        put.start()
        put.join(40)
        for g in frozen_groups:
            freeze(g, False)
        frozen_groups = []
        put.join(60)
        r = res.get("put-stuck")
        msg = (r.json().get("error") or {}).get("message", "") if r is not None else ""
        t.ok(ready and r is not None and r.status == 503 and r.code == "CONTAINER_UNAVAILABLE"
             and "did not answer within 20 s" in msg,
             "an agent that never answers: 503 CONTAINER_UNAVAILABLE saying it did not answer within 20 s",
             (ready, r))
        slow.delete("/v1/sandboxes/life-stuck")
    finally:
        for g in frozen_groups:
            freeze(g, False)
        t.eq(slow.stop(), 0, "slow-start server stops cleanly")
        left = slow.leftovers(["life-o", "life-slow", "life-stuck"])
        t.ok(not left, "and leaves nothing behind", left)
        slow.cleanup()

    # ---- a second server on a port in use --------------------------------------
    # It must refuse to start: with SO_REUSEPORT both listened and the kernel
    # spread the connections over the two (half the requests 401 with the
    # other's token, or landed on the other's sandboxes).
    try:
        twin = Server(extra_args=["--listen", "%s:%d" % (srv.host, srv.port), "--pool", "0"])
    except RuntimeError as e:
        twin = None
        t.ok("Address already in use" in str(e), "a second server on the same port: refused, says the address is in use", e)
    if twin:
        t.ok(False, "a second server on the same port: refused", "it started: " + twin.url)
        twin.stop()
        twin.cleanup()
    t.eq(srv.get("/v1/health").status, 200, "the first server still answers")

    # ---- a second server on the same state folder ------------------------------
    # It must refuse to start, before it touches anything: two would start
    # agents for the same sandboxes and move each other's files.
    listed = sorted(b["id"] for b in srv.get("/v1/sandboxes").json()["sandboxes"])
    try:
        twin = Server(state=srv.state, extra_args=["--pool", "0"])
    except RuntimeError as e:
        twin = None
        t.ok("another server (pid %d) uses the state folder" % srv.server_pid in str(e)
             and os.path.realpath(srv.state) in str(e),
             "a second server on the same state folder: refused, naming the first one's pid and the folder", e)
    if twin:
        t.ok(False, "a second server on the same state folder: refused", "it started: " + twin.url)
        twin.stop()
        twin.cleanup()
    t.ok(srv.get("/v1/health").status == 200
         and sorted(b["id"] for b in srv.get("/v1/sandboxes").json()["sandboxes"]) == listed,
         "the first server still answers, with the same sandboxes", listed)
finally:
    srv.finish(t, IDS, "final graceful stop")

# ---- host id ranges across restarts and upgrades ------------------------------
# Each sandbox maps its ids to a host id range of its own (see
# sandbox_hostile.py), kept in its sandbox.json: a restart must give it the
# same one, its files are owned by it. A state folder of a server from
# before id ranges (every sandbox at 1000000..1065535, no idRange in
# sandbox.json) must keep working: one sandbox keeps that range, the others
# get their own and their files follow (setuid bits, links, a diskMB image).
def host_base(s, sid):
    pid = s.get("/v1/sandboxes/" + sid).json().get("agentPid")
    with open("/proc/%d/uid_map" % pid) as f:
        inside, outside, count = f.read().split()
    return int(outside) if inside == "0" and count == "65536" else None


def owners(top):
    """{relative path: (uid, gid, mode)} of everything below top (host view)."""
    out = {}
    for root, dirs, files in os.walk(top):
        for n in ["."] + dirs + files:
            p = os.path.join(root, n)
            st = os.lstat(p)
            out[os.path.normpath(os.path.relpath(p, top))] = (st.st_uid, st.st_gid, st.st_mode)
    return out


ids_srv = Server()
ID_IDS = ["life-r1", "life-r2", "life-old1", "life-old2", "life-old3"]
try:
    for sid in ("life-r1", "life-r2"):
        ids_srv.create(sid)
        ids_srv.post("/v1/sandboxes/%s/files/write" % sid, {"path": "api.txt", "content": sid})
        ids_srv.sh(sid, "echo proc > /workspace/proc.txt")
    before = {sid: host_base(ids_srv, sid) for sid in ("life-r1", "life-r2")}
    rc = ids_srv.stop()
    ids_srv.start()
    res = {sid: ids_srv.sh(sid, "cat api.txt proc.txt; echo more >> proc.txt && echo ok") for sid in before}
    after = {sid: host_base(ids_srv, sid) for sid in before}
    ws = {sid: os.path.join(ids_srv.state, "sandboxes", sid, "workspace") for sid in before}
    own = {sid: {(u, g) for u, g, _ in owners(ws[sid]).values()} for sid in before}
    t.ok(rc == 0 and after == before and None not in after.values() and len(set(after.values())) == 2
         and all(res[s]["stdout"] == "%sproc\nok\n" % s for s in before)
         and all(own[s] == {(after[s] + 1000, after[s] + 1000)} for s in before),
         "after a restart each sandbox has the host id range it had, of its own; its files are its user's "
         "and it reads and writes them", (rc, before, after, res, own))

    # a state folder of before id ranges (the two above are deleted: their
    # ranges are given again, one of them is the old one)
    for sid in before:
        ids_srv.delete("/v1/sandboxes/" + sid)
    ids_srv.create("life-old3", diskMB=64)
    for sid in ("life-old1", "life-old2", "life-old3"):
        ids_srv.create(sid)
        ids_srv.sh(sid, "cd /workspace && echo %s > f && mkdir -p d/e && echo x > d/e/x && ln -s f link && "
                        "cp /bin/true su && chmod 4755 su" % sid)
    bases = {sid: host_base(ids_srv, sid) for sid in ("life-old1", "life-old2", "life-old3")}
    rc = ids_srv.stop()

    def to_old_range(top, base):
        for p, (u, g, mode) in owners(top).items():
            full = os.path.join(top, p)
            if base <= u < base + 65536:
                os.lchown(full, u - base + 1000000, g - base + 1000000)
                if not os.path.islink(full):
                    os.chmod(full, mode & 0o7777)  # chown dropped setuid

    old_ok = True
    for sid, base in bases.items():
        box = os.path.join(ids_srv.state, "sandboxes", sid)
        meta = json.load(open(os.path.join(box, "sandbox.json")))
        meta.pop("idRange", None)
        with open(os.path.join(box, "sandbox.json"), "w") as f:
            json.dump(meta, f)
        if base is None:
            old_ok = False
        elif sid == "life-old3":
            mnt = os.path.join(ids_srv.tmp, "old-image")
            os.makedirs(mnt, exist_ok=True)
            subprocess.run(["mount", "-o", "loop", os.path.join(box, "workspace.img"), mnt], check=True)
            try:
                to_old_range(mnt, base)
            finally:
                subprocess.run(["umount", mnt], check=True)
        else:
            to_old_range(os.path.join(box, "workspace"), base)
    ids_srv.start()
    res = {sid: ids_srv.sh(sid, "cd /workspace && cat f d/e/x link && echo y >> d/e/x && touch d/new && "
                                "stat -c '%u %g %A' su d/e/x && echo ok") for sid in bases}
    upg = {sid: host_base(ids_srv, sid) for sid in bases}
    t.ok(rc == 0 and old_ok and list(upg.values()).count(1000000) == 1 and len(set(upg.values())) == 3
         and all(res[s]["stdout"] == "%s\nx\n%s\n1000 1000 -rwsr-xr-x\n1000 1000 -rw-r--r--\nok\n" % (s, s)
                 for s in bases),
         "sandboxes of a state folder from before id ranges (one with diskMB): one keeps the host ids "
         "1000000.., the others get ranges of their own; all read and write their files, uid 1000 owns "
         "them inside, setuid bits kept", (rc, upg, res))
    moved = [s for s in ("life-old1", "life-old2") if upg[s] != 1000000]
    t.ok(moved and all({(u, g) for u, g, _ in owners(os.path.join(ids_srv.state, "sandboxes", s, "workspace")).values()}
                       == {(upg[s] + 1000, upg[s] + 1000)} for s in moved),
         "... whose files on the host now belong to their own range", moved)
finally:
    ids_srv.finish(t, ID_IDS, "graceful stop (id ranges)")

# ---- a server killed while an agent it cloned waits for its "go" ------------
# The clone holds every fd of the server's until it execs; it must not hold
# the write end of its own sync pipe (or another's), or it waits for ever
# once the server is gone. CELLBOX_TEST_AGENT_GO_DELAY_MS widens that moment.


def clone_children(binary):
    """Processes still running the server's code (the command line of a
    `cellbox serve`) whose parent is gone."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as f:
                cmd = f.read().split(b"\0")
            with open("/proc/%s/status" % pid) as f:
                ppid = [ln.split()[1] for ln in f if ln.startswith("PPid:")][0]
        except (OSError, IndexError):
            continue
        if cmd[0] == binary.encode() and b"serve" in cmd and b"--state-dir" in cmd and ppid == "1":
            found.append(int(pid))
    return found


kill_dir = tempfile.mkdtemp(prefix="cellbox-clone-kill-")
before = set(clone_children(CELLBOX))
srv_p = subprocess.Popen([CELLBOX, "serve", "--listen", "127.0.0.1:0", "--state-dir", kill_dir + "/state"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                         env=dict(os.environ, CELLBOX_TEST_AGENT_GO_DELAY_MS="3000"))
line, t0 = b"", time.time()
while b"ready" not in line and time.time() - t0 < 30:
    line = srv_p.stderr.readline()
time.sleep(1.0)   # the pool's first clone waits for its "go" now
srv_p.kill()
srv_p.wait()
stray = wait_until(lambda: not (set(clone_children(CELLBOX)) - before), timeout=10) or \
    sorted(set(clone_children(CELLBOX)) - before)
t.ok(stray is True, "a server killed while an agent's clone waits for its go leaves no process behind", stray)
for pid in (stray if stray is not True else []):
    os.kill(pid, signal.SIGKILL)
subprocess.run(["rm", "-rf", kill_dir])
t.done()
