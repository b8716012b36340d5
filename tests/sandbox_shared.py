#!/usr/bin/python3
"""tests/sandbox_shared.py: what one sandbox or one client shares with the rest.

Some kernel limits are one for the whole host, whatever a sandbox's own
limits say, and some server resources are one for every client. Each case
here is a way one sandbox or one client took such a thing from the others:
  - native AIO (io_setup): fs.aio-max-nr is host-wide; the calls are absent
    in a sandbox (ENOSYS), as io_uring is;
  - pseudo-terminals: kernel.pty.max is host-wide; a sandbox's devpts holds
    at most 64;
  - server connections: more than 1024 open fds (idle clients, or a few
    hundred running sandboxes) must not take the API down (select() would
    drop every connection past fd 1023);
  - a WebSocket upgrade sent as HTTP/1.0 is refused (400) at once, without
    starting a shell (it used to get no answer and hold a thread, two fds
    and a shell for 10 minutes);
  - a raw NUL byte in a JSON body is refused (400), not cut short (a
    command "echo safe<NUL>; rm ..." ran "echo safe"), and so are bytes
    after the JSON value (`{...} junk` and `{...}{...}` ran the first);
  - a readiness wait (processes/{id}/wait) ends when its client leaves,
    not at its timeout (up to an hour of a thread, fds and a sandbox kept
    awake).
Prints TAP.
"""
import os
import platform
import resource
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sandbox_lib import TAP, Server, can_sandbox, wait_until  # noqa: E402

t = TAP()
if not can_sandbox():
    t.skip_all("needs root for namespaces and cgroups")

srv = Server(extra_args=["--pool", "0"])
IDS = ["sh-a", "sh-b"]
try:
    srv.create("sh-a")
    srv.create("sh-b")

    # ---- native AIO ----
    nr = {"x86_64": 206, "aarch64": 0}.get(platform.machine())
    if nr is None:
        t.ok(True, "# SKIP io_setup number unknown on " + platform.machine())
    else:
        prog = ("import ctypes; l = ctypes.CDLL(None, use_errno=True); c = ctypes.c_ulong(0); "
                "r = l.syscall(%d, 65536, ctypes.byref(c)); print(r, ctypes.get_errno())" % nr)
        out = srv.sh("sh-a", "python3 -c '%s'" % prog)
        t.eq(out.get("stdout", "").strip(), "-1 38", "io_setup(65536) in a sandbox: ENOSYS (fs.aio-max-nr is the host's)")

    # ---- pseudo-terminals ----
    out = srv.sh("sh-a", "grep ' /dev/pts ' /proc/self/mounts")
    t.ok("max=64" in out.get("stdout", ""), "the sandbox's devpts is mounted with max=64", out)
    prog = ("import os\nfds = []\ntry:\n    while len(fds) < 200:\n        fds.append(os.openpty())\n"
            "except OSError as e:\n    print(len(fds), e.errno)\nelse:\n    print(len(fds), 0)\n")
    out = srv.sh("sh-a", "cat > /tmp/pty.py <<'EOF'\n" + prog + "EOF\npython3 /tmp/pty.py")
    words = out.get("stdout", "").split()
    t.ok(len(words) == 2 and 0 < int(words[0]) <= 64 and words[1] == "28",
         "a sandbox opening 200 terminals gets at most 64, then ENOSPC", out)
    out = srv.sh("sh-b", "python3 -c 'import os; os.openpty(); print(\"ok\")'")
    t.eq(out.get("stdout", "").strip(), "ok", "another sandbox still gets a terminal meanwhile")

    # ---- more than 1024 fds in the server ----
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < 1400:
        t.ok(True, "# SKIP the hard open file limit is %d" % hard)
    else:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        idle = []
        try:
            for _ in range(1100):
                s = socket.create_connection((srv.host, srv.port), timeout=10)
                s.sendall(b"GET /v1/health HTTP/1.1\r\n")  # headers never finished
                idle.append(s)
            def nfds():
                return len(os.listdir("/proc/%d/fd" % srv.server_pid))
            wait_until(lambda: nfds() > 1100, timeout=30)
            nfd = nfds()
            ok = 0
            for _ in range(5):
                r = srv.get("/v1/health", timeout=20)
                ok += r.status == 200
            t.ok(nfd > 1100 and ok == 5, "with 1100 idle connections open (server fds: %d) the API still "
                 "answers (5 of 5); select() dropped every connection past fd 1023" % nfd, ok)
            r = srv.exec("sh-a", "echo still")
            t.ok(r.status == 200 and r.json().get("stdout") == "still\n", "and a sandbox still runs commands", r)
        finally:
            for s in idle:
                s.close()
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))

    # ---- a WebSocket upgrade over HTTP/1.0 ----
    def threads():
        with open("/proc/%d/status" % srv.server_pid) as f:
            return int([ln for ln in f if ln.startswith("Threads:")][0].split()[1])

    def shells():
        return int(srv.sh("sh-a", "ps -eo comm | grep -c '^bash$' || true")["stdout"].strip() or 0)

    base_shells = shells()
    replies = []
    for _ in range(5):
        s = socket.create_connection((srv.host, srv.port), timeout=10)
        s.sendall(("GET /v1/sandboxes/sh-a/pty HTTP/1.0\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
                   "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                   "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n" % srv.token).encode())
        data = b""
        try:
            while b"\r\n\r\n" not in data:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
        except socket.timeout:
            pass
        replies.append(data.split(b"\r\n", 1)[0])
        s.close()
    t.ok(all(b" 400 " in x for x in replies), "a WebSocket upgrade sent as HTTP/1.0: 400 at once", replies)
    t.ok(wait_until(lambda: shells() <= base_shells, timeout=10), "and no shell was started for it",
         (base_shells, shells()))
    t.ok(wait_until(lambda: threads() < 30, timeout=10), "and no server thread is left holding it", threads())

    # ---- a readiness wait whose client left ----
    r = srv.post("/v1/sandboxes/sh-b/processes", {"command": "sleep 600", "processId": "slow"})
    t.ok(r.status == 201, "a process that never gets ready", r)
    base = threads()
    body = b'{"port": 9, "timeoutMs": 600000}'
    for _ in range(10):
        s = socket.create_connection((srv.host, srv.port), timeout=10)
        s.sendall(("POST /v1/sandboxes/sh-b/processes/slow/wait HTTP/1.1\r\nHost: x\r\n"
                   "Authorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
                   % (srv.token, len(body))).encode() + body)
        time.sleep(0.05)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        s.close()  # reset
    t.ok(wait_until(lambda: threads() <= base, timeout=5),
         "10 readiness waits (600 s) whose clients left end within seconds, not at their timeout",
         (base, threads()))

    # ---- HEAD on a streamed endpoint ----
    r = srv.post("/v1/sandboxes/sh-b/processes", {"command": "while :; do echo tick; sleep 0.2; done",
                                                  "processId": "loop"})
    time.sleep(0.3)
    s = socket.create_connection((srv.host, srv.port), timeout=10)
    s.sendall(("HEAD /v1/sandboxes/sh-b/processes/loop/logs/stream HTTP/1.1\r\nHost: x\r\n"
               "Authorization: Bearer %s\r\n\r\nGET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n" % srv.token).encode())
    data = b""
    s.settimeout(1)
    deadline = time.time() + 10
    while b'"status":"ok"' not in data and time.time() < deadline:
        try:
            d = s.recv(65536)
        except socket.timeout:
            continue
        if not d:
            break
        data += d
    s.close()
    head, _, rest = data.partition(b"\r\n\r\n")
    t.ok(head.startswith(b"HTTP/1.1 200") and b"text/event-stream" in head and rest.startswith(b"HTTP/1.1 200"),
         "HEAD on a log stream: the headers only, and the next request on the connection is answered "
         "(a chunked end '0' CRLF CRLF was sent, read as the next reply)", data[:400])

    # ---- a raw NUL byte in a JSON body ----
    srv.sh("sh-a", "echo keep > /workspace/keep.txt")
    r = srv.request("POST", "/v1/sandboxes/sh-a/exec",
                    raw=b'{"command":"echo safe\x00; rm /workspace/keep.txt"}',
                    headers={"Content-Type": "application/json"})
    t.ok(r.status == 400 and r.code == "VALIDATION_FAILED" and "NUL" in r.json()["error"]["message"],
         "a raw NUL byte in a JSON body: 400 naming it", r)
    r = srv.request("POST", "/v1/sandboxes/sh-a/files/delete", raw=b'{"path":"/workspace/keep.txt\x00.bak"}',
                    headers={"Content-Type": "application/json"})
    t.ok(r.status == 400, "also in a path: 400 (it used to delete keep.txt)", r)
    for raw in (b'{"command":"rm /workspace/keep.txt"} xyz',
                b'{"command":"rm /workspace/keep.txt"}{"command":"true"}'):
        r = srv.request("POST", "/v1/sandboxes/sh-a/exec", raw=raw, headers={"Content-Type": "application/json"})
        t.ok(r.status == 400 and r.code == "VALIDATION_FAILED", "bytes after the JSON value: 400 (%r)" % raw[-8:], r)
    out = srv.sh("sh-a", "cat /workspace/keep.txt")
    t.eq(out.get("stdout"), "keep\n", "and nothing of those requests was done")
    r = srv.request("POST", "/v1/sandboxes/sh-a/exec", raw=b'{"command":"echo ws"}\r\n',
                    headers={"Content-Type": "application/json"})
    t.ok(r.status == 200 and r.json().get("stdout") == "ws\n", "white space after the value is fine", r)
    r = srv.exec("sh-a", "echo fine")
    t.ok(r.status == 200 and r.json().get("stdout") == "fine\n", "a good request afterwards is served", r)
finally:
    for sid in IDS:
        srv.delete("/v1/sandboxes/" + sid)
    srv.finish(t, IDS)
t.done()
