"""Bad input never crashes or hangs the kernel: garbage frames, bad or
replayed signatures, malformed JSON, unknown message types, missing fields,
oversized messages; and bad connection files or ports in use give a clear
message and a non-zero exit. Raw pyzmq sockets, real kernel. Output: TAP."""
import datetime
import hashlib
import hmac
import json
import os
import socket
import subprocess
import time
import uuid

import zmq

import kutil

tap = kutil.TAP()
KEY = b"s3cret-key"


def free_ports(n):
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


def conn_file(path, key=KEY, **over):
    ports = free_ports(5)
    info = {"transport": "tcp", "ip": "127.0.0.1", "shell_port": ports[0], "iopub_port": ports[1],
            "stdin_port": ports[2], "control_port": ports[3], "hb_port": ports[4],
            "key": key.decode(), "signature_scheme": "hmac-sha256", "kernel_name": "cellbox"}
    info.update(over)
    with open(path, "w") as f:
        json.dump(info, f)
    return info


class Client:
    def __init__(self, info):
        self.ctx = zmq.Context()
        self.info = info

        def sock(kind, port, opts=()):
            s = self.ctx.socket(kind)
            s.setsockopt(zmq.LINGER, 0)
            s.setsockopt(zmq.RECONNECT_IVL, 10)
            for k, v in opts:
                s.setsockopt(k, v)
            s.connect("tcp://127.0.0.1:%d" % port)
            return s

        self.shell = sock(zmq.DEALER, info["shell_port"])
        self.control = sock(zmq.DEALER, info["control_port"])
        self.iopub = sock(zmq.SUB, info["iopub_port"], [(zmq.SUBSCRIBE, b"")])
        self.hb = sock(zmq.REQ, info["hb_port"])

    def wait_ready(self, timeout=30):
        """Like jupyter_client: a reply to kernel_info AND IOPub traffic."""
        end = time.time() + timeout
        while time.time() < end:
            if self.request("kernel_info_request", {}, timeout=1) is not None and self.iopub.poll(500):
                while self.iopub.poll(100):
                    self.iopub.recv_multipart()
                return True
        return False

    def frames(self, msg_type, content, key=KEY, header=None):
        h = header if header is not None else json.dumps({
            "msg_id": uuid.uuid4().hex, "session": "s", "username": "t", "msg_type": msg_type,
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(), "version": "5.3"}).encode()
        c = content if isinstance(content, bytes) else json.dumps(content).encode()
        parts = [h, b"{}", b"{}", c]
        sig = hmac.new(key, b"".join(parts), hashlib.sha256).hexdigest().encode() if key else b""
        return [b"<IDS|MSG>", sig] + parts

    def recv(self, sock, timeout=5):
        if sock.poll(timeout * 1000):
            f = sock.recv_multipart()
            i = f.index(b"<IDS|MSG>")
            return json.loads(f[i + 2]), json.loads(f[i + 5])
        return None

    def request(self, msg_type, content, sock=None, timeout=5):
        sock = sock or self.shell
        sock.send_multipart(self.frames(msg_type, content))
        return self.recv(sock, timeout)

    def alive(self):
        r = self.request("kernel_info_request", {})
        r2 = self.request("execute_request", {"code": "40 + 2", "silent": False})
        return r is not None and r[0]["msg_type"] == "kernel_info_reply" and r2 is not None and r2[1]["status"] == "ok"

    def close(self):
        self.ctx.destroy(0)


def start_kernel(path, env=None):
    e = dict(os.environ)
    e.update(env or {})
    return subprocess.Popen([kutil.CELLBOX, "kernel", "-f", path], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=e)


cf = os.path.join(kutil.TMP, "bad.json")
info = conn_file(cf)
proc = start_kernel(cf, {"CELLBOX_MAX_MESSAGE_BYTES": str(1 << 20), "CELLBOX_LOG": "warn"})
c = Client(info)
tap.ok(c.wait_ready() and c.alive(), "kernel answers")

c.shell.send_multipart([b"garbage"])
c.shell.send_multipart([b"\xff\x00" * 50, b"more", b"frames"])
c.control.send_multipart([b"garbage on control"])
tap.ok(c.alive(), "garbage frames (no delimiter) are dropped")

c.shell.send_multipart([b"<IDS|MSG>", b"sig", b"{}"])
tap.ok(c.alive(), "too few frames are dropped")

c.shell.send_multipart(c.frames("execute_request", {"code": "bad_sig_ran = 1"}, key=b"wrong-key"))
tap.ok(c.request("execute_request", {"code": "'bad_sig_ran' in globals()"}) is not None, "kernel answers after a bad signature")
r = c.request("execute_request", {"code": "print('bad_sig_ran' in globals())"})
time.sleep(0.2)
got = []
while c.iopub.poll(200):
    f = c.iopub.recv_multipart()
    i = f.index(b"<IDS|MSG>")
    h, content = json.loads(f[i + 2]), json.loads(f[i + 5])
    got.append((h["msg_type"], content.get("text")))
tap.ok(("stream", "False\n") in got, "a message with a wrong signature is never executed", got)

fr = c.frames("execute_request", {"code": "replayed = globals().get('replayed', 0) + 1"})
c.shell.send_multipart(fr)
c.recv(c.shell)
c.shell.send_multipart(fr)
tap.ok(c.recv(c.shell, timeout=1) is None, "a replayed message is dropped")
r = c.request("execute_request", {"code": "replayed", "user_expressions": {"n": "replayed"}})
tap.ok(r and r[1]["user_expressions"]["n"]["data"]["text/plain"] == "1", "the replay did not run", r)

c.shell.send_multipart(c.frames("execute_request", {}, header=b"{not json"))
tap.ok(c.alive(), "malformed header JSON is dropped")
r = c.request("execute_request", b"{not json")
tap.ok(r and r[0]["msg_type"] == "execute_reply" and r[1]["status"] == "error", "malformed content JSON gets an error reply", r)
r = c.request("execute_request", {"silent": False})
tap.ok(r and r[1]["status"] == "error" and "code" in r[1]["evalue"], "missing field gets an error reply naming it", r)
r = c.request("complete_request", {"code": 5})
tap.ok(r and r[1]["status"] == "error", "mistyped field gets an error reply", r)
r = c.request("frobnicate_request", {})
tap.ok(r and r[0]["msg_type"] == "frobnicate_reply" and r[1]["status"] == "error", "unknown *_request gets an error reply", r)
c.shell.send_multipart(c.frames("frobnicate", {}))
tap.ok(c.alive(), "unknown message type is logged and dropped")
r = c.request("frobnicate_request", {}, sock=c.control)
tap.ok(r and r[1]["status"] == "error", "unknown request on control gets an error reply", r)

big = c.frames("execute_request", {"code": "x = '" + "a" * (2 << 20) + "'"})
c.shell.send_multipart(big)
time.sleep(0.5)
tap.ok(c.alive(), "an oversized frame is refused, the kernel still answers")
c.shell.send_multipart(c.frames("comm_msg", {"comm_id": "x", "data": {}}) + [b"b" * (600 << 10)] * 3)
time.sleep(0.3)
tap.ok(c.alive(), "an oversized multi-frame message is dropped, the kernel still answers")

# U+0000: JSON keeps it ("\u0000"); a C string would end there and run a prefix
def iopub_of(msg_id, timeout=5):
    out, end = [], time.time() + timeout
    while time.time() < end and c.iopub.poll(200):
        f = c.iopub.recv_multipart()
        i = f.index(b"<IDS|MSG>")
        h, p, content = json.loads(f[i + 2]), json.loads(f[i + 3]), json.loads(f[i + 5])
        if p.get("msg_id") != msg_id:
            continue
        if h["msg_type"] == "status" and content["execution_state"] == "idle":
            break
        out.append((h["msg_type"], content))
    return out


def execute(code, **extra):
    fr = c.frames("execute_request", dict({"code": code, "silent": False}, **extra))
    mid = json.loads(fr[2])["msg_id"]
    c.shell.send_multipart(fr)
    return c.recv(c.shell), iopub_of(mid)


r, pub = execute("print(1)\0print(2)")
tap.ok(r and r[1]["status"] == "error" and r[1]["ename"] == "ValueError" and "null bytes" in r[1]["evalue"],
       "code holding a NUL is refused as Python refuses it, not cut at the NUL", r)
tap.ok(("execute_input", {"code": "print(1)\0print(2)", "execution_count": r[1]["execution_count"]}) in pub
       and not [m for m in pub if m[0] == "stream"], "execute_input carries the whole code; nothing ran", pub)
r, pub = execute("s = '\\\\u0000'\nprint(len(s), s[0] == chr(92))")
tap.ok(r and r[1]["status"] == "ok" and ("stream", {"name": "stdout", "text": "6 True\n"}) in pub,
       "an escaped backslash before u0000 is not a NUL", (r, pub))
r, pub = execute("import comm\ngot = []\ncomm.get_comm_manager().register_target('nul', "
                 "lambda cm, msg: (got.append(msg['content']['data']), cm.on_msg(lambda m: got.append(m['content']['data']))))")
tap.ok(r and r[1]["status"] == "ok", "a comm target is registered", r)
c.shell.send_multipart(c.frames("comm_open", {"comm_id": "c-nul", "target_name": "nul", "data": {"v": "a\0b"}}))
c.shell.send_multipart(c.frames("comm_msg", {"comm_id": "c-nul", "data": {"w": ["\0", "x\0"]}}))
time.sleep(0.3)
r, pub = execute("print(repr(got))")
tap.ok(("stream", {"name": "stdout", "text": "[{'v': 'a\\x00b'}, {'w': ['\\x00', 'x\\x00']}]\n"}) in pub,
       "NULs in comm_open and comm_msg data reach Python", pub)
ident = b"nul-client"
sh = c.ctx.socket(zmq.DEALER)
sh.setsockopt(zmq.IDENTITY, ident)
sh.setsockopt(zmq.LINGER, 0)
sh.connect("tcp://127.0.0.1:%d" % info["shell_port"])
si = c.ctx.socket(zmq.DEALER)
si.setsockopt(zmq.IDENTITY, ident)
si.setsockopt(zmq.LINGER, 0)
si.connect("tcp://127.0.0.1:%d" % info["stdin_port"])
time.sleep(0.2)
sh.send_multipart(c.frames("execute_request", {"code": "v = input('?')\nprint(repr(v))", "silent": False,
                                                "allow_stdin": True}))
asked = c.recv(si, timeout=10)
tap.ok(asked and asked[0]["msg_type"] == "input_request", "input_request on stdin", asked)
si.send_multipart(c.frames("input_reply", {"value": "x\0y\0"}))
r = c.recv(sh, timeout=10)
time.sleep(0.2)
r2, pub = execute("print(repr(v))")
tap.ok(r and r[1]["status"] == "ok" and ("stream", {"name": "stdout", "text": "'x\\x00y\\x00'\n"}) in pub,
       "a NUL in input_reply's value reaches input()", (r, pub))
sh.close()
si.close()

c.hb.send(b"ping")
tap.ok(c.hb.poll(5000) and c.hb.recv() == b"ping", "heartbeat echoes")

c.control.send_multipart(c.frames("shutdown_request", {"restart": False}))
r = c.recv(c.control)
tap.ok(r and r[1] == {"status": "ok", "restart": False}, "shutdown reply", r)
try:
    rc = proc.wait(10)
except subprocess.TimeoutExpired:
    proc.kill()
    rc = None
tap.eq(rc, 0, "kernel exits 0 after shutdown")
err = proc.stderr.read().decode()
tap.ok("invalid HMAC signature" in err and "replayed" in err and "size limit" in err,
       "drops are logged with their reason", err)
c.close()

# connection file problems
p = subprocess.run([kutil.CELLBOX, "kernel", "-f", os.path.join(kutil.TMP, "missing.json")],
                   capture_output=True, text=True, timeout=10)
tap.ok(p.returncode != 0 and "cannot read connection file" in p.stderr, "missing connection file", p.stderr)
bad = os.path.join(kutil.TMP, "broken.json")
open(bad, "w").write("{ not json")
p = subprocess.run([kutil.CELLBOX, "kernel", "-f", bad], capture_output=True, text=True, timeout=10)
tap.ok(p.returncode != 0 and "invalid connection file" in p.stderr, "invalid JSON connection file", p.stderr)
conn_file(bad, shell_port="x")
p = subprocess.run([kutil.CELLBOX, "kernel", "-f", bad], capture_output=True, text=True, timeout=10)
tap.ok(p.returncode != 0 and "shell_port" in p.stderr, "bad port field named", p.stderr)
info = conn_file(bad)
holder = socket.socket()
holder.bind(("127.0.0.1", info["iopub_port"]))
holder.listen()
p = subprocess.run([kutil.CELLBOX, "kernel", "-f", bad], capture_output=True, text=True, timeout=10)
holder.close()
tap.ok(p.returncode != 0 and "iopub" in p.stderr and "in use" in p.stderr, "port in use: clear message, non-zero exit", p.stderr)
p = subprocess.run([kutil.CELLBOX, "kernel"], capture_output=True, text=True, timeout=10)
tap.ok(p.returncode == 2 and "CONNECTION_FILE" in p.stderr, "no -f: usage error")
