"""tests/sandbox_watch.py: file watching of `cellbox serve`
(POST /v1/sandboxes/:id/files/watch, inotify relayed as server-sent events),
with the real server, real namespaces and Python's http.client. Prints TAP.

Sections: files (create, modify, delete, by exec and by the files API),
folders (mkdir -p, recursive watches, renames), moves (inside, out, in),
filters (include, exclude, non-recursive), errors, escapes (.., symlinks,
the host's files), ends of the stream (watched folder deleted, sandbox
deleted, sandbox asleep, too many folders), resources (client disconnect
frees the inotify fds, two watchers, the server keeps answering), and
--isolation none. Every wait has a deadline; nothing waits for a fixed time
to pass except the checks that something does NOT happen.
"""
import json
import os
import re
import sys
import tempfile
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sandbox_lib import SSEStream, TAP, Server, can_sandbox, wait_until  # noqa: E402

t = TAP()
if not can_sandbox():
    t.skip_all("needs root for namespaces and cgroups")

MAX_DIRS = 40
srv = Server(env={"CELLBOX_SSE_KEEPALIVE_MS": "300", "CELLBOX_WATCH_MAX_DIRS": str(MAX_DIRS)})
A, B, NAP, C = "w-a", "w-b", "w-nap", "w-c"
IDS = [A, B, NAP, C, "w-dev"]
ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:?\d\d)$")
QUIET = 0.7   # how long "nothing more arrives" is watched for


class Watch(SSEStream):
    """One watch stream (sandbox_lib.SSEStream) with the change events' helpers."""

    def __init__(self, server, sid, body=None, timeout=60, rcvbuf=None):
        super().__init__(server, "/v1/sandboxes/%s/files/watch" % sid, body, timeout, rcvbuf)

    def ready(self, timeout=30):
        return self.wait(lambda evs: any(e == "watching" for e, _ in evs), timeout)

    def changes(self):
        """(type, path, isDirectory, oldPath) of the change events so far."""
        with self.cv:
            return [(e, d["path"], d["isDirectory"], d.get("oldPath")) for e, d in self.events
                    if e in ("create", "modify", "delete", "move")]

    def has(self, *wanted, timeout=30):
        """Wait until each (type, path) is among the changes."""
        def ok(_):
            got = {(c[0], c[1]) for c in self.changes()}
            return all(w in got for w in wanted)
        return self.wait(ok, timeout)

    def mark(self):
        return len(self.changes())

    def since(self, mark, settle=QUIET):
        """The changes after mark, once nothing new came for `settle` s."""
        n, last = -1, time.time()
        while time.time() - last < settle:
            cur = len(self.changes())
            if cur != n:
                n, last = cur, time.time()
            time.sleep(0.05)
        return self.changes()[mark:]


def section(fn):
    try:
        fn()
    except Exception:  # noqa: BLE001
        t.ok(False, "%s: no unexpected exception" % fn.__name__, traceback.format_exc())


def sh(cmd, sid=A):
    j = srv.sh(sid, cmd)
    if j["exitCode"] != 0:
        raise RuntimeError("%r: %r" % (cmd, j))
    return j


def write(path, content, sid=A):
    r = srv.post("/v1/sandboxes/%s/files/write" % sid, {"path": path, "content": content})
    if r.status != 200:
        raise RuntimeError("write %s: %r" % (path, r))


def inotify_fds(pid=None):
    """How many inotify instances the server holds."""
    pid = pid or srv.server_pid
    n = 0
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            if os.readlink("/proc/%d/fd/%s" % (pid, fd)) == "anon_inode:inotify":
                n += 1
        except OSError:
            pass
    return n


def all_fds(pid=None):
    return len(os.listdir("/proc/%d/fd" % (pid or srv.server_pid)))


def settled_fds():
    """The server's fd count once it stopped changing for a second (the pool
    of warm agents refills in the background after a sandbox starts)."""
    n, since, deadline = all_fds(), time.time(), time.time() + 15
    while time.time() - since < 1.0 and time.time() < deadline:
        time.sleep(0.1)
        cur = all_fds()
        if cur != n:
            n, since = cur, time.time()
    return n


W = "/workspace"


# ---- files -------------------------------------------------------------------------------
def s_files():
    sh("mkdir -p /workspace/f")
    w = Watch(srv, A, {"path": "/workspace/f"})
    t.ok(w.status == 200 and "text/event-stream" in w.ctype, "watch answers an event stream", (w.status, w.ctype))
    t.ok(w.ready(), "the first event is 'watching'", w.events)
    e, d = w.events[0]
    t.ok(e == "watching" and d["path"] == W + "/f" and d["recursive"] is True,
         "watching says the path and recursive (default true)", w.events[:1])
    m = w.mark()
    sh("echo hi > /workspace/f/a.txt")
    t.ok(w.has(("create", W + "/f/a.txt"), ("modify", W + "/f/a.txt")), "echo > file (exec): create + modify",
         w.changes())
    got = w.since(m)
    t.eq(got, [("create", W + "/f/a.txt", False, None), ("modify", W + "/f/a.txt", False, None)],
         "exactly one create and one modify for one echo")
    data = [d for e, d in w.events if e == "create"][0]
    t.ok(ISO.match(data.get("timestamp", "")) and data.get("type") == "create",
         "events carry type and an ISO-8601 timestamp", data)
    m = w.mark()
    sh("echo more >> /workspace/f/a.txt")
    t.eq(w.since(m) if w.has(("modify", W + "/f/a.txt")) else w.changes()[m:],
         [("modify", W + "/f/a.txt", False, None)], "append (exec): one modify")
    m = w.mark()
    sh("chmod 600 /workspace/f/a.txt")
    t.eq(w.since(m), [], "chmod: no event (metadata-only changes are not reported)")
    m = w.mark()
    sh("rm /workspace/f/a.txt")
    w.has(("delete", W + "/f/a.txt"))
    t.eq(w.since(m), [("delete", W + "/f/a.txt", False, None)], "rm (exec): delete")
    m = w.mark()
    write("f/api.txt", "one")
    w.has(("create", W + "/f/api.txt"))
    got = w.since(m)
    t.eq(got, [("create", W + "/f/api.txt", False, None)],
         "files API write of a new file: one create (its temporary file is never shown)")
    m = w.mark()
    write("f/api.txt", "two")
    w.has(("modify", W + "/f/api.txt"))
    t.eq(w.since(m), [("modify", W + "/f/api.txt", False, None)], "files API write over it: one modify")
    m = w.mark()
    r = srv.post("/v1/sandboxes/%s/files/delete" % A, {"path": "f/api.txt"})
    w.has(("delete", W + "/f/api.txt"))
    t.ok(r.status == 200 and w.since(m) == [("delete", W + "/f/api.txt", False, None)], "files API delete: delete",
         w.changes()[m:])
    t.ok(not any(".cellbox-upload" in c[1] or ".cellbox-upload" in (c[3] or "") for c in w.changes()),
         "no temporary upload name ever shows up", w.changes())
    t.ok(w.wait(lambda _: w.comments > 0, 5), "keepalive comments while quiet")
    w.close()


# ---- folders and moves ------------------------------------------------------------------
def s_folders():
    sh("mkdir -p /workspace/g")
    w = Watch(srv, A, {"path": "g"})
    t.ok(w.ready() and w.events[0][1]["path"] == W + "/g", "a relative path is under /workspace", w.events[:1])
    m = w.mark()
    sh("mkdir -p /workspace/g/a/b && touch /workspace/g/a/b/c")
    w.has(("create", W + "/g/a/b/c"))
    got = w.since(m)
    t.eq(sorted(set(got)), sorted({("create", W + "/g/a", True, None), ("create", W + "/g/a/b", True, None),
                                  ("create", W + "/g/a/b/c", False, None), ("modify", W + "/g/a/b/c", False, None)}
                                 ) if any(c[0] == "modify" for c in got) else
         sorted({("create", W + "/g/a", True, None), ("create", W + "/g/a/b", True, None),
                 ("create", W + "/g/a/b/c", False, None)}),
         "mkdir -p a/b && touch a/b/c: a, a/b (folders) and a/b/c (new sub-folders are watched at once)")
    t.eq(len([c for c in got if c[0] == "create"]), 3, "each of them reported once", )
    m = w.mark()
    sh("mv /workspace/g/a/b/c /workspace/g/a/d.txt")
    w.has(("move", W + "/g/a/d.txt"))
    t.eq(w.since(m), [("move", W + "/g/a/d.txt", False, W + "/g/a/b/c")],
         "rename inside the tree: ONE move event with oldPath")
    m = w.mark()
    sh("mv /workspace/g/a /workspace/g/x && echo z > /workspace/g/x/b/new")
    w.has(("create", W + "/g/x/b/new"))
    got = w.since(m)
    t.eq(got[0], ("move", W + "/g/x", True, W + "/g/a"), "folder rename: one move (isDirectory)")
    t.ok(("create", W + "/g/x/b/new", False, None) in got and not any("/g/a/" in c[1] for c in got[1:]),
         "the renamed folder's sub-folders report under their new path", got)
    m = w.mark()
    sh("mkdir -p /workspace/outside && mv /workspace/g/x/b/new /workspace/outside/new")
    w.has(("delete", W + "/g/x/b/new"))
    t.eq(w.since(m), [("delete", W + "/g/x/b/new", False, None)], "moved out of the watched tree: delete")
    m = w.mark()
    sh("mv /workspace/outside/new /workspace/g/in.txt")
    w.has(("create", W + "/g/in.txt"))
    t.eq(w.since(m), [("create", W + "/g/in.txt", False, None)], "moved in from outside: create")
    m = w.mark()
    sh("mkdir -p /workspace/outside/tree/s && echo 1 > /workspace/outside/tree/s/f && "
       "mv /workspace/outside/tree /workspace/g/tree")
    w.has(("create", W + "/g/tree/s/f"))
    got = w.since(m)
    t.eq(sorted(c for c in got if c[0] == "create"),
         [("create", W + "/g/tree", True, None), ("create", W + "/g/tree/s", True, None),
          ("create", W + "/g/tree/s/f", False, None)],
         "a folder moved in: it and what is in it are reported as create")
    m = w.mark()
    sh("touch /workspace/g/tree/s/later")
    # touch = create, then modify when it closes the file: both before the next mark
    t.ok(w.has(("create", W + "/g/tree/s/later"), ("modify", W + "/g/tree/s/later")),
         "... and it is watched from then on", w.changes()[m:])
    m = w.mark()
    sh("mv /workspace/g/tree /workspace/outside/tree2 && touch /workspace/outside/tree2/s/unseen")
    w.has(("delete", W + "/g/tree"))
    got = w.since(m)
    t.eq(got, [("delete", W + "/g/tree", True, None)],
         "a folder moved out: one delete, and what happens in it afterwards is not reported")
    m = w.mark()
    sh("rm -rf /workspace/g/x")
    w.has(("delete", W + "/g/x"))
    got = w.since(m)
    t.ok(("delete", W + "/g/x/b", True, None) in got and got[-1] == ("delete", W + "/g/x", True, None),
         "rm -rf of a sub-folder: deletes, deepest first", got)
    w.close()


# ---- filters ---------------------------------------------------------------------------------
def s_filters():
    sh("mkdir -p /workspace/h")
    w = Watch(srv, A, {"path": "/workspace/h", "include": ["*.py", "*.md"], "exclude": ["node_modules", "*.tmp.py"]})
    t.ok(w.ready(), "watch with include and exclude", w.events)
    m = w.mark()
    sh("cd /workspace/h && echo > a.py && echo > b.txt && mkdir -p node_modules/pkg && echo > node_modules/pkg/c.py "
       "&& echo > d.tmp.py && echo > e.md")
    w.has(("create", W + "/h/e.md"))
    got = w.since(m)
    paths = sorted({c[1] for c in got})
    t.eq(paths, [W + "/h/a.py", W + "/h/e.md"],
         "include *.py *.md, exclude node_modules *.tmp.py: only a.py and e.md (not b.txt, not in node_modules)")
    m = w.mark()
    sh("cd /workspace/h && mv b.txt b.py && mv a.py a.txt")
    w.has(("delete", W + "/h/a.py"))
    t.eq(w.since(m), [("create", W + "/h/b.py", False, None), ("delete", W + "/h/a.py", False, None)],
         "renames across the filter: into it = create, out of it = delete")
    w.close()
    sh("mkdir -p /workspace/nr/sub")
    w = Watch(srv, A, {"path": "/workspace/nr", "recursive": False})
    t.ok(w.ready() and w.events[0][1]["recursive"] is False, "non-recursive watch", w.events[:1])
    m = w.mark()
    sh("echo > /workspace/nr/sub/deep.txt && mkdir /workspace/nr/sub2 && echo > /workspace/nr/sub2/deep && "
       "echo > /workspace/nr/top.txt")
    w.has(("create", W + "/nr/top.txt"))
    got = w.since(m)
    t.ok(not any("deep" in c[1] for c in got) and ("create", W + "/nr/sub2", True, None) in got,
         "non-recursive: changes in sub-folders are not reported (a new sub-folder itself is)", got)
    w.close()


# ---- errors and escapes --------------------------------------------------------------------
def s_errors():
    sh("echo x > /workspace/plain.txt")
    for body, code, status, what in [
            ({"path": "/workspace/plain.txt"}, "NOT_DIRECTORY", 400, "a path that is a file"),
            ({"path": "/workspace/missing"}, "FILE_NOT_FOUND", 404, "a missing path"),
            ({"path": 5}, "VALIDATION_FAILED", 400, "path not a string"),
            ({"recursive": "yes"}, "VALIDATION_FAILED", 400, "recursive not a bool"),
            ({"include": "*.py"}, "VALIDATION_FAILED", 400, "include not a list"),
            ({"exclude": ["a/b"]}, "VALIDATION_FAILED", 400, "a glob with '/'"),
            ({"path": "/proc"}, "PERMISSION_DENIED", 403, "a kernel file system (/proc)"),
            ({"path": "/dev/pts"}, "PERMISSION_DENIED", 403, "a kernel file system (/dev/pts)")]:
        w = Watch(srv, A, body)
        t.ok(w.status == status and w.error["error"]["code"] == code, "%s: %d %s" % (what, status, code),
             (w.status, getattr(w, "error", w.events)))
        if w.status == 200:
            w.close()
    w = Watch(srv, "w-none", {})
    t.ok(w.status == 404 and w.error["error"]["code"] == "SANDBOX_NOT_FOUND", "unknown sandbox: SANDBOX_NOT_FOUND",
         (w.status, getattr(w, "error", None)))
    c = srv.conn(30)
    c.request("POST", "/v1/sandboxes/%s/files/watch" % A, body=b"[1]",
              headers={"Authorization": "Bearer " + srv.token, "Content-Type": "application/json"})
    r = c.getresponse()
    body = json.loads(r.read())
    c.close()
    t.ok(r.status == 400 and body["error"]["code"] == "VALIDATION_FAILED", "a body that is no object: 400", body)
    r = srv.post("/v1/sandboxes/%s/files/watch" % A, {"path": "/workspace/missing"}, token=False)
    t.eq(r.status, 401, "no token: 401")


def s_escapes():
    # ".." stops at the sandbox's "/": ../../../tmp is the sandbox's /tmp, not the host's
    w = Watch(srv, A, {"path": "../../../tmp", "recursive": False})
    t.ok(w.ready() and w.events[0][1]["path"] == "/tmp", "'../../../tmp' is the sandbox's /tmp", w.events[:1])
    host = tempfile.mkdtemp(prefix="w-host-", dir="/tmp")
    m = w.mark()
    open(os.path.join(host, "..", "w-host-file-%d" % os.getpid()), "w").close()
    sh("touch /tmp/inside-%d" % os.getpid())
    w.has(("create", "/tmp/inside-%d" % os.getpid()))
    got = w.since(m)
    t.ok(got and all(c[1] == "/tmp/inside-%d" % os.getpid() for c in got),
         "a file made in the sandbox's /tmp is seen, one made in the host's /tmp is not", got)
    os.unlink("/tmp/w-host-file-%d" % os.getpid())
    os.rmdir(host)
    w.close()
    w = Watch(srv, A, {"path": "../../etc"})
    t.ok(w.status in (200, 429) and (w.status != 200 or w.ready() and w.events[0][1]["path"] == "/etc"),
         "'../../etc' resolves to the sandbox's own /etc (or is too big to watch), never outside it",
         (w.status, getattr(w, "error", w.events[:1])))
    w.close()
    # a symlink to / : resolved inside the sandbox (its own "/"), like every files API path
    sh("ln -sfn / /workspace/rootlink && ln -sfn /tmp /workspace/tmplink")
    w = Watch(srv, A, {"path": "/workspace/rootlink", "recursive": False})
    t.ok(w.ready(), "a symlink to / can be watched (non-recursive): it is the sandbox's own /", w.events[:1])
    m = w.mark()
    probe = "/cellbox-watch-probe-%d" % os.getpid()
    open(probe, "w").close()
    os.unlink(probe)
    sh("ls / > /dev/null")
    t.eq(w.since(m, 1.0), [], "a file made (and removed) in the host's / is not seen through it")
    w.close()
    w = Watch(srv, A, {"path": "/workspace/rootlink"})
    t.ok(w.status == 429 and w.error["error"]["code"] == "WATCH_LIMIT" or w.status == 200 and w.ready(),
         "recursive on the symlink to /: stays in the sandbox's / file system (here: %s)"
         % ("too many folders, WATCH_LIMIT" if w.status == 429 else "watched"),
         (w.status, getattr(w, "error", None)))
    w.close()
    # a symlink inside the tree is never followed by a recursive watch
    sh("mkdir -p /workspace/s && ln -sfn /tmp /workspace/s/link && ln -sfn ../outside2 /workspace/s/rel "
       "&& mkdir -p /workspace/outside2")
    w = Watch(srv, A, {"path": "/workspace/s"})
    t.ok(w.ready(), "watch a folder holding symlinks to folders outside it")
    m = w.mark()
    sh("touch /tmp/through-link /workspace/outside2/through-rel")
    t.eq(w.since(m, 1.0), [], "changes behind symlinks (to /tmp, to ../outside2) are not reported")
    m = w.mark()
    sh("touch /workspace/s/real")
    t.ok(w.has(("create", W + "/s/real")), "the folder itself still reports", w.changes()[m:])
    w.close()


# ---- ends of the stream --------------------------------------------------------------------
def s_ends():
    sh("mkdir -p /workspace/gone/sub && echo > /workspace/gone/sub/f")
    w = Watch(srv, A, {"path": "/workspace/gone"})
    t.ok(w.ready(), "watch a folder that will be deleted")
    sh("rm -rf /workspace/gone")
    t.ok(w.wait_closed(30), "deleting the watched folder ends the stream", w.events)
    e, d = w.events[-1]
    t.ok(e == "stopped" and d["reason"] == "deleted" and d["path"] == W + "/gone",
         "... with event stopped, reason deleted", w.events[-3:])
    t.ok(("delete", W + "/gone/sub/f", False, None) in w.changes(), "... after the deletes of its contents",
         w.changes())
    w.close()
    srv.create(B)
    w = Watch(srv, B, {})
    t.ok(w.ready(), "watch in a second sandbox")
    r = srv.delete("/v1/sandboxes/" + B)
    t.ok(r.status == 200, "deleting a sandbox with a watch open works", r)
    t.ok(w.wait_closed(30), "deleting the sandbox ends the stream")
    t.ok(w.events[-1][0] == "stopped" and w.events[-1][1]["reason"] == "sandboxDeleted",
         "... with event stopped, reason sandboxDeleted", w.events[-3:])
    t.ok(not any(e in ("delete",) for e, _ in w.events), "... and no flood of deletes from its removal",
         w.events[-5:])
    w.close()
    # too many folders: refused up front, or ended with an error event
    sh("mkdir -p /workspace/many && cd /workspace/many && mkdir $(seq 1 %d)" % (MAX_DIRS + 5))
    w = Watch(srv, A, {"path": "/workspace/many"})
    t.ok(w.status == 429 and w.error["error"]["code"] == "WATCH_LIMIT",
         "a tree of more than %d folders: 429 WATCH_LIMIT before the stream" % MAX_DIRS,
         (w.status, getattr(w, "error", None)))
    w = Watch(srv, A, {"path": "/workspace/many", "exclude": ["1*", "2*", "3*"]})
    t.ok(w.ready(), "excluded folders are not watched: the same tree with exclude fits", w.events[:1])
    w.close()
    sh("mkdir -p /workspace/grow")
    w = Watch(srv, A, {"path": "/workspace/grow"})
    t.ok(w.ready(), "watch an empty folder")
    sh("cd /workspace/grow && mkdir $(seq 1 %d)" % (MAX_DIRS + 5))
    t.ok(w.wait_closed(30), "growing past the limit ends the stream")
    t.ok(w.events[-1][0] == "error" and w.events[-1][1]["code"] == "WATCH_LIMIT",
         "... with event error, code WATCH_LIMIT", w.events[-2:])
    w.close()
    sh("rm -rf /workspace/many /workspace/grow")


def s_overflow():
    """inotify's queue overflowing ends the stream with an error. The queue
    size is a system setting read when an inotify instance is made: it is
    made tiny only while this one watch starts. The client stops reading
    (with a small receive buffer) so that the server, blocked on sending,
    cannot keep up with the burst."""
    q = "/proc/sys/fs/inotify/max_queued_events"
    sh("mkdir -p /workspace/o")
    try:
        old = open(q).read().strip()
        with open(q, "w") as f:
            f.write("16")
    except OSError as e:
        t.ok(True, "# SKIP overflow: cannot set %s (%s)" % (q, e))
        return
    try:
        w = Watch(srv, A, {"path": "/workspace/o"}, rcvbuf=4096)
    finally:
        with open(q, "w") as f:
            f.write(old)
    t.ok(w.ready(), "a watch with a 16-event inotify queue")
    w.gate.clear()
    t0 = time.time()
    sh("cd /workspace/o && p=$(printf 'x%.0s' $(seq 1 200)) && for i in $(seq 1 20000); do : > $p$i; done")
    took = time.time() - t0
    n_before = len(w.events)
    w.gate.set()
    t.ok(w.wait_closed(60), "a burst of 40000 events (about 10 MB of them) ends the stream",
         {"last": w.events[-1:], "burst took s": round(took, 1), "events when the reader resumed": n_before,
          "events now": len(w.events), "reader alive": w.th.is_alive()})
    t.ok(w.events[-1][0] == "error" and w.events[-1][1]["code"] == "WATCH_OVERFLOW"
         and "lost" in w.events[-1][1]["message"], "... with event error, code WATCH_OVERFLOW", w.events[-1:])
    w.close()
    sh("rm -rf /workspace/o")


def s_sleep():
    srv.create(NAP, sleepAfter="1s")
    sh("mkdir -p /workspace/z", NAP)
    asleep = wait_until(lambda: srv.get("/v1/sandboxes/" + NAP).json()["status"] == "stopped", 30)
    t.ok(asleep, "a sandbox with sleepAfter 1s falls asleep")
    w = Watch(srv, NAP, {"path": "/workspace/z"})
    t.ok(w.ready(), "watching an asleep sandbox wakes it, as the files API does", (w.status, w.events))
    t.eq(srv.get("/v1/sandboxes/" + NAP).json()["status"], "running", "... it runs")
    m = w.mark()
    sh("touch /workspace/z/awake", NAP)
    t.ok(w.has(("create", W + "/z/awake")), "... and changes are seen", w.changes()[m:])
    t.ok(w.wait_closed(30), "the watch does not keep it awake: it sleeps again and the stream ends")
    t.ok(w.events[-1][0] == "stopped" and w.events[-1][1]["reason"] == "sandboxStopped",
         "... with event stopped, reason sandboxStopped", w.events[-2:])
    w.close()


# ---- resources and concurrency ------------------------------------------------------------
def s_resources():
    srv.create(C)
    base_ino = inotify_fds()
    base_all = settled_fds()
    ws = [Watch(srv, A, {}), Watch(srv, A, {}), Watch(srv, C, {})]
    t.ok(all(w.ready() for w in ws), "three watches at once (two on one sandbox, one on another)")
    t.eq(inotify_fds(), base_ino + 3, "one inotify instance per watch in the server")
    m = [w.mark() for w in ws]
    sh("echo > /workspace/both.txt")
    sh("echo > /workspace/other.txt", C)
    t.ok(ws[0].has(("create", W + "/both.txt")) and ws[1].has(("create", W + "/both.txt")),
         "two watchers on one sandbox both see the change")
    t.ok(ws[2].has(("create", W + "/other.txt")), "the other sandbox's watcher sees its own change")
    t.ok(not any("both" in c[1] for c in ws[2].since(m[2], 0.3)) and
         not any("other" in c[1] for c in ws[0].since(m[0], 0.3)), "... and only its own sandbox's")
    t0 = time.time()
    h = srv.get("/v1/health")
    j = srv.sh(A, "echo ok")
    lst = srv.post("/v1/sandboxes/%s/files/list" % A, {"path": "/workspace"})
    t.ok(h.status == 200 and j["stdout"] == "ok\n" and lst.status == 200 and time.time() - t0 < 20,
         "the server keeps answering (health, exec, files) while watches are open", (h, j, lst))
    for w in ws:
        w.close()
    t.ok(wait_until(lambda: inotify_fds() == base_ino, 15),
         "client disconnect: the server's inotify fds are freed", (inotify_fds(), base_ino))
    t.ok(wait_until(lambda: all_fds() <= base_all, 15), "... and no other fd is left behind",
         (all_fds(), base_all))
    # many short-lived watches, and one left mid-event
    for _ in range(10):
        w = Watch(srv, A, {})
        w.ready()
        w.close()
    w = Watch(srv, A, {})
    w.ready()
    sh("for i in $(seq 1 50); do echo $i > /workspace/burst-$i; done")
    w.close()
    t.ok(wait_until(lambda: inotify_fds() == base_ino and all_fds() <= base_all, 15),
         "after 11 more watches (one closed during a burst of events): no fd leak", (inotify_fds(), all_fds()))
    sh("rm -f /workspace/burst-*")


def s_isolation_none():
    dev = Server(extra_args=["--isolation", "none"], env={"CELLBOX_SSE_KEEPALIVE_MS": "300"})
    try:
        dev.create("w-dev")
        w = Watch(dev, "w-dev", {})
        t.ok(w.ready(), "--isolation none: watch /workspace (the state folder's workspace)", (w.status, w.events))
        m = w.mark()
        dev.sh("w-dev", "mkdir -p sub && echo > sub/x.txt")
        r = dev.post("/v1/sandboxes/w-dev/files/write", {"path": "api.txt", "content": "x"})
        t.ok(w.has(("create", W + "/sub/x.txt"), ("create", W + "/api.txt")) and r.status == 200,
             "--isolation none: exec and files API changes are seen", w.changes()[m:])
        w.close()
        t.ok(wait_until(lambda: inotify_fds(dev.server_pid) == 0, 15), "--isolation none: fds freed")
    finally:
        t.eq(dev.stop(), 0, "--isolation none server stops cleanly")
        dev.cleanup()


try:
    t0 = time.time()
    srv.create(A)
    for fn in (s_files, s_folders, s_filters, s_errors, s_escapes, s_ends, s_overflow, s_sleep, s_resources,
               s_isolation_none):
        section(fn)
    # a watch open at shutdown does not hold the server
    w = Watch(srv, A, {})
    w.ready()
finally:
    srv.finish(t, IDS, "SIGTERM with a watch open: graceful exit 0")
print("# %.1f s" % (time.time() - t0))
t.done()
