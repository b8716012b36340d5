"""tests/sandbox_egress.py: network "egress" vs "none" for `cellbox serve`.

The "internet" is a network namespace this test makes itself, with a web
server on 198.18.0.2 (the benchmarking range, reserved for tests) behind a
veth pair to the host: no traffic leaves this machine. Checks that an egress
sandbox reaches it through the host's NAT, that a network-none sandbox does
not, and that egress sandboxes reach neither the host itself nor each other.
Prints TAP.
"""
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sandbox_lib import TAP, Server, need_egress, wait_until  # noqa: E402

t = TAP()
need_egress(t)

NS = "cbtest-inet-%d" % os.getpid()
VH, VN = "cbti%d" % (os.getpid() % 100000), "cbtn%d" % (os.getpid() % 100000)


def sh(cmd):
    return subprocess.run(cmd, shell=True, capture_output=True, text=True)


IDS = ["net-e1", "net-e2", "net-n"]
srv = None
web = None
try:
    for cmd in ("ip netns add %s" % NS,
                "ip link add %s type veth peer name %s netns %s" % (VH, VN, NS),
                "ip addr add 198.18.0.1/30 dev %s" % VH, "ip link set %s up" % VH,
                "ip -n %s addr add 198.18.0.2/30 dev %s" % (NS, VN),
                "ip -n %s link set %s up" % (NS, VN), "ip -n %s link set lo up" % NS):
        r = sh(cmd)
        if r.returncode != 0:
            t.skip_all("cannot build the test network (%s): %s" % (cmd, r.stderr.strip()))
    web = subprocess.Popen(["ip", "netns", "exec", NS, sys.executable, "-m", "http.server", "8080",
                            "--bind", "198.18.0.2"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    ready = wait_until(lambda: sh("ip netns exec %s bash -c 'echo > /dev/tcp/198.18.0.2/8080'" % NS).returncode == 0,
                       timeout=30, step=0.1)
    if not ready:
        t.skip_all("the test web server did not start")

    srv = Server()
    r = srv.put("/v1/sandboxes/net-e1", {"network": "egress"})
    t.ok(r.status == 201 and r.json().get("ipAddress", "").startswith("10.231."), "egress sandbox has an address", r)
    srv.create("net-e2", network="egress")
    srv.create("net-n")
    get = ("exec 3<>/dev/tcp/198.18.0.2/8080 && printf 'GET / HTTP/1.0\\r\\n\\r\\n' >&3 && "
           "head -1 <&3")
    x = srv.sh("net-e1", "timeout 10 bash -c \"%s\"" % get)
    t.ok(x["stdout"].startswith("HTTP/1.0 200"), "egress: reaches a server outside through NAT", x)
    x = srv.sh("net-n", "timeout 10 bash -c \"%s\" 2>&1; echo rc=$?" % get)
    t.ok("rc=0" not in x["stdout"] and "unreachable" in x["stdout"], "network none: no way out", x)
    x = srv.sh("net-e1", "ip -o -4 addr show eth0; ip route")
    gw = [line.split()[2] for line in x["stdout"].splitlines() if line.startswith("default")]
    t.ok(len(gw) == 1 and gw[0].startswith("10.231."), "egress: default route through the host", x)
    # the host itself is closed to sandboxes, even on its gateway address
    host_srv = subprocess.Popen([sys.executable, "-m", "http.server", "18765", "--bind", "0.0.0.0"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: sh("bash -c 'echo > /dev/tcp/127.0.0.1/18765'").returncode == 0, timeout=30, step=0.1)
        x = srv.sh("net-e1", "timeout 3 bash -c 'echo > /dev/tcp/%s/18765' 2>&1; echo rc=$?" % gw[0])
        t.ok("rc=0" not in x["stdout"], "egress: the host's own services are closed", x)
    finally:
        host_srv.kill()
        host_srv.wait()
    e2 = srv.get("/v1/sandboxes/net-e2").json()["ipAddress"]
    srv.post("/v1/sandboxes/net-e2/processes", {"command": "exec python3 -m http.server 9000", "processId": "w"})
    srv.post("/v1/sandboxes/net-e2/processes/w/wait", {"port": 9000, "timeoutMs": 30000})
    x = srv.sh("net-e1", "timeout 3 bash -c 'echo > /dev/tcp/%s/9000' 2>&1; echo rc=$?" % e2)
    t.ok("rc=0" not in x["stdout"], "egress sandboxes cannot reach each other", x)
    r = srv.delete("/v1/sandboxes/net-e2")
    t.ok(r.status == 200 and sh("ip link show | grep -c cbh").stdout.strip() == "1",
         "deleting a sandbox removes its veth pair", sh("ip -o link show").stdout)
finally:
    if srv:
        srv.finish(t, IDS, "graceful stop", egress=True)
    if web:
        web.kill()
        web.wait()
    sh("ip link del %s" % VH)
    sh("ip netns del %s" % NS)
t.done()
