"""tests/sandbox_lib.py: helpers for the `cellbox serve` integration tests.

Starts the real server on 127.0.0.1 with a fresh state folder, talks to it
with http.client (one connection per call unless a Client is kept), prints
TAP. Every test file calls Server.stop() at the end, which also checks that
nothing was left behind: no agent processes, no cgroups, no mounts.
"""
import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

CELLBOX = os.environ.get("CELLBOX") or os.path.join(os.path.dirname(__file__), "..", "cellbox")


class TAP:
    def __init__(self):
        self.n = 0
        self.failed = 0

    def ok(self, cond, name, detail=None):
        self.n += 1
        print(("ok %d - %s" if cond else "not ok %d - %s") % (self.n, name), flush=True)
        if not cond:
            self.failed += 1
            if detail is not None:
                for line in str(detail).splitlines()[:30]:
                    print("#   " + line, flush=True)
        return cond

    def eq(self, got, want, name):
        return self.ok(got == want, name, "got %r, want %r" % (got, want))

    def skip_all(self, why):
        print("1..0 # SKIP " + why, flush=True)
        sys.exit(0)

    def done(self):
        print("1..%d" % self.n, flush=True)
        sys.exit(1 if self.failed else 0)


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    def json(self):
        return json.loads(self.body.decode())

    @property
    def code(self):
        try:
            return self.json()["error"]["code"]
        except Exception:
            return None

    def __repr__(self):
        return "<%d %s>" % (self.status, self.body[:400])


class Server:
    def __init__(self, state=None, extra_args=(), env=None, wrap=(), id_lock=None):
        """wrap: a command the server runs under (e.g. bwrap ... --); signals
        then go to the server itself, not to the wrapper. id_lock: the
        host-wide file of id range leases (--id-lock); by default one of
        this server's own, so that the tests that count ranges are not
        disturbed by the servers of other test files running at the same
        time; "default" = the server's default."""
        self.tmp = tempfile.mkdtemp(prefix="cellbox-sb-test-")
        self.id_lock = id_lock
        self.state = state or os.path.join(self.tmp, "state")
        self.extra_args = list(extra_args)
        self.env = env
        self.wrap = list(wrap)
        self.proc = None
        self.start()

    def start(self):
        self.log_path = os.path.join(self.tmp, "server.log")
        self.log = open(self.log_path, "ab")
        env = dict(os.environ, CELLBOX_LOG="info")
        if self.env:
            env.update(self.env)
        self.proc = subprocess.Popen(
            self.wrap + [CELLBOX, "serve", "--listen", "127.0.0.1:0", "--state-dir", self.state]
            + ([] if self.id_lock == "default"
               else ["--id-lock", self.id_lock or os.path.join(self.tmp, "id-ranges.lock")])
            + self.extra_args, stdout=subprocess.PIPE, stderr=self.log, env=env)
        self.server_pid = self.proc.pid
        self.pids = getattr(self, "pids", []) + [self.proc.pid]
        self.url = self.token = None
        deadline = time.time() + 30
        while time.time() < deadline:
            line = self.proc.stdout.readline().decode()
            if not line:
                break
            if "listening on " in line:
                self.url = line.split("listening on ")[1].strip()
            if " token " in line:
                self.token = line.split(" token ")[1].split()[0]
            if self.url and self.token:
                break
        if not self.url:
            raise RuntimeError("server did not start: " + open(self.log_path).read())
        hostport = self.url.split("//")[1]
        self.host, self.port = hostport.rsplit(":", 1)
        self.port = int(self.port)
        if self.wrap:
            self.server_pid = self._find_server()
            self.pids.append(self.server_pid)

    def _find_server(self):
        """The pid of `cellbox serve` for our state folder (under a wrapper)."""
        for pid in os.listdir("/proc"):
            try:
                with open("/proc/%s/cmdline" % pid, "rb") as f:
                    argv = f.read().split(b"\0")
            except OSError:
                continue
            if len(argv) > 1 and argv[1] == b"serve" and self.state.encode() in argv and int(pid) != self.proc.pid:
                return int(pid)
        raise RuntimeError("cannot find the server under " + " ".join(self.wrap))

    def conn(self, timeout=120):
        return http.client.HTTPConnection(self.host, self.port, timeout=timeout)

    def request(self, method, path, body=None, headers=None, token=True, raw=None, timeout=120, conn=None):
        h = {}
        if token:
            h["Authorization"] = "Bearer " + (self.token if token is True else token)
        if body is not None:
            raw = json.dumps(body).encode()
            h["Content-Type"] = "application/json"
        h.update(headers or {})
        c = conn or self.conn(timeout)
        c.request(method, path, body=raw, headers=h)
        r = c.getresponse()
        resp = Response(r.status, dict(r.getheaders()), r.read())
        if conn is None:
            c.close()
        return resp

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, body=None, **kw):
        return self.request("POST", path, body if body is not None else {}, **kw)

    def put(self, path, body=None, **kw):
        return self.request("PUT", path, body, **kw)

    def delete(self, path, **kw):
        return self.request("DELETE", path, **kw)

    def create(self, sid, **opts):
        r = self.put("/v1/sandboxes/" + sid, opts)
        if r.status not in (200, 201):
            raise RuntimeError("create %s: %r" % (sid, r))
        return r

    def exec(self, sid, command, **kw):
        body = dict(kw, command=command)
        return self.post("/v1/sandboxes/%s/exec" % sid, body)

    def sh(self, sid, command, **kw):
        """exec that must succeed at the HTTP level; returns the result dict."""
        r = self.exec(sid, command, **kw)
        if r.status != 200:
            raise RuntimeError("exec %r: %r" % (command, r))
        return r.json()

    def sse(self, path, body, timeout=120):
        """POST and read a whole event stream: a list of (event, data)."""
        c = self.conn(timeout)
        c.request("POST", path, body=json.dumps(body).encode(),
                  headers={"Authorization": "Bearer " + self.token, "Accept": "text/event-stream",
                           "Content-Type": "application/json"})
        r = c.getresponse()
        events = parse_sse(r.read().decode())
        c.close()
        return r.status, events

    def stop(self, sig=signal.SIGTERM):
        if not self.proc:
            return None
        if self.server_pid != self.proc.pid:
            os.kill(self.server_pid, sig)
        else:
            self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
        self.proc.stdout.close()
        self.log.close()
        self.proc = None
        return rc

    def leftovers(self, ids):
        """What a stopped server left behind for these sandbox ids (should be
        nothing). Only our own ids are checked: other test files may run
        their servers at the same time."""
        left = []
        # sandboxes keep the cgroup of the pooled agent they took:
        # cellbox/pool-<server pid>-<n>
        marks = ["/cellbox/%s\n" % i for i in ids] + ["/cellbox/pool-%d-" % p for p in self.pids]
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                with open("/proc/%s/cgroup" % pid) as f:
                    cg = f.read()
                with open("/proc/%s/cmdline" % pid, "rb") as f:
                    cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if any(m in cg for m in marks):
                left.append("process %s: %s" % (pid, cmd))
        for root, dirs, _ in os.walk("/sys/fs/cgroup"):
            # the parent group goes with the last server; groups still in it
            # belong to other servers (ours are checked below), e.g. one a
            # test in parallel killed with SIGKILL after our sweep ran
            if (root.endswith("/cellbox") and self.proc is None and not dirs
                    and not self._other_servers()):
                left.append("cgroup: %s (the parent group should be removed at shutdown)" % root)
            if root.endswith("/cellbox"):
                for d in dirs:
                    if d in ids or any(d.startswith("pool-%d-" % p) for p in self.pids):
                        left.append("cgroup: %s/%s" % (root, d))
            if root.count("/") > 8:
                dirs[:] = []
        with open("/proc/self/mountinfo") as f:
            for line in f:
                if self.tmp in line:
                    left.append("mount: " + line.strip())
        # the host's device nodes must be untouched (once, /dev/null was found
        # replaced by a regular file on this machine during sandbox work)
        import stat as _stat
        for dev in ("/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom", "/dev/tty"):
            try:
                if not _stat.S_ISCHR(os.stat(dev).st_mode):
                    left.append("host %s is no longer a character device" % dev)
            except OSError as e:
                left.append("host %s: %s" % (dev, e))
        return left

    @staticmethod
    def _other_servers():
        """Is another `cellbox serve` running (e.g. a test in parallel)?"""
        for pid in os.listdir("/proc"):
            try:
                with open("/proc/%s/cmdline" % pid, "rb") as f:
                    if b"\0serve\0" in f.read():
                        return True
            except OSError:
                pass
        return False

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def finish(self, t, ids, what="final graceful stop", egress=False):
        """The end of a test file: stop (SIGTERM) and check the exit status,
        that nothing of these sandbox ids is left behind (with egress: no
        veth and no nftables table either), and show the end of the
        server's log when a test failed; then remove its folder."""
        t.eq(self.stop(), 0, what)
        left = self.leftovers(ids)
        t.ok(not left, "nothing left behind (processes, cgroups, mounts)", left)
        if egress:
            links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
            tables = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout
            t.ok("cbh" not in links, "no veth pair left", links)
            t.ok("cellbox" not in tables, "no nftables table left at shutdown", tables)
        if t.failed:
            print("# server log (tail):")
            for line in self.server_log().splitlines()[-40:]:
                print("#   " + line)
        self.cleanup()

    def server_log(self):
        try:
            return open(self.log_path).read()
        except OSError:
            return ""


def host_id_base(s, sid):
    """The host id of a running sandbox's uid 0 (its agent's uid_map)."""
    with open("/proc/%d/uid_map" % s.get("/v1/sandboxes/" + sid).json()["agentPid"]) as f:
        return int(f.read().split()[1])


def workspace_owners(s, sid, sub=""):
    """The (uid, gid) pairs of everything in a sandbox's workspace folder
    (or its subfolder sub), seen on the host."""
    top = os.path.join(s.state, "sandboxes", sid, "workspace", sub)
    found = set()
    for root, dirs, files in os.walk(top):
        for n in [""] + dirs + files:
            st = os.lstat(os.path.join(root, n))
            found.add((st.st_uid, st.st_gid))
    return found


def cgroup_limits(pid):
    """The memory and pids limits of the cgroups of a process (a sandbox's
    agent), read on the host (cgroup v1 or v2): {"memory": "314572800",
    "pids": "100"}, strings as the kernel shows them."""
    lim = {}
    with open("/proc/%d/cgroup" % pid) as f:
        for line in f:
            _, ctrls, path = line.rstrip("\n").split(":", 2)
            for name, files in (("memory", ("memory.limit_in_bytes", "memory.max")),
                                ("pids", ("pids.max",)), ("", ("memory.max", "pids.max"))):
                if (name and name in ctrls.split(",")) or (not name and ctrls == ""):
                    base = "/sys/fs/cgroup/%s%s" % (name + "/" if name else "", path.lstrip("/"))
                    for fn in files:
                        if os.path.exists(os.path.join(base, fn)):
                            lim[fn.split(".")[0]] = open(os.path.join(base, fn)).read().strip()
    return lim


def parse_sse(text):
    events = []
    for block in text.split("\n\n"):
        ev, data = None, []
        for line in block.split("\n"):
            if line.startswith("event: "):
                ev = line[7:]
            elif line.startswith("data: "):
                data.append(line[6:])
        if ev:
            events.append((ev, json.loads("\n".join(data)) if data else None))
    return events


def recv_until(sock, marker):
    """What sock sends until marker has come (or the peer closed)."""
    got = b""
    while marker not in got:
        chunk = sock.recv(65536)
        if not chunk:
            break
        got += chunk
    return got


def wait_until(fn, timeout=60, step=0.05):
    """Poll fn() until it is true (a deadline, not a timing assumption)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = fn()
        if v:
            return v
        time.sleep(step)
    return fn()


def in_threads(fn, n):
    """Runs fn(0) .. fn(n - 1) at once, a thread each, and waits for them all."""
    ths = [threading.Thread(target=fn, args=(i,)) for i in range(n)]
    for th in ths:
        th.start()
    for th in ths:
        th.join()


class SSEStream:
    """One server-sent-event stream (a POST answered with text/event-stream,
    e.g. files/watch), read by a thread of its own into self.events: a list
    of (event, data), data made by decode() from the bytes of the data lines
    (JSON by default). self.comments counts comment lines; self.closed is
    set once the server ended the stream. Clearing self.gate stops the
    reader (with a small rcvbuf, that lets the server block on sending).
    An answer other than 200: self.error is decode() of its body."""

    def __init__(self, server, path, body=None, timeout=60, rcvbuf=None):
        self.srv = server
        self.conn = server.conn(timeout)
        self.gate = threading.Event()
        self.gate.set()
        if rcvbuf:
            import socket
            self.conn.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self.conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            self.conn.sock.settimeout(timeout)
            self.conn.sock.connect((server.host, server.port))
        self.conn.request("POST", path, body=json.dumps(body or {}).encode(),
                          headers={"Authorization": "Bearer " + server.token, "Content-Type": "application/json",
                                   "Accept": "text/event-stream"})
        self.resp = self.conn.getresponse()
        self.status = self.resp.status
        self.ctype = self.resp.getheader("Content-Type", "")
        self.events, self.comments, self.closed = [], 0, False
        self.cv = threading.Condition()
        if self.status != 200:
            self.error = self.decode(self.resp.read())
            self.conn.close()
            self.closed = True
            return
        self.th = threading.Thread(target=self._read, daemon=True)
        self.th.start()

    @staticmethod
    def decode(data):
        return json.loads(data) if data else None

    def _read(self):
        buf = b""
        try:
            while True:
                self.gate.wait()
                chunk = self.resp.read1(65536)
                if not chunk:
                    break
                buf += chunk
                while b"\n\n" in buf:
                    block, buf = buf.split(b"\n\n", 1)
                    ev, data = None, []
                    for line in block.split(b"\n"):
                        if line.startswith(b"event: "):
                            ev = line[7:].decode()
                        elif line.startswith(b"data: "):
                            data.append(line[6:])
                        elif line.startswith(b":"):
                            with self.cv:
                                self.comments += 1
                    if ev:
                        item = (ev, self.decode(b"\n".join(data)))
                        with self.cv:
                            self.events.append(item)
                            self.cv.notify_all()
        except Exception:  # noqa: BLE001  (our own close, or a timeout)
            pass
        with self.cv:
            self.closed = True
            self.cv.notify_all()

    def wait(self, pred, timeout=30):
        """Wait until pred(events) is true; returns it (or its last value)."""
        deadline = time.time() + timeout
        with self.cv:
            while True:
                v = pred(self.events)
                if v or self.closed or time.time() >= deadline:
                    return v
                self.cv.wait(min(0.2, max(0.0, deadline - time.time())))

    def wait_closed(self, timeout=30):
        deadline = time.time() + timeout
        with self.cv:
            while not self.closed and time.time() < deadline:
                self.cv.wait(0.2)
            return self.closed

    def close(self):
        try:
            self.conn.sock.shutdown(2)
        except Exception:  # noqa: BLE001
            pass
        self.conn.close()
        if hasattr(self, "th"):
            self.th.join(10)


_egress_lock = None


def need_egress(t):
    """For test files that use `network: egress`: skip without root or the
    tools; then wait for our turn. Servers with egress sandboxes share the
    host's nftables table `ip cellbox` and its veth names (one such server
    per host), so these files take turns, the lock held until the process
    ends."""
    global _egress_lock
    import fcntl
    if not can_sandbox():
        t.skip_all("needs root for namespaces and cgroups")
    for tool in ("ip", "nft", "nsenter"):
        if not shutil.which(tool):
            t.skip_all("needs %s (apt-get install iproute2 nftables util-linux)" % tool)
    if _egress_lock is None:
        _egress_lock = open("/tmp/cellbox-tests-egress.lock", "w")
        fcntl.flock(_egress_lock, fcntl.LOCK_EX)


def can_sandbox():
    return os.geteuid() == 0
