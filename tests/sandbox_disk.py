"""tests/sandbox_disk.py: a size limit on /workspace (diskMB) with the real
server: the workspace becomes an ext4 image of that size, mounted through a
loop device while the sandbox runs. Prints TAP."""
import base64
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sandbox_lib import TAP, Server, can_sandbox  # noqa: E402

t = TAP()
if not can_sandbox():
    t.skip_all("needs root for namespaces and cgroups")

IDS = ["disk-a", "disk-b", "disk-c", "disk-other"]
srv = Server()


def mounted(path):
    with open("/proc/self/mountinfo") as f:
        return any((" %s " % path) in line for line in f)


def image_in_use(img):
    """Whether a loop device still backs img (its file system is mounted
    somewhere, in any namespace)."""
    import glob
    real = os.path.realpath(img)
    for f in glob.glob("/sys/block/loop*/loop/backing_file"):
        try:
            with open(f) as fh:
                if fh.read().strip() == real:
                    return True
        except OSError:
            pass
    return False


try:
    r = srv.put("/v1/sandboxes/disk-a", {"diskMB": 64})
    t.ok(r.status == 201 and r.json()["options"].get("diskMB") == 64, "create with diskMB 64", r)
    for bad in (8, "64", -1, 1 << 30):
        r = srv.put("/v1/sandboxes/disk-c", {"diskMB": bad})
        if r.status != 400 or r.code != "VALIDATION_FAILED":
            break
    t.ok(r.status == 400 and r.code == "VALIDATION_FAILED", "diskMB out of range or not a number: 400", r)
    ws = os.path.join(srv.state, "sandboxes", "disk-a", "workspace")
    x = srv.sh("disk-a", "df -k --output=size,avail /workspace | tail -1")
    size_k = int(x["stdout"].split()[0]) if x["exitCode"] == 0 else 0
    t.ok(40 * 1024 < size_k <= 64 * 1024, "df inside the sandbox shows a 64 MB file system", x)
    img = os.path.join(srv.state, "sandboxes", "disk-a", "workspace.img")
    t.ok(image_in_use(img) and not mounted(ws),
         "the image is mounted for the sandbox only: a loop device backs it, the host's mount table "
         "does not show it")
    st = os.statvfs(srv.state)
    host_free = st.f_bavail * st.f_frsize
    x = srv.sh("disk-a", "dd if=/dev/zero of=/workspace/big bs=1M count=200 2>&1; echo rc=$?", timeoutMs=60000)
    t.ok("No space left on device" in x["stdout"] and "rc=1" in x["stdout"],
         "writing 200 MB into 64 MB: No space left on device", x)
    st = os.statvfs(srv.state)
    t.ok(host_free - st.f_bavail * st.f_frsize < 80 << 20, "the host's disk lost at most the image's size")
    x = srv.sh("disk-a", "echo still fine; ls /workspace")
    t.ok(x["exitCode"] == 0 and "still fine" in x["stdout"] and "big" in x["stdout"],
         "the sandbox keeps working when its disk is full", x)
    r = srv.post("/v1/sandboxes/disk-a/files/write",
                 {"path": "more.bin", "content": base64.b64encode(os.urandom(8 << 20)).decode(),
                  "encoding": "base64"})
    t.ok(r.status == 500 and r.code == "NO_SPACE", "a file written through the API: 500 NO_SPACE", r)
    r = srv.put("/v1/sandboxes/disk-a/files/content?path=raw.bin", raw=os.urandom(8 << 20))
    t.ok(r.status == 500 and r.code == "NO_SPACE", "a raw upload: 500 NO_SPACE", r)
    x = srv.sh("disk-a", "rm /workspace/big; echo kept > /workspace/keep.txt && echo ok")
    t.ok(x["stdout"].strip().endswith("ok"), "space comes back when files are removed", x)

    srv.put("/v1/sandboxes/disk-b", {})
    x = srv.sh("disk-b", "df -k --output=size /workspace | tail -1")
    t.ok(x["exitCode"] == 0 and int(x["stdout"].split()[0]) > 1 << 20,
         "a sandbox without diskMB has no such limit", x)

    # a second server started now: its warm agents' namespaces are made while
    # disk-a's image is mounted (a host mount would be copied into them and
    # kept alive after disk-a stops, so the image would be mounted twice)
    other = Server()
    other.create("disk-other")
    t.eq(srv.stop(), 0, "SIGTERM: exit 0")
    t.ok(not image_in_use(img), "the server's stop releases the workspace image (its loop device is gone), "
         "even with another server's sandboxes made while it was mounted")
    srv.start()
    x = srv.sh("disk-a", "cat /workspace/keep.txt; df -k --output=size /workspace | tail -1")
    lines = x["stdout"].split()
    t.ok(x["exitCode"] == 0 and lines[:1] == ["kept"] and 40 * 1024 < int(lines[1]) <= 64 * 1024,
         "after a restart: the files are there, the limit too", x)
    other.stop()
    other.cleanup()
    # the workspace busy at the stop (a file of it held open from the host
    # through /proc/<agent>/root): the image stays mounted until the file is
    # closed. The next start must wait for that rather than mount it twice,
    # and nothing written before the stop may be lost.
    x = srv.sh("disk-a", "echo later > /workspace/later.txt && echo ok")
    agent = srv.get("/v1/sandboxes/disk-a").json()["agentPid"]
    held = open("/proc/%d/root/workspace/keep.txt" % agent)
    t.eq(srv.stop(), 0, "SIGTERM with the workspace busy: exit 0")
    t.ok(image_in_use(img), "a file of the workspace held open keeps the image mounted")
    import threading
    closer = threading.Timer(2.0, held.close)
    closer.start()
    srv.start()
    x = srv.sh("disk-a", "cat /workspace/later.txt /workspace/keep.txt")
    closer.join()
    t.ok(x["exitCode"] == 0 and x["stdout"].split() == ["later", "kept"],
         "the next start waited for that mount to go: nothing lost, no second mount", x)
    r = srv.delete("/v1/sandboxes/disk-a")
    t.ok(r.status == 200 and not image_in_use(img) and not os.path.exists(os.path.dirname(ws)),
         "deleting the sandbox unmounts and removes its image", r)
    # ---- host mounts are not pinned by sandboxes --------------------------------
    # Every sandbox's mount namespace starts as a copy of the host's. A host
    # file system mounted before the sandboxes were made must still be
    # released as soon as the host unmounts it: nothing in a sandbox may hold
    # the old copy (the agent reopens its stdio inside its root and runs again
    # from the program bound at /run/cellbox, its stderr being a pipe to the
    # server). Checked with cellbox-agent (the build tree's) and with a
    # cellbox binary alone, which starts itself as `cellbox agent`.
    import shutil
    import subprocess
    import tempfile
    import sandbox_lib
    from sandbox_lib import wait_until
    hostdir = tempfile.mkdtemp(prefix="cellbox-hostmnt-")
    os.chmod(hostdir, 0o755)  # the binary must be reachable by the sandboxes' users
    himg, hmnt = os.path.join(hostdir, "img"), os.path.join(hostdir, "m")
    os.mkdir(hmnt)
    with open(himg, "wb") as f:
        f.truncate(16 << 20)
    subprocess.run(["mkfs.ext4", "-q", "-F", himg], check=True)
    alone = os.path.join(hostdir, "bin", "cellbox")
    os.mkdir(os.path.dirname(alone))
    shutil.copy2(sandbox_lib.CELLBOX, alone)
    built = sandbox_lib.CELLBOX
    try:
        for binary, exe, how in [(built, "/run/cellbox/agent", "cellbox-agent"),
                                 (alone, "/run/cellbox/cellbox", "a cellbox binary alone")]:
            subprocess.run(["mount", "-o", "loop", himg, hmnt], check=True)
            srv.stop()
            sandbox_lib.CELLBOX = binary
            srv.start()  # all of its agents are made while the host mount exists
            srv.put("/v1/sandboxes/disk-c", {})
            x = srv.sh("disk-c", "echo alive")
            agent = srv.get("/v1/sandboxes/disk-c").json()["agentPid"]
            t.eq(os.readlink("/proc/%d/exe" % agent), exe,
                 "%s: the sandbox's agent runs from the program bound inside its root" % how)
            t.ok(image_in_use(himg), "(the host's loop mount is up)")
            subprocess.run(["umount", hmnt], check=True)
            released = wait_until(lambda: not image_in_use(himg), timeout=5, step=0.05)
            t.ok(released, "%s: a host file system unmounted while sandboxes run is released at "
                 "once (no sandbox holds the host's old mount tree)" % how)
            x = srv.sh("disk-c", "echo still alive")
            t.ok(x["exitCode"] == 0 and x["stdout"] == "still alive\n", "and the sandbox works on", x)
            t.ok("keeps the host's binary mapped" not in srv.server_log(),
                 "%s: no agent fell back to the host's binary" % how)
            t.eq("'cellbox agent' instead" in srv.server_log(), binary == alone,
                 "%s: the server says when it has no cellbox-agent" % how)
            srv.delete("/v1/sandboxes/disk-c")
    finally:
        srv.stop()
        sandbox_lib.CELLBOX = built
        srv.start()
        if mounted(hmnt):
            subprocess.run(["umount", "-l", hmnt])
        shutil.rmtree(hostdir, ignore_errors=True)
finally:
    srv.finish(t, IDS, "final graceful stop")
t.done()
