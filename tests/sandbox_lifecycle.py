"""tests/sandbox_lifecycle.py: persistence and lifecycle of `cellbox serve`.

Restart with state intact (workspace, sessions, process records and logs),
sleepAfter (an idle sandbox stops and wakes transparently), keepAlive, a
sandbox whose pid 1 dies, and SIGTERM shutdown. Waits use deadlines, never
fixed sleeps. Prints TAP.
"""
import os
import signal
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sandbox_lib import TAP, Server, can_sandbox, wait_until  # noqa: E402

t = TAP()
if not can_sandbox():
    t.skip_all("needs root for namespaces and cgroups")

IDS = ["life-a", "life-s", "life-k", "life-s2"]
srv = Server()


def status(sid):
    for s in srv.get("/v1/sandboxes").json()["sandboxes"]:
        if s["id"] == sid:
            return s["status"]
    return None


def agent_pid(sid):
    r = srv.get("/v1/sandboxes/" + sid)
    return r.json().get("agentPid") if r.status == 200 else None


try:
    srv.create("life-a")
    srv.post("/v1/sandboxes/life-a/files/write", {"path": "keep/me.txt", "content": "persisted"})
    srv.sh("life-a", "cd /workspace/keep && export COLOR=blue && hi() { echo hi $1; }")
    srv.post("/v1/sandboxes/life-a/sessions", {"id": "side", "cwd": "/tmp", "env": {"SIDE": "1"}})
    srv.post("/v1/sandboxes/life-a/processes", {"command": "echo finished-output", "processId": "done"})
    srv.post("/v1/sandboxes/life-a/processes/done/wait", {"exit": True, "timeoutMs": 20000})
    srv.post("/v1/sandboxes/life-a/processes", {"command": "echo running-output; sleep 1000", "processId": "long"})
    srv.post("/v1/sandboxes/life-a/processes/long/wait", {"log": "running-output", "timeoutMs": 20000})
    t.eq(status("life-a"), "running", "sandbox running before the restart")

    # ---- restart -----------------------------------------------------------------
    rc = srv.stop()
    t.eq(rc, 0, "SIGTERM: exit 0")
    t.ok(not srv.leftovers(IDS), "SIGTERM stopped every sandbox", srv.leftovers(IDS))
    srv.start()
    t.eq(status("life-a"), "stopped", "after a restart the sandbox is known, stopped")
    x = srv.sh("life-a", "cat me.txt; echo; echo $COLOR; hi there")
    t.eq(x["stdout"], "persisted\nblue\nhi there\n",
         "next request restores it: workspace, cwd, exports and functions intact")
    t.eq(status("life-a"), "running", "and it runs again")
    x = srv.sh("life-a", "pwd; echo $SIDE", sessionId="side")
    t.eq(x["stdout"], "/tmp\n1\n", "named session survived the restart")
    procs = {p["id"]: p for p in srv.get("/v1/sandboxes/life-a/processes").json()["processes"]}
    t.ok(procs.get("done", {}).get("status") == "completed" and procs["done"]["exitCode"] == 0,
         "finished process record kept", procs)
    t.ok(procs.get("long", {}).get("status") == "killed" and procs["long"]["endTime"],
         "process that was running is reported killed", procs)
    logs = srv.get("/v1/sandboxes/life-a/processes/long/logs").json()
    t.eq(logs["stdout"], "running-output\n", "its logs survived")

    # ---- pid 1 dies ------------------------------------------------------------------
    pid = agent_pid("life-a")
    t.ok(pid is not None, "found the sandbox's agent", pid)
    if pid:
        os.kill(pid, signal.SIGKILL)
    x = srv.sh("life-a", "cat me.txt")
    t.eq(x["stdout"], "persisted", "a sandbox whose pid 1 died is restarted on the next request")

    # ---- sleepAfter / keepAlive ----------------------------------------------------
    srv.create("life-k", sleepAfter="1s", keepAlive=True)
    srv.create("life-s", sleepAfter="1s")
    srv.sh("life-s", "echo data > /workspace/f; echo tmp > /tmp/t")
    slept = wait_until(lambda: status("life-s") == "stopped", timeout=60, step=0.2)
    t.ok(slept, "an idle sandbox goes to sleep after sleepAfter")
    t.eq(status("life-k"), "running", "keepAlive: a sandbox idle just as long stays up")
    t.ok(agent_pid("life-s") is None, "a sleeping sandbox has no agent")
    x = srv.sh("life-s", "cat /workspace/f; cat /tmp/t 2>/dev/null || echo no-tmp")
    t.eq(x["stdout"], "data\nno-tmp\n", "it wakes on the next request: /workspace kept, /tmp fresh")
    t.eq(status("life-s"), "running", "awake again")
    srv.create("life-s2", sleepAfter="1s")
    r = srv.post("/v1/sandboxes/life-s2/processes", {"command": "sleep 1000", "processId": "bg"})
    slept = wait_until(lambda: status("life-s2") == "stopped", timeout=60, step=0.2)
    p = srv.get("/v1/sandboxes/life-s2/processes/bg").json()
    t.ok(slept and p["status"] == "killed", "sleeping ends the sandbox's processes", p)
    st, ev = srv.sse("/v1/sandboxes/life-s2/exec", {"command": "sleep 2.5; echo late"})
    t.ok(ev[-1][0] == "complete" and ev[-1][1]["exitCode"] == 0,
         "a running stream keeps the sandbox awake past sleepAfter", ev)
finally:
    rc = srv.stop()
    t.eq(rc, 0, "final graceful stop")
    left = srv.leftovers(IDS)
    t.ok(not left, "nothing left behind", left)
    srv.cleanup()
t.done()
