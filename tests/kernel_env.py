"""The process a notebook runs in, against ipykernel: what code can observe
about its interpreter and environment must be what it sees under ipykernel
(subprocess environment without pagers, the recursion limit, the main
module), so that code written for Jupyter behaves the same. Output: TAP.
"""
import display_util as du
import kutil

tap = kutil.TAP()

PARITY = [
    ("the recursion limit (3000: jedi sets it when IPython starts)", "import sys\nsys.getrecursionlimit()"),
    ("recursion 2500 deep works", "def down(n):\n    return 0 if n == 0 else 1 + down(n - 1)\ndown(2500)"),
    ("subprocesses get no pager and colour hints",
     "import os\n[os.environ.get(k) for k in ('TERM', 'CLICOLOR', 'PAGER', 'GIT_PAGER')]"),
    ("... through the shell too", "!echo $PAGER $GIT_PAGER $CLICOLOR"),
    ("the main module is the namespace",
     "import __main__\n__name__, __main__.__dict__ is globals(), '__builtins__' in globals()"),
    ("pickling a class defined in a cell",
     "import pickle\nclass A:\n    pass\ntype(pickle.loads(pickle.dumps(A()))).__name__"),
    ("inspect.getsource of a cell's function",
     "import inspect\ndef f(x):\n    return x\nprint(inspect.getsource(f))"),
    ("the executable is Debian's python3", "import os, sys\nos.path.realpath(sys.executable)"),
    ("the output streams", "import sys\n[(s.encoding, s.errors if hasattr(s, 'errors') else None, s.isatty(), "
                           "s.name) for s in (sys.stdout, sys.stderr)]"),
    ("logging to the root logger", "import logging\nlogging.basicConfig(level=logging.INFO)\n"
                                   "logging.info('info shown')\nlogging.getLogger('mine').warning('mine warns')"),
]


def run_all(name):
    km, kc = du.start(name)
    try:
        out = []
        for _, code in PARITY:
            reply, msgs = du.collect(kc, code)
            out.append((reply["status"], du.Normalizer().messages(du.merge_streams(msgs))))
        return out
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


ours, theirs = run_all("cellbox"), run_all("python3")
for (name, _), a, b in zip(PARITY, ours, theirs):
    tap.ok(a == b and a[0] == "ok", "same as ipykernel: %s" % name, "cellbox:   %r\nipykernel: %r" % (a, b))
