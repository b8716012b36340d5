"""tests/sandbox_nons.py: `cellbox serve` on a host that cannot create namespaces.

Not simulated: the real server runs inside bubblewrap, so the kernel itself
refuses. Two hosts:
  - `bwrap --unshare-user --disable-userns`: no user namespace may be
    created below the server (clone fails with ENOSPC, as when
    user.max_user_namespaces is used up);
  - `bwrap --unshare-user`: the server runs in a user namespace that maps
    only root, so the sandbox's 65536 ids cannot be mapped (a container
    without a subordinate id range).
Creating a sandbox must answer 503 CONTAINER_UNAVAILABLE (docs/api.md) with
a message naming the cause and the setting to change; the server keeps
answering every other request, logs the cause once, stops cleanly and
leaves nothing behind. Prints TAP.
"""
import os
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sandbox_lib import TAP, Server, can_sandbox, in_threads, wait_until  # noqa: E402

t = TAP()
if not can_sandbox():
    t.skip_all("needs root, like the other sandbox tests")
BWRAP = shutil.which("bwrap")
if not BWRAP:
    t.skip_all("needs bwrap (apt-get install bubblewrap)")
BASE = [BWRAP, "--dev-bind", "/", "/", "--unshare-user", "--die-with-parent"]
NOUSERNS = BASE + ["--disable-userns"]


def run(cmd):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60)


probe = run(NOUSERNS + ["--", "/bin/true"])
if probe.returncode != 0:
    t.skip_all("this bwrap cannot run --unshare-user --disable-userns here (bubblewrap >= 0.8 "
               "needed): " + probe.stderr.strip())
# The premise, checked with a tool other than cellbox.
UNSHARE_USER = ("import ctypes, os; libc = ctypes.CDLL(None, use_errno=True); "
                "print('ok' if libc.unshare(0x10000000) == 0 else os.strerror(ctypes.get_errno()))")
inner = run(NOUSERNS + ["--", sys.executable, "-c", UNSHARE_USER])
t.ok(inner.stdout.strip() == "No space left on device",
     "inside bwrap --disable-userns, unshare(CLONE_NEWUSER) fails with ENOSPC", inner)


def box_error(r):
    try:
        return r.json()["error"]["message"]
    except Exception:
        return ""


def check_host(srv, ids, label, cause_words):
    """The checks common to both hosts; returns the creation error's message."""
    t.eq(srv.get("/v1/health", token=False).status, 200, label + ": the server starts and is healthy")
    start = time.time()
    r = srv.put("/v1/sandboxes/" + ids[0], {})
    took = time.time() - start
    msg = box_error(r)
    t.ok(r.status == 503 and r.code == "CONTAINER_UNAVAILABLE",
         label + ": creating a sandbox gives 503 CONTAINER_UNAVAILABLE", r)
    t.ok(took < 20, label + ": within a bounded time (%.1f s)" % took)
    missing = [w for w in cause_words if w not in msg]
    t.ok(not missing, label + ": the message names the cause and the setting to change",
         "missing %r in: %s" % (missing, msg))
    t.ok("--isolation none" in msg and "development only" in msg,
         label + ": and the development-only way out", msg)
    # the server keeps answering, and keeps saying the same
    t.eq(srv.get("/v1/health", token=False).status, 200, label + ": still healthy after the failure")
    g = srv.get("/v1/sandboxes/" + ids[0])
    t.ok(g.status == 200 and g.json().get("status") == "stopped",
         label + ": the sandbox exists, stopped (a later request retries the start)", g)
    x = srv.exec(ids[0], "true")
    t.ok(x.status == 503 and x.code == "CONTAINER_UNAVAILABLE" and box_error(x) == msg,
         label + ": exec retries the start and gives the same error", x)
    # concurrent requests: each gets its own clean error, none a 500
    results = []

    def one(i):
        if i % 3 == 0:
            results.append(srv.exec(ids[0], "echo hi"))
        else:
            results.append(srv.put("/v1/sandboxes/" + ids[1 + i % 2], {}))

    in_threads(one, 8)
    bad = [x for x in results if (x.status, x.code) != (503, "CONTAINER_UNAVAILABLE")]
    t.ok(len(results) == 8 and not bad, label + ": 8 concurrent creates/execs all get 503", bad)
    lst = srv.get("/v1/sandboxes")
    t.ok(lst.status == 200 and {b["id"] for b in lst.json()["sandboxes"]} == set(ids),
         label + ": listing works", lst)
    for sid in ids:
        d = srv.delete("/v1/sandboxes/" + sid)
        t.eq(d.status, 200, label + ": delete %s" % sid)
    t.eq(srv.get("/v1/sandboxes/" + ids[0]).code, "SANDBOX_NOT_FOUND", label + ": and it is gone")
    return msg


def finish(srv, ids, label):
    rc = srv.stop()
    t.eq(rc, 0, label + ": SIGTERM stops the server cleanly")
    left = srv.leftovers(ids)
    t.ok(not left, label + ": nothing left behind (processes, cgroups, mounts)", left)
    srv.cleanup()


# ---- no user namespaces below the server ------------------------------------
ids = ["nons-a", "nons-b", "nons-c"]
srv = None
try:
    srv = Server(wrap=NOUSERNS + ["--"])
    started = time.time()
    check_host(srv, ids, "no userns",
               ["cannot create the sandbox's namespaces", "No space left on device",
                "user.max_user_namespaces", "bwrap --disable-userns"])
    # The pool (2 agents by default) fails too: the cause is logged once, at
    # error level, not every second. Give the old once-a-second retry time
    # to show.
    time.sleep(max(0, started + 3.5 - time.time()))
    log = srv.server_log()
    pool_lines = [ln for ln in log.splitlines() if "cannot prepare a pooled agent" in ln]
    t.ok(len(pool_lines) == 1 and "level=error" in pool_lines[0] and "user.max_user_namespaces" in pool_lines[0],
         "no userns: the pool logs the cause once, at error level", "\n".join(pool_lines) or log[-2000:])
    t.ok("level=info mod=serve msg=\"ready\"" in log, "no userns: the server said it was ready", log[-2000:])
finally:
    if srv and srv.proc:
        finish(srv, ids, "no userns")

# ---- the server's own user namespace lacks the sandbox's ids ----------------
ids = ["nomap-a", "nomap-b", "nomap-c"]
srv = None
try:
    srv = Server(wrap=BASE + ["--"], extra_args=["--pool", "0"])
    check_host(srv, ids, "unmapped ids",
               ["cannot map the sandbox's user namespace", "1000000..1065535", "/proc/self/uid_map",
                "\"0 0 1\"", "host's user namespace"])
finally:
    if srv and srv.proc:
        finish(srv, ids, "unmapped ids")
t.done()
