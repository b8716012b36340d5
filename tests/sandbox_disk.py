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
finally:
    rc = srv.stop()
    t.eq(rc, 0, "final graceful stop")
    left = srv.leftovers(IDS)
    t.ok(not left, "nothing left behind (processes, cgroups, mounts)", left)
    srv.cleanup()
t.done()
