#!/usr/bin/env python3
"""tests/sandbox_fork.py: copies of a sandbox, built on backups.

POST /v1/sandboxes/{id}/fork {"id": new, "path"} makes sandbox `new` with
the options of {id} and a copy of its folder; POST .../backups/{bid}/restore
with "sandboxId" restores a backup of one sandbox into another, crash-safely
(the restore's record is in the TARGET's journal and recovered there).

Real server, real namespaces. A tree with files, modes, symlinks, a hard
link, an empty folder and a non-UTF-8 name is forked: its listing (type,
mode, link target, sha256; names hex-encoded) must be equal in the copy,
the options too; then the two diverge, the source's background process
survives, a diskMB sandbox is forked, errors leave nothing behind, and a
cross-sandbox restore recovers the target's cut-off restores. Prints TAP.
"""
import json
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sandbox_lib import TAP, Server, can_sandbox, host_id_base, workspace_owners  # noqa: E402

t = TAP()
if not can_sandbox():
    t.skip_all("needs root for namespaces and cgroups")

IDS = ["fk-src", "fk-new", "fk-new2", "fk-fail", "fk-tgt", "fk-disk", "fk-disk2", "fk-other"]
S = "/v1/sandboxes/fk-src"
srv = Server()

OPTS = {"memoryMB": 384, "pids": 300, "tmpMB": 32, "env": {"MODE": "dev", "X": "1"},
        "sleepAfter": "90s", "keepAlive": True}

MAKE_TREE = r"""
set -e
cd /workspace
mkdir -p src/deep/er empty
printf 'hello\n' > a.txt
printf 'keep me\n' > src/deep/er/b.txt
head -c 200000 /dev/urandom > src/blob.bin
printf '#!/bin/sh\necho run\n' > run.sh; chmod 755 run.sh
printf secret > private; chmod 600 private
chmod 750 src/deep
chmod 705 empty
printf dot > .hidden
printf 'not utf-8' > "$(printf 'bad\377\376name')"
printf 'odd' > "we'ird name"
ln -s a.txt link-rel
ln -s /etc/shadow shadow-link
ln -s dangling/nowhere dangling-link
ln src/deep/er/b.txt hard.txt
chmod 751 /workspace
"""

# names may not be UTF-8: the whole listing goes out hex-encoded
LISTING = r"""
cd "$P" && { stat -c 'root %a' . && find . -mindepth 1 -printf '%y %m %p -> %l\n' | LC_ALL=C sort &&
find . -type f -print0 | LC_ALL=C sort -z | xargs -0 -r sha256sum; } | od -An -tx1 -v | tr -d ' \n'
"""


def sh(s, box, cmd, **kw):
    """exec; an HTTP error becomes a failed result (so that, e.g. on a
    server without forks, each later check fails on its own)."""
    r = s.exec(box, cmd, **kw)
    if r.status != 200:
        return {"exitCode": -1, "stdout": "", "stderr": repr(r)}
    return r.json()


def listing(s, box, path="/workspace"):
    x = sh(s, box, LISTING, env={"P": path})
    if x["exitCode"] != 0:
        return "ERROR %s %s: %s" % (box, path, x["stderr"])
    return bytes.fromhex(x["stdout"].strip()).decode("utf-8", "surrogateescape")


def diff(a, b):
    x = set(a.splitlines()) ^ set(b.splitlines())
    return "%d lines differ: %s" % (len(x), sorted(x)[:10])


def fork(src, body, s=None):
    return (s or srv).post("/v1/sandboxes/%s/fork" % src, body)


def state_dir(s, box):
    return os.path.join(s.state, "sandboxes", box)


def records_left(s, box):
    d = os.path.join(state_dir(s, box), "backups")
    return sorted(n for n in os.listdir(d) if n.endswith(".journal")) if os.path.isdir(d) else []


def gone(s, box):
    """The sandbox is unknown to the server and its state folder is gone."""
    r = s.get("/v1/sandboxes/" + box)
    return r.status == 404 and r.code == "SANDBOX_NOT_FOUND" and not os.path.exists(state_dir(s, box))


try:
    r = srv.put(S, OPTS)
    t.ok(r.status == 201, "source created with custom limits, env, sleepAfter, keepAlive", r)
    src_opts = r.json().get("options")
    x = sh(srv, "fk-src", MAKE_TREE)
    t.ok(x["exitCode"] == 0, "a tree: files, modes, symlinks, a hard link, an empty folder, a non-UTF-8 name", x)
    old = listing(srv, "fk-src")
    r = srv.post(S + "/processes", {"command": "sleep 1000", "processId": "bg"})
    t.eq(r.status, 201, "a background process in the source")

    # ---- fork -------------------------------------------------------------------------
    r = fork("fk-src", {"id": "fk-new"})
    j = r.json() if r.status < 500 else {}
    forked = r.status == 201
    t.ok(r.status == 201 and j.get("id") == "fk-new" and j.get("forkedFrom") == "fk-src"
         and j.get("created") is True and j.get("status") == "running",
         "fork: 201 with the new sandbox (running), created, forkedFrom", r)
    t.eq(j.get("options"), src_opts, "the fork has the source's options (limits, env, sleepAfter, keepAlive)")
    r = srv.get("/v1/sandboxes/fk-new")
    t.eq(r.json().get("options") if r.status == 200 else r, src_opts, "GET of the fork shows the same options")
    new = listing(srv, "fk-new")
    t.ok(new == old and "bad\udcff\udcfename" in new and "d 705 ./empty -> " in new,
         "the fork's /workspace is exactly the source's (listing with sha256, modes, symlinks, empty folder, "
         "non-UTF-8 name)", diff(new, old))
    x = sh(srv, "fk-new", "cd /workspace && stat -c '%h %i' hard.txt src/deep/er/b.txt")
    h = x["stdout"].split("\n")
    t.ok(x["exitCode"] == 0 and h[0] == h[1] and h[0].startswith("2 "), "the hard link is a hard link in the fork", x)
    x = sh(srv, "fk-new", "echo $MODE$X")
    t.eq(x["stdout"], "dev1\n", "the env option applies in the fork")
    x = sh(srv, "fk-new", "ls -a /workspace | grep -c '^.cellbox-' || true")
    t.eq(x["stdout"].strip(), "0", "no temporary .cellbox-* folder in the fork")
    # each sandbox has host ids of its own (sandbox_hostile.py): the copy
    # belongs to the fork's, not the source's
    src_base, new_base = host_id_base(srv, "fk-src"), host_id_base(srv, "fk-new")
    owned = workspace_owners(srv, "fk-new")
    t.ok(src_base != new_base and owned == {(new_base + 1000, new_base + 1000)}
         and workspace_owners(srv, "fk-src") == {(src_base + 1000, src_base + 1000)},
         "on the host the fork's files belong to its own user (its id range), not the source's",
         (src_base, new_base, owned))

    # ---- the two diverge; the source goes on --------------------------------------------
    sh(srv, "fk-new", "echo changed > /workspace/a.txt; echo fork-only > /workspace/f-only")
    sh(srv, "fk-src", "echo src-only > /workspace/s-only")
    a = sh(srv, "fk-src", "cat /workspace/a.txt; ls /workspace")
    b = sh(srv, "fk-new", "cat /workspace/a.txt; ls /workspace")
    t.ok(forked and a["stdout"].startswith("hello\n") and "f-only" not in a["stdout"] and "s-only" in a["stdout"],
         "a write in the fork is not seen in the source", a)
    t.ok(b["stdout"].startswith("changed\n") and "s-only" not in b["stdout"] and "f-only" in b["stdout"],
         "a write in the source is not seen in the fork", b)
    r = srv.get(S + "/processes/bg")
    t.ok(forked and r.status == 200 and r.json().get("status") == "running",
         "the source's background process survived the fork", r)
    r = srv.get("/v1/sandboxes/fk-new/processes")
    t.ok(r.status == 200 and r.json().get("processes") == [], "the fork has none of the source's processes", r)
    r = srv.get(S + "/backups")
    t.ok(forked and r.status == 200 and r.json().get("backups") == [], "no backup left in the source", r)
    bk = os.path.join(state_dir(srv, "fk-new"), "backups")
    t.ok(os.path.isdir(bk) and os.listdir(bk) == [], "no archive or record left in the fork's state folder")

    # ---- another folder -----------------------------------------------------------------
    r = fork("fk-src", {"id": "fk-new2", "path": "src"})
    x = sh(srv, "fk-new2", "cat /workspace/src/deep/er/b.txt; ls -A /workspace")
    t.ok(r.status == 201 and x["stdout"] == "keep me\nsrc\n",
         "fork of a relative path (under /workspace): only that folder is copied", (r, x))

    # ---- errors -------------------------------------------------------------------------
    r = fork("fk-src", {})
    t.eq((r.status, r.code), (400, "VALIDATION_FAILED"), "no id: 400 VALIDATION_FAILED")
    r = fork("fk-src", {"id": 7})
    t.eq((r.status, r.code), (400, "VALIDATION_FAILED"), "an id that is not a string: 400")
    r = fork("fk-src", {"id": "Bad_Id"})
    t.eq((r.status, r.code), (400, "VALIDATION_FAILED"), "an invalid id: 400")
    r = fork("fk-src", {"id": "fk-new"})
    t.eq((r.status, r.code), (409, "SANDBOX_CONFLICT"), "an existing id: 409 SANDBOX_CONFLICT")
    t.eq(sh(srv, "fk-new", "cat /workspace/a.txt")["stdout"], "changed\n", "and that sandbox is untouched")
    r = fork("fk-src", {"id": "fk-src"})
    t.eq((r.status, r.code), (409, "SANDBOX_CONFLICT"), "its own id: 409 SANDBOX_CONFLICT")
    r = fork("fk-nosuch", {"id": "fk-fail"})
    t.ok((r.status, r.code) == (404, "SANDBOX_NOT_FOUND") and gone(srv, "fk-fail"),
         "unknown source: 404 SANDBOX_NOT_FOUND, nothing made", r)
    r = fork("fk-src", {"id": "fk-fail", "path": "/workspace/does-not-exist"})
    t.ok((r.status, r.code) == (404, "FILE_NOT_FOUND") and gone(srv, "fk-fail"),
         "a folder that does not exist: 404 FILE_NOT_FOUND, the half-made sandbox deleted", r)
    r = fork("fk-src", {"id": "fk-fail", "path": "/workspace/a.txt"})
    t.ok((r.status, r.code) == (400, "NOT_DIRECTORY") and gone(srv, "fk-fail"),
         "a file, not a folder: 400 NOT_DIRECTORY, nothing left", r)
    names = sorted(b["id"] for b in srv.get("/v1/sandboxes").json()["sandboxes"])
    t.eq(names, ["fk-new", "fk-new2", "fk-src"], "only the forks that succeeded exist")
    r = srv.put("/v1/sandboxes/fk-fail", {})
    t.ok(names == ["fk-new", "fk-new2", "fk-src"] and r.status == 201
         and sh(srv, "fk-fail", "ls -A /workspace")["stdout"] == "", "the id of a failed fork is free and new", r)
    srv.delete("/v1/sandboxes/fk-fail")

    # ---- diskMB ----------------------------------------------------------------------------
    r = srv.put("/v1/sandboxes/fk-disk", {"diskMB": 64})
    if r.status == 201:
        sh(srv, "fk-disk", "set -e; mkdir -p /workspace/data/d; head -c 5000000 /dev/urandom > /workspace/data/big; "
               "echo x > /workspace/data/d/x; echo top > /workspace/top")
        dl = listing(srv, "fk-disk", "/workspace/data")
        top = sh(srv, "fk-disk", "ls -A /workspace; cat /workspace/top")["stdout"]
        r = fork("fk-disk", {"id": "fk-disk2"})
        x = sh(srv, "fk-disk2", "df -k --output=size /workspace | tail -1")
        size_k = int(x["stdout"].split()[0]) if x["exitCode"] == 0 else 0
        t.ok(r.status == 201 and r.json()["options"].get("diskMB") == 64 and 40 * 1024 < size_k <= 64 * 1024,
             "fork of a diskMB sandbox: diskMB 64, its own 64 MB file system", (r, x))
        got = listing(srv, "fk-disk2", "/workspace/data")
        top2 = sh(srv, "fk-disk2", "ls -A /workspace; cat /workspace/top")["stdout"]
        t.ok(got == dl and top2 == top and "lost+found" in top,
             "and the same content (the file system's own lost+found is left out, each keeps its own)",
             (diff(got, dl), top, top2))
        r = srv.post("/v1/sandboxes/fk-disk/backups", {})
        rr = srv.post("/v1/sandboxes/fk-disk/backups/%s/restore" % r.json().get("id"), {"sandboxId": "fk-disk2"}) \
            if r.status == 201 else r
        t.ok(r.status == 201 and rr.status == 200 and listing(srv, "fk-disk2", "/workspace/data") == dl,
             "a backup of a diskMB /workspace, restored into another diskMB sandbox", (r, rr))
        t.ok(os.path.isfile(os.path.join(state_dir(srv, "fk-disk2"), "workspace.img")),
             "the fork has its own workspace image")
    else:
        t.ok(True, "# SKIP diskMB not available here: %r" % r)

    # ---- restore into another sandbox ---------------------------------------------------------
    srv.create("fk-tgt")
    sh(srv, "fk-tgt", "mkdir -p /workspace/mine /workspace/src && echo t > /workspace/mine/t && echo junk > /workspace/src/junk")
    r = srv.post(S + "/backups", {"path": "/workspace/src"})
    bid = r.json().get("id")
    src_sub = listing(srv, "fk-src", "/workspace/src")
    r = srv.post(S + "/backups/%s/restore" % bid, {"sandboxId": "fk-tgt"})
    t.ok(r.status == 200 and r.json().get("sandboxId") == "fk-tgt" and r.json().get("path") == "/workspace/src",
         "restore into another sandbox: 200, sandboxId, the backup's own path by default", r)
    got = listing(srv, "fk-tgt", "/workspace/src")
    t.ok(got == src_sub and sh(srv, "fk-tgt", "cat /workspace/mine/t")["stdout"] == "t\n"
         and listing(srv, "fk-src", "/workspace/src") == src_sub,
         "the target's folder is exactly the backup; its other folders and the source unchanged", diff(got, src_sub))
    tgt_base = host_id_base(srv, "fk-tgt")
    owned = workspace_owners(srv, "fk-tgt", "src")
    t.ok(tgt_base != host_id_base(srv, "fk-src") and owned == {(tgt_base + 1000, tgt_base + 1000)},
         "on the host the restored files belong to the target's user (its id range), not the source's",
         (tgt_base, owned))
    r = srv.post(S + "/backups/%s/restore" % bid, {"sandboxId": "fk-tgt", "path": "/tmp/copy"})
    t.ok(r.status == 200 and listing(srv, "fk-tgt", "/tmp/copy") == src_sub, "and into another path of it", r)
    r = srv.post(S + "/backups/%s/restore" % bid, {"sandboxId": "fk-nosuch"})
    t.eq((r.status, r.code), (404, "SANDBOX_NOT_FOUND"), "unknown target: 404 SANDBOX_NOT_FOUND")
    r = srv.post(S + "/backups/%s/restore" % bid, {"sandboxId": 3})
    t.eq((r.status, r.code), (400, "VALIDATION_FAILED"), "a target that is not a string: 400")
    sh(srv, "fk-src", "echo later > /workspace/src/later")
    r = srv.post(S + "/backups/%s/restore" % bid, {"sandboxId": "fk-src"})
    t.ok(r.status == 200 and r.json().get("sandboxId") == "fk-src"
         and listing(srv, "fk-src", "/workspace/src") == src_sub, "target == source: as without it", r)

    # a sleeping (stopped) target is woken by the restore
    srv.stop()
    srv.start()
    r = srv.get("/v1/sandboxes/fk-tgt")
    was = r.json().get("status")
    sh(srv, "fk-src", "true")
    r = srv.post(S + "/backups/%s/restore" % bid, {"sandboxId": "fk-tgt", "path": "/workspace/woken"})
    t.ok(was == "stopped" and r.status == 200 and listing(srv, "fk-tgt", "/workspace/woken") == src_sub,
         "a stopped target (after a server restart) is started by the restore", (was, r))

    # crash safety on the target's side: a cut-off restore planted in the
    # target (committed, nothing moved in yet), with its record in the
    # target's journal, is finished by the next cross-sandbox restore into it
    PLANT = r"""set -e; rm -rf /workspace/cut; mkdir /workspace/cut; cd /workspace/cut
    echo old > a; echo o > only-old; S=Ab3dE9
    mkdir .cellbox-restore.$S .cellbox-old.$S; echo new > .cellbox-restore.$S/a; echo n > .cellbox-restore.$S/only-new
    mv a only-old .cellbox-old.$S/; mv -T .cellbox-old.$S .cellbox-done.$S"""
    x = sh(srv, "fk-tgt", PLANT)
    d = os.path.join(state_dir(srv, "fk-tgt"), "backups")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "restore-%s.journal" % os.urandom(8).hex()), "w") as f:
        json.dump({"path": "/workspace/cut", "backup": "bk-planted"}, f)
    r = srv.post(S + "/backups/%s/restore" % bid, {"sandboxId": "fk-tgt", "path": "/workspace/elsewhere"})
    got = sh(srv, "fk-tgt", "cd /workspace/cut && ls -A && cat a")["stdout"]
    t.ok(x["exitCode"] == 0 and r.status == 200 and got == "a\nonly-new\nnew\n",
         "a cut-off restore in the target (its record in the target's journal) is finished by a "
         "cross-sandbox restore into it", (x, r, got))
    t.eq(records_left(srv, "fk-tgt"), [], "no record left in the target")

    # the record of a cross-sandbox restore is written in the target's journal
    sh(srv, "fk-src", "mkdir -p /workspace/many && cd /workspace/many && for i in $(seq 3000); do echo $i > f$i; done")
    mid = srv.post(S + "/backups", {"path": "/workspace/many"}).json().get("id")
    seen = {"tgt": False, "src": False}
    res = {}

    def go():
        res["r"] = srv.post(S + "/backups/%s/restore" % mid, {"sandboxId": "fk-tgt"})
    th = threading.Thread(target=go)
    th.start()
    while th.is_alive():
        seen["tgt"] = seen["tgt"] or bool(records_left(srv, "fk-tgt"))
        seen["src"] = seen["src"] or bool(records_left(srv, "fk-src"))
        time.sleep(0.001)
    th.join()
    t.ok(res["r"].status == 200 and seen == {"tgt": True, "src": False} and records_left(srv, "fk-tgt") == [],
         "while it runs, the restore's record is in the target's journal (not the source's); gone after",
         (res["r"], seen))

    # opposite directions at once: the two backup locks are taken in one order
    srv.create("fk-other")
    oid = srv.post("/v1/sandboxes/fk-other/backups", {"path": "/workspace"}).json().get("id")
    sid = srv.post(S + "/backups", {"path": "/workspace/src"}).json().get("id")
    out = []

    def cross(n):
        if n % 2:
            out.append(srv.post(S + "/backups/%s/restore" % sid, {"sandboxId": "fk-other", "path": "/tmp/x%d" % n}))
        else:
            out.append(srv.post("/v1/sandboxes/fk-other/backups/%s/restore" % oid,
                                {"sandboxId": "fk-src", "path": "/tmp/y%d" % n}))
    ths = [threading.Thread(target=cross, args=(n,)) for n in range(8)]
    for th in ths:
        th.start()
    for th in ths:
        th.join(120)
    t.ok(len(out) == 8 and all(r.status == 200 for r in out),
         "8 cross-sandbox restores in both directions at once: all done, no deadlock", out)
finally:
    srv.finish(t, IDS)
t.done()
