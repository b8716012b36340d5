"""tests/sandbox_capacity.py: `cellbox serve --max-running N`, with the real
server and real sandboxes.

At most N sandboxes run at once (paused ones count). A start beyond that
puts the least recently used idle sandbox to sleep (as sleepAfter would: its
files, sessions and options stay; it starts again on its next request);
sandboxes in use, paused or keepAlive are never put to sleep, and when none
is idle the start is refused with 429 TOO_MANY_SANDBOXES. Also: parallel
creates never exceed N, a bad value of the flag is refused, and a sandbox
restarted because its agent died under a request (sb_box_recover) is
admitted like any start (it used to run beyond N). And the other bound:
each sandbox holds a host id range of its own, a server has so many of
them (CELLBOX_MAX_ID_RANGES lowers it here), and a freed one is given again.
Prints TAP.
"""
import os
import struct
import subprocess
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sandbox_lib import (CELLBOX, TAP, Server, can_sandbox, host_id_base, in_threads, wait_until,  # noqa: E402
                         workspace_owners)

t = TAP()
if not can_sandbox():
    t.skip_all("needs root for namespaces and cgroups")

r = subprocess.run([CELLBOX, "serve", "--max-running", "-1"], capture_output=True, text=True, timeout=30)
t.ok(r.returncode == 2 and "--max-running" in r.stderr, "--max-running -1: exit 2 naming the flag", r)

srv = Server(extra_args=["--max-running", "2"])
IDS = ["cap-a", "cap-b", "cap-c"] + ["cap-p%d" % i for i in range(6)]


def status(sid):
    return srv.get("/v1/sandboxes/" + sid).json().get("status")


def statuses(*ids):
    return [status(i) for i in ids]


def patch(sid, **body):
    return srv.request("PATCH", "/v1/sandboxes/" + sid, body)


try:
    srv.create("cap-a")
    srv.sh("cap-a", "echo kept > /workspace/f")
    srv.create("cap-b")
    srv.sh("cap-b", "true")
    t.eq(statuses("cap-a", "cap-b"), ["running", "running"], "two sandboxes run (the limit)")
    r = srv.put("/v1/sandboxes/cap-c", {})
    t.ok(r.status == 201 and statuses("cap-a", "cap-b", "cap-c") == ["stopped", "running", "running"],
         "a third: created, and the least recently used idle one (cap-a) was put to sleep", (r, statuses(
             "cap-a", "cap-b", "cap-c")))
    t.ok("max-running" in srv.server_log(), "the server's log says why cap-a went to sleep")
    j = srv.sh("cap-a", "cat /workspace/f")
    t.ok(j["exitCode"] == 0 and j["stdout"] == "kept\n" and statuses("cap-a", "cap-b", "cap-c")
         == ["running", "stopped", "running"],
         "a request to the sleeping one starts it again (files kept), the next least recently used sleeps",
         (j, statuses("cap-a", "cap-b", "cap-c")))

    patch("cap-a", keepAlive=True)
    patch("cap-c", keepAlive=True)
    r = srv.exec("cap-b", "true")
    t.ok(r.status == 429 and r.code == "TOO_MANY_SANDBOXES" and "--max-running" in r.json()["error"]["message"]
         and statuses("cap-a", "cap-b", "cap-c") == ["running", "stopped", "running"],
         "every running sandbox keepAlive: a start is refused with 429, nothing else changes", r)
    patch("cap-c", keepAlive=False)
    pr = srv.post("/v1/sandboxes/cap-c/pause")
    if pr.status == 200:
        r = srv.exec("cap-b", "true")
        t.ok(r.status == 429 and status("cap-c") == "paused", "a paused sandbox is not put to sleep (429)", r)
        srv.post("/v1/sandboxes/cap-c/resume")
    else:
        t.ok(True, "# SKIP pause is not supported here")
    r = srv.exec("cap-b", "echo back")
    t.ok(r.status == 200 and r.json()["stdout"] == "back\n"
         and statuses("cap-a", "cap-b", "cap-c") == ["running", "running", "stopped"],
         "once one is idle again (cap-c), the start puts it to sleep and runs", (r, statuses(
             "cap-a", "cap-b", "cap-c")))

    # a sandbox in use is not put to sleep, even when it is the least recently used
    patch("cap-a", keepAlive=False)
    srv.sh("cap-b", "true")
    long = {}
    n0 = srv.get("/v1/sandboxes/cap-a/metrics").json().get("processes", 0)
    th = threading.Thread(target=lambda: long.update(r=srv.exec("cap-a", "sleep 4; echo done")))
    th.start()
    # the command runs (its processes are there) before the next start needs room
    wait_until(lambda: srv.get("/v1/sandboxes/cap-a/metrics").json().get("processes", 0) > n0, timeout=30)
    r = srv.exec("cap-c", "echo c")
    th.join()
    lr = long.get("r")
    t.ok(r.status == 200 and lr is not None and lr.status == 200 and lr.json().get("stdout") == "done\n"
         and status("cap-b") == "stopped",
         "a sandbox running a command is not put to sleep: the idle one goes instead, the command finishes",
         (r, lr, statuses("cap-a", "cap-b", "cap-c")))

    # parallel creates: never more than 2 run
    peak = {"n": 0}
    stop = threading.Event()

    def watch():
        while not stop.is_set():
            try:
                n = sum(1 for b in srv.get("/v1/sandboxes").json()["sandboxes"] if b["status"] != "stopped")
                peak["n"] = max(peak["n"], n)
            except Exception:  # noqa: BLE001
                pass

    w = threading.Thread(target=watch)
    w.start()
    res = [None] * 6

    def create(i):
        res[i] = srv.put("/v1/sandboxes/cap-p%d" % i, {})

    in_threads(create, 6)
    stop.set()
    w.join()
    codes = sorted(x.status for x in res)
    t.ok(codes == [201] * 6 and peak["n"] <= 2,
         "6 creates at once with --max-running 2: all created, never more than 2 running (peak %d)" % peak["n"],
         (codes, peak))
    # again, 8 times: a create does not hold its sandbox once started, so
    # the next create can put it to sleep at once (it could find both
    # running ones still held by their own creates: 429, 6 rounds in 15)
    bad = []
    for rnd in range(8):
        res = [None] * 6

        def create_r(i):
            res[i] = srv.put("/v1/sandboxes/cap-q%d" % i, {})
        in_threads(create_r, 6)
        codes = sorted(x.status for x in res)
        if codes != [201] * 6:
            bad.append((rnd, codes, [x.body[:200] for x in res if x.status != 201]))
        for i in range(6):
            srv.delete("/v1/sandboxes/cap-q%d" % i)
    t.ok(not bad, "8 more rounds of 6 creates at once: every create 201 (a sandbox just created is idle)", bad)
finally:
    srv.finish(t, IDS, "server stops cleanly")


# ---- a restart after the agent died is admitted like any start ----
# An exec on R1 is held while its agent dies (the agent is stopped, so the
# channel the server sent it stays in the agent's control socket, and the
# test keeps that socket open with pidfd_getfd); a pause then finds the agent
# dead and stops R1, and R2 takes the only slot. When the exec goes on, the
# server restarts R1 (sb_box_recover): that restart used to skip
# --max-running, leaving two sandboxes running with a limit of 1.
import ctypes  # noqa: E402
import re  # noqa: E402
import select  # noqa: E402
import signal  # noqa: E402

libc = ctypes.CDLL(None, use_errno=True)
SYS_pidfd_getfd = 438


def agent_pid(server, sid):
    found = re.findall(r"sandbox=%s pid=(\d+)" % re.escape(sid), server.server_log())
    return int(found[-1]) if found else None


def ctl_socket_fd(pid):
    """A dup of the agent's control socket (its only socket), taken with pidfd_getfd."""
    pidfd = os.pidfd_open(pid)
    try:
        for name in sorted(os.listdir("/proc/%d/fd" % pid), key=int):
            if os.readlink("/proc/%d/fd/%s" % (pid, name)).startswith("socket:"):
                fd = libc.syscall(SYS_pidfd_getfd, pidfd, int(name), 0)
                if fd < 0:
                    raise OSError(ctypes.get_errno(), "pidfd_getfd")
                return fd
    finally:
        os.close(pidfd)
    raise RuntimeError("no socket in the agent %d" % pid)


srv = Server(extra_args=["--max-running", "1"])
RIDS = ["cap-r1", "cap-r2"]
try:
    srv.create("cap-r1")
    srv.sh("cap-r1", "true")
    r = srv.put("/v1/sandboxes/cap-r2", {})
    t.ok(r.status in (200, 201) and statuses("cap-r1", "cap-r2") == ["stopped", "running"],
         "--max-running 1: creating a second puts the first to sleep", (r, statuses("cap-r1", "cap-r2")))
    srv.sh("cap-r1", "true")  # r1 runs again, r2 sleeps
    pid = agent_pid(srv, "cap-r1")
    ctl = ctl_socket_fd(pid)
    os.kill(pid, signal.SIGSTOP)
    held = {}
    th = threading.Thread(target=lambda: held.update(r=srv.exec("cap-r1", "echo back")))
    th.start()
    # the exec's channel waits in the stopped agent's control socket
    t.ok(wait_until(lambda: select.select([ctl], [], [], 0)[0], timeout=30),
         "an exec on r1 is held: its channel waits in the stopped agent's control socket")
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: not os.path.exists("/proc/%d" % pid) or
               open("/proc/%d/stat" % pid).read().split(") ")[1][0] == "Z", timeout=30)
    pr = srv.post("/v1/sandboxes/cap-r1/pause")
    if pr.status == 501:
        t.ok(True, "# SKIP pause is not supported here (used to stop r1 while the exec holds it)")
        os.close(ctl)
        th.join()
    else:
        t.ok(pr.status == 409 and status("cap-r1") == "stopped",
             "a pause finds r1's agent dead: r1 is stopped (409)", (pr, status("cap-r1")))
        r = srv.exec("cap-r2", "echo r2")
        t.ok(r.status == 200 and statuses("cap-r1", "cap-r2") == ["stopped", "running"],
             "r2 takes the only slot", (r, statuses("cap-r1", "cap-r2")))
        os.close(ctl)  # the held exec now sees r1's agent gone, and restarts r1
        th.join()
        hr = held.get("r")
        st = statuses("cap-r1", "cap-r2")
        t.ok(hr is not None and st.count("running") <= 1,
             "r1's restart after its agent died obeys --max-running 1 (running: %d)" % st.count("running"),
             (hr, st))
        t.ok(hr is not None and hr.status == 200 and hr.json().get("stdout") == "back\n"
             and st == ["running", "stopped"],
             "the restart put the idle r2 to sleep and the held exec ran", (hr, st))
finally:
    srv.finish(t, RIDS, "server stops cleanly (--max-running 1)")

# ---- host id ranges run out ------------------------------------------------------
# Each sandbox keeps a host id range of its own while it exists (stopped too);
# the server has 65519 of them. CELLBOX_MAX_ID_RANGES lowers that for tests:
# 3 ranges (the indexes 0, 2 and 3) = 3 sandboxes, whatever runs.
srv = Server(env={"CELLBOX_MAX_ID_RANGES": "3"})
UIDS = ["cap-u%d" % i for i in range(4)]


def base_of(sid):
    return host_id_base(srv, sid)


try:
    made = [srv.put("/v1/sandboxes/" + sid, {}).status for sid in UIDS[:3]]
    bases = {sid: base_of(sid) for sid in UIDS[:3]}
    r = srv.put("/v1/sandboxes/cap-u3", {})
    msg = (r.json().get("error") or {}).get("message", "") if r.status >= 400 else ""
    t.ok(made == [201] * 3 and sorted(bases.values()) == [1000000, 1131072, 1196608]
         and r.status == 429 and r.code == "TOO_MANY_SANDBOXES" and "uid/gid range" in msg and "3" in msg,
         "3 id ranges: 3 sandboxes get one each; a 4th is refused with 429 TOO_MANY_SANDBOXES naming the "
         "ranges and the limit", (made, bases, r))
    srv.delete("/v1/sandboxes/cap-u1")
    r = srv.put("/v1/sandboxes/cap-u3", {})
    t.ok(r.status == 201 and base_of("cap-u3") == bases["cap-u1"] and srv.sh("cap-u3", "echo ok")["stdout"] == "ok\n",
         "after a delete the freed range is given to the next sandbox", (r, bases))
finally:
    srv.finish(t, UIDS, "server stops cleanly (3 id ranges)")

# ---- host id ranges across the servers of a host --------------------------------
# Two servers on one host used to give out the same ranges (each counted
# from its own first index), so their sandboxes shared host uids and every
# kernel budget kept per uid. They lease ranges from each other through one
# host-wide file (--id-lock; byte i locked = range i taken): a range another
# server holds is skipped, a sandbox whose saved range another server took
# while it was stopped gets a new one (its files follow), and a server's
# leases end with it, however it ends.
lock = srv.tmp + "-ids.lock"
a = Server(env={"CELLBOX_MAX_ID_RANGES": "3"}, extra_args=["--pool", "0"], id_lock=lock)
b = Server(extra_args=["--pool", "0"], id_lock=lock)
SRV_IDS = ["ids-a1", "ids-a2", "ids-b1", "ids-b2", "ids-b3"]


def acl(user, group, other_user):
    """A POSIX ACL xattr (the kernel's format): rw owner, r for user, group
    and other_user, mask r, other none."""
    entries = [(1, 6, 0xFFFFFFFF), (2, 4, user), (2, 4, other_user), (4, 4, 0xFFFFFFFF), (8, 4, group),
               (0x10, 4, 0xFFFFFFFF), (0x20, 0, 0xFFFFFFFF)]
    return struct.pack("<I", 2) + b"".join(struct.pack("<HHI", *e) for e in entries)


def acl_ids(raw):
    """[(tag, id)] of the user and group entries of an ACL xattr."""
    ents = [struct.unpack_from("<HHI", raw, off) for off in range(4, len(raw), 8)]
    return sorted((tag, i) for tag, _, i in ents if tag in (2, 8))


try:
    for sid in ("ids-b1", "ids-b2"):
        b.create(sid)
    for sid in ("ids-a1",):
        a.create(sid)
    r = a.put("/v1/sandboxes/ids-a2", {})
    bases = {sid: host_id_base(s, sid) for s, sid in ((b, "ids-b1"), (b, "ids-b2"), (a, "ids-a1"))}
    t.ok(len(set(bases.values())) == 3 and r.status == 429 and r.code == "TOO_MANY_SANDBOXES"
         and "other servers" in r.json()["error"]["message"],
         "two servers sharing --id-lock give their sandboxes different host id ranges; with 3 ranges and "
         "2 held by the other server, the second sandbox is refused (429) naming the other servers",
         (bases, r))
    b.proc.kill()
    b.proc.wait()
    b.stop()
    # (the refused create above made ids-a2, as any create whose start
    # fails does, e.g. at --max-running: this PUT starts it)
    r = a.put("/v1/sandboxes/ids-a2", {})
    t.ok(r.status in (200, 201) and host_id_base(a, "ids-a2") in (bases["ids-b1"], bases["ids-b2"]),
         "a SIGKILLed server's leases end with it: its ranges are given to the other's next sandbox", r)

    # a stopped server's saved range taken by another server meanwhile: the
    # sandbox gets a free one at its next start, its files follow
    a.sh("ids-a1", "echo kept > /workspace/f && mkdir -p /workspace/d && echo x > /workspace/d/x")
    a_base = host_id_base(a, "ids-a1")
    a2_base = host_id_base(a, "ids-a2")
    # POSIX ACLs naming ids of its range (user 1234 and group 1234 inside)
    # and one outside every range (4242): set from the host, as setfacl
    # inside would store them
    ws_a1 = os.path.join(a.state, "sandboxes", "ids-a1", "workspace")
    os.setxattr(os.path.join(ws_a1, "f"), "system.posix_acl_access", acl(a_base + 1234, a_base + 1234, 4242))
    os.setxattr(os.path.join(ws_a1, "d"), "system.posix_acl_default", acl(a_base + 1234, a_base + 1234, 4242))
    t.eq(a.stop(), 0, "server A stops (its sandboxes keep their ranges in sandbox.json)")
    b.start()
    b.sh("ids-b1", "true")
    b.sh("ids-b2", "true")
    made = [b.put("/v1/sandboxes/" + sid, {}).status for sid in ("ids-b3",)]
    held_b = {host_id_base(b, sid) for sid in ("ids-b1", "ids-b2", "ids-b3")}
    a.env = None  # the 3 ranges of before are all B's now
    a.start()
    res = a.sh("ids-a1", "cat /workspace/f /workspace/d/x && echo y >> /workspace/d/x && echo ok")
    res2 = a.sh("ids-a2", "echo ok")
    now = {host_id_base(a, "ids-a1"), host_id_base(a, "ids-a2")}
    nb = host_id_base(a, "ids-a1")
    acls = [acl_ids(os.getxattr(os.path.join(ws_a1, "f"), "system.posix_acl_access")),
            acl_ids(os.getxattr(os.path.join(ws_a1, "d"), "system.posix_acl_default"))]
    t.ok(nb != a_base and acls == [[(2, 4242), (2, nb + 1234), (8, nb + 1234)]] * 2,
         "... and its files' ACL entries (access and default) naming ids of its old range name the same "
         "ids of the new one; an id outside every range is kept", (a_base, nb, acls))
    t.ok(made == [201] and (a_base in held_b or a2_base in held_b) and not (now & held_b) and len(now) == 2
         and res["stdout"] == "kept\nx\nok\n" and res2["stdout"] == "ok\n"
         and workspace_owners(a, "ids-a1") == {(host_id_base(a, "ids-a1") + 1000,) * 2},
         "a server that restarts after another took its sandboxes' ranges gives them free ones; their "
         "files follow and they read and write them", (a_base, a2_base, held_b, now, res, res2))
finally:
    b.finish(t, ["ids-b1", "ids-b2", "ids-b3"], "server B stops cleanly (shared id lock)")
    a.finish(t, ["ids-a1", "ids-a2"], "server A stops cleanly (shared id lock)")
    try:
        os.unlink(lock)
    except OSError:
        pass

# the default lease file: /run/cellbox/id-ranges.lock, the sandbox's range
# locked in it (an OFD lock: pid -1 in /proc/locks) while the server runs
d = Server(extra_args=["--pool", "0"], id_lock="default")
try:
    d.create("ids-d1")
    index = (host_id_base(d, "ids-d1") - 1000000) // 65536
    ino = os.stat("/run/cellbox/id-ranges.lock").st_ino
    with open("/proc/locks") as f:
        locks = [ln.split() for ln in f]
    mine = [ln for ln in locks if ln[1] == "OFDLCK" and ln[5].endswith(":%d" % ino) and ln[6] == str(index)]
    t.ok(len(mine) == 1 and mine[0][3] == "WRITE" and mine[0][7] == str(index),
         "by default the range is leased in /run/cellbox/id-ranges.lock (a write lock on its byte)",
         (index, ino, [ln for ln in locks if ln[1] == "OFDLCK"]))
    d.delete("/v1/sandboxes/ids-d1")
    with open("/proc/locks") as f:
        gone = not [ln for ln in (x.split() for x in f)
                    if ln[1] == "OFDLCK" and ln[5].endswith(":%d" % ino) and ln[6] == str(index)]
    t.ok(gone, "deleting the sandbox gives its lease back")
finally:
    d.finish(t, ["ids-d1"], "server stops cleanly (default id lock)")
t.done()
