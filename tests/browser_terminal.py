"""A terminal in a real browser: docs/api.md's xterm.js example, taken from
the docs as written, runs in Debian's headless Chromium (driven by
playwright-core from npm) against a real `cellbox serve`, with xterm.js from
npm (@xterm/xterm). The page connects with the token as a WebSocket
subprotocol (what a browser must do), a user types a command and Ctrl-C,
the terminal is resized, the shell exits; the test checks the screen.
The screenshot is kept as tests/browser_terminal.png in the build folder.
Skipped (not failed) when chromium, node, playwright-core or xterm.js is
missing. Output: TAP."""
import http.server
import json
import os
import re
import shutil
import sys
import tempfile
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import browser_util  # noqa: E402
from sandbox_lib import TAP, Server, can_sandbox  # noqa: E402

t = TAP()
HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.environ.get("CELLBOX_SRCDIR") or os.path.dirname(HERE)
BUILD = os.environ.get("CELLBOX_BUILDDIR") or os.path.dirname(HERE)
SHOT = os.path.join(BUILD, "tests", "browser_terminal.png")
if not can_sandbox():
    t.skip_all("needs root for namespaces and cgroups")
missing = browser_util.missing("playwright-core", "@xterm/xterm")
if missing:
    t.skip_all("missing: " + ", ".join(missing))


def docs_example():
    """The xterm.js block of docs/api.md, as a user copies it."""
    with open(os.path.join(SRC, "docs", "api.md")) as f:
        doc = f.read()
    m = re.search(r"Browser \(xterm\.js[^\n]*\n(?:[^\n]+\n)*\n```js\n(.*?)```", doc, re.S)
    return m.group(1) if m else None


srv = Server()
page_dir = tempfile.mkdtemp(prefix="cellbox-term-page-")
httpd = None
try:
    srv.create("term-a")
    js = docs_example()
    t.ok(js and "new WebSocket(url, [`cellbox.bearer.${token}`])" in js, "docs/api.md has the xterm.js example", js)
    # the only edits: where the server is, and which sandbox
    js = js.replace("wss://cellbox.example.com", "ws://%s:%d" % (srv.host, srv.port)).replace("my-box", "term-a")
    xterm = browser_util.module_dir("@xterm/xterm")
    shutil.copy(os.path.join(xterm, "lib", "xterm.js"), page_dir)
    shutil.copy(os.path.join(xterm, "css", "xterm.css"), page_dir)
    with open(os.path.join(page_dir, "index.html"), "w") as f:
        f.write("""<!doctype html>
<html><head><meta charset="utf-8"><link rel="stylesheet" href="xterm.css">
<script src="xterm.js"></script></head>
<body><div id="terminal" style="width: 900px; height: 500px"></div>
<script>const token = %s;</script>
<script>
%s</script></body></html>
""" % (json.dumps(srv.token), js))

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **kw):
            super().__init__(*a, directory=page_dir, **kw)

        def log_message(self, *a):
            pass

    # the page comes from another origin than the API, as in a real web app
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    url = "http://127.0.0.1:%d/index.html" % httpd.server_address[1]
    if os.path.exists(SHOT):
        os.unlink(SHOT)
    res = browser_util.run_driver(os.path.join(HERE, "browser_terminal.js"), url, SHOT)
    diag = json.dumps(res, indent=1)[:4000]
    c = res.get("checks", {})
    t.ok(not res.get("error"), "the browser ran the page", diag)
    t.ok(c.get("connected"), "the WebSocket opens with the token as a subprotocol", diag)
    t.eq(res.get("details", {}).get("protocol"), "cellbox.bearer." + srv.token,
         "the server answers with that subprotocol")
    t.ok(c.get("prompt"), "the shell's prompt shows in xterm.js", diag)
    t.ok(c.get("output"), "typed `echo $((6*7))` + Enter: 42 on the screen", diag)
    t.ok(c.get("resize"), "term.resize(100, 30) reaches the shell: `stty size` says 30 100", diag)
    t.ok(c.get("ctrl_c") and c.get("not_interrupted_absent"),
         "Ctrl-C typed in the page interrupts `sleep 30`, the shell goes on", diag)
    t.ok(c.get("exit"), "`exit 3`: the example shows [exited with 3]", diag)
    t.ok(c.get("closed"), "and the server closes the WebSocket", diag)
    t.ok(os.path.exists(SHOT) and os.path.getsize(SHOT) > 5000, "screenshot kept: %s" % SHOT)
    # nothing of the terminal is left running in the sandbox
    x = srv.sh("term-a", "ps -eo args= | grep -c '[s]leep 30' || true")
    t.eq(x["stdout"].strip(), "0", "no process of the terminal is left in the sandbox")
finally:
    if httpd:
        httpd.shutdown()
    shutil.rmtree(page_dir, ignore_errors=True)
    rc = srv.stop()
    t.eq(rc, 0, "graceful stop")
    left = srv.leftovers(["term-a"])
    t.ok(not left, "nothing left behind", left)
    srv.cleanup()
t.done()
