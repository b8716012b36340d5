"""tests/sandbox_api.py: every endpoint and error of `cellbox serve`, with the
real server, real namespaces and Python's http.client. Prints TAP.

Sections: server basics (health, auth, errors, limits), sandboxes, exec
(JSON and SSE, stdin, env, cwd, timeouts, truncation, disconnect), sessions,
files, processes, concurrency. Restart and lifecycle are in
sandbox_lifecycle.py; attacks in sandbox_hostile.py.
"""
import base64
import http.client
import json
import os
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sandbox_lib import TAP, Server, can_sandbox, cgroup_limits, in_threads, parse_sse, wait_until  # noqa: E402

t = TAP()
if not can_sandbox():
    t.skip_all("needs root for namespaces and cgroups")

srv = Server(env={"CELLBOX_SSE_KEEPALIVE_MS": "100"})
IDS = ["api-a", "api-b", "api-c", "api-twin"] + ["api-c%d" % i for i in range(8)]
SB = "/v1/sandboxes/api-a"

try:
    # ---- server basics ---------------------------------------------------
    r = srv.get("/v1/health", token=False)
    t.ok(r.status == 200 and r.json()["status"] == "ok", "health needs no token")
    r = srv.get("/v1/sandboxes", token=False)
    t.ok(r.status == 401 and r.code == "UNAUTHORIZED", "no token: 401 UNAUTHORIZED", r)
    r = srv.get("/v1/sandboxes", token="x" * 48)
    t.ok(r.status == 401 and r.code == "UNAUTHORIZED", "wrong token: 401", r)
    r = srv.get("/v1/nothing", token=False)
    t.eq(r.status, 401, "unknown path without token: 401 (nothing leaks)")
    r = srv.get("/v1/nothing")
    t.ok(r.status == 404 and r.code == "NOT_FOUND", "unknown path: 404 NOT_FOUND", r)
    r = srv.request("PATCH", "/v1/sandboxes")
    t.ok(r.status == 405 and r.code == "METHOD_NOT_ALLOWED", "wrong method: 405", r)
    r = srv.put("/v1/sandboxes/Bad_Id")
    t.ok(r.status == 400 and r.code == "VALIDATION_FAILED", "bad sandbox id: 400", r)
    r = srv.put("/v1/sandboxes/" + "a" * 64)
    t.ok(r.status == 400, "64-char id refused", r)
    r = srv.request("PUT", "/v1/sandboxes/api-a", raw=b"{not json", headers={"Content-Type": "application/json"})
    t.ok(r.status == 400 and r.code == "VALIDATION_FAILED", "malformed JSON: 400 VALIDATION_FAILED", r)
    r = srv.request("PUT", "/v1/sandboxes/api-a", raw=b"[1,2]")
    t.ok(r.status == 400 and r.code == "VALIDATION_FAILED", "JSON that is not an object: 400", r)
    c = srv.conn()
    c.putrequest("POST", SB + "/exec")
    c.putheader("Authorization", "Bearer " + srv.token)
    c.putheader("Content-Length", str(40 << 20))
    c.endheaders()
    c.send(b"{" + b" " * 65536)
    resp = c.getresponse()
    body = json.loads(resp.read())
    c.close()
    t.ok(resp.status == 413 and body["error"]["code"] == "REQUEST_TOO_LARGE",
         "oversized body: 413 before it is read", body)
    r = srv.put("/v1/sandboxes/api-a", {"instanceType": "huge"})
    t.ok(r.status == 400 and "instanceType" in r.json()["error"]["message"], "bad instanceType: 400", r)
    r = srv.put("/v1/sandboxes/api-a", {"sleepAfter": "soon"})
    t.ok(r.status == 400, "bad sleepAfter: 400", r)
    r = srv.get("/v1/sandboxes/api-zz")
    t.ok(r.status == 404 and r.code == "SANDBOX_NOT_FOUND", "unknown sandbox: 404 SANDBOX_NOT_FOUND", r)
    r = srv.post("/v1/sandboxes/api-zz/exec", {"command": "true"})
    t.ok(r.status == 404 and r.code == "SANDBOX_NOT_FOUND", "exec in unknown sandbox: 404", r)
    r = srv.get("/v1/health", token=False)
    t.eq(r.status, 200, "server still healthy after bad requests")

    # ---- sandboxes -------------------------------------------------------
    r = srv.put("/v1/sandboxes/api-a", {"env": {"GREETING": "hi"}})
    t.ok(r.status == 201 and r.json()["created"] is True and r.json()["status"] == "running",
         "PUT creates a running sandbox: 201", r)
    r = srv.put("/v1/sandboxes/api-a")
    t.ok(r.status == 200 and r.json()["created"] is False, "same id again: 200, same sandbox", r)
    r = srv.put("/v1/sandboxes/api-b", {"instanceType": "standard", "memoryMB": 300, "pids": 100})
    o = r.json()["options"]
    t.ok(r.status == 201 and o["memoryMB"] == 300 and o["pids"] == 100 and o["instanceType"] == "custom",
         "explicit limits override the preset", r)
    # the limits really are on the sandbox's cgroups (v1 or v2, seen from the host)
    lim = cgroup_limits(r.json()["agentPid"])
    t.ok(lim.get("memory") == str(300 << 20) and lim.get("pids") == "100",
         "memory and pids limits are set on the sandbox's cgroups", lim)
    r = srv.get("/v1/sandboxes")
    ids = sorted(s["id"] for s in r.json()["sandboxes"])
    t.ok(r.status == 200 and "api-a" in ids and "api-b" in ids, "list has both", r)
    r = srv.get(SB)
    t.ok(r.status == 200 and r.json()["id"] == "api-a" and r.json()["options"]["network"] == "none",
         "get one", r)

    # ---- exec ------------------------------------------------------------
    x = srv.sh("api-a", "echo out; echo err >&2; exit 3")
    t.ok(x["stdout"] == "out\n" and x["stderr"] == "err\n" and x["exitCode"] == 3 and x["success"] is False,
         "exec: stdout, stderr, exitCode, success", x)
    t.ok(isinstance(x["durationMs"], (int, float)) and x["timedOut"] is False and x["stdoutTruncated"] is False,
         "exec: durationMs, timedOut, truncation flags", x)
    x = srv.sh("api-a", "id -u; hostname; echo $GREETING; echo $HOME")
    t.eq(x["stdout"], "1000\napi-a\nhi\n/workspace\n", "runs as uid 1000, hostname = id, sandbox env, HOME")
    x = srv.sh("api-a", "echo $A$B; pwd", env={"A": "x", "B": "y"}, cwd="/tmp")
    t.eq(x["stdout"], "xy\n/tmp\n", "exec env and cwd")
    x = srv.sh("api-a", "echo ${A:-unset}; pwd")
    t.eq(x["stdout"], "unset\n/workspace\n", "exec env and cwd do not stick")
    r = srv.exec("api-a", "true", cwd="/nonexistent")
    t.ok(r.status == 200 and r.json()["exitCode"] != 0 and "nonexistent" in r.json()["stderr"],
         "exec with a missing cwd fails with a message", r)
    r = srv.exec("api-a", "")
    t.ok(r.status == 400 and r.code == "INVALID_COMMAND", "empty command: 400 INVALID_COMMAND", r)
    r = srv.exec("api-a", "true", env={"1BAD": "x"})
    t.ok(r.status == 400 and r.code == "VALIDATION_FAILED", "bad env name: 400", r)
    r = srv.exec("api-a", "true", timeoutMs=-1)
    t.ok(r.status == 400, "negative timeout: 400", r)
    x = srv.sh("api-a", "cat; echo", stdin="hello\nworld")
    t.eq(x["stdout"], "hello\nworld\n", "stdin as text")
    x = srv.sh("api-a", "od -An -tx1", stdin=base64.b64encode(b"\x00\xff\x01").decode(), stdinEncoding="base64")
    t.eq(x["stdout"].split(), ["00", "ff", "01"], "stdin as base64 (binary)")
    r = srv.exec("api-a", "cat", stdin="!!", stdinEncoding="base64")
    t.ok(r.status == 400, "bad base64 stdin: 400", r)
    x = srv.sh("api-a", "cat", stdin="x" * (3 << 20))
    t.eq(len(x["stdout"]), 3 << 20, "3 MiB through stdin and stdout")
    x = srv.sh("api-a", "printf 'a\\xffb'")
    t.eq(x["stdout"], "a\ufffdb", "invalid UTF-8 output is repaired, not dropped")
    x = srv.sh("api-a", "head -c 17000000 /dev/zero | tr '\\0' a")
    t.ok(x["stdoutTruncated"] is True and len(x["stdout"]) == 16 << 20 and x["exitCode"] == 0,
         "output over 16 MiB is capped and flagged", {k: v for k, v in x.items() if k != "stdout"})

    # timeout kills the whole tree and the sandbox stays usable
    t0 = time.time()
    x = srv.sh("api-a", "(sleep 300; echo never) & setsid sleep 301 & sleep 302; echo after", timeoutMs=500)
    t.ok(x["timedOut"] is True and x["success"] is False and "after" not in x["stdout"],
         "timeoutMs is enforced", x)
    x = srv.sh("api-a", "ps -eo args | grep -c '^sleep 30[012]' || true")
    t.eq(x["stdout"].strip(), "0", "the timed-out command's whole tree is gone (setsid too)")
    x = srv.sh("api-a", "echo still here")
    t.eq(x["stdout"], "still here\n", "sandbox usable after a timeout")
    x = srv.sh("api-a", "sleep 200 & echo started")
    x = srv.sh("api-a", "ps -eo args | grep -c '^sleep 200' || true")
    t.eq(x["stdout"].strip(), "0", "background children of a finished exec are ended")

    # SSE
    st, ev = srv.sse(SB + "/exec", {"command": "echo a; echo b >&2; exit 4"})
    names = [e for e, _ in ev]
    t.ok(st == 200 and names[0] == "start" and names[-1] == "complete" and "stdout" in names and "stderr" in names,
         "SSE: start, stdout, stderr, complete", ev)
    t.ok(ev[0][1]["pid"] > 1 and ev[-1][1]["exitCode"] == 4 and "durationMs" in ev[-1][1],
         "SSE start has pid, complete has exitCode and durationMs", ev)
    out = "".join(d["data"] for e, d in ev if e == "stdout")
    t.eq(out, "a\n", "SSE stdout data")
    st, ev = srv.sse(SB + "/exec", {"command": "sleep 100", "timeoutMs": 300})
    t.ok(ev[-1][0] == "complete" and ev[-1][1]["timedOut"] is True, "SSE ends with a true complete after a timeout", ev)
    st, ev = srv.sse(SB + "/exec", {"command": "true", "sessionId": "nope"})
    t.ok(st == 404, "SSE with unknown session: plain 404 before streaming", st)
    c = srv.conn()
    c.request("POST", SB + "/exec", body=json.dumps({"command": "sleep 1; echo late"}).encode(),
              headers={"Authorization": "Bearer " + srv.token, "Accept": "text/event-stream"})
    raw = c.getresponse().read().decode()
    c.close()
    t.ok(": keepalive" in raw and parse_sse(raw)[-1][0] == "complete",
         "SSE keepalive comments while a command is quiet (interval 100 ms here)", raw)
    r = srv.request("POST", SB + "/exec?stream=true", {"command": "echo q"})
    t.ok(r.status == 200 and parse_sse(r.body.decode())[-1][0] == "complete", "?stream=true also streams", r)

    # A client that disconnects gets its command killed.
    c = srv.conn()
    c.request("POST", SB + "/exec", body=json.dumps({"command": "echo up; exec sleep 400"}).encode(),
              headers={"Authorization": "Bearer " + srv.token, "Accept": "text/event-stream",
                       "Content-Type": "application/json"})
    resp = c.getresponse()
    first = b""
    while b"up" not in first:
        first += resp.fp.read1(4096) if hasattr(resp.fp, "read1") else resp.fp.read(1)
    x = srv.sh("api-a", "ps -eo args | grep -c '^sleep 400' || true")
    t.eq(x["stdout"].strip(), "1", "streamed command runs while the client listens")
    c.sock.shutdown(socket.SHUT_RDWR)
    c.close()
    gone = wait_until(lambda: srv.sh("api-a", "ps -eo args | grep -c '^sleep 400' || true")["stdout"].strip() == "0")
    t.ok(gone, "client disconnect kills the streamed command")
    # same for a plain (JSON) exec
    c = srv.conn()
    c.request("POST", SB + "/exec", body=json.dumps({"command": "exec sleep 401"}).encode(),
              headers={"Authorization": "Bearer " + srv.token, "Content-Type": "application/json"})
    wait_until(lambda: srv.sh("api-a", "ps -eo args | grep -c '^sleep 401' || true")["stdout"].strip() == "1")
    c.sock.shutdown(socket.SHUT_RDWR)
    c.close()
    gone = wait_until(lambda: srv.sh("api-a", "ps -eo args | grep -c '^sleep 401' || true")["stdout"].strip() == "0")
    t.ok(gone, "client disconnect kills a non-streamed command too")

    # ---- sessions ----------------------------------------------------------
    srv.sh("api-a", "cd /tmp && export KEEP=1 && greet() { echo hello $1; } && mkdir -p s1")
    x = srv.sh("api-a", "pwd; echo $KEEP; greet you")
    t.eq(x["stdout"], "/tmp\n1\nhello you\n", "default session keeps cd, export and functions")
    srv.sh("api-a", "plain=5; arr=(1 'two words'); declare -A m=([k]=v); alias hi='echo aliased'")
    x = srv.sh("api-a", "echo \"$plain ${arr[1]} ${m[k]}\"; hi; env | grep -c '^plain=' || true")
    t.eq(x["stdout"], "5 two words v\naliased\n0\n",
         "like a persistent shell: plain variables, arrays and aliases persist (not exported)")
    r = srv.post(SB + "/sessions", {"id": "s2", "cwd": "/tmp/s1", "env": {"WHO": "s2"}})
    t.ok(r.status == 201 and r.json()["id"] == "s2", "create session", r)
    r = srv.post(SB + "/sessions", {"id": "s2"})
    t.ok(r.status == 409 and r.code == "SESSION_ALREADY_EXISTS", "duplicate session: 409", r)
    x = srv.sh("api-a", "pwd; echo $WHO ${KEEP:-none}", sessionId="s2")
    t.eq(x["stdout"], "/tmp/s1\ns2 none\n", "session has its own cwd and env")
    srv.sh("api-a", "cd /; export N=2", sessionId="s2")
    x = srv.sh("api-a", "pwd; echo ${N:-none}")
    t.eq(x["stdout"], "/tmp\nnone\n", "sessions do not leak into each other")
    x = srv.sh("api-a", "pwd; echo $N", sessionId="s2")
    t.eq(x["stdout"], "/\n2\n", "session s2 kept its own state")
    r = srv.post(SB + "/sessions/s2/env", {"env": {"ADDED": "yes"}})
    x = srv.sh("api-a", "echo $ADDED", sessionId="s2")
    t.ok(r.status == 200 and x["stdout"] == "yes\n", "setEnvVars on a session", r)
    r = srv.get(SB + "/sessions")
    sids = sorted(s["id"] for s in r.json()["sessions"])
    t.eq(sids, ["default", "s2"], "list sessions")
    r = srv.get(SB + "/sessions/s2")
    t.ok(r.status == 200 and r.json()["cwd"] == "/tmp/s1" and "state" not in r.json(), "get session", r)
    r = srv.delete(SB + "/sessions/default")
    t.ok(r.status == 400 and r.code == "VALIDATION_FAILED", "default session cannot be deleted", r)
    r = srv.delete(SB + "/sessions/s2")
    t.eq(r.status, 200, "delete session")
    r = srv.get(SB + "/sessions/s2")
    t.ok(r.status == 404 and r.code == "SESSION_NOT_FOUND", "deleted session: 404 SESSION_NOT_FOUND", r)
    r = srv.exec("api-a", "true", sessionId="s2")
    t.ok(r.status == 404 and r.code == "SESSION_NOT_FOUND", "exec in a deleted session: 404", r)
    x = srv.sh("api-a", "cd /nowhere-at-all; pwd")
    x = srv.sh("api-a", "pwd")
    t.eq(x["stdout"], "/tmp\n", "a failed cd does not break the session")
    srv.sh("api-a", "cd /workspace")

    # ---- files ---------------------------------------------------------------
    F = SB + "/files"
    r = srv.post(F + "/write", {"path": "dir/sub/hello.txt", "content": "héllo"})
    t.ok(r.status == 200 and r.json()["path"] == "/workspace/dir/sub/hello.txt", "write creates parents", r)
    r = srv.post(F + "/read", {"path": "/workspace/dir/sub/hello.txt"})
    j = r.json()
    t.ok(j["content"] == "héllo" and j["encoding"] == "utf-8" and j["isBinary"] is False
         and j["mimeType"] == "text/plain" and j["size"] == 6, "read text: content, encoding, mimeType, size", j)
    x = srv.sh("api-a", "stat -c '%U %a' dir/sub/hello.txt; cat dir/sub/hello.txt")
    t.eq(x["stdout"], "user 644\nhéllo", "written file belongs to the sandbox user")
    png = bytes(range(256)) * 4
    r = srv.post(F + "/write", {"path": "img.png", "content": base64.b64encode(png).decode(), "encoding": "base64"})
    r = srv.post(F + "/read", {"path": "img.png"})
    j = r.json()
    t.ok(j["isBinary"] is True and j["encoding"] == "base64" and base64.b64decode(j["content"]) == png
         and j["mimeType"] == "image/png", "binary round trip as base64", {k: j[k] for k in j if k != "content"})
    r = srv.post(F + "/read", {"path": "dir/sub/hello.txt", "encoding": "base64"})
    t.eq(base64.b64decode(r.json()["content"]).decode(), "héllo", "read text as base64 on request")
    r = srv.post(F + "/read", {"path": "missing.txt"})
    t.ok(r.status == 404 and r.code == "FILE_NOT_FOUND", "read missing: 404 FILE_NOT_FOUND", r)
    r = srv.post(F + "/read", {"path": "dir"})
    t.ok(r.status == 400 and r.code == "IS_DIRECTORY", "read a folder: 400 IS_DIRECTORY", r)
    r = srv.post(F + "/read", {"path": "dir/sub/hello.txt/x"})
    t.ok(r.status == 400 and r.code == "NOT_DIRECTORY", "path through a file: 400 NOT_DIRECTORY", r)
    r = srv.post(F + "/read", {})
    t.ok(r.status == 400 and r.code == "VALIDATION_FAILED", "read without path: 400", r)
    r = srv.post(F + "/write", {"path": "/usr/evil", "content": "x"})
    t.ok(r.status == 403 and r.code == "READ_ONLY", "write to /usr: 403 READ_ONLY", r)
    r = srv.post(F + "/write", {"path": "dir", "content": "x"})
    t.ok(r.status == 400 and r.code == "IS_DIRECTORY", "write over a folder: IS_DIRECTORY", r)
    r = srv.post(F + "/write", {"path": "x" * 300, "content": "x"})
    t.ok(r.status == 400 and r.code == "NAME_TOO_LONG", "long name: 400 NAME_TOO_LONG", r)
    r = srv.post(F + "/write", {"path": "a.txt", "content": "new"})
    r = srv.post(F + "/write", {"path": "a.txt", "content": "newer"})
    r = srv.post(F + "/read", {"path": "a.txt"})
    t.eq(r.json()["content"], "newer", "write replaces")
    r = srv.post(F + "/exists", {"path": "a.txt"})
    r2 = srv.post(F + "/exists", {"path": "b.txt"})
    t.ok(r.json()["exists"] is True and r2.json()["exists"] is False, "exists", (r, r2))
    r = srv.post(F + "/stat", {"path": "a.txt"})
    j = r.json()
    t.ok(j["type"] == "file" and j["size"] == 5 and j["mode"] == "0644" and "modifiedAt" in j
         and j["permissions"]["writable"] is True, "stat", j)
    r = srv.post(F + "/mkdir", {"path": "m/n/o", "recursive": True})
    r2 = srv.post(F + "/mkdir", {"path": "p/q"})
    t.ok(r.status == 200 and r2.status == 404 and r2.code == "FILE_NOT_FOUND", "mkdir recursive / not", (r, r2))
    r = srv.post(F + "/mkdir", {"path": "m"})
    t.ok(r.status == 409 and r.code == "FILE_EXISTS", "mkdir existing: 409 FILE_EXISTS", r)
    srv.post(F + "/write", {"path": ".hidden", "content": ""})
    r = srv.post(F + "/list", {"path": "/workspace"})
    names = sorted(f["name"] for f in r.json()["files"])
    t.ok("dir" in names and ".hidden" not in names and "hello.txt" not in names, "list top level", names)
    r = srv.post(F + "/list", {"path": "/workspace", "recursive": True, "includeHidden": True})
    files = {f["relativePath"]: f for f in r.json()["files"]}
    t.ok(".hidden" in files and "dir/sub/hello.txt" in files and files["dir/sub"]["type"] == "directory"
         and files["dir/sub/hello.txt"]["absolutePath"] == "/workspace/dir/sub/hello.txt",
         "list recursive with hidden files", sorted(files))
    r = srv.post(F + "/rename", {"oldPath": "a.txt", "newPath": "renamed.txt"})
    r2 = srv.post(F + "/move", {"oldPath": "renamed.txt", "newPath": "/tmp/moved/here.txt"})
    t.ok(r.status == 200 and r2.status == 400, "rename works; move across file systems is refused", (r, r2))
    r2 = srv.post(F + "/move", {"oldPath": "renamed.txt", "newPath": "m/n/moved.txt"})
    r3 = srv.post(F + "/read", {"path": "m/n/moved.txt"})
    t.ok(r2.status == 200 and r3.json()["content"] == "newer", "move into another folder", (r2, r3))
    r = srv.post(F + "/rename", {"oldPath": "nope", "newPath": "x"})
    t.ok(r.status == 404, "rename missing: 404", r)
    r = srv.post(F + "/delete", {"path": "m"})
    t.ok(r.status == 409 and r.code == "DIRECTORY_NOT_EMPTY", "delete non-empty folder needs recursive", r)
    r = srv.post(F + "/delete", {"path": "m", "recursive": True})
    r2 = srv.post(F + "/exists", {"path": "m"})
    t.ok(r.status == 200 and r2.json()["exists"] is False, "recursive delete", r)
    r = srv.post(F + "/delete", {"path": "m"})
    t.ok(r.status == 404, "delete missing: 404", r)
    r = srv.post(F + "/write", {"path": "/tmp/t.txt", "content": "tmp"})
    x = srv.sh("api-a", "cat /tmp/t.txt")
    t.eq(x["stdout"], "tmp", "files API reaches /tmp too")
    # big raw upload and download, streamed
    size = 96 << 20
    chunk = os.urandom(1 << 20)
    c = srv.conn()
    c.putrequest("PUT", F + "/content?path=big.bin")
    c.putheader("Authorization", "Bearer " + srv.token)
    c.putheader("Content-Length", str(size))
    c.putheader("Content-Type", "application/octet-stream")
    c.endheaders()
    for i in range(size >> 20):
        c.send(chunk)
    r = c.getresponse()
    body = json.loads(r.read())
    c.close()
    t.ok(r.status == 200 and body["size"] == size, "96 MiB raw upload", body)
    c = srv.conn()
    c.request("GET", F + "/content?path=big.bin", headers={"Authorization": "Bearer " + srv.token})
    r = c.getresponse()
    got, same = 0, True
    while True:
        b = r.read(1 << 20)
        if not b:
            break
        same = same and b == chunk[: len(b)] if len(b) == len(chunk) else same
        got += len(b)
    c.close()
    t.ok(r.status == 200 and got == size and same, "96 MiB raw download, streamed", got)
    x = srv.sh("api-a", "stat -c %s big.bin; ls /workspace | grep -c cellbox-upload || true")
    t.eq(x["stdout"], "%d\n0\n" % size, "upload landed whole, no temp file left")
    r = srv.post(F + "/read", {"path": "big.bin"})
    t.ok(r.status == 413 and r.code == "FILE_TOO_LARGE", "JSON read of a huge file: 413 pointing to raw reads", r)
    # a file far larger than anything the server may hold in memory
    huge = 1 << 30
    c = srv.conn()
    c.putrequest("PUT", F + "/content?path=huge.bin")
    c.putheader("Authorization", "Bearer " + srv.token)
    c.putheader("Content-Length", str(huge))
    c.endheaders()
    for i in range(huge >> 20):
        c.send(chunk)
    r = c.getresponse()
    r.read()
    c.close()
    c = srv.conn()
    c.request("GET", F + "/content?path=huge.bin", headers={"Authorization": "Bearer " + srv.token})
    r2 = c.getresponse()
    got = 0
    while True:
        b = r2.read(4 << 20)
        if not b:
            break
        got += len(b)
    c.close()
    with open("/proc/%d/status" % srv.proc.pid) as f:
        hwm = [int(line.split()[1]) for line in f if line.startswith("VmHWM:")][0]
    t.ok(r.status == 200 and got == huge and hwm < 200 * 1024,
         "1 GiB up and down, streamed: the server's peak memory stays at %d MiB" % (hwm >> 10), (r.status, got, hwm))
    srv.post(F + "/delete", {"path": "huge.bin"})
    r = srv.get(F + "/content?path=missing")
    t.ok(r.status == 404 and r.code == "FILE_NOT_FOUND", "raw read of a missing file: 404", r)
    srv.post(F + "/delete", {"path": "big.bin"})

    # ---- processes -------------------------------------------------------------
    P = SB + "/processes"
    r = srv.post(P, {"command": "echo ready; read line; echo got:$line; echo oops >&2; sleep 0.1; exit 5",
                     "processId": "p1"})
    j = r.json()
    t.ok(r.status == 201 and j["id"] == "p1" and j["pid"] > 1 and j["status"] == "running", "start process", r)
    r = srv.post(P, {"command": "true", "processId": "p1"})
    t.ok(r.status == 409 and r.code == "PROCESS_ALREADY_EXISTS", "same running id: 409", r)
    # the same id started 6 times at once: one runs, five are refused (all
    # six used to start, five of them then hidden behind one record)
    res = {}
    srv.create("api-twin")
    TP = "/v1/sandboxes/api-twin/processes"
    in_threads(lambda i: res.update({i: srv.post(TP, {"command": "sleep 60", "processId": "twin"})}), 6)
    codes = sorted(x.status for x in res.values())
    t.ok(codes == [201, 409, 409, 409, 409, 409] and all(x.code == "PROCESS_ALREADY_EXISTS" for x in res.values()
                                                       if x.status == 409),
         "one id started 6 times at once: one 201, five 409 PROCESS_ALREADY_EXISTS", codes)
    srv.delete("/v1/sandboxes/api-twin")
    r = srv.post(P + "/p1/wait", {"log": "ready", "timeoutMs": 20000})
    t.ok(r.status == 200 and r.json()["line"] == "ready", "wait for a log line", r)
    r = srv.post(P + "/p1/stdin", {"data": "abc\n"})
    t.eq(r.status, 200, "write to stdin")
    r = srv.post(P + "/p1/wait", {"exit": True, "timeoutMs": 20000})
    j = r.json()
    t.ok(j["status"] == "failed" and j["exitCode"] == 5 and j["endTime"], "exit status failed with exitCode", j)
    r = srv.get(P + "/p1/logs")
    j = r.json()
    t.ok(j["stdout"] == "ready\ngot:abc\n" and j["stderr"] == "oops\n", "logs kept", j)
    r = srv.post(P + "/p1/wait", {"log": "never", "timeoutMs": 100})
    t.ok(r.status == 500 and r.code == "PROCESS_EXITED_BEFORE_READY", "wait on an exited process: 500", r)
    r = srv.post(P, {"command": "echo x; sleep 60", "processId": "p2"})
    r = srv.post(P + "/p2/wait", {"regex": "^n[o]ne$", "timeoutMs": 200})
    t.ok(r.status == 408 and r.code == "PROCESS_READY_TIMEOUT", "wait timeout: 408 PROCESS_READY_TIMEOUT", r)
    r = srv.post(P + "/p2/wait", {"regex": "^[x]$", "timeoutMs": 20000})
    t.ok(r.status == 200 and r.json()["line"] == "x", "wait for a regex", r)
    r = srv.post(P + "/p2/wait", {"regex": "(", "timeoutMs": 200})
    t.ok(r.status == 400, "bad regex: 400", r)
    r = srv.post(P + "/p2/wait", {})
    t.ok(r.status == 400, "wait for nothing: 400", r)
    r = srv.post(P, {"command": "sleep 0.3; exec python3 -m http.server 8765 --bind 127.0.0.1", "processId": "web"})
    r = srv.post(P + "/web/wait", {"port": 8765, "timeoutMs": 30000})
    t.ok(r.status == 200 and r.json()["ready"] is True, "wait for a tcp port", r)
    r = srv.post(P + "/web/wait", {"port": 8765, "mode": "http", "path": "/", "statusMin": 200,
                                   "statusMax": 299, "timeoutMs": 30000})
    t.ok(r.status == 200, "wait for an http status", r)
    r = srv.post(P + "/web/wait", {"port": 8765, "mode": "http", "path": "/nothing-here",
                                   "statusMin": 200, "statusMax": 299, "timeoutMs": 300})
    t.ok(r.status == 408, "http status out of range: times out", r)
    r = srv.get(P)
    ids = sorted(p["id"] for p in r.json()["processes"])
    t.eq(ids, ["p1", "p2", "web"], "list processes")
    r = srv.get(P + "/nope")
    t.ok(r.status == 404 and r.code == "PROCESS_NOT_FOUND", "unknown process: 404", r)
    # follow logs: buffered first, then live, then exit
    r = srv.post(P, {"command": "echo one; read x; echo two; exit 0", "processId": "f"})
    srv.post(P + "/f/wait", {"log": "one", "timeoutMs": 20000})
    c = srv.conn()
    c.request("GET", P + "/f/logs/stream", headers={"Authorization": "Bearer " + srv.token})
    resp = c.getresponse()
    threading.Timer(0.2, lambda: srv.post(P + "/f/stdin", {"data": "go\n"})).start()
    ev = parse_sse(resp.read().decode())
    c.close()
    out = "".join(d["data"] for e, d in ev if e == "stdout")
    t.ok(out == "one\ntwo\n" and ev[-1][0] == "exit" and ev[-1][1]["status"] == "completed",
         "follow logs: replay, live, exit event", ev)
    # a follower of a finished process whose id is reused meanwhile: its exit
    # event is still that process's record (it was looked up by id: the new
    # process's, or {} once the old record was hidden). The client reads
    # nothing while the new one starts, so the stream is held mid-way.
    r = srv.post(P, {"command": "head -c 12000000 /dev/zero | tr '\\0' a; exit 3", "processId": "fo"})
    old_pid = r.json().get("pid")
    ended = wait_until(lambda: srv.get(P + "/fo").json().get("status") == "failed", timeout=60)
    sk = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sk.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sk.settimeout(60)
    sk.connect((srv.host, srv.port))
    sk.sendall(("GET %s/fo/logs/stream HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
                "Connection: close\r\n\r\n" % (P, srv.token)).encode())
    time.sleep(0.5)  # lets the server fill the socket (a stream that ended already only weakens the check)
    r2 = srv.post(P, {"command": "sleep 30", "processId": "fo"})
    raw = b""
    while True:
        chunk = sk.recv(1 << 20)
        if not chunk:
            break
        raw += chunk
    sk.close()
    body = raw.split(b"\r\n\r\n", 1)[1] if b"\r\n\r\n" in raw else b""
    # chunked transfer: the event lines survive the chunk framing except at chunk
    # boundaries; the exit event is the last one, in the last chunk
    tail = body[-4000:].decode(errors="replace")
    exit_ev = tail[tail.rfind("event: exit"):] if "event: exit" in tail else ""
    data = exit_ev.split("data: ", 1)[1].split("\n", 1)[0] if "data: " in exit_ev else "{}"
    try:
        ex = json.loads(data)
    except ValueError:
        ex = {"unparsed": data}
    t.ok(ended and r2.status == 201 and ex.get("id") == "fo" and ex.get("pid") == old_pid
         and ex.get("status") == "failed" and ex.get("exitCode") == 3,
         "a follower's exit event is its own process's record, even when a new process took the id meanwhile",
         (ended, r2, ex))
    srv.delete(P + "/fo")
    r = srv.delete(P + "/p2?signal=TERM")
    j = srv.post(P + "/p2/wait", {"exit": True, "timeoutMs": 20000}).json()
    t.ok(r.status == 200 and j["status"] == "killed", "kill a process", j)
    r = srv.post(P, {"command": "trap '' TERM; echo armed; sleep 1000", "processId": "stubborn"})
    srv.post(P + "/stubborn/wait", {"log": "armed", "timeoutMs": 20000})
    r = srv.delete(P + "/stubborn?signal=TERM&graceMs=200")
    j = srv.post(P + "/stubborn/wait", {"exit": True, "timeoutMs": 20000}).json()
    t.ok(j.get("status") == "killed" and j.get("exitCode") == 137, "TERM then KILL after the grace period", (r.status, r.body[:300], j))
    r = srv.delete(P + "/web?signal=BOGUS")
    t.ok(r.status == 400, "unknown signal: 400", r)
    srv.post(P, {"command": "sleep 1000", "processId": "k1"})
    srv.post(P, {"command": "sleep 1000", "processId": "k2"})
    r = srv.delete(P)
    t.ok(r.status == 200 and r.json()["killed"] >= 3, "kill all", r)
    done = wait_until(lambda: all(p["status"] != "running" for p in srv.get(P).json()["processes"]))
    t.ok(done, "all processes ended", [(p["id"], p["status"]) for p in srv.get(P).json()["processes"]])
    srv.post(P, {"command": "head -c 20000000 /dev/zero | tr '\\0' a; echo; echo tail-marker", "processId": "loud"})
    srv.post(P + "/loud/wait", {"exit": True, "timeoutMs": 60000})
    j = srv.get(P + "/loud/logs").json()
    t.ok(j["stdoutTruncated"] is True and len(j["stdout"]) <= 16 << 20 and j["stdout"].endswith("tail-marker\n"),
         "logs are bounded (the latest output is kept)", len(j["stdout"]))
    r = srv.post(P, {"command": "true", "processId": "bad id!"})
    t.ok(r.status == 400, "bad process id: 400", r)
    r = srv.post(P, {"command": "echo again", "processId": "p1"})
    t.ok(r.status == 201, "a finished process id can be reused", r)

    # ---- concurrency ---------------------------------------------------------------
    srv.create("api-c")
    errors = []

    def worker(n):
        for i in range(15):
            sid = ["api-a", "api-b", "api-c"][(n + i) % 3]
            try:
                x = srv.sh(sid, "echo %d-%d" % (n, i))
                if x["stdout"] != "%d-%d\n" % (n, i):
                    errors.append(x)
            except Exception as e:  # noqa: BLE001
                errors.append(repr(e))
    in_threads(worker, 12)
    t.ok(not errors, "180 concurrent execs over 3 sandboxes, no errors", errors[:3])
    created = []

    def creator(n):
        try:
            srv.create("api-c%d" % n)
            created.append(srv.sh("api-c%d" % n, "hostname")["stdout"])
        except Exception as e:  # noqa: BLE001
            created.append(repr(e))
    in_threads(creator, 8)
    t.eq(sorted(created), sorted("api-c%d\n" % n for n in range(8)), "8 sandboxes created concurrently")

    # ---- delete -----------------------------------------------------------------------
    r = srv.delete("/v1/sandboxes/api-b")
    t.ok(r.status == 200 and r.json()["success"] is True, "delete sandbox", r)
    r = srv.get("/v1/sandboxes/api-b")
    t.eq(r.status, 404, "deleted sandbox is gone")
    t.ok(not os.path.exists(os.path.join(srv.state, "sandboxes", "api-b")), "its state folder is removed")
    r = srv.delete("/v1/sandboxes/api-b")
    t.eq(r.status, 404, "delete twice: 404")
    t.ok("level=info" in srv.server_log() and "mod=http" in srv.server_log(), "structured log lines")
finally:
    srv.finish(t, IDS, "SIGTERM: graceful exit 0")
t.done()
