#!/usr/bin/python3
"""tests/sandbox_upgrade.py: the server's programs replaced while it runs.

A server runs its agent (cellbox-agent) and `cellbox kernel` (code contexts)
in every sandbox. dpkg, `make install` and the linker put a new version in
place of a program while a server may be running; the sandboxes that server
starts next must still run the programs it started with (an agent of another
version speaks another protocol; a file half written does not run at all).
The server copies its programs into STATE/bin at start and gives each
sandbox a mount of those copies (sandbox/sb_pin.h).

Here the programs sit in a folder of mode 0700, which the sandboxes' users
cannot reach (the server never needs them to), and are replaced, while the
server runs, by programs that only fail. With --isolation full and none.
Prints TAP.
"""
import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sandbox_lib  # noqa: E402
from sandbox_lib import TAP, Server, can_sandbox  # noqa: E402

t = TAP()
if not can_sandbox():
    t.skip_all("needs root for namespaces and cgroups")

BUILT = sandbox_lib.CELLBOX
AGENT = os.path.join(os.path.dirname(BUILT), "cellbox-agent")
BROKEN = b"#!/bin/sh\necho 'a newer build that does not work with this server' >&2\nexit 99\n"


def replace(path, content):
    """Put content at path the way dpkg and install do: a new file renamed
    over the old one."""
    tmp = path + ".new"
    with open(tmp, "wb") as f:
        f.write(content)
    os.chmod(tmp, 0o755)
    os.rename(tmp, path)


def code(srv, sid, src):
    r = srv.post("/v1/sandboxes/%s/code" % sid, {"code": src}, timeout=120)
    if r.status != 200:
        return r
    mains = [x for x in r.json().get("results", []) if x.get("isMainResult")]
    return mains[0].get("text") if len(mains) == 1 else r.json()


def check(isolation):
    home = tempfile.mkdtemp(prefix="cellbox-upgrade-")
    os.chmod(home, 0o700)
    exe = os.path.join(home, "cellbox")
    shutil.copy2(BUILT, exe)
    have_agent = os.path.exists(AGENT)
    if have_agent:
        shutil.copy2(AGENT, os.path.join(home, "cellbox-agent"))
    sandbox_lib.CELLBOX = exe
    args = ["--pool", "0"] + (["--isolation", "none"] if isolation == "none" else [])
    srv = Server(extra_args=args)
    ids = ["up-a", "up-b", "up-c"]
    try:
        srv.create("up-a")
        x = srv.sh("up-a", "echo before")
        t.eq(x["stdout"], "before\n", "%s: a sandbox runs (programs in a 0700 folder)" % isolation)
        t.eq(code(srv, "up-a", "6 * 7"), "42", "%s: its code context runs" % isolation)
        bindir = os.path.join(srv.state, "bin")
        pinned = sorted(os.listdir(bindir)) if os.path.isdir(bindir) else None
        t.eq(pinned, ["cellbox", "cellbox-agent"] if have_agent and isolation == "full" else ["cellbox"],
             "%s: the server's programs copied into STATE/bin" % isolation)

        # a new version put in place while the server runs
        replace(exe, BROKEN)
        if have_agent:
            replace(os.path.join(home, "cellbox-agent"), BROKEN)
        srv.create("up-b")
        x = srv.sh("up-b", "echo after")
        t.eq(x["stdout"], "after\n",
             "%s: a sandbox started after the programs were replaced runs (the server's copies)" % isolation)
        t.eq(code(srv, "up-b", "6 * 7"), "42",
             "%s: its code context starts the kernel the server started with%s" %
             (isolation, " (and not on the sockets of the other sandbox's default context, in the "
                         "host's /tmp)" if isolation == "none" else ""))
        if isolation == "full":
            agent = srv.get("/v1/sandboxes/up-b").json()["agentPid"]
            t.eq(os.readlink("/proc/%d/exe" % agent), "/run/cellbox/agent" if have_agent else "/run/cellbox/cellbox",
                 "full: its agent runs from the program mounted inside its root")
            x = srv.sh("up-b", "grep ' /run/cellbox/' /proc/self/mountinfo")
            mounts = {ln.split()[4]: ln.split()[5].split(",") for ln in x["stdout"].splitlines()}
            want = ["/run/cellbox/cellbox"] + (["/run/cellbox/agent"] if have_agent else [])
            t.ok(sorted(mounts) == sorted(want) and
                 all({"ro", "nosuid", "nodev"} <= set(o) for o in mounts.values()),
                 "full: the programs are mounts of their own, read-only, nosuid, nodev", x["stdout"])
            x = srv.sh("up-b", "cat /proc/self/mountinfo")
            t.ok(home not in x["stdout"], "full: the folder of the programs appears nowhere in the sandbox",
                 x["stdout"][-2000:])
        x = srv.sh("up-a", "echo still")
        t.eq(x["stdout"], "still\n", "%s: the sandbox started before runs on" % isolation)
        t.ok("a newer build" not in srv.server_log(), "%s: the replaced programs never ran" % isolation,
             srv.server_log()[-2000:])

        # a restarted server takes the programs now in place: here, working ones again
        srv.stop()
        shutil.copy2(BUILT, exe + ".new")
        os.rename(exe + ".new", exe)
        if have_agent:
            shutil.copy2(AGENT, os.path.join(home, "cellbox-agent.new"))
            os.rename(os.path.join(home, "cellbox-agent.new"), os.path.join(home, "cellbox-agent"))
        srv.start()
        srv.create("up-c")
        x = srv.sh("up-c", "echo restarted")
        t.eq(x["stdout"], "restarted\n", "%s: after a restart the server runs what is in place now" % isolation)
        with open(BUILT, "rb") as b:
            t.ok(os.path.isfile(os.path.join(bindir, "cellbox")) and
                 open(os.path.join(bindir, "cellbox"), "rb").read() == b.read(),
                 "%s: STATE/bin holds the program the server started with" % isolation)
        t.eq([n for n in os.listdir(bindir) if n.startswith(".")] if os.path.isdir(bindir) else [], [],
             "%s: no temporary copy left in STATE/bin" % isolation)
    finally:
        sandbox_lib.CELLBOX = BUILT
        srv.finish(t, ids, "%s: final graceful stop" % isolation)
        shutil.rmtree(home, ignore_errors=True)


def full_state_folder():
    """A state folder without room for the copies (a 4 MB tmpfs): the
    server says so and runs the programs in place, nothing half copied is
    left."""
    import subprocess
    top = tempfile.mkdtemp(prefix="cellbox-upgrade-small-")
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", top], check=True)
    srv = None
    try:
        srv = Server(state=os.path.join(top, "state"), extra_args=["--pool", "0"])
        srv.create("up-d")
        x = srv.sh("up-d", "echo small")
        t.eq(x["stdout"], "small\n", "no room for the copies: sandboxes run the programs in place")
        t.eq(code(srv, "up-d", "6 * 7"), "42", "no room for the copies: code contexts run")
        t.ok("cannot copy" in srv.server_log() and "No space left" in srv.server_log(),
             "no room for the copies: the server's log says so", srv.server_log()[-1500:])
        left = os.listdir(os.path.join(top, "state", "bin"))
        t.ok("cellbox" not in left and not [n for n in left if n.startswith(".")],
             "no room for the copies: nothing half copied left (the small agent may fit)", left)
    finally:
        if srv:
            srv.finish(t, ["up-d"], "no room for the copies: final graceful stop")
        subprocess.run(["umount", top])
        os.rmdir(top)


check("full")
check("none")
full_state_folder()
t.done()
