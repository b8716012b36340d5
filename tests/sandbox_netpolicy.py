"""tests/sandbox_netpolicy.py: egress policy (allowOut / denyOut) for `cellbox serve`.

As in sandbox_egress.py, "the outside" is a network namespace this test makes
itself, behind a veth pair from the host (198.18.0.1 <-> 198.18.0.2); it
also holds, on its lo, one address in each range the policy cares about
(cloud metadata 169.254.169.254, private 10/8, 172.16/12, 192.168/16, shared
100.64/10, public TEST-NETs 198.51.100.0/24 and 203.0.113.0/24) and the same
for IPv6 (2001:db8:cb::1 <-> 2001:db8:cb::2; "public" 2001:db8:1::7 and
2001:db8:2::7 in the documentation range, which is not default-denied; unique
local fdaa:bb::1; NAT64 64:ff9b::a9fe:a9fe, i.e. the metadata address), each
routed from the host to it with a /32 or /128 route, and a TCP listener on
every address. No traffic leaves this machine, except DNS to the host's own
nameserver.

Sandboxes connect with a real socket (python3 in the sandbox) and report
"ok", or the errno and how long the refusal took: a refusal must be quick
(TCP reset: ECONNREFUSED; UDP: ICMP admin-prohibited: EHOSTUNREACH, ICMPv6
admin-prohibited: EACCES), not a timeout. Also: strict validation, options shown and kept over a restart,
--egress-private allow, a fork of an egress sandbox (same policy, own
rules), and nothing left in nftables after a delete and at
shutdown. Prints TAP.
"""
import ipaddress
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sandbox_lib import CELLBOX, TAP, Server, need_egress, wait_until  # noqa: E402

t = TAP()
need_egress(t)

NS = "cbtest-np-%d" % os.getpid()
VH, VN = "cbpi%d" % (os.getpid() % 100000), "cbpn%d" % (os.getpid() % 100000)
PORT = 8080
META, TEN, C192, C172, CGNAT = "169.254.169.254", "10.99.0.1", "192.168.250.1", "172.16.99.1", "100.64.99.1"
PUB, PUB2, BENCH = "198.51.100.7", "203.0.113.7", "198.18.0.2"
ROUTED = [META, TEN, C192, C172, CGNAT, PUB, PUB2]
HOST6, WEB6 = "2001:db8:cb::1", "2001:db8:cb::2"
PUB6, PUB6B, ULA6, NAT64 = "2001:db8:1::7", "2001:db8:2::7", "fdaa:bb::1", "64:ff9b::a9fe:a9fe"
NS6 = "fdaa:bb::53"  # an IPv6 nameserver in the unique local range (default-denied), TCP port 53
ROUTED6 = [PUB6, PUB6B, ULA6, NAT64, NS6]


def sh(cmd):
    return subprocess.run(cmd, shell=True, capture_output=True, text=True)


def host_nameserver():
    """The host's first IPv4 nameserver, if it answers a query from here."""
    try:
        lines = open("/etc/resolv.conf").read().splitlines()
    except OSError:
        return None
    for line in lines:
        w = line.split()
        if len(w) >= 2 and w[0] == "nameserver" and w[1].count(".") == 3:
            r = sh("timeout 5 getent ahostsv4 deb.debian.org")
            return w[1] if r.returncode == 0 else None
    return None


PROBE = r'''
import errno, json, socket, sys, time
out = {}
for a in sys.argv[1:]:
    proto, rest = a.split(":", 1)
    host, port = rest.rsplit(":", 1)
    s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET,
                      socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM)
    s.settimeout(5)
    t = time.time()
    try:
        s.connect((host, int(port)))
        if proto == "udp":
            s.send(b"x")
            s.recv(100)
        r = "ok"
    except socket.timeout:
        r = "timeout"
    except OSError as e:
        r = errno.errorcode.get(e.errno, str(e.errno))
    out[a] = [r, round(time.time() - t, 3)]
    s.close()
print(json.dumps(out))
'''


def probe(srv, sid, *targets):
    """{target: [result, seconds]}; a target is an address (TCP to PORT) or
    "udp:ADDR:PORT" / "tcp:ADDR:PORT" (ADDR IPv4 or IPv6)."""
    full = [x if x.startswith(("tcp:", "udp:")) else "tcp:%s:%d" % (x, PORT) for x in targets]
    x = srv.sh(sid, "python3 - %s <<'EOF'\n%sEOF" % (" ".join(full), PROBE))
    try:
        res = json.loads(x["stdout"])
    except ValueError:
        return {"error": x}
    return {k: res.get(f) for k, f in zip(targets, full)}


def reachable(res, *targets):
    return all(res.get(a) and res[a][0] == "ok" for a in targets)


def refused(res, *targets, err="ECONNREFUSED"):
    """Refused at once: the error comes back within a second (generous:
    a dropped packet would take the full 5 s timeout)."""
    return all(res.get(a) and res[a][0] == err and res[a][1] < 1.0 for a in targets)


def slot(srv, sid):
    ip = srv.get("/v1/sandboxes/" + sid).json().get("ipAddress", "")
    parts = ip.split(".")
    return ((int(parts[2]) << 8) + int(parts[3]) - 2) // 4 if len(parts) == 4 else None


def nft_has_slot(n):
    """(chain, map entry) of slot n, each in both tables "ip cellbox" and
    "ip6 cellbox" (True only if in both, False only if in neither)."""
    have = []
    for fam in ("ip", "ip6"):
        chain = sh("nft list chain %s cellbox eg%d" % (fam, n)).returncode == 0
        elem = '"cbh%d"' % n in sh("nft list map %s cellbox egress" % fam).stdout
        have.append((chain, elem))
    return tuple(have[0][i] if have[0][i] == have[1][i] else "ip only" if have[0][i] else "ip6 only"
                 for i in range(2))


def refused_by_chain(chain, cidr):
    """Does a "daddr { ... } goto refuse" rule of the nft chain listing
    cover all of cidr?"""
    net = ipaddress.ip_network(cidr)
    for line in chain.splitlines():
        if "daddr {" not in line or "goto refuse" not in line:
            continue
        for e in line.split("{", 1)[1].split("}", 1)[0].split(","):
            e = e.strip()
            lo, hi = e.split("-") if "-" in e else (ipaddress.ip_network(e)[0], ipaddress.ip_network(e)[-1])
            if ipaddress.ip_address(lo) <= net[0] and net[-1] <= ipaddress.ip_address(hi):
                return True
    return False


IDS = ["np-def", "np-allow", "np-deny", "np-list", "np-norm", "np-fork"]
srv = None
listener = listener53 = None
try:
    for cmd in (["ip netns add %s" % NS,
                 "ip link add %s type veth peer name %s netns %s" % (VH, VN, NS),
                 "ip addr add 198.18.0.1/30 dev %s" % VH, "ip link set %s up" % VH,
                 "ip -n %s addr add %s/30 dev %s" % (NS, BENCH, VN),
                 "ip -n %s link set %s up" % (NS, VN), "ip -n %s link set lo up" % NS,
                 "ip -6 addr add %s/64 dev %s nodad" % (HOST6, VH),
                 "ip -n %s -6 addr add %s/64 dev %s nodad" % (NS, WEB6, VN)]
                + ["ip -n %s addr add %s/32 dev lo" % (NS, a) for a in ROUTED]
                + ["ip route add %s/32 via %s dev %s" % (a, BENCH, VH) for a in ROUTED]
                + ["ip -n %s -6 addr add %s/128 dev lo nodad" % (NS, a) for a in ROUTED6]
                + ["ip -6 route add %s/128 via %s dev %s" % (a, WEB6, VH) for a in ROUTED6]):
        r = sh(cmd)
        if r.returncode != 0:
            t.skip_all("cannot build the test network (%s): %s" % (cmd, r.stderr.strip()))
    # --bind :: listens on IPv4 too
    listener = subprocess.Popen(["ip", "netns", "exec", NS, sys.executable, "-m", "http.server", str(PORT),
                                 "--bind", "::"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if not wait_until(lambda: all(sh("ip netns exec %s bash -c 'echo > /dev/tcp/%s/%d'" % (NS, a, PORT)).returncode == 0
                                  for a in (META, NAT64)), timeout=30, step=0.1):
        t.skip_all("the test listener did not start")
    listener53 = subprocess.Popen(["ip", "netns", "exec", NS, sys.executable, "-m", "http.server", "53",
                                   "--bind", NS6], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    dns = host_nameserver()

    srv = Server()
    # ---- validation ------------------------------------------------------
    bad = ["10.0.0.256", "10.0.0.0/33", "10.1.2.3/24", "example.com", "", "1.2.3",
           "01.2.3.4", "1.2.3.4/", "1.2.3.4/024", " 1.2.3.4", "1.2.3.4 ", "1.2.3.4/-1", "1.2.3.4/8x",
           "1.2.3.4/+8", "1.2.3.4//8", "0x01.2.3.4", "1.2.3.4.5",
           "2001:db8::/129", "2001:db8::/1280", "2001:db8::1/64", "fe80::1%eth0", "2001:db8:::1", "2001:db8::/033",
           "::ffff:1.2.3.256", "2001:db8::/", "[2001:db8::1]", "2001:db8::g", "1:2:3:4:5:6:7:8:9", ":::",
           "2001:db8::/64/64", " ::1", "fc00::/7 ", "1.2.3.4/32/", "2001:db8::/+64"]
    wrong = []
    for key in ("allowOut", "denyOut"):
        for entry in bad:
            r = srv.put("/v1/sandboxes/np-bad", {"network": "egress", key: ["8.8.8.8", entry]})
            msg = r.json().get("error", {}).get("message", "") if r.status == 400 else ""
            if r.code != "VALIDATION_FAILED" or "'%s'" % entry not in msg or key + "[1]" not in msg:
                wrong.append((key, entry, r))
    t.ok(not wrong, "bad entries in allowOut/denyOut: 400 VALIDATION_FAILED naming the entry (%d each)" % len(bad),
         wrong[:5])
    cases = [({"network": "egress", "allowOut": "10.0.0.0/8"}, "allowOut must be an array"),
             ({"network": "egress", "denyOut": {"a": 1}}, "denyOut must be an array"),
             ({"network": "egress", "allowOut": [8]}, "allowOut[0] must be a string"),
             ({"network": "egress", "denyOut": [None]}, "denyOut[0] must be a string"),
             ({"network": "egress", "allowOut": ["10.0.%d.0/24" % i for i in range(257)]}, "more than 256"),
             ({"network": "none", "allowOut": ["10.0.0.0/8"]}, "egress"),
             ({"denyOut": ["0.0.0.0/0"]}, "egress")]
    wrong = []
    for body, want in cases:
        r = srv.put("/v1/sandboxes/np-bad", body)
        if r.code != "VALIDATION_FAILED" or want not in r.json()["error"]["message"]:
            wrong.append((body if len(json.dumps(body)) < 200 else "257 entries", r))
    t.ok(not wrong, "not arrays, not strings, 257 entries, network none + a list: 400 with the reason", wrong)
    r = srv.put("/v1/sandboxes/np-bad", {"network": "egress", "denyOut": ["10.1.2.3/24"]})
    r6 = srv.put("/v1/sandboxes/np-bad", {"network": "egress", "allowOut": ["2001:db8:0:1::5/48"]})
    t.ok(r.code == "VALIDATION_FAILED" and "10.1.2.0/24" in r.json()["error"]["message"]
         and r6.code == "VALIDATION_FAILED" and "(the network is 2001:db8::/48)" in r6.json()["error"]["message"],
         "an entry with host bits set (IPv4, IPv6): the message names the network meant", (r, r6))
    t.eq(srv.get("/v1/sandboxes/np-bad").status, 404, "no sandbox made by a refused request")
    r = srv.put("/v1/sandboxes/np-norm", {"network": "egress",
                                          "allowOut": ["8.8.8.8/32", "0.0.0.0/0", "2001:DB8:0:0::1/128", "::/0",
                                                       "FC00::/7", "::ffff:10.0.0.0/104", "2001:db8::/32"],
                                          "denyOut": ["10.0.0.0/8", "10.1.0.0/16", "10.0.0.0/8", "::1"]})
    t.ok(r.status == 201 and r.json()["options"].get("allowOut") == ["8.8.8.8", "0.0.0.0/0", "2001:db8::1", "::/0",
                                                                     "fc00::/7", "::ffff:10.0.0.0/104", "2001:db8::/32"]
         and r.json()["options"].get("denyOut") == ["10.0.0.0/8", "10.1.0.0/16", "10.0.0.0/8", "::1"],
         "256 or fewer valid IPv4 and IPv6 entries accepted; shown normalised in options (a /32 or /128 as an "
         "address, IPv6 in its canonical form)", r)
    srv.delete("/v1/sandboxes/np-norm")
    r = srv.put("/v1/sandboxes/np-def", {"network": "egress", "allowOut": [], "denyOut": []})
    t.ok(r.status == 201 and r.json()["options"].get("allowOut") == [] and r.json()["options"].get("denyOut") == [],
         "egress sandbox: options show allowOut and denyOut", r)

    # ---- defaults ----------------------------------------------------------
    res = probe(srv, "np-def", PUB, PUB2, BENCH, META, TEN, C192, C172, CGNAT)
    t.ok(reachable(res, PUB, PUB2, BENCH) and refused(res, META),
         "defaults: cloud metadata %s refused at once (TCP reset); public addresses reachable" % META, res)
    t.ok(refused(res, TEN, C192, C172, CGNAT),
         "defaults: private and shared ranges (10/8, 192.168/16, 172.16/12, 100.64/10) refused at once", res)
    res = probe(srv, "np-def", PUB6, PUB6B, WEB6, ULA6, NAT64, "udp:%s:9" % ULA6, "tcp:%s:53" % NS6)
    t.ok(reachable(res, PUB6, PUB6B, WEB6) and refused(res, ULA6, NAT64, "tcp:%s:53" % NS6)
         and refused(res, "udp:%s:9" % ULA6, err="EACCES"),
         "defaults, IPv6: public addresses reachable; unique local %s (fc00::/7) and NAT64 %s refused at once "
         "(TCP reset; UDP: ICMPv6 admin-prohibited, EACCES)" % (ULA6, NAT64), res)
    if dns:
        x = srv.sh("np-def", "getent ahostsv4 deb.debian.org >/dev/null && echo resolved")
        res = probe(srv, "np-def", "udp:%s:54" % dns, "tcp:%s:80" % dns)
        t.ok("resolved" in x["stdout"] and refused(res, "udp:%s:54" % dns, err="EHOSTUNREACH")
             and refused(res, "tcp:%s:80" % dns),
             "defaults: names resolve through the host's nameserver %s (port 53 only: udp 54 gets "
             "admin-prohibited, tcp 80 a reset)" % dns, (x, res))
    else:
        t.ok(True, "# SKIP the host has no working IPv4 nameserver")

    # ---- allowOut, denyOut, allow-list -------------------------------------
    srv.create("np-allow", network="egress", allowOut=[TEN, "169.254.0.0/16", "64:ff9b::/96"])
    res = probe(srv, "np-allow", TEN, META, C192, PUB)
    t.ok(reachable(res, TEN, META, PUB) and refused(res, C192),
         "allowOut opens a private address and the metadata range; other private ones stay refused", res)
    res = probe(srv, "np-allow", NAT64, ULA6, PUB6)
    t.ok(reachable(res, NAT64, PUB6) and refused(res, ULA6),
         "allowOut opens a default-denied IPv6 range (64:ff9b::/96); fc00::/7 stays refused", res)
    srv.create("np-deny", network="egress", denyOut=["198.51.100.0/24", "2001:db8:1::/48"])
    res = probe(srv, "np-deny", PUB, PUB2, BENCH, "udp:%s:9" % PUB, PUB6, PUB6B, WEB6, "udp:%s:9" % PUB6)
    t.ok(refused(res, PUB) and reachable(res, PUB2, BENCH), "denyOut refuses a public range, the rest is reachable", res)
    t.ok(refused(res, "udp:%s:9" % PUB, err="EHOSTUNREACH"),
         "a refused UDP destination gets ICMP admin-prohibited (EHOSTUNREACH at once)", res)
    t.ok(refused(res, PUB6) and reachable(res, PUB6B, WEB6) and refused(res, "udp:%s:9" % PUB6, err="EACCES"),
         "denyOut refuses a public IPv6 range at once (TCP reset; UDP: ICMPv6 admin-prohibited, EACCES), "
         "the rest is reachable", res)
    srv.create("np-list", network="egress", denyOut=["0.0.0.0/0", "::/0"], allowOut=[PUB, "192.168.250.0/24", "2001:db8:2::/48"])
    res = probe(srv, "np-list", PUB, C192, PUB2, BENCH, TEN, META, PUB6B, PUB6, WEB6, NAT64, ULA6)
    t.ok(reachable(res, PUB, C192, PUB6B) and refused(res, PUB2, BENCH, TEN, META, PUB6, WEB6, NAT64, ULA6),
         "allow-list (denyOut 0.0.0.0/0 and ::/0): only allowOut is reachable, IPv4 and IPv6", res)
    if dns:
        res = probe(srv, "np-list", "udp:%s:53" % dns)
        t.ok(refused(res, "udp:%s:53" % dns, err="EHOSTUNREACH"),
             "allow-list: DNS to the host's nameserver refused too (denyOut wins over the DNS exception)", res)
    else:
        t.ok(True, "# SKIP the host has no working IPv4 nameserver")
    x = srv.sh("np-list", "cat /etc/resolv.conf >/dev/null; timeout 5 bash -c 'echo > /dev/tcp/%s/%d' 2>&1; echo rc=$?"
               % (BENCH, PORT))
    t.ok("rc=0" not in x["stdout"] and "refused" in x["stdout"].lower(),
         "bash /dev/tcp sees 'Connection refused' for a refused destination", x)

    # ---- nftables ------------------------------------------------------------
    slots = {sid: slot(srv, sid) for sid in ("np-def", "np-allow", "np-deny", "np-list")}
    t.ok(all(nft_has_slot(n) == (True, True) for n in slots.values()),
         "each running egress sandbox has its chain and map entry", (slots, sh("nft list table ip cellbox").stdout))
    srv.delete("/v1/sandboxes/np-deny")
    others = [nft_has_slot(slots[s]) for s in ("np-def", "np-allow", "np-list")]
    t.ok(nft_has_slot(slots["np-deny"]) == (False, False) and all(o == (True, True) for o in others),
         "delete removes the sandbox's chain and map entry, and only those", sh("nft list table ip cellbox").stdout)
    # link-local and multicast cannot be forwarded at all; the IPv6 chain
    # refuses them (and every default-denied range) all the same, and drops
    # what a sandbox sends from an address not its own
    chain = sh("nft list chain ip6 cellbox eg%d" % slots["np-def"]).stdout
    want = ["fe80::/10", "ff00::/8", "fc00::/7", "64:ff9b::/96", "::ffff:0:0/96", "::1/128", "::/128", "2002::/16"]
    t.ok(all(refused_by_chain(chain, w) for w in want) and not refused_by_chain(chain, "2001:db8::/32")
         and "ip6 saddr != " in chain,
         "the IPv6 chain refuses link-local, multicast, ULA, NAT64, IPv4-mapped, loopback, 6to4 (not 2001:db8::/32); "
         "and checks the source address", chain)

    # ---- restart -------------------------------------------------------------
    before = srv.get("/v1/sandboxes/np-list").json()["options"]
    t.eq(srv.stop(), 0, "graceful stop")
    t.ok("cellbox" not in sh("nft list tables").stdout, "host rules removed at shutdown")
    srv.start()
    after = srv.get("/v1/sandboxes/np-list").json()["options"]
    keys = ("network", "allowOut", "denyOut")
    LIST_ALLOW, LIST_DENY = [PUB, "192.168.250.0/24", "2001:db8:2::/48"], ["0.0.0.0/0", "::/0"]
    t.ok([after.get(k) for k in keys] == [before.get(k) for k in keys] == ["egress", LIST_ALLOW, LIST_DENY],
         "allowOut/denyOut survive a restart", (before, after))
    res = probe(srv, "np-list", PUB, C192, PUB2, TEN, PUB6B, PUB6)
    t.ok(reachable(res, PUB, C192, PUB6B) and refused(res, PUB2, TEN, PUB6), "the policy applies again after a restart", res)

    # ---- fork: the copy has the same policy, on its own address -------------
    r = srv.post("/v1/sandboxes/np-list/fork", {"id": "np-fork", "path": "/workspace"})
    opts = r.json().get("options", {}) if r.status in (200, 201) else {}
    t.ok(r.status in (200, 201) and opts.get("network") == "egress"
         and opts.get("allowOut") == LIST_ALLOW and opts.get("denyOut") == LIST_DENY,
         "a fork of an egress sandbox has its network, allowOut and denyOut", r)
    res = probe(srv, "np-fork", PUB, C192, PUB2, BENCH, TEN, META, PUB6B, PUB6)
    t.ok(reachable(res, PUB, C192, PUB6B) and refused(res, PUB2, BENCH, TEN, META, PUB6),
         "the fork's policy is enforced on its own address (allow-list: only allowOut reachable)", res)
    fslot = slot(srv, "np-fork")
    t.ok(fslot is not None and fslot != slot(srv, "np-list") and nft_has_slot(fslot) == (True, True),
         "the fork has its own chain and map entry", (fslot, sh("nft list table ip cellbox").stdout))
    srv.delete("/v1/sandboxes/np-fork")
    res = probe(srv, "np-list", PUB, PUB2)
    t.ok(nft_has_slot(fslot) == (False, False) and reachable(res, PUB) and refused(res, PUB2),
         "deleting the fork removes its rules only; the source's policy still applies", res)

    # ---- --egress-private allow ----------------------------------------------
    t.eq(srv.stop(), 0, "graceful stop")
    r = subprocess.run([CELLBOX, "serve", "--egress-private", "maybe"], capture_output=True, text=True)
    t.ok(r.returncode == 2 and "deny or allow" in r.stderr, "--egress-private takes deny or allow", r)
    srv.extra_args = ["--egress-private", "allow"]
    srv.start()
    res = probe(srv, "np-def", TEN, C192, C172, CGNAT, META, PUB, ULA6, NAT64)
    t.ok(reachable(res, TEN, C192, C172, CGNAT, PUB, ULA6) and refused(res, META, NAT64),
         "--egress-private allow: private ranges (fc00::/7 too) reachable, metadata (and NAT64) still refused", res)
    res = probe(srv, "np-list", TEN, C192, ULA6)
    t.ok(reachable(res, C192) and refused(res, TEN, ULA6), "--egress-private allow: a sandbox's denyOut still applies", res)

    # ---- the host's IPv6 nameservers: a server whose /etc/resolv.conf (in a
    # mount namespace of its own, bound over the host's) names NS6 -------------
    t.eq(srv.stop(), 0, "graceful stop")
    conf = os.path.join(srv.tmp, "resolv.conf")
    with open(conf, "w") as f:
        f.write("nameserver %s\nnameserver fe80::1%%eth0\n" % NS6)
    srv.extra_args = []
    srv.wrap = ["unshare", "--fork", "--mount", "--propagation", "private", "sh", "-c",
                'mount --bind "$0" /etc/resolv.conf && exec "$@"', conf]
    srv.start()
    x = srv.sh("np-def", "cat /etc/resolv.conf")
    ns53, ns80, ns54 = "tcp:%s:53" % NS6, "tcp:%s:%d" % (NS6, PORT), "udp:%s:54" % NS6
    res = probe(srv, "np-def", ns53, ns80, ns54, ULA6)
    t.ok(NS6 in x["stdout"] and reachable(res, ns53) and refused(res, ns80, ULA6) and refused(res, ns54, err="EACCES"),
         "an IPv6 nameserver of the host (%s, in fc00::/7) is reachable on port 53 only" % NS6, (x, res))
    res = probe(srv, "np-list", ns53)
    t.ok(refused(res, ns53), "allow-list: denyOut ::/0 refuses the IPv6 nameserver too", res)
finally:
    if srv:
        srv.finish(t, IDS, "graceful stop", egress=True)
    for p in (listener, listener53):
        if p:
            p.kill()
            p.wait()
    sh("ip link del %s" % VH)  # its routes go with it
    sh("ip netns del %s" % NS)
t.done()
