"""tests/sandbox_egress.py: network "egress" vs "none" for `cellbox serve`.

The "internet" is a network namespace this test makes itself, with a web
server on 198.18.0.2 (the benchmarking range, reserved for tests) and one on
2001:db8:cb::2 (the documentation range, not default-denied) behind a veth
pair to the host: no traffic leaves this machine. Checks that an egress
sandbox reaches them through the host's NAT (NAT66 for IPv6: the server sees
the host's address), that a network-none sandbox does not, and that egress
sandboxes reach neither the host itself (IPv6 link-local included) nor each
other, even with allowOut ["::/0"]. When the host has IPv6 disabled
(checked in a network namespace of our own), sandboxes are IPv4 only.
Prints TAP.
"""
import ipaddress
import json
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sandbox_lib import TAP, Server, need_egress, wait_until  # noqa: E402

t = TAP()
need_egress(t)

NS = "cbtest-inet-%d" % os.getpid()
NS_NO6, NS_RA = "cbtest-no6-%d" % os.getpid(), "cbtest-ra-%d" % os.getpid()
NS_NO6NAT = "cbtest-no6nat-%d" % os.getpid()
VH, VN = "cbti%d" % (os.getpid() % 100000), "cbtn%d" % (os.getpid() % 100000)
WEB6, HOST6 = "2001:db8:cb::2", "2001:db8:cb::1"

# The IPv6 web server: answers GET with the address it sees the client at.
WEB6_SERVER = r'''
import http.server, socket, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        b = self.client_address[0].encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(b)))
        self.end_headers()
        self.wfile.write(b)
    def log_message(self, *a):
        pass
class S(http.server.HTTPServer):
    address_family = socket.AF_INET6
S((sys.argv[1], 8080), H).serve_forever()
'''

# Connects to each [host, port] (TCP, 3 s) and prints {"host port": "ok" or the errno}.
PROBE6 = r'''
import errno, json, socket, sys
out = {}
for a in sys.argv[1:]:
    host, port = a.rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), timeout=3).close()
        r = "ok"
    except socket.timeout:
        r = "timeout"
    except OSError as e:
        r = errno.errorcode.get(e.errno, str(e.errno))
    out[a] = r
print(json.dumps(out))
'''


# Run by `nsenter --net` in a network namespace of the test's own (a host
# whose IPv6 settings we may change): a server there, one egress sandbox
# (id argv[2]); prints as JSON what it saw, with the sysctls under
# /proc/sys/net/ipv6/conf named by argv[3:] read while the sandbox runs.
NETNS_CHECK = r'''
import json, subprocess, sys
sys.path.insert(0, sys.argv[1])
from sandbox_lib import Server
srv = Server()
sid = sys.argv[2]
out = {}
try:
    r = srv.put("/v1/sandboxes/" + sid, {"network": "egress"})
    out["status"] = r.status
    out["ipv6Address"] = r.json().get("ipv6Address")
    out["addr6"] = srv.sh(sid, "ip -6 -o addr show dev eth0 scope global")["stdout"]
    out["route6"] = srv.sh(sid, "ip -6 route show default")["stdout"]
    out["addr4"] = srv.sh(sid, "ip -4 -o addr show dev eth0")["stdout"].split()[3]
    out["tables"] = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout.splitlines()
    # the host's end of the veth over IPv6 link-local: a listener on [::]
    # here (the "host"), a connection from the sandbox to each link-local
    # address of cbh0, once both ends' addresses are usable (not tentative)
    def cbh0_ll():
        text = subprocess.run(["ip", "-6", "-o", "addr", "show", "dev", "cbh0", "scope", "link"],
                              capture_output=True, text=True).stdout
        return text, [w.split("/")[0] for line in text.splitlines() for w in line.split()[3:4]]
    out["host6"] = {}
    if cbh0_ll()[1]:
        import socket, time
        ls = socket.socket(socket.AF_INET6)
        ls.bind(("::", 0))
        ls.listen(5)
        deadline = time.time() + 10
        while time.time() < deadline and ("tentative" in cbh0_ll()[0] or
                                          "tentative" in srv.sh(sid, "ip -6 addr show dev eth0")["stdout"]):
            time.sleep(0.2)
        for a in cbh0_ll()[1]:
            x = srv.sh(sid, "python3 -c \"import socket\ntry:\n socket.create_connection(('%s%%eth0', %d), timeout=3).close(); print('ok')\n"
                            "except OSError as e: print(e.errno)\"" % (a, ls.getsockname()[1]))
            out["host6"][a] = x["stdout"].strip()
        ls.close()
    out["sysctl"] = {}
    for name in sys.argv[3:]:
        with open("/proc/sys/net/ipv6/conf/" + name) as f:
            out["sysctl"][name] = f.read().strip()
finally:
    out["rc"] = srv.stop()
    out["log"] = "\n".join(line for line in srv.server_log().splitlines() if "mod=net" in line)
    out["tables_after"] = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout
    srv.cleanup()
print(json.dumps(out))
'''


def netns_server(ns, setup, sid, *sysctls, env=None):
    """Makes network namespace ns, runs the shell commands setup in it, then
    NETNS_CHECK there (with env, the server's environment, if given).
    nsenter --net only: ip netns exec would remount /sys, and with it the
    cgroups."""
    r = sh("ip netns add %s && ip -n %s link set lo up" % (ns, ns))
    for cmd in setup:
        r = r if r.returncode else sh("ip netns exec %s %s" % (ns, cmd))
    res = subprocess.run(["nsenter", "--net=/run/netns/" + ns, sys.executable, "-c", NETNS_CHECK,
                          os.path.dirname(os.path.abspath(__file__)), sid] + list(sysctls),
                         capture_output=True, text=True, env=env)
    try:
        return json.loads(res.stdout)
    except ValueError:
        return {"error": (r, res)}


def probe6(srv, sid, *targets):
    x = srv.sh(sid, "python3 - %s <<'EOF'\n%sEOF" % (" ".join(targets), PROBE6))
    try:
        return json.loads(x["stdout"])
    except ValueError:
        return {"error": x}


def addr6(srv, sid):
    """The sandbox's global IPv6 address and its IPv6 default gateway."""
    x = srv.sh(sid, "ip -6 -o addr show dev eth0 scope global; ip -6 route show default")
    a = [w.split("/")[0] for line in x["stdout"].splitlines() for w in line.split()[3:4] if "inet6" in line]
    gw = [line.split()[2] for line in x["stdout"].splitlines() if line.startswith("default via")]
    return (a[0] if len(a) == 1 else None), (gw[0] if len(gw) == 1 else None)


def host_addrs6():
    """The host's own IPv6 addresses (global and ULA), not on our veths."""
    out = sh("ip -6 -o addr show scope global").stdout.splitlines()
    return [line.split()[3].split("/")[0] for line in out if " cb" not in line]



def sh(cmd):
    return subprocess.run(cmd, shell=True, capture_output=True, text=True)


IDS = ["net-e1", "net-e2", "net-n", "net-no6", "net-ra"]
srv = None
web = web6 = None
try:
    for cmd in ("ip netns add %s" % NS,
                "ip link add %s type veth peer name %s netns %s" % (VH, VN, NS),
                "ip addr add 198.18.0.1/30 dev %s" % VH, "ip link set %s up" % VH,
                "ip -n %s addr add 198.18.0.2/30 dev %s" % (NS, VN),
                "ip -n %s link set %s up" % (NS, VN), "ip -n %s link set lo up" % NS,
                "ip -6 addr add %s/64 dev %s nodad" % (HOST6, VH),
                "ip -n %s -6 addr add %s/64 dev %s nodad" % (NS, WEB6, VN)):
        r = sh(cmd)
        if r.returncode != 0:
            t.skip_all("cannot build the test network (%s): %s" % (cmd, r.stderr.strip()))
    web = subprocess.Popen(["ip", "netns", "exec", NS, sys.executable, "-m", "http.server", "8080",
                            "--bind", "198.18.0.2"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    ready = wait_until(lambda: sh("ip netns exec %s bash -c 'echo > /dev/tcp/198.18.0.2/8080'" % NS).returncode == 0,
                       timeout=30, step=0.1)
    if not ready:
        t.skip_all("the test web server did not start")
    web6 = subprocess.Popen(["ip", "netns", "exec", NS, sys.executable, "-c", WEB6_SERVER, WEB6],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if not wait_until(lambda: sh("ip netns exec %s bash -c 'echo > /dev/tcp/%s/8080'" % (NS, WEB6)).returncode == 0,
                      timeout=30, step=0.1):
        t.skip_all("the test IPv6 web server did not start")

    srv = Server()
    # net-e1 may connect to any IPv6 address: the host and other sandboxes
    # must stay closed all the same
    r = srv.put("/v1/sandboxes/net-e1", {"network": "egress", "allowOut": ["::/0"]})
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

    # a flood of new UDP flows (unanswered ones stay tracked 30 s): the host's
    # connection tracking table is one for all, and a full one drops every new
    # connection of the host. A sandbox gets an eighth of it.
    with open("/proc/sys/net/netfilter/nf_conntrack_max") as f:
        share = int(f.read()) // 8
    e2 = srv.get("/v1/sandboxes/net-e2").json().get("ipAddress")
    x = srv.sh("net-e2", "python3 -c \"import socket\n"
                         "socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(%d)]\n"
                         "for i in range(%d):\n"
                         "    socks[i // 60000].sendto(b'x', ('198.18.0.2', 1 + i %% 60000))\n"
                         "print('sent')\"" % ((share + 3000) // 60000 + 1, share + 3000), timeoutMs=120000)
    with open("/proc/net/nf_conntrack") as f:
        tracked = sum(1 for line in f if " src=%s dst=198.18.0.2 " % e2 in line)
    t.ok(x["stdout"] == "sent\n" and tracked <= share + 64,
         "egress: %d new UDP flows leave at most the sandbox's share of the host's connection table "
         "(%d tracked, share %d)" % (share + 3000, tracked, share), x)

    # ---- IPv6 ----------------------------------------------------------------
    a1, gw1 = addr6(srv, "net-e1")
    net1 = ipaddress.ip_network(a1 + "/64", strict=False) if a1 else None
    t.ok(net1 and net1.subnet_of(ipaddress.ip_network("fdce:11b0::/48")) and gw1
         and ipaddress.ip_address(a1) == net1[2] and ipaddress.ip_address(gw1) == net1[1],
         "egress: a ULA IPv6 address (fdce:11b0:0:N::2/64) and a default route through the host (::1)",
         srv.sh("net-e1", "ip -6 addr; ip -6 route"))
    got = srv.get("/v1/sandboxes/net-e1").json()
    t.ok(a1 and got.get("ipv6Address") == a1 and "ipv6Address" not in srv.get("/v1/sandboxes/net-n").json(),
         "the sandbox's record shows its IPv6 address as ipv6Address (network none: none)", got)
    x = srv.sh("net-e1", "curl -6 -sS -m 10 http://[%s]:8080/" % WEB6)
    t.ok(x["stdout"] == HOST6, "egress: reaches an IPv6 server outside through NAT66 (it sees the host's "
         "address %s)" % HOST6, x)
    x = srv.sh("net-n", "curl -6 -sS -m 10 http://[%s]:8080/ 2>&1; echo rc=$?; ip -6 route" % WEB6)
    t.ok("rc=0" not in x["stdout"] and "default" not in x["stdout"], "network none: no IPv6 way out either", x)
    e2 = srv.get("/v1/sandboxes/net-e2").json()["ipAddress"]
    e2_6, _ = addr6(srv, "net-e2")
    srv.post("/v1/sandboxes/net-e2/processes", {"command": "exec python3 -m http.server 9000 --bind ::",
                                                 "processId": "w"})
    srv.post("/v1/sandboxes/net-e2/processes/w/wait", {"port": 9000, "timeoutMs": 30000})
    x = srv.sh("net-e1", "timeout 3 bash -c 'echo > /dev/tcp/%s/9000' 2>&1; echo rc=$?" % e2)
    t.ok("rc=0" not in x["stdout"], "egress sandboxes cannot reach each other", x)
    res = probe6(srv, "net-e1", "%s:9000" % e2_6)
    t.ok(e2_6 and res.get("%s:9000" % e2_6) not in (None, "ok"),
         "egress sandboxes cannot reach each other over IPv6 (despite allowOut ::/0)", (e2_6, res))
    # the host's own IPv6 addresses: the gateway, the host's link-local on the
    # sandbox's link, its address towards the test network, its own others
    host_srv = subprocess.Popen([sys.executable, "-m", "http.server", "18766", "--bind", "::"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: sh("bash -c 'echo > /dev/tcp/::1/18766'").returncode == 0, timeout=30, step=0.1)
        # the host side of net-e1's veth has the gateway address; its link-local one
        words = sh("ip -6 -o addr show to %s/128" % gw1).stdout.split()
        dev = words[1] if len(words) > 1 else "none"
        words = sh("ip -6 -o addr show dev %s scope link" % dev).stdout.split()
        ll = words[3].split("/")[0] if len(words) > 3 else None
        targets = ["%s:18766" % a for a in [gw1, HOST6] + host_addrs6()] + ["%s%%eth0:18766" % ll]
        # the sandbox's own link-local address must be usable (past DAD)
        wait_until(lambda: "tentative" not in srv.sh("net-e1", "ip -6 addr show dev eth0")["stdout"], timeout=10, step=0.2)
        res = probe6(srv, "net-e1", *targets)
        t.ok(ll and dev.startswith("cbh") and all(res.get(a) not in (None, "ok") for a in targets),
             "egress: the host's own services are closed over IPv6 (gateway, link-local, every address), "
             "despite allowOut ::/0", (dev, targets, res))
        x = srv.sh("net-n", "python3 -c \"import socket; socket.create_connection(('::1', 18766), timeout=2)\" "
                   "2>&1; echo rc=$?")
        t.ok("rc=0" not in x["stdout"], "network none: the host's IPv6 services are closed", x)
    finally:
        host_srv.kill()
        host_srv.wait()
    # a sandbox that could set its own address (commands have no
    # CAP_NET_ADMIN: done from the host here) gets nothing out from another one
    pid = srv.get("/v1/sandboxes/net-e1").json()["agentPid"]
    spoof = str(net1[3]) if net1 else "none"
    ns = "nsenter --net=/proc/%d/ns/net " % pid
    r1 = sh(ns + "ip -6 addr add %s/64 dev eth0 nodad" % spoof)
    r2 = sh(ns + "curl -6 -sS -m 3 --interface %s http://[%s]:8080/" % (spoof, WEB6))
    r3 = sh(ns + "curl -6 -sS -m 3 --interface %s http://[%s]:8080/" % (a1, WEB6))
    t.ok(r1.returncode == 0 and r2.returncode != 0 and r3.stdout == HOST6,
         "egress: IPv6 from an address other than the sandbox's own is dropped", (r1, r2, r3))
    # the same over IPv4: a second address on the sandbox's side, with a host
    # route back to it so that only the new rule can stop the connection
    spoof4 = "10.231.250.250"
    v4 = srv.get("/v1/sandboxes/net-e1").json().get("ipAddress", "")
    r1 = sh(ns + "ip addr add %s/32 dev eth0" % spoof4)
    r4 = sh("ip route add %s/32 dev %s" % (spoof4, dev))
    r2 = sh(ns + "curl -4 -sS -m 3 -o /dev/null -w %%{http_code} --interface %s http://198.18.0.2:8080/" % spoof4)
    r3 = sh(ns + "curl -4 -sS -m 3 -o /dev/null -w %%{http_code} --interface %s http://198.18.0.2:8080/" % v4)
    sh("ip route del %s/32 dev %s" % (spoof4, dev))
    t.ok(r1.returncode == 0 and r4.returncode == 0 and r2.returncode != 0 and r3.stdout == "200",
         "egress: IPv4 from an address other than the sandbox's own is dropped (was masqueraded)", (r1, r4, r2, r3))
    r = srv.delete("/v1/sandboxes/net-e2")
    t.ok(r.status == 200 and sh("ip link show | grep -c cbh").stdout.strip() == "1",
         "deleting a sandbox removes its veth pair", sh("ip -o link show").stdout)

    # ---- a host with IPv6 disabled: a server in a network namespace of our own
    no6 = netns_server(NS_NO6, ["sysctl -qw net.ipv6.conf.all.disable_ipv6=1"], "net-no6")
    t.ok(no6.get("status") == 201 and no6.get("addr4", "").startswith("10.231.")
         and no6.get("addr6") == "" and no6.get("route6") == "" and no6.get("ipv6Address") is None
         and no6.get("rc") == 0,
         "a host with IPv6 disabled: egress sandboxes are IPv4 only (no IPv6 address, no IPv6 route)", no6)
    t.ok(no6.get("tables") == ["table ip cellbox"] and "IPv6 is disabled on this host" in no6.get("log", ""),
         "a host with IPv6 disabled: no ip6 table; the log says egress is IPv4 only", no6)

    # ---- a host with IPv6 whose nftables cannot make the ip6 table (a kernel
    # without IPv6 NAT): the real nft behind a wrapper that refuses that table
    fake = tempfile.mkdtemp(prefix="cellbox-nft-")
    real_nft = shutil.which("nft")
    with open(os.path.join(fake, "nft"), "w") as f:
        f.write("#!/bin/sh\n"
                "if [ \"$1\" = -f ]; then\n"
                "  script=$(cat)\n"
                "  case \"$script\" in *'table ip6 cellbox {'*)\n"
                "    echo 'Error: Could not process rule: No such file or directory (no IPv6 NAT)' >&2; exit 1;;\n"
                "  esac\n"
                "  printf '%%s\\n' \"$script\" | exec %s \"$@\"\n"
                "fi\n"
                "exec %s \"$@\"\n" % (real_nft, real_nft))
    os.chmod(os.path.join(fake, "nft"), 0o755)
    try:
        no6nat = netns_server(NS_NO6NAT, [], "net-no6nat", "cbh0/disable_ipv6",
                              env=dict(os.environ, PATH=fake + ":" + os.environ.get("PATH", "")))
    finally:
        shutil.rmtree(fake, ignore_errors=True)
    t.ok(no6nat.get("status") == 201 and no6nat.get("addr4", "").startswith("10.231.")
         and no6nat.get("addr6") == "" and no6nat.get("ipv6Address") is None and no6nat.get("rc") == 0
         and no6nat.get("tables") == ["table ip cellbox"]
         and "IPv6 egress is not available on this host" in no6nat.get("log", "")
         and "no IPv6 NAT" in no6nat.get("log", ""),
         "a host whose nftables cannot make the ip6 table: egress sandboxes still start, IPv4 only, "
         "and the log says why (the start failed)", no6nat)
    t.ok(no6nat.get("status") == 201 and "ok" not in no6nat.get("host6", {"?": "ok"}).values()
         and no6nat.get("sysctl", {}).get("cbh0/disable_ipv6") == "1",
         "... and without the ip6 table the host is not reachable over IPv6 either: its end of the veth "
         "has IPv6 disabled (no link-local address to connect to)", no6nat)

    # ---- IPv6 forwarding and router advertisements, in a namespace of our own:
    # forwarding off, one interface accepting router advertisements (1), one not (0)
    ra = netns_server(NS_RA, ["ip link add cbtra1 type veth peer name cbtra0",
                              "sysctl -qw net.ipv6.conf.all.forwarding=0 net.ipv6.conf.default.accept_ra=1",
                              "sysctl -qw net.ipv6.conf.cbtra1.accept_ra=1 net.ipv6.conf.cbtra0.accept_ra=0"],
                      "net-ra", "all/forwarding", "cbtra1/accept_ra", "cbtra0/accept_ra", "default/accept_ra",
                      "cbh0/accept_ra", "cbh0/forwarding")
    t.ok(ra.get("status") == 201 and ra.get("addr6", "").count("fdce:11b0::2/64") == 1 and "table ip6 cellbox" in ra.get("tables", []),
         "a host with IPv6: the sandbox gets its address and the host its ip6 table", ra)
    t.eq(ra.get("sysctl"), {"all/forwarding": "1", "cbtra1/accept_ra": "2", "cbtra0/accept_ra": "0",
                            "default/accept_ra": "2", "cbh0/accept_ra": "0", "cbh0/forwarding": "1"},
         "IPv6 forwarding on; interfaces that accepted router advertisements (accept_ra 1) now 2, so they still do; "
         "0 left; the sandbox's veth accepts none")
    t.ok(ra.get("rc") == 0 and "cbtra1" in ra.get("log", "") and "cellbox" not in ra.get("tables_after", "x cellbox"),
         "the accept_ra change is logged; both tables go at shutdown", ra)

finally:
    if srv:
        srv.finish(t, IDS, "graceful stop", egress=True)
    for p in (web, web6):
        if p:
            p.kill()
            p.wait()
    sh("ip link del %s" % VH)
    sh("ip netns del %s" % NS)
    sh("ip netns del %s" % NS_NO6)
    sh("ip netns del %s" % NS_NO6NAT)
    sh("ip netns del %s" % NS_RA)
t.done()
