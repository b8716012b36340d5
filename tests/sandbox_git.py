#!/usr/bin/env python3
"""tests/sandbox_git.py: POST /v1/sandboxes/{id}/git/checkout (gitCheckout).

Real server, real namespaces. Repositories are made inside the sandbox
(bare repos with two branches and three commits), cloned by file:// URL and
by absolute path, with branch and depth; then the errors: targetDir in use,
bad and unknown branches, option injection in the URL and the branch
(refused before git runs: the canary file of --upload-pack never appears),
hostile quoting in targetDir, an address the network: none sandbox cannot
reach (GIT_CLONE_FAILED, no internet needed), a clone that hangs (TIMEOUT,
partial folder removed) and a session without git on its PATH
(GIT_NOT_AVAILABLE). Prints TAP.
"""
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sandbox_lib import TAP, Server, can_sandbox, wait_until  # noqa: E402

t = TAP()
if not can_sandbox():
    t.skip_all("needs root for namespaces and cgroups")
if not os.path.exists("/usr/bin/git"):
    t.skip_all("needs git (Debian package git) on the host: the sandbox's /usr is the host's")

IDS = ["git-a"]
SID = "git-a"
SB = "/v1/sandboxes/" + SID
srv = Server()

MAKE_REPO = r"""
set -e
export GIT_AUTHOR_NAME=t GIT_AUTHOR_EMAIL=t@x GIT_COMMITTER_NAME=t GIT_COMMITTER_EMAIL=t@x
rm -rf /tmp/src /tmp/repo.git
git init -q -b main /tmp/src
cd /tmp/src
for i in 1 2 3; do echo "v$i" > f.txt; git add f.txt; git commit -q -m "c$i"; done
git checkout -q -b dev
echo dev > d.txt; git add d.txt; git commit -q -m dev1
echo dev2 > d.txt; git commit -q -am dev2
git checkout -q main
git clone -q --bare /tmp/src /tmp/repo.git
git -C /tmp/repo.git rev-parse main dev
"""


def checkout(body, **kw):
    return srv.post(SB + "/git/checkout", body, **kw)


def sh(cmd, **kw):
    return srv.sh(SID, cmd, **kw)


try:
    srv.create(SID)
    x = sh(MAKE_REPO)
    t.eq(x["exitCode"], 0, "a bare repository made inside the sandbox")
    main_sha, dev_sha = (x["stdout"].split() + ["", ""])[:2]

    # ---- clones ------------------------------------------------------------------
    t0 = time.time()
    r = checkout({"repoUrl": "file:///tmp/repo.git"})
    j = r.json()
    t.ok(r.status == 200 and j.get("success") is True, "file:// clone: 200 success", r)
    t.eq(j.get("targetDir"), "/workspace/repo", "default targetDir: /workspace/<name without .git>")
    t.eq(j.get("branch"), "main", "branch: the checked-out branch (git rev-parse --abbrev-ref HEAD)")
    t.eq(j.get("commit"), main_sha, "commit: HEAD's sha")
    t.eq(j.get("repoUrl"), "file:///tmp/repo.git", "repoUrl echoed")
    t.ok("timestamp" in j, "timestamp present")
    t.eq(sh("cat /workspace/repo/f.txt")["stdout"], "v3\n", "the clone holds the files")
    t.eq(sh("stat -c %u /workspace/repo/f.txt")["stdout"], sh("id -u")["stdout"],
         "files belong to the sandbox's user")
    t.ok(time.time() - t0 < 30, "a local clone is quick (%.1fs)" % (time.time() - t0))

    r = checkout({"url": "file:///tmp/repo.git", "branch": "dev", "depth": 1, "targetDir": "shallow"})
    j = r.json()
    t.ok(r.status == 200 and j.get("targetDir") == "/workspace/shallow", "'url' alias, relative targetDir under /workspace", r)
    t.eq((j.get("branch"), j.get("commit")), ("dev", dev_sha), "branch dev checked out at its head")
    t.eq(sh("git -C /workspace/shallow log --oneline | wc -l")["stdout"].strip(), "1", "depth 1: one commit in git log")
    t.eq(sh("git -C /workspace/shallow rev-parse --is-shallow-repository")["stdout"].strip(), "true", "and the clone is shallow")

    r = checkout({"repoUrl": "file:///tmp/repo.git", "depth": 2, "targetDir": "/workspace/d2"})
    t.eq(sh("git -C /workspace/d2 log --oneline | wc -l")["stdout"].strip(), "2", "depth 2: two commits")

    r = checkout({"repoUrl": "/tmp/repo.git", "branch": "dev", "targetDir": "/tmp/bypath"})
    j = r.json()
    t.ok(r.status == 200 and j.get("branch") == "dev", "absolute path in the sandbox as the URL", r)
    t.eq(sh("git -C /tmp/bypath log --oneline | wc -l")["stdout"].strip(), "5", "full history without depth")

    sh("mkdir -p /workspace/empty")
    r = checkout({"repoUrl": "file:///tmp/repo.git", "targetDir": "/workspace/empty"})
    t.ok(r.status == 200, "an existing empty folder is fine as targetDir", r)

    hostile = "/workspace/we'ird $(touch /tmp/pwned1) `touch /tmp/pwned2`; x"
    r = checkout({"repoUrl": "file:///tmp/repo.git", "targetDir": hostile})
    t.ok(r.status == 200 and r.json()["targetDir"] == hostile, "targetDir with quotes, $() and backticks", r)
    x = sh("test -f \"$D/f.txt\" && echo yes; ls /tmp/pwned1 /tmp/pwned2 2>/dev/null | wc -l", env={"D": hostile})
    t.eq(x["stdout"], "yes\n0\n", "taken literally: cloned there and no injected command ran")

    srv.post(SB + "/sessions", {"id": "s2", "cwd": "/tmp", "env": {"GIT_CONFIG_COUNT": "1",
             "GIT_CONFIG_KEY_0": "user.name", "GIT_CONFIG_VALUE_0": "from-session"}})
    r = checkout({"repoUrl": "file:///tmp/repo.git", "targetDir": "/tmp/s2clone", "sessionId": "s2"})
    t.ok(r.status == 200, "clone in a named session", r)
    t.eq(sh("git -C /tmp/s2clone config user.name", sessionId="s2")["stdout"], "from-session\n",
         "the session's env applies to git")
    r = checkout({"repoUrl": "file:///tmp/repo.git", "targetDir": "/tmp/nos", "sessionId": "nope"})
    t.eq((r.status, r.code), (404, "SESSION_NOT_FOUND"), "unknown session: 404 SESSION_NOT_FOUND")

    # ---- errors ------------------------------------------------------------------
    r = checkout({"repoUrl": "file:///tmp/repo.git"})
    t.eq((r.status, r.code), (409, "FILE_EXISTS"), "targetDir exists and is not empty: 409 FILE_EXISTS")
    t.ok("not empty" in r.json()["error"]["message"], "message says why", r)
    t.eq(sh("cat /workspace/repo/f.txt")["stdout"], "v3\n", "the existing folder is untouched")
    sh("echo x > /workspace/afile")
    r = checkout({"repoUrl": "file:///tmp/repo.git", "targetDir": "afile"})
    t.eq((r.status, r.code), (409, "FILE_EXISTS"), "targetDir is a file: FILE_EXISTS")

    r = checkout({"repoUrl": "file:///tmp/repo.git", "branch": "nosuch", "targetDir": "nb"})
    t.ok(r.status == 404 and r.code == "GIT_BRANCH_NOT_FOUND" and "nosuch" in r.json()["error"]["message"],
         "unknown branch: 404 GIT_BRANCH_NOT_FOUND with git's message", r)
    t.eq(sh("test -e /workspace/nb && echo left || echo gone")["stdout"], "gone\n", "and no folder is left behind")
    for bad in ["-x", "--upload-pack=touch /tmp/pwned", "a b", "a..b", "a~1", "a:b", "x.lock", ".hidden",
                "a//b", "a/", "a\nb", "@{1}", ""]:
        r = checkout({"repoUrl": "file:///tmp/repo.git", "branch": bad, "targetDir": "bb"})
        t.ok(r.status == 400 and r.code == "VALIDATION_FAILED", "branch %r refused: 400 VALIDATION_FAILED" % bad, r)
    for bad in ["--upload-pack=touch /tmp/pwned", "-c", "ext::sh -c touch% /tmp/pwned", "relative/path",
                "ftp://x/y.git", "git@host:repo.git", "file:///tmp/x\n--upload-pack=y", "", "https://"]:
        r = checkout({"repoUrl": bad, "targetDir": "bu"})
        t.ok(r.status == 400 and r.code == "INVALID_GIT_URL", "repoUrl %r refused: 400 INVALID_GIT_URL" % bad, r)
    r = checkout({"targetDir": "bu"})
    t.eq((r.status, r.code), (400, "INVALID_GIT_URL"), "no repoUrl: 400")
    for body, what in [({"depth": 0}, "depth 0"), ({"depth": 1.5}, "depth 1.5"), ({"depth": "1"}, "depth as a string"),
                       ({"timeoutMs": -1}, "negative timeout"), ({"targetDir": 7}, "targetDir not a string"),
                       ({"branch": 3}, "branch not a string")]:
        r = checkout(dict({"repoUrl": "file:///tmp/repo.git"}, **body))
        t.eq((r.status, r.code), (400, "VALIDATION_FAILED"), "%s: 400 VALIDATION_FAILED" % what)
    r = checkout({"repoUrl": "file:///"})
    t.eq((r.status, r.code), (400, "VALIDATION_FAILED"), "a URL with no name and no targetDir: 400")
    t.eq(sh("ls /tmp/pwned /workspace/bb /workspace/bu 2>/dev/null | wc -l")["stdout"], "0\n",
         "nothing ran for refused requests (no canary, no folders)")
    r = srv.post("/v1/sandboxes/nosuch/git/checkout", {"repoUrl": "file:///tmp/repo.git"})
    t.eq((r.status, r.code), (404, "SANDBOX_NOT_FOUND"), "unknown sandbox: 404")

    r = checkout({"repoUrl": "file:///tmp/nothing.git", "targetDir": "nothing"})
    t.ok(r.status == 500 and r.code == "GIT_CLONE_FAILED" and "does not appear to be a git repository" in r.json()["error"]["message"],
         "missing repository: 500 GIT_CLONE_FAILED with git's stderr", r)

    t0 = time.time()
    r = checkout({"repoUrl": "https://10.255.255.1/x/y.git", "targetDir": "net", "timeoutMs": 20000})
    t.ok(r.status == 500 and r.code == "GIT_CLONE_FAILED", "network: none sandbox, remote host: GIT_CLONE_FAILED", r)
    t.ok(time.time() - t0 < 15, "and quickly (%.1fs): no network at all" % (time.time() - t0))
    t.eq(sh("test -e /workspace/net && echo left || echo gone")["stdout"], "gone\n", "no folder left behind")

    # credentials in the URL never reach the server's log (a failed clone's
    # 500 is logged with its message); the message names the repository
    r = checkout({"repoUrl": "https://someone:S3cr3tT0ken@10.255.255.1/x/y.git", "targetDir": "cred",
                  "timeoutMs": 20000})
    msg = r.json()["error"]["message"] if r.status != 200 else ""
    t.ok(r.status == 500 and "S3cr3tT0ken" not in msg and "https://***@10.255.255.1/x/y.git" in msg,
         "a URL with credentials: the error message has them redacted", r)
    t.ok(wait_until(lambda: "10.255.255.1/x/y.git" in srv.server_log(), timeout=5)
         and "S3cr3tT0ken" not in srv.server_log(), "and so has the server's log",
         [l for l in srv.server_log().splitlines() if "y.git" in l][-3:])

    # a git daemon that never answers (inside the sandbox, on its loopback)
    r = srv.post(SB + "/processes", {"processId": "mute", "command":
                 "python3 -c 'import socket,time\ns=socket.socket()\ns.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n"
                 "s.bind((\"127.0.0.1\",9418))\ns.listen()\nprint(\"listening\",flush=True)\nc=[]\n"
                 "while True: c.append(s.accept())'"})
    srv.post(SB + "/processes/mute/wait", {"log": "listening", "timeoutMs": 20000})
    t0 = time.time()
    r = checkout({"repoUrl": "git://127.0.0.1:9418/hang.git", "targetDir": "hang", "timeoutMs": 1500})
    el = time.time() - t0
    t.eq((r.status, r.code), (408, "TIMEOUT"), "a clone that hangs: 408 TIMEOUT")
    t.ok(1.4 < el < 15, "after about timeoutMs (%.1fs)" % el)
    t.eq(sh("test -e /workspace/hang && echo left || echo gone; pgrep -x git | wc -l")["stdout"], "gone\n0\n",
         "the partial folder is removed and git is killed")
    srv.delete(SB + "/processes/mute")

    # while a clone hangs, the server answers
    res = {}

    def slow():
        res["r"] = checkout({"repoUrl": "git://127.0.0.1:9418/hang.git", "targetDir": "hang2", "timeoutMs": 3000})
    srv.post(SB + "/processes", {"processId": "mute2", "command":
             "python3 -c 'import socket,time\ns=socket.socket()\ns.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n"
             "s.bind((\"127.0.0.1\",9418))\ns.listen()\nprint(\"listening\",flush=True)\nc=[]\n"
             "while True: c.append(s.accept())'"})
    srv.post(SB + "/processes/mute2/wait", {"log": "listening", "timeoutMs": 20000})
    th = threading.Thread(target=slow)
    th.start()
    time.sleep(0.3)
    t0 = time.time()
    x = sh("echo alive")
    t.ok(x["stdout"] == "alive\n" and time.time() - t0 < 2, "exec answers while a clone runs")
    th.join(30)
    t.eq(res.get("r") and res["r"].code, "TIMEOUT", "and that clone times out")
    srv.delete(SB + "/processes/mute2")

    srv.post(SB + "/sessions", {"id": "nogit", "env": {"PATH": "/nonexistent"}})
    r = checkout({"repoUrl": "file:///tmp/repo.git", "targetDir": "ng", "sessionId": "nogit"})
    t.eq((r.status, r.code), (500, "GIT_NOT_AVAILABLE"), "no git on the session's PATH: GIT_NOT_AVAILABLE")
finally:
    srv.finish(t, IDS, "SIGTERM: graceful exit 0")
t.done()
