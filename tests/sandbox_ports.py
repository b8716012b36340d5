"""tests/sandbox_ports.py: exposed ports and preview URLs of `cellbox serve`,
with the real server and a real web app running inside a network-none
sandbox. Prints TAP.

The app (APP below, Python's http.server plus a hand-made WebSocket echo)
answers: /hello, /headers (what it received, as JSON), /target (the raw
request target), POST /echo (the body back, Content-Length or chunked),
/chunked (a chunked response), /stream (two chunks a second apart), /big
(20 MB), /ws (WebSocket echo), /interim (100 and 103 before the answer),
/switch (an unasked-for 101 and a forged answer after it), /wsbig (an upgrade,
then 8 MB at once), /halfclose (an upgrade; what the client sends until it
closes its half is counted, the count is the answer), /chatty (an upgrade; a
line every 10 ms for 3 s), /badnames (header names with spaces), /dribble (a head that
never ends). The server's deadline for an app's response head is 3 s here.
"""
import base64
import hashlib
import http.client
import json
import os
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sandbox_lib import TAP, Server, can_sandbox, recv_until, wait_until  # noqa: E402

APP = r'''
import base64, hashlib, json, socket, struct, sys, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a): pass
    def send_body(self, body, ctype="text/plain"):
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "max-age=60")
        self.end_headers()
        self.wfile.write(body)
    def read_body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = b""
            while True:
                n = int(self.rfile.readline().strip(), 16)
                if n == 0:
                    self.rfile.readline()
                    return out
                out += self.rfile.read(n)
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length", "0")))
    def chunk(self, data):
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()
    def switch(self, proto, *headers):
        # a 101 to the protocol, with more headers
        self.send_response(101)
        self.send_header("Upgrade", proto)
        self.send_header("Connection", "Upgrade")
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.flush()
    def do_GET(self):
        if self.path == "/hello":
            return self.send_body(b"hello from the sandbox")
        if self.path == "/headers":
            return self.send_body(json.dumps({k.lower(): v for k, v in self.headers.items()}).encode(), "application/json")
        if self.path.startswith("/target"):
            return self.send_body(self.path.encode())
        if self.path == "/interim":
            # interim answers first (RFC 9110 15.2), then the final one
            self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\n")
            self.wfile.flush()
            time.sleep(0.2)
            return self.send_body(b"final answer")
        if self.path == "/switch":
            # a hostile app: 101 to a request that asked for no upgrade, then a forged answer
            self.wfile.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: evil\r\nConnection: Upgrade\r\n\r\n"
                             b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nforged")
            self.close_connection = True
            return
        if self.path == "/dribble":
            # a head that never ends: a header line every half second
            self.wfile.write(b"HTTP/1.1 200 OK\r\n")
            for i in range(600):
                time.sleep(0.5)
                self.wfile.write(b"X-Slow-%d: 1\r\n" % i)
                self.wfile.flush()
            self.close_connection = True
            return
        if self.path == "/badnames":
            # header names that are not tokens, one of them a second framing
            self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Length : 0\r\nTransfer-Encoding : chunked\r\n"
                             b"X Bad: 1\r\n Folded: 1\r\nX-Good: 1\r\nContent-Length: 6\r\n\r\nabcdef")
            self.close_connection = True
            return
        if self.path == "/wsbig":
            # an upgraded connection on which the app sends 8 MB at once
            self.switch("websocket")
            self.connection.sendall(b"w" * (8 << 20))
            self.close_connection = True
            return
        if self.path == "/halfclose":
            # an upgrade, then all the client sends until it closes its half, then the count
            self.switch("raw")
            got = self.rfile.read()
            self.connection.sendall(b"got %d bytes" % len(got))
            self.close_connection = True
            return
        if self.path == "/chatty":
            # an upgrade on which the app sends a line every 10 ms for 3 s (and echoes what comes)
            self.switch("raw")
            s = self.connection
            s.setblocking(False)
            end = time.time() + 3
            while time.time() < end:
                try:
                    d = s.recv(65536)
                    if not d:
                        break
                except BlockingIOError:
                    pass
                s.setblocking(True)
                s.sendall(b"tick\n")
                s.setblocking(False)
                time.sleep(0.01)
            s.setblocking(True)
            self.close_connection = True
            return
        if self.path == "/big":
            return self.send_body(bytes(range(256)) * (20 * 4096))
        if self.path in ("/chunked", "/stream"):
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self.chunk(b"first;")
            if self.path == "/stream":
                time.sleep(1.5)
            self.chunk(b"second;")
            self.chunk(b"third")
            self.wfile.write(b"0\r\n\r\n")
            return
        if self.path == "/ws":
            key = self.headers["Sec-WebSocket-Key"]
            acc = base64.b64encode(hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest())
            self.switch("websocket", ("Sec-WebSocket-Accept", acc.decode()))
            s = self.connection
            while True:
                hdr = self.rfile.read(2)
                if len(hdr) < 2:
                    return
                op, ln = hdr[0] & 15, hdr[1] & 127
                if ln == 126:
                    ln = struct.unpack(">H", self.rfile.read(2))[0]
                mask = self.rfile.read(4)
                data = bytes(b ^ mask[i % 4] for i, b in enumerate(self.rfile.read(ln)))
                if op == 8:
                    return
                reply = b"echo:" + data
                s.sendall(bytes([0x81, len(reply)]) + reply)
        self.send_error(404)
    def do_HEAD(self):
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", "22")
        self.end_headers()
    def do_POST(self):
        body = self.read_body()
        self.send_body(b"got %d bytes: " % len(body) + body[:64])

ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
'''

t = TAP()
if not can_sandbox():
    t.skip_all("needs root for namespaces and cgroups")

IDS = ["port-a", "port-b"]
srv = Server(env={"CELLBOX_PREVIEW_RESPONSE_WAIT_MS": "3000"})


def preview(url_or_host, path="/", method="GET", body=None, headers=None, timeout=60):
    """A request to a preview URL, sent to the server with that Host."""
    host = url_or_host.split("//")[-1].split("/")[0]
    c = http.client.HTTPConnection(srv.host, srv.port, timeout=timeout)
    h = {"Host": host}
    h.update(headers or {})
    c.request(method, path, body=body, headers=h)
    r = c.getresponse()
    data = r.read()
    hdrs = {k.lower(): v for k, v in r.getheaders()}
    c.close()
    return r.status, hdrs, data


def start_app(sid, port):
    srv.post("/v1/sandboxes/%s/files/write" % sid, {"path": "app.py", "content": APP})
    srv.post("/v1/sandboxes/%s/processes" % sid,
             {"command": "exec python3 /workspace/app.py %d" % port, "processId": "app%d" % port})
    r = srv.post("/v1/sandboxes/%s/processes/app%d/wait" % (sid, port), {"port": port, "timeoutMs": 30000})
    return r.status == 200


def raw_exchange(data, timeout=30, half_close=False):
    """Bytes sent as they are on one connection (half_close: then its sending
    half closed); all that comes back until the server closes it (the last
    request says Connection: close)."""
    s = socket.create_connection((srv.host, srv.port), timeout=timeout)
    s.sendall(data)
    if half_close:
        s.shutdown(socket.SHUT_WR)
    got = b""
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            got += chunk
    except socket.timeout:
        got += b"<timeout>"
    s.close()
    return got


def ws_echo(host, messages):
    """A WebSocket client by hand: handshake, masked text frames, echoes."""
    s = socket.create_connection((srv.host, srv.port), timeout=30)
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall(("GET /ws HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n" % (host, key)).encode())
    head = recv_until(s, b"\r\n\r\n")
    head, _, rest = head.partition(b"\r\n\r\n")
    want = base64.b64encode(hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest())
    ok = head.startswith(b"HTTP/1.1 101") and want in head
    got = []
    buf = rest
    for m in messages:
        data = m.encode()
        mask = os.urandom(4)
        s.sendall(bytes([0x81, 0x80 | len(data)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data)))
        while len(buf) < 2 or len(buf) < 2 + buf[1]:
            chunk = s.recv(4096)
            if not chunk:
                break
            buf += chunk
        if len(buf) >= 2:
            n = buf[1] & 127
            got.append(buf[2:2 + n].decode())
            buf = buf[2 + n:]
    s.sendall(bytes([0x88, 0x80]) + os.urandom(4))
    s.close()
    return ok, head, got


try:
    srv.create("port-a")
    srv.create("port-b")
    t.ok(start_app("port-a", 8080), "a web app runs in a network-none sandbox")

    # ---- the API --------------------------------------------------------------
    r = srv.post("/v1/sandboxes/port-a/ports", {"port": 8080, "name": "site"})
    t.eq(r.status, 201, "expose: 201")
    info = r.json()
    url = info.get("url", "")
    t.ok(info.get("port") == 8080 and info.get("name") == "site" and info.get("status") == "active"
         and url.startswith("http://8080-port-a-") and (".localhost:%d/" % srv.port) in url,
         "expose returns port, name, status and the preview URL", info)
    tok = info.get("token", "")
    t.ok(len(tok) == 16 and tok.isalnum() and tok == tok.lower() and ("-%s." % tok) in url,
         "a generated token: 16 characters [a-z0-9], in the URL", tok)
    r = srv.post("/v1/sandboxes/port-a/ports", {"port": 8080})
    t.ok(r.status == 409 and r.code == "PORT_ALREADY_EXPOSED", "exposing twice: 409 PORT_ALREADY_EXPOSED", r)
    bad = [{"port": 80}, {"port": 70000}, {"port": "8080"}, {"port": 8080.5}, {}, {"port": srv.port}]
    codes = [srv.post("/v1/sandboxes/port-a/ports", b) for b in bad]
    t.ok(all(c.status == 400 and c.code == "INVALID_PORT_NUMBER" for c in codes),
         "ports below 1024, above 65535, not integers, missing or the server's own: 400 INVALID_PORT_NUMBER",
         codes)
    r = srv.post("/v1/sandboxes/port-a/ports", {"port": 9000, "token": "Bad-Token"})
    t.ok(r.status == 400 and r.code == "VALIDATION_FAILED", "a custom token outside [a-z0-9_]: 400", r)
    r = srv.post("/v1/sandboxes/port-a/ports", {"port": 9000, "token": "my_token1"})
    t.ok(r.status == 201 and r.json()["url"].startswith("http://9000-port-a-my_token1.localhost:"),
         "a custom token is used in the URL", r)
    lst = srv.get("/v1/sandboxes/port-a/ports").json().get("ports", [])
    t.eq(sorted(p["port"] for p in lst), [8080, 9000], "list exposed ports")
    r = srv.get("/v1/sandboxes/port-a/ports/8080")
    t.ok(r.status == 200 and r.json()["url"] == url, "get one exposed port", r)
    r = srv.get("/v1/sandboxes/port-a/ports/8081")
    t.ok(r.status == 404 and r.code == "PORT_NOT_EXPOSED", "a port not exposed: 404 PORT_NOT_EXPOSED", r)
    r = srv.get("/v1/sandboxes/port-a/ports/http")
    t.ok(r.status == 400 and r.code == "INVALID_PORT_NUMBER", "a port that is not a number: 400", r)
    r = srv.get("/v1/sandboxes/nope/ports")
    t.ok(r.status == 404 and r.code == "SANDBOX_NOT_FOUND", "ports of an unknown sandbox: 404", r)

    # ---- the proxy ----------------------------------------------------------------
    st, h, body = preview(url, "/hello")
    t.ok(st == 200 and body == b"hello from the sandbox", "the preview URL reaches the app (no bearer token)",
         (st, body[:200]))
    t.ok(h.get("cache-control") == "max-age=60" and h.get("content-type") == "text/plain",
         "the app's own headers come through unchanged", h)
    out = subprocess.run(["curl", "-s", "--max-time", "60", url + "hello"], capture_output=True)
    t.ok(out.returncode == 0 and out.stdout == b"hello from the sandbox",
         "curl follows the URL as given (*.localhost is loopback)", out)
    st, h, body = preview(url, "/headers", headers={"X-Forwarded-For": "6.6.6.6", "X-Forwarded-Host": "evil",
                                                    "X-Custom": "kept", "Authorization": "Bearer app-token"})
    seen = json.loads(body) if st == 200 else {}
    t.ok(seen.get("x-forwarded-for") == "127.0.0.1" and seen.get("x-forwarded-proto") == "http"
         and seen.get("x-forwarded-host", "").startswith("8080-port-a-"),
         "X-Forwarded-For/Proto/Host are the proxy's, not the client's", seen)
    t.ok(seen.get("x-custom") == "kept" and seen.get("authorization") == "Bearer app-token"
         and seen.get("host", "").startswith("8080-port-a-"),
         "other headers, Authorization and the original Host reach the app", seen)
    st, h, body = preview(url, "/target/a%20b/%2F?q=1&r=%26")
    t.ok(st == 200 and body == b"/target/a%20b/%2F?q=1&r=%26", "the request target is forwarded as sent", body)
    st, h, body = preview(url, "/echo", "POST", body=b"x" * 100000, headers={"Content-Type": "text/plain"})
    t.ok(st == 200 and body.startswith(b"got 100000 bytes: xxx"), "a POST body reaches the app", body[:80])

    def chunked_body():
        yield b"part one, "
        yield b"part two"
    c = http.client.HTTPConnection(srv.host, srv.port, timeout=60)
    c.request("POST", "/echo", body=chunked_body(), headers={"Host": url.split("//")[1].split("/")[0]},
              encode_chunked=True)
    r = c.getresponse()
    body = r.read()
    c.close()
    t.ok(r.status == 200 and body == b"got 18 bytes: part one, part two", "a chunked request body", body)
    st, h, body = preview(url, "/chunked")
    t.ok(st == 200 and body == b"first;second;third", "a chunked response is decoded and relayed", (st, body))
    st, h, body = preview(url, "/big", timeout=120)
    t.ok(st == 200 and body == bytes(range(256)) * (20 * 4096) and h.get("content-length") == str(20 << 20),
         "20 MB with its Content-Length", (st, len(body), h.get("content-length")))
    st, h, body = preview(url, "/hello", "HEAD")
    t.ok(st == 200 and body == b"" and h.get("content-length") == "22", "HEAD: headers only, the length kept",
         (st, h))
    st, h, body = preview(url, "/missing")
    t.eq(st, 404, "the app's own 404 comes through")

    # streaming: the first chunk arrives before the app sends the second
    c = http.client.HTTPConnection(srv.host, srv.port, timeout=60)
    c.request("GET", "/stream", headers={"Host": url.split("//")[1].split("/")[0]})
    r = c.getresponse()
    t0 = time.time()
    first = r.read1(100)
    t_first = time.time() - t0
    rest = r.read()
    c.close()
    t.ok(first == b"first;" and rest == b"second;third" and t_first < 1.2,
         "a streamed response is relayed as it comes (first part before the pause)", (first, rest, t_first))

    ok, head, got = ws_echo(url.split("//")[1].split("/")[0], ["one", "two", "x" * 100])
    t.ok(ok, "WebSocket: 101 with the app's Sec-WebSocket-Accept", head)
    t.eq(got, ["echo:one", "echo:two", "echo:" + "x" * 100], "WebSocket: messages go both ways")

    # ---- framing: one connection, answers in order ------------------------------------------
    ph = url.split("//")[1].split("/")[0]
    nxt = "GET /hello HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n" % ph
    got = raw_exchange(("GET /interim HTTP/1.1\r\nHost: %s\r\n\r\n" % ph + nxt).encode())
    t.ok(got.startswith(b"HTTP/1.1 200 ") and got.count(b"HTTP/1.1 ") == 2 and b"HTTP/1.1 1" not in got
         and got.index(b"final answer") < got.index(b"hello from the sandbox"),
         "the app's interim 100 and 103 are not relayed as its answer: the next request on the "
         "connection gets its own answer", got)
    got = raw_exchange(("GET /switch HTTP/1.1\r\nHost: %s\r\n\r\n" % ph + nxt).encode())
    t.ok(got.startswith(b"HTTP/1.1 502 ") and b"SERVICE_NOT_RESPONDING" in got and b"forged" not in got
         and b" 101 " not in got and got.count(b"HTTP/1.1 ") == 2 and got.endswith(b"hello from the sandbox"),
         "an app's 101 to a request without Upgrade: 502, nothing of it relayed, the next request answered",
         got)
    for what, hdrs in [("Content-Length and Transfer-Encoding", "Content-Length: 5\r\nTransfer-Encoding: chunked"),
                       ("Transfer-Encoding other than chunked", "Transfer-Encoding: gzip, chunked"),
                       ("Transfer-Encoding: identity", "Transfer-Encoding: identity"),
                       ("Transfer-Encoding twice", "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked"),
                       ("two Host headers", "Host: other"),
                       ("a space before a header's colon", "Content-Length : 5")]:
        req = "POST /echo HTTP/1.1\r\nHost: %s\r\n%s\r\n\r\n0\r\n\r\n" % (ph, hdrs) + nxt
        got = raw_exchange(req.encode(), timeout=10)
        t.ok(got.startswith(b"HTTP/1.1 400 ") and b"VALIDATION_FAILED" in got and got.count(b"HTTP/1.1 ") == 1,
             "preview request with %s: 400 and the connection closed (nothing after it is read as a "
             "request, nothing reaches the app)" % what, got)
    got = raw_exchange(("POST /v1/sandboxes/port-a/exec HTTP/1.1\r\nHost: %s:%d\r\nAuthorization: Bearer %s\r\n"
                        "Transfer-Encoding: identity\r\n\r\n{\"command\":\"true\"}" % (srv.host, srv.port, srv.token)
                        ).encode(), timeout=10)
    t.ok(got.startswith(b"HTTP/1.1 400 ") and b"Transfer-Encoding" in got,
         "API request with a Transfer-Encoding other than chunked: 400, not a body read until the "
         "connection closes", got)

    for what, target in [("a bare CR", "/target\rX-Forwarded-For: 6.6.6.6\r"), ("a space", "/target a"),
                         ("a tab", "/target\ta"), ("a control character", "/target\x0ba")]:
        got = raw_exchange(("GET %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (target, ph) + nxt).encode(), timeout=10)
        t.ok(got.startswith(b"HTTP/1.1 400 ") and b"VALIDATION_FAILED" in got and got.count(b"HTTP/1.1 ") == 1
             and b"6.6.6.6" not in got,
             "a preview request target with %s is 400 (closed), not forwarded for the app to read as a "
             "line of its own" % what, got)
    got = raw_exchange(("GET /target/caf\xc3\xa9?q=%%20 HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n"
                        % ph).encode("latin-1"))
    # (the app reads the line as Latin-1 and answers its path in UTF-8)
    t.ok(got.startswith(b"HTTP/1.1 200 ") and got.endswith("/target/caf\u00c3\u00a9?q=%20".encode()),
         "a target with raw UTF-8 bytes and escapes still goes through as sent", got)
    got = raw_exchange(("GET /v1/health HTTP/1.1\r\nHost: %s:%d\r\nContent-Length : 47\r\n\r\n"
                        "GET /v1/health HTTP/1.1\r\nHost: %s:%d\r\n\r\n" % (srv.host, srv.port, srv.host, srv.port)
                        ).encode(), timeout=10)
    t.ok(got.startswith(b"HTTP/1.1 400 ") and got.count(b"HTTP/1.1 ") == 1,
         "API request with \"Content-Length : N\" (a length a proxy in front may honour): 400 and closed, "
         "its body is not served as a second request", got)
    got = raw_exchange(("GET /badnames HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n" % ph).encode())
    head, _, body = got.partition(b"\r\n\r\n")
    names = [ln.split(b":")[0] for ln in head.split(b"\r\n")[1:]]
    t.ok(head.startswith(b"HTTP/1.1 200 ") and body == b"abcdef" and b"X-Good" in names
         and all(n and b" " not in n and b"\t" not in n for n in names),
         "the app's header names with spaces (\"Content-Length : 0\") are not relayed (libmicrohttpd "
         "refuses them)", got)

    t0 = time.time()
    try:
        st, h, body = preview(url, "/dribble", timeout=20)
    except OSError as e:
        st, body = 0, repr(e).encode()
    took = time.time() - t0
    t.ok(st == 502 and b"SERVICE_NOT_RESPONDING" in body and took < 10,
         "an app that dribbles its response head (a line every 0.5 s): 502 at the head's deadline "
         "(3 s here), not held for ever (%.1f s)" % took, (st, body[:200]))

    # ---- the API token never reaches the app ---------------------------------------------
    st, h, body = preview(url, "/headers", headers={"Authorization": "Bearer " + srv.token,
                                                    "Sec-WebSocket-Protocol": "chat, cellbox.bearer." + srv.token,
                                                    "X-Other": "kept"})
    seen = json.loads(body) if st == 200 else {}
    t.ok(st == 200 and seen.get("x-other") == "kept" and "authorization" not in seen
         and "sec-websocket-protocol" not in seen and srv.token not in body.decode(),
         "a preview request carrying the API's bearer token: the header is not forwarded to the app", seen)
    for cred in ("x:" + srv.token, srv.token + ":", srv.token):
        for pad in (True, False):
            b64 = base64.b64encode(cred.encode()).decode()
            st, h, body = preview(url, "/headers", headers={"Authorization": "basic  " + (b64 if pad else b64.rstrip("=")),
                                                            "X-Other": "kept"})
            seen = json.loads(body) if st == 200 else {}
            t.ok(st == 200 and seen.get("x-other") == "kept" and "authorization" not in seen,
                 "the API token inside Basic credentials (%s, %s): the header is not forwarded to the app"
                 % ("user:token" if cred.startswith("x:") else "token:" if cred.endswith(":") else "token alone",
                    "padded" if pad else "unpadded"), seen)
    st, h, body = preview(url, "/headers", headers={"Authorization": "Basic " + base64.b64encode(b"app:pw").decode()})
    seen = json.loads(body) if st == 200 else {}
    t.ok(st == 200 and seen.get("authorization") == "Basic " + base64.b64encode(b"app:pw").decode(),
         "the app's own Basic credentials are forwarded", seen)

    # a slow reader of an upgraded connection gets all of it (the relay waits for it)
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
    s.settimeout(60)
    s.connect((srv.host, srv.port))
    s.sendall(("GET /wsbig HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
               % ph).encode())
    time.sleep(2)  # not reading: the app's 8 MB fill every buffer on the way
    got = b""
    try:
        while True:
            chunk = s.recv(1 << 20)
            if not chunk:
                break
            got += chunk
    except socket.timeout:
        pass
    s.close()
    head, _, rest = got.partition(b"\r\n\r\n")
    t.ok(head.startswith(b"HTTP/1.1 101") and rest == b"w" * (8 << 20),
         "upgraded connection, a client reading slowly: all 8 MB arrive, not cut at a full socket",
         (head[:60], len(rest)))

    # a client that closes its sending half (as `nc -N` does) still gets the app's answer
    got = raw_exchange(("GET /halfclose HTTP/1.1\r\nHost: %s\r\nUpgrade: raw\r\nConnection: Upgrade\r\n\r\n"
                        % ph).encode() + b"x" * 100000, half_close=True)
    t.ok(got.startswith(b"HTTP/1.1 101") and got.endswith(b"\r\n\r\ngot 100000 bytes"),
         "upgraded connection, the client closes its sending half: the app sees the end of the input and its "
         "answer still reaches the client", got[-80:])

    # a client sending without a pause does not hold back what the app sends
    s = socket.create_connection((srv.host, srv.port), timeout=30)
    s.sendall(("GET /chatty HTTP/1.1\r\nHost: %s\r\nUpgrade: raw\r\nConnection: Upgrade\r\n\r\n"
               % ph).encode())
    s.setblocking(False)
    got, end = b"", time.time() + 2.5
    while time.time() < end:
        try:
            s.send(b"y" * 1024)
        except BlockingIOError:
            pass
        try:
            got += s.recv(65536)
        except BlockingIOError:
            pass
    s.close()
    ticks = got.count(b"tick\n")
    t.ok(ticks >= 20, "upgraded connection, a client that sends without a pause: the app's lines still arrive "
         "(%d in 2.5 s)" % ticks, got[:200])

    # ---- wrong addresses -----------------------------------------------------------------
    wrong = url.replace("-%s." % tok, "-%s." % ("a" * 16))
    st, h, body = preview(wrong, "/hello")
    t.ok(st == 404 and json.loads(body)["error"]["code"] == "PORT_NOT_EXPOSED", "a wrong token: 404", body)
    st, h, body = preview(url.replace("8080-", "8081-"), "/hello")
    t.eq(st, 404, "a port not exposed: 404")
    st, h, body = preview(url.replace("-port-a-", "-port-zz-"), "/hello")
    t.ok(st == 404 and b"PORT_NOT_EXPOSED" in body, "an unknown sandbox: the same 404", body)
    st, h, body = preview("9000-port-a-my_token1.localhost:%d" % srv.port, "/hello")
    t.ok(st == 502 and json.loads(body)["error"]["code"] == "SERVICE_NOT_RESPONDING",
         "an exposed port where nothing listens: 502 SERVICE_NOT_RESPONDING", (st, body))
    st, h, body = preview("localhost:%d" % srv.port, "/v1/sandboxes")
    t.eq(st, 401, "a host that is not a preview host is the API (and needs the token)")
    st, h, body = preview("8080-port-a-%s.example.com" % tok, "/v1/sandboxes")
    t.eq(st, 401, "a preview-looking host of another domain is the API too")
    r = srv.get("/v1/health", token=False)
    t.eq(r.status, 200, "the server is healthy after all of it")

    # ---- unexpose, restart ----------------------------------------------------------------
    r = srv.delete("/v1/sandboxes/port-a/ports/9000")
    t.ok(r.status == 200 and r.json().get("success") is True, "unexpose: 200", r)
    r = srv.delete("/v1/sandboxes/port-a/ports/9000")
    t.ok(r.status == 404 and r.code == "PORT_NOT_EXPOSED", "unexpose twice: 404 PORT_NOT_EXPOSED", r)
    st, h, body = preview("9000-port-a-my_token1.localhost:%d" % srv.port, "/hello")
    t.eq(st, 404, "an unexposed port's URL stops working")
    t.eq(srv.stop(), 0, "SIGTERM: exit 0")
    srv.start()
    lst = srv.get("/v1/sandboxes/port-a/ports").json().get("ports", [])
    t.ok(len(lst) == 1 and lst[0]["port"] == 8080 and lst[0]["token"] == tok,
         "exposed ports survive a server restart, with their tokens", lst)
    t.ok(start_app("port-a", 8080), "the app starts again after the restart")
    url2 = lst[0]["url"] if lst else url
    st, h, body = preview(url2, "/hello")
    t.ok(st == 200 and body == b"hello from the sandbox", "and the preview URL works again", (st, body[:100]))
finally:
    srv.finish(t, IDS, "final graceful stop")
t.done()
