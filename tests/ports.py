"""Kernel ports for the tests: outside the machine's ephemeral range.

Imported by kutil and nb_common; importing it patches jupyter_client so that
every kernel a test starts in-process (jupyter_client, nbclient) gets its
ports this way.
"""


def free_port(ip="127.0.0.1"):
    """A free port outside this machine's ephemeral range. jupyter_client picks
    kernel ports from that range (bind to port 0), where the source ports of
    outgoing connections come from too: while a kernel starts, one of the many
    local connections of a parallel test run can take its port (or a client
    connecting early can self-connect to it), and the kernel dies with
    "Address already in use". cellbox's own client picks the same way."""
    import random
    import socket
    lo, hi = 32768, 60999
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            lo, hi = (int(x) for x in f.read().split())
    except (OSError, ValueError):
        pass
    below, above = max(lo - 10000, 0), max(65535 - hi, 0)
    rng = random.SystemRandom()
    for _ in range(500):
        k = rng.randrange(below + above) if below + above else 0
        port = 10000 + k if k < below else hi + 1 + (k - below)
        s = socket.socket()
        try:
            s.bind((ip, port if below + above else 0))
            return s.getsockname()[1]
        except OSError:
            continue
        finally:
            s.close()
    raise OSError("no free port outside the ephemeral range %d-%d" % (lo, hi))


def patch_jupyter_client():
    try:
        from jupyter_client.connect import LocalPortCache
    except ImportError:
        return

    def find_available_port(self, ip):
        while True:
            port = free_port(ip)
            if port not in self.currently_used_ports:
                self.currently_used_ports.add(port)
                return port
    LocalPortCache.find_available_port = find_available_port


patch_jupyter_client()
