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

IDS = ["disk-a", "disk-b", "disk-c"]
srv = Server()


def mounted(path):
    with open("/proc/self/mountinfo") as f:
        return any((" %s " % path) in line for line in f)


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
    t.ok(mounted(ws), "the workspace folder is a mount on the host while the sandbox runs")
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

    t.eq(srv.stop(), 0, "SIGTERM: exit 0")
    t.ok(not mounted(ws), "the server's stop unmounts the workspace image")
    srv.start()
    x = srv.sh("disk-a", "cat /workspace/keep.txt; df -k --output=size /workspace | tail -1")
    lines = x["stdout"].split()
    t.ok(x["exitCode"] == 0 and lines[:1] == ["kept"] and 40 * 1024 < int(lines[1]) <= 64 * 1024,
         "after a restart: the files are there, the limit too", x)
    # the workspace busy at the stop (a file of it open on the host): the
    # unmount is lazy, the loop device stays until the file is closed. What
    # was written must be on the image, and the next start must wait for the
    # old mount to go rather than mount the image twice.
    x = srv.sh("disk-a", "echo later > /workspace/later.txt && echo ok")
    held = open(os.path.join(ws, "keep.txt"))
    t.eq(srv.stop(), 0, "SIGTERM with the workspace busy: exit 0")
    t.ok(not mounted(ws), "the busy workspace is detached from the host's tree anyway")
    import threading
    closer = threading.Timer(2.0, held.close)
    closer.start()
    srv.start()
    x = srv.sh("disk-a", "cat /workspace/later.txt /workspace/keep.txt")
    closer.join()
    t.ok(x["exitCode"] == 0 and x["stdout"].split() == ["later", "kept"],
         "after a restart with the old mount still busy: the new mount waited for it, nothing lost", x)
    r = srv.delete("/v1/sandboxes/disk-a")
    t.ok(r.status == 200 and not mounted(ws) and not os.path.exists(os.path.dirname(ws)),
         "deleting the sandbox unmounts and removes its image", r)
finally:
    rc = srv.stop()
    t.eq(rc, 0, "final graceful stop")
    left = srv.leftovers(IDS)
    t.ok(not left, "nothing left behind (processes, cgroups, mounts)", left)
    srv.cleanup()
t.done()
