#!/usr/bin/python3
"""tests/sandbox_audit.py: `cellbox serve` against a careless or hostile API
client (an audit's findings, each checked against a real server).

- a recursive delete of a folder that cannot be deleted itself (a mount
  point such as /workspace or /tmp, a folder in a folder the sandbox's user
  cannot write) is refused before anything inside it is removed; it used to
  empty the folder and then answer an error;
- timeoutMs values past the int64 nanosecond range (1e300) are refused: the
  agent's deadline wrapped into the past and the command was killed at once
  and reported as timed out;
- sleepAfter "nan", "inf" and huge numbers are refused (no undefined
  float-to-int conversion);
"""
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
from sandbox_lib import TAP, Server, can_sandbox  # noqa: E402

t = TAP()
if not can_sandbox():
    t.skip_all("needs root for namespaces and cgroups")

srv = Server()
ids = ["audit"]
try:
    srv.create("audit")
    F = "/v1/sandboxes/audit/files"

    # ---- a recursive delete that cannot finish removes nothing ----
    for folder in ("/workspace", "/tmp"):
        r = srv.post(F + "/write", {"path": folder + "/keep/me.txt", "content": "precious"})
        t.eq(r.status, 200, "write a file under %s" % folder)
        r = srv.post(F + "/delete", {"path": folder, "recursive": True})
        t.ok(r.status == 403 and r.code == "PERMISSION_DENIED" and "mount point" in r.json()["error"]["message"],
             "delete %s recursive: 403, it is a mount point" % folder, r)
        r = srv.post(F + "/read", {"path": folder + "/keep/me.txt"})
        t.ok(r.status == 200 and r.json()["content"] == "precious",
             "delete %s refused: the files inside it are all still there" % folder, r)
    srv.sh("audit", "mkdir -p /workspace/ro/sub && echo x > /workspace/ro/sub/f && chmod 555 /workspace/ro")
    r = srv.post(F + "/delete", {"path": "/workspace/ro/sub", "recursive": True})
    t.ok(r.status == 403 and r.code == "PERMISSION_DENIED", "delete of a folder in a read-only folder: 403", r)
    r = srv.post(F + "/exists", {"path": "/workspace/ro/sub/f"})
    t.ok(r.status == 200 and r.json()["exists"], "... and its content is untouched", r)
    srv.sh("audit", "chmod 755 /workspace/ro")
    r = srv.post(F + "/delete", {"path": "/workspace/ro", "recursive": True})
    t.eq(r.status, 200, "an ordinary recursive delete still works")
    r = srv.post(F + "/exists", {"path": "/workspace/ro"})
    t.ok(r.status == 200 and not r.json()["exists"], "... and removed the folder", r)

    # ---- timeouts out of range ----
    X = "/v1/sandboxes/audit/exec"
    for v in (1e300, 1e19, -1, 31536000001):
        r = srv.post(X, {"command": "echo hi", "timeoutMs": v})
        t.ok(r.status == 400 and r.code == "VALIDATION_FAILED", "exec timeoutMs %r: 400" % v, r)
    r = srv.post(X, {"command": "echo hi", "timeout": 1e300})
    t.ok(r.status == 400 and r.code == "VALIDATION_FAILED", "exec timeout (alias) 1e300: 400", r)
    r = srv.post(X, {"command": "echo hi", "timeoutMs": 31536000000})
    t.ok(r.status == 200 and r.json()["success"] and not r.json()["timedOut"],
         "exec timeoutMs of a year: runs normally", r)
    r = srv.post("/v1/sandboxes/audit/processes", {"command": "sleep 100", "timeoutMs": 1e300})
    t.ok(r.status == 400 and r.code == "VALIDATION_FAILED", "process timeoutMs 1e300: 400 (was killed at once)", r)

    # ---- sleepAfter out of range ----
    for v in ("nan", "inf", "1e300d", 1e300, -1):
        r = srv.put("/v1/sandboxes/audit-sleep", {"sleepAfter": v})
        t.ok(r.status == 400 and r.code == "VALIDATION_FAILED", "sleepAfter %r: 400" % (v,), r)
    r = srv.get("/v1/sandboxes/audit-sleep")
    t.eq(r.status, 404, "... and no sandbox was made")
finally:
    srv.finish(t, ids + ["audit-sleep"])
t.done()
