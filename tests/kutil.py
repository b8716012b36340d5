"""Shared helpers for cellbox's Python integration tests (TAP output).

Every test script imports this first: it builds an isolated Jupyter
environment (temporary JUPYTER_PATH with a kernelspec pointing at the
freshly built binary, temporary data/runtime/history folders) so tests
never touch the user's own setup, and offers a tiny TAP producer.
"""
import atexit
import os
import shutil
import subprocess
import sys
import tempfile
import traceback

CELLBOX = os.environ.get("CELLBOX") or os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "cellbox")
CELLBOX = os.path.abspath(CELLBOX)
SRCDIR = os.environ.get("CELLBOX_SRCDIR") or os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")

_root = tempfile.mkdtemp(prefix="cellbox-test-")
atexit.register(shutil.rmtree, _root, True)
JUPYTER_PREFIX = os.path.join(_root, "jupyter")
os.environ["JUPYTER_PATH"] = os.path.join(JUPYTER_PREFIX, "share", "jupyter")
os.environ["JUPYTER_DATA_DIR"] = os.path.join(_root, "data")
os.environ["JUPYTER_RUNTIME_DIR"] = os.path.join(_root, "runtime")
os.environ["JUPYTER_CONFIG_DIR"] = os.path.join(_root, "config")
os.environ["XDG_DATA_HOME"] = os.path.join(_root, "xdg")
os.environ["IPYTHONDIR"] = os.path.join(_root, "ipython")
os.environ.pop("MPLBACKEND", None)
TMP = _root


def install_kernelspec(name="cellbox", interrupt_mode="signal"):
    subprocess.run([CELLBOX, "kernelspec", "install", "--prefix", JUPYTER_PREFIX, "--name", name,
                    "--interrupt-mode", interrupt_mode], check=True, stdout=subprocess.DEVNULL)
    return name


install_kernelspec()


from ports import free_port  # noqa: E402,F401  (and jupyter_client picks its ports there)


class TAP:
    def __init__(self):
        self.n = 0
        self.failed = 0
        atexit.register(self._done)

    def ok(self, cond, desc, diag=None):
        self.n += 1
        print("%sok %d - %s" % ("" if cond else "not ", self.n, desc), flush=True)
        if not cond:
            self.failed += 1
            if diag is not None:
                for line in str(diag).splitlines()[:40]:
                    print("#   " + line, flush=True)
        return cond

    def eq(self, got, want, desc):
        return self.ok(got == want, desc, "got:  %r\nwant: %r" % (got, want))

    def case(self, fn):
        """Decorator: run fn as a group; an exception is one failed case."""
        try:
            fn()
        except Exception:
            self.ok(False, "%s raised" % fn.__name__, traceback.format_exc())
        return fn

    def skip(self, desc, why):
        self.n += 1
        print("ok %d - %s # SKIP %s" % (self.n, desc, why), flush=True)

    def _done(self):
        print("1..%d" % self.n, flush=True)
        sys.stdout.flush()
        if self.failed:
            os._exit(1)


def start(kernel_name="cellbox", **kw):
    """A started kernel and its client. A peer's kernel (ipykernel and the
    others the tests compare with) that fails to start is tried twice more,
    with a line saying so: its start is not under test, and on a loaded
    machine it can miss the startup timeout. cellbox's own must start the
    first time."""
    from jupyter_client.manager import start_new_kernel
    tries = 1 if kernel_name.startswith("cellbox") else 3
    for i in range(tries):
        try:
            return start_new_kernel(kernel_name=kernel_name, startup_timeout=60, **kw)
        except Exception as e:
            if i + 1 == tries:
                raise
            print("# %s did not start (%s: %s); trying again" % (kernel_name, type(e).__name__, e), flush=True)


def run(kc, code, timeout=30, **kw):
    """Execute and collect: -> (reply content, [(msg_type, content)...]) for
    the IOPub messages of this request (status excluded)."""
    out = []

    def hook(m):
        if m["msg_type"] != "status":
            out.append((m["msg_type"], m["content"]))

    reply = kc.execute_interactive(code, output_hook=hook, timeout=timeout, **kw)
    return reply["content"], out


def stream_text(out, name="stdout"):
    return "".join(c["text"] for t, c in out if t == "stream" and c["name"] == name)


def results(out):
    return [c["data"].get("text/plain") for t, c in out if t == "execute_result"]
