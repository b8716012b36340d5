#!/usr/bin/env python3
"""tests/sandbox_backup.py: backups of a sandbox folder (createBackup /
restoreBackup): POST/GET/DELETE /v1/sandboxes/{id}/backups[/{bid}[/restore]].

Real server, real namespaces. A tree with files, folders, modes, symlinks
(also ones aimed at host paths: /etc/shadow, ../../.., a host canary
folder), a hard link and awkward names is backed up, changed in every way
(edit, add, delete, chmod, retarget a symlink) and restored: a full listing
(type, mode, link target, sha256) must be the old one. Then list/get/delete,
restore elsewhere, errors, the size limit (a second server with a small
CELLBOX_BACKUP_MAX_BYTES), a server restart, sandbox deletion, concurrent
backup + restore on two sandboxes, and the server answering during a long
backup. Prints TAP.
"""
import hashlib
import os
import sys
import tarfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sandbox_lib import wait_until, TAP, Server, can_sandbox  # noqa: E402

t = TAP()
if not can_sandbox():
    t.skip_all("needs root for namespaces and cgroups")

IDS = ["bk-a", "bk-b", "bk-big"]
A = "/v1/sandboxes/bk-a"
B = "/v1/sandboxes/bk-b"
CANARY = "/tmp/cellbox-bk-canary-%d" % os.getpid()
srv = Server()

MAKE_TREE = r"""
set -e
cd /workspace
mkdir -p src/deep/er empty
printf 'hello\n' > a.txt
printf 'keep me\n' > src/deep/er/b.txt
head -c 300000 /dev/urandom > src/blob.bin
printf '#!/bin/sh\necho run\n' > run.sh; chmod 755 run.sh
printf secret > private; chmod 600 private
chmod 750 src/deep
printf dot > .hidden
printf 'odd' > "we'ird name"
printf 'nl' > "$(printf 'new\nline')"
ln -s a.txt link-rel
ln -s /etc/shadow shadow-link
ln -s ../../../../.. up-link
ln -s CANARY canary-link
ln src/deep/er/b.txt hard.txt
chmod 751 /workspace
""".replace("CANARY", CANARY)

LISTING = r"""
cd "$P" && stat -c 'root %a' . && find . -mindepth 1 -printf '%y %m %p -> %l\n' | LC_ALL=C sort &&
find . -type f -print0 | LC_ALL=C sort -z | xargs -0 -r sha256sum
"""


def sh(box, cmd, **kw):
    x = srv.sh(box, cmd, **kw)
    return x


def listing(box, path="/workspace"):
    x = srv.sh(box, LISTING, env={"P": path})
    return x["stdout"] if x["exitCode"] == 0 else "ERROR " + x["stderr"]


def backup(sb, body=None, **kw):
    return srv.post(sb + "/backups", body or {}, **kw)


def restore(sb, bid, body=None, **kw):
    return srv.post(sb + "/backups/%s/restore" % bid, body or {}, **kw)


def host_state():
    """What the host's canary folder and /etc/shadow look like."""
    with open("/etc/shadow", "rb") as f:
        shadow = f.read()
    st = os.stat("/etc/shadow")
    return (sorted(os.listdir(CANARY)), shadow, st.st_mode, st.st_mtime_ns)


try:
    os.mkdir(CANARY)
    srv.create("bk-a")
    srv.create("bk-b")
    before_host = host_state()
    x = sh("bk-a", MAKE_TREE)
    t.ok(x["exitCode"] == 0, "a tree with files, modes, symlinks (some aimed at host paths), a hard link", x)
    old = listing("bk-a")
    nentries = len([ln for ln in old.splitlines() if ln[:2] in ("f ", "d ", "l ")])

    # ---- create -----------------------------------------------------------------------
    r = backup(A, {"path": "/workspace", "name": "first"})
    j = r.json()
    t.ok(r.status == 201 and j.get("id", "").startswith("bk-"), "create: 201 with an id", r)
    bid = j.get("id")
    t.eq((j.get("path"), j.get("name")), ("/workspace", "first"), "path and name")
    t.eq(j.get("files"), nentries, "files: every entry below the folder (%d)" % nentries)
    archive = os.path.join(srv.state, "sandboxes", "bk-a", "backups", "%s.tar" % bid)
    t.ok(os.path.isfile(archive) and os.path.getsize(archive) == j.get("size"),
         "size: bytes of the archive in the state folder", (archive, j.get("size")))
    t.ok("createdAt" in j, "createdAt present")
    with tarfile.open(archive) as tf:
        mem = {m.name: m for m in tf.getmembers()}
    t.ok(mem.get("./shadow-link") is not None and mem["./shadow-link"].issym()
         and mem["./shadow-link"].linkname == "/etc/shadow",
         "a symlink to /etc/shadow is archived as a symlink")
    data = open(archive, "rb").read()
    t.ok(before_host[1][:40] not in data if len(before_host[1]) >= 40 else True,
         "the host's /etc/shadow is not in the archive")
    t.ok(mem.get("./up-link") is not None and mem["./up-link"].issym(), "../../.. link archived as a link")

    # ---- change everything, then restore -----------------------------------------------
    x = sh("bk-a", r"""
set -e
cd /workspace
printf 'changed\n' > a.txt
printf 'new\n' > added.txt; mkdir -p newdir/x; printf z > newdir/x/z
rm src/deep/er/b.txt "we'ird name" .hidden
rm -r empty
chmod 700 run.sh; chmod 777 src/deep
ln -sf added.txt link-rel
ln -s /etc/passwd new-host-link
rm shadow-link; printf 'not a link' > shadow-link
chmod 700 /workspace
""")
    t.ok(x["exitCode"] == 0, "changed: edit, add, delete, chmod, retarget a link, a link made a file", x)
    t.ok(listing("bk-a") != old, "the tree differs now")
    r = restore(A, bid)
    j = r.json()
    t.ok(r.status == 200 and j.get("success") is True and j.get("path") == "/workspace", "restore: 200", r)
    new = listing("bk-a")
    t.ok(new == old, "restore gives back exactly the old tree (types, modes, links, contents, root mode)",
         "\n".join(l for l in set(old.splitlines()) ^ set(new.splitlines())))
    t.eq(sh("bk-a", "ls -a /workspace | grep -c cellbox")["stdout"], "0\n", "no temporary folders left")
    t.eq(sh("bk-a", "stat -c %h /workspace/hard.txt")["stdout"], "2\n", "the hard link is a hard link again")
    t.eq(host_state(), before_host, "host untouched: /etc/shadow and the canary folder as they were")

    # a restore that fails midway (a truncated archive) leaves the folder as it was
    broken = backup(A, {"name": "to-break"}).json()["id"]
    barch = os.path.join(os.path.dirname(archive), broken + ".tar")
    with open(barch, "r+b") as f:
        f.truncate(os.path.getsize(barch) // 3)
    sh("bk-a", "echo after > /workspace/after.txt")
    cur = listing("bk-a")
    r = restore(A, broken)
    t.eq((r.status, r.code), (500, "BACKUP_FAILED"), "restore of a damaged archive: 500 BACKUP_FAILED")
    t.ok("tar" in (r.json()["error"]["message"] if r.code else ""), "with tar's message", r)
    t.eq(listing("bk-a"), cur, "and the folder is exactly as before (no half tree)")
    t.eq(sh("bk-a", "ls -a /workspace | grep -c cellbox")["stdout"], "0\n", "no temporary folders left")
    srv.delete(A + "/backups/" + broken)
    sh("bk-a", "rm /workspace/after.txt")

    # ---- list / get / delete -------------------------------------------------------------
    r2 = backup(A, {"path": "src"})
    j2 = r2.json()
    t.ok(r2.status == 201 and j2["path"] == "/workspace/src" and j2["name"] is None,
         "relative path under /workspace, no name: null", r2)
    r = srv.get(A + "/backups")
    ids = [b["id"] for b in r.json().get("backups", [])]
    t.ok(r.status == 200 and ids == [bid, j2["id"]], "list: both, oldest first", r)
    r = srv.get(A + "/backups/" + bid)
    t.ok(r.status == 200 and r.json()["id"] == bid and r.json()["name"] == "first", "get one", r)
    r = srv.get(B + "/backups/" + bid)
    t.eq((r.status, r.code), (404, "BACKUP_NOT_FOUND"), "another sandbox's backup: 404 BACKUP_NOT_FOUND")
    r = srv.get(B + "/backups")
    t.ok(r.status == 200 and r.json()["backups"] == [], "bk-b has none", r)
    for bad in ["nope", "bk-nope", ".."]:
        r = srv.get(A + "/backups/" + bad)
        t.eq((r.status, r.code), (404, "BACKUP_NOT_FOUND"), "unknown id %r: 404 BACKUP_NOT_FOUND" % bad)
    r = srv.get(A + "/backups/bk-..%2f..%2fsandbox")
    t.ok(r.status == 404 and r.code in ("NOT_FOUND", "BACKUP_NOT_FOUND"), "an id with encoded slashes: 404", r)
    r = restore(A, "bk-0000")
    t.eq((r.status, r.code), (404, "BACKUP_NOT_FOUND"), "restore of an unknown id: 404")

    # restore elsewhere (another path, then an absolute symlink to a host path)
    r = restore(A, j2["id"], {"path": "/tmp/copy"})
    t.ok(r.status == 200 and r.json()["path"] == "/tmp/copy", "restore to another path", r)
    t.eq(listing("bk-a", "/tmp/copy"), listing("bk-a", "/workspace/src"), "/tmp/copy holds the src tree")
    sh("bk-a", "mkdir -p %s && ln -s %s /workspace/to-canary" % (CANARY, CANARY))
    r = restore(A, j2["id"], {"path": "/workspace/to-canary"})
    t.ok(r.status == 200, "restore into a symlink aimed at a host path", r)
    t.eq(sorted(os.listdir(CANARY)), [], "the host folder of that name is untouched")
    t.ok("blob.bin" in sh("bk-a", "ls %s" % CANARY)["stdout"], "the files went to the sandbox's own folder")
    sh("bk-a", "rm -rf /workspace/to-canary %s" % CANARY)

    r = restore(A, bid, {"path": "/workspace/a.txt"})
    t.eq((r.status, r.code), (400, "NOT_DIRECTORY"), "restore onto a file: 400 NOT_DIRECTORY")
    r = backup(A, {"path": "/nonexistent"})
    t.eq((r.status, r.code), (404, "FILE_NOT_FOUND"), "backup of a missing folder: 404 FILE_NOT_FOUND")
    r = backup(A, {"path": "/workspace/a.txt"})
    t.eq((r.status, r.code), (400, "NOT_DIRECTORY"), "backup of a file: 400 NOT_DIRECTORY")
    r = backup(A, {"path": 5})
    t.eq((r.status, r.code), (400, "VALIDATION_FAILED"), "path not a string: 400")
    r = backup(A, {"name": "x\ny"})
    t.eq((r.status, r.code), (400, "VALIDATION_FAILED"), "name with a control character: 400")
    r = backup(A, {"path": "/workspace/'$(touch /tmp/pwned)'"})
    t.ok(r.code == "FILE_NOT_FOUND" and sh("bk-a", "ls /tmp/pwned 2>/dev/null | wc -l")["stdout"] == "0\n",
         "a hostile path is taken literally (no command ran)", r)
    r = restore(A, bid, {"path": "/proc/self"})
    t.ok(r.status in (400, 500) and r.code is not None, "restore into /proc fails cleanly", r)
    r = srv.get(A + "/backups")
    t.eq(len(r.json()["backups"]), 2, "failed creates leave no backups behind")
    t.eq(sorted(os.listdir(os.path.dirname(archive))), sorted([bid + ".tar", bid + ".json", j2["id"] + ".tar", j2["id"] + ".json"]),
         "and no partial files in the state folder")

    r = srv.delete(A + "/backups/" + j2["id"])
    t.ok(r.status == 200 and r.json()["success"] is True, "delete: 200", r)
    r = srv.get(A + "/backups/" + j2["id"])
    t.eq(r.code, "BACKUP_NOT_FOUND", "gone after delete")
    r = srv.delete(A + "/backups/" + j2["id"])
    t.eq((r.status, r.code), (404, "BACKUP_NOT_FOUND"), "delete twice: 404")

    # ---- restart -----------------------------------------------------------------------
    sh("bk-a", "rm -rf /workspace/src /workspace/a.txt")
    t.eq(srv.stop(), 0, "server stopped (SIGTERM)")
    srv.start()
    r = srv.get(A + "/backups")
    t.ok(r.status == 200 and [b["id"] for b in r.json()["backups"]] == [bid], "backups survive a restart", r)
    r = restore(A, bid)
    t.ok(r.status == 200 and listing("bk-a") == old, "and restore after the restart", r)

    # ---- two sandboxes at once --------------------------------------------------------
    sh("bk-b", "mkdir -p /workspace/w && for i in $(seq 200); do echo $i > /workspace/w/f$i; done; head -c 20000000 /dev/urandom > /workspace/w/big")
    b_old = listing("bk-b")
    res = {}

    def job(n):
        if n == 0:
            sh("bk-a", "rm -rf /workspace/*")
            res["a"] = restore(A, bid)
        else:
            res["b"] = backup(B, {"name": "concurrent"})
    ths = [threading.Thread(target=job, args=(n,)) for n in range(2)]
    [th.start() for th in ths]
    [th.join(120) for th in ths]
    t.ok(res["a"].status == 200 and listing("bk-a") == old, "restore on bk-a while bk-b backs up", res["a"])
    t.ok(res["b"].status == 201 and res["b"].json()["files"] == 202, "backup on bk-b meanwhile (202 entries)", res["b"])
    sh("bk-b", "rm -rf /workspace/w")
    r = restore(B, res["b"].json()["id"])
    t.ok(r.status == 200 and listing("bk-b") == b_old, "bk-b's backup restores its tree", r)

    # ---- one sandbox, one folder, at once: backups and restores take turns -----------------
    sh("bk-b", "mkdir -p /workspace/w && for i in $(seq 300); do echo $i > /workspace/w/f$i; done")
    r = backup(B, {"path": "/workspace/w"})
    wid = r.json()["id"] if r.status == 201 else None
    w_files = r.json()["files"] if r.status == 201 else None
    w_old = listing("bk-b", "/workspace/w")
    sh("bk-b", "rm -rf /workspace/w/*; echo new > /workspace/w/other")
    res = {}

    def same_folder(n):
        res[n] = restore(B, wid) if n < 3 else backup(B, {"path": "/workspace/w"})
    ths = [threading.Thread(target=same_folder, args=(n,)) for n in range(4)]
    [th.start() for th in ths]
    [th.join(120) for th in ths]
    t.ok(all(res[n].status == 200 for n in range(3)) and listing("bk-b", "/workspace/w") == w_old,
         "three restores of one folder at once all succeed and leave exactly the backup's tree",
         [res.get(n) for n in range(3)])
    b3 = res[3].json() if res[3].status == 201 else {}
    t.ok(b3.get("files") in (1, w_files),
         "a backup of that folder meanwhile holds one whole tree (the old or the restored one)", res[3])
    sh("bk-b", "rm -rf /workspace/w")

    # ---- the server answers during a long backup ----------------------------------------
    srv.create("bk-big")
    sh("bk-big", "head -c 1500000000 /dev/zero > /workspace/huge; echo done")
    res = {}

    def long_backup():
        t0 = time.time()
        res["r"] = backup("/v1/sandboxes/bk-big", {}, timeout=300)
        res["t"] = time.time() - t0
    th = threading.Thread(target=long_backup)
    th.start()
    time.sleep(0.2)
    lat = []
    while th.is_alive() and len(lat) < 20:
        t0 = time.time()
        ok = srv.get("/v1/health").status == 200 and srv.sh("bk-a", "echo hi")["stdout"] == "hi\n"
        lat.append((ok, time.time() - t0, th.is_alive()))
    th.join(300)
    during = [l for l in lat if l[2]]
    t.ok(during and all(ok and d < 2 for ok, d, _ in during),
         "health and exec answer (< 2 s) during a %.1fs backup" % res.get("t", 0), lat)
    t.ok(res["r"].status == 201 and res["r"].json()["size"] > 1500000000, "the long backup completes", res["r"])
    big_dir = os.path.join(srv.state, "sandboxes", "bk-big")

    # ---- sandbox deletion -----------------------------------------------------------------
    r = srv.delete("/v1/sandboxes/bk-big")
    t.ok(r.status == 200 and not os.path.exists(big_dir), "deleting a sandbox removes its backups", r)
    r = srv.get("/v1/sandboxes/bk-big/backups")
    t.eq(r.code, "SANDBOX_NOT_FOUND", "and its backup routes answer SANDBOX_NOT_FOUND")
    t.eq(host_state(), before_host, "host still untouched at the end")
finally:
    rc = srv.stop()
    t.eq(rc, 0, "SIGTERM: graceful exit 0")
    left = srv.leftovers(IDS)
    t.ok(not left, "nothing left behind (processes, cgroups, mounts)", left)
    srv.cleanup()
    try:
        os.rmdir(CANARY)
    except OSError:
        pass

# ---- the size limit (a server of its own) ------------------------------------------------
small = Server(env={"CELLBOX_BACKUP_MAX_BYTES": "1000000"})
try:
    small.create("bk-a")
    small.sh("bk-a", "head -c 3000000 /dev/urandom > /workspace/big")
    r = small.post(A + "/backups", {})
    t.eq((r.status, r.code), (413, "FILE_TOO_LARGE"), "over the size limit: 413 FILE_TOO_LARGE")
    bdir = os.path.join(small.state, "sandboxes", "bk-a", "backups")
    t.eq(os.listdir(bdir) if os.path.isdir(bdir) else [], [], "nothing kept of it")
    # (killed when its channel closed; its exit may take a moment under load)
    t.ok(wait_until(lambda: small.sh("bk-a", "pgrep -x tar | wc -l")["stdout"] == "0\n", 10),
         "tar was stopped")
    small.sh("bk-a", "rm /workspace/big; echo x > /workspace/small")
    r = small.post(A + "/backups", {})
    t.eq(r.status, 201, "under the limit: 201")
finally:
    t.eq(small.stop(), 0, "second server: graceful exit")
    t.ok(not small.leftovers(["bk-a"]), "nothing left behind", small.leftovers(["bk-a"]))
    small.cleanup()
t.done()
