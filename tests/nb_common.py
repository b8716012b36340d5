"""Shared helpers of the notebook tests (tests/nb_*.py): TAP output, paths,
running `cellbox run`, and the normalisation used to compare executed
notebooks from different executors.

normalize() removes exactly what legitimately differs between two runs of
the same notebook: cell ids, timing metadata (cell.metadata.execution,
papermill's times), memory addresses, and how a kernel happened to chunk a
stream (consecutive stream outputs of one name are merged, as cellbox stores
them and as Jupyter displays them). Everything else must be equal.
"""
import copy
import glob
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import ports  # noqa: F401  (kernel ports outside the ephemeral range, as kutil)

CELLBOX = os.environ.get("CELLBOX") or os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "cellbox")
SRCDIR = os.environ.get("CELLBOX_SRCDIR") or os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
BUILDDIR = os.environ.get("CELLBOX_BUILDDIR") or SRCDIR
CORPUS = os.path.join(SRCDIR, "tests", "notebooks", "corpus")
BAD = os.path.join(SRCDIR, "tests", "notebooks", "bad")


_current_tap = None


class Tap:
    def __init__(self):
        global _current_tap
        self.n = 0
        self.failed = 0
        _current_tap = self

    def ok(self, cond, name, diag=None):
        self.n += 1
        print("%s %d - %s" % ("ok" if cond else "not ok", self.n, name), flush=True)
        if not cond:
            self.failed += 1
            if diag:
                for line in str(diag).splitlines()[:60]:
                    print("#   " + line)
        return cond

    def skip(self, name, why):
        self.n += 1
        print("ok %d - %s # SKIP %s" % (self.n, name, why), flush=True)

    def diag(self, msg):
        for line in str(msg).splitlines():
            print("# " + line, flush=True)

    def done(self):
        print("1..%d" % self.n, flush=True)
        return 1 if self.failed else 0


def tempdir(prefix="cellbox-nb-test-"):
    return tempfile.mkdtemp(prefix=prefix)


def copy_corpus(tmp):
    """A copy of the corpus in tmp/in, to run in place: returns that folder
    and its notebooks, sorted."""
    work = os.path.join(tmp, "in")
    shutil.copytree(CORPUS, work)
    return work, sorted(glob.glob(os.path.join(work, "*.ipynb")))


def kernelspec_env(tmp):
    """An environment in which the kernelspec 'cellbox' is this build's kernel."""
    prefix = os.path.join(tmp, "prefix")
    subprocess.run([CELLBOX, "kernelspec", "install", "--prefix", prefix], check=True,
                   stdout=subprocess.DEVNULL)
    os.environ["PYDEVD_DISABLE_FILE_VALIDATION"] = "1"  # ipykernel's debugger chatter
    env = dict(os.environ)
    share = os.path.join(prefix, "share", "jupyter")
    env["JUPYTER_PATH"] = share + (":" + env["JUPYTER_PATH"] if env.get("JUPYTER_PATH") else "")
    os.environ["JUPYTER_PATH"] = env["JUPYTER_PATH"]  # for in-process nbclient too
    return env


def run(args, env=None, timeout=300, cwd=None, input=None):
    """Runs cellbox with args; returns CompletedProcess (text)."""
    return subprocess.run([CELLBOX] + list(args), capture_output=True, text=True, env=env, timeout=timeout,
                          cwd=cwd, input=input)


def wait_for_file(path, timeout=60):
    """Whether path exists within timeout seconds (polled every 50 ms)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if os.path.exists(path):
            return True
        time.sleep(0.05)
    return False


def kill_if_alive(pid):
    """SIGKILL pid if it still runs (a leftover a failed test would leave)."""
    if pid and pid_alive(pid):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def pid_alive(pid):
    """True while the process exists and is not a zombie."""
    try:
        with open("/proc/%d/stat" % pid) as fh:
            return fh.read().split(") ")[1][0] != "Z"
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


def load(path):
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


ADDR = re.compile(r"0x[0-9a-fA-F]{6,}")


def _strings(obj, fn):
    if isinstance(obj, dict):
        return {k: _strings(v, fn) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_strings(v, fn) for v in obj]
    if isinstance(obj, str):
        return fn(obj)
    return obj


def _join(v):
    return "".join(v) if isinstance(v, list) else v


def merge_streams(outputs):
    merged = []
    for o in outputs:
        if o.get("output_type") == "stream":
            o = dict(o, text=_join(o.get("text", "")))
            if merged and merged[-1].get("output_type") == "stream" and merged[-1].get("name") == o.get("name"):
                merged[-1] = dict(merged[-1], text=merged[-1]["text"] + o["text"])
                continue
        merged.append(o)
    return merged


def png_pixels(b64):
    """A digest of a PNG's pixels as RGBA: kernels may encode the same image
    differently (RGB vs RGBA, filters, compression)."""
    import base64
    import hashlib
    import io
    import numpy as np
    from matplotlib import image
    px = image.imread(io.BytesIO(base64.b64decode(b64)), format="png")
    if px.ndim == 3 and px.shape[2] == 3:
        px = np.concatenate([px, np.ones(px.shape[:2] + (1,), px.dtype)], axis=2)
    return "png %s %s" % ("x".join(map(str, px.shape)), hashlib.sha256(px.astype("float32").tobytes()).hexdigest())


def normalize(nb, kernel_neutral=False):
    """A comparable copy of a notebook dict (json.load of the file). With
    kernel_neutral, what differs between two kernels by design is left out:
    kernel metadata, traceback formatting, PNG encoding (pixels compared)."""
    nb = copy.deepcopy(nb)
    md = nb.get("metadata", {})
    md.pop("papermill", None)
    if kernel_neutral:
        md.pop("language_info", None)
        md.pop("kernelspec", None)
    for cell in nb.get("cells", []):
        cell.pop("id", None)
        cmd = cell.get("metadata", {})
        cmd.pop("execution", None)
        cmd.pop("papermill", None)
        if "source" in cell:
            cell["source"] = _join(cell["source"])
        if cell.get("cell_type") == "code":
            outs = merge_streams(cell.get("outputs", []))
            for o in outs:
                if "data" in o:
                    o["data"] = {k: (v if k.endswith("json") else _join(v)) for k, v in o["data"].items()}
                    if kernel_neutral and "image/png" in o["data"]:
                        o["data"]["image/png"] = png_pixels(o["data"]["image/png"])
                if kernel_neutral and o.get("output_type") == "error":
                    o["traceback"] = ["(traceback not compared across kernels)"]
            cell["outputs"] = outs
    return _strings(nb, lambda s: ADDR.sub("0xADDR", s))


def first_difference(a, b, path="$"):
    """A short description of where two JSON values differ, or None."""
    if type(a) != type(b):
        return "%s: %s vs %s" % (path, type(a).__name__, type(b).__name__)
    if isinstance(a, dict):
        for k in sorted(set(a) | set(b)):
            if k not in a or k not in b:
                return "%s: key %r only in %s" % (path, k, "first" if k in a else "second")
            d = first_difference(a[k], b[k], "%s.%s" % (path, k))
            if d:
                return d
        return None
    if isinstance(a, list):
        if len(a) != len(b):
            return "%s: %d vs %d items\n first: %s\n second: %s" % (path, len(a), len(b),
                                                                  json.dumps(a)[:1500], json.dumps(b)[:1500])
        for i, (x, y) in enumerate(zip(a, b)):
            d = first_difference(x, y, "%s[%d]" % (path, i))
            if d:
                return d
        return None
    if a != b:
        return "%s: %r vs %r" % (path, str(a)[:800], str(b)[:800])
    return None


def nbformat_rewrite(path):
    """What nbformat.write() produces for the notebook in path."""
    import nbformat
    nb = nbformat.read(path, as_version=nbformat.NO_CONVERT)
    text = nbformat.writes(nb)
    return text if text.endswith("\n") else text + "\n"


def read_text(path):
    with open(path, encoding="utf-8") as fh:
        return fh.read()


def rmtree(path):
    shutil.rmtree(path, ignore_errors=True)


def nbclient_execute(path, kernel, cwd):
    """Executes with nbclient in this process; returns the notebook dict.

    nbclient and the kernel it runs are the reference here, not what is under
    test: a run of theirs that fails is tried once more (a fresh kernel), and
    the first failure is printed as a TAP comment so that a flaky reference
    shows up in the log instead of hiding. A second failure is raised."""
    import nbformat
    from nbclient import NotebookClient

    def once():
        nb = nbformat.read(path, as_version=4)
        NotebookClient(nb, kernel_name=kernel, timeout=120, startup_timeout=60,
                       resources={"metadata": {"path": cwd}}).execute()
        return json.loads(nbformat.writes(nb))
    try:
        return once()
    except Exception as e:
        print("# note: nbclient (%s) failed on %s, trying once more: %s: %s"
              % (kernel, os.path.basename(path), type(e).__name__,
                 " ".join(str(e).split())[:400]), flush=True)
    return once()


def quiet_logs():
    import logging
    import warnings
    logging.disable(logging.CRITICAL)
    warnings.simplefilter("ignore")


def nbformat_rewrite_text(text):
    import nbformat
    nb = nbformat.reads(text, as_version=nbformat.NO_CONVERT)
    out = nbformat.writes(nb)
    return out if out.endswith("\n") else out + "\n"


def tap_main(fn):
    """Runs a test's main(); an unexpected exception becomes a failing TAP
    line with its traceback (instead of a missing plan)."""
    import traceback
    try:
        return fn()
    except Exception:
        t = _current_tap or Tap()
        t.ok(False, "the test ran to its end", traceback.format_exc())
        return t.done()
