"""Completion in the cellbox kernel, against ipykernel: for each text the
set of matches and the replaced range must be what ipykernel answers —
names, attributes, modules, keyword arguments, paths in strings,
in `!` lines and magic arguments, magics (line and cell), LaTeX names
(`\\alpha` -> α) and Unicode names. Output: TAP.
"""
import os

import display_util as du
import kutil

tap = kutil.TAP()

WORK = os.path.join(kutil.TMP, "complete-work")
os.makedirs(os.path.join(WORK, "subdir_one"), exist_ok=True)
for n in ("data_a.csv", "data_b.csv"):
    open(os.path.join(WORK, n), "w").close()

SETUP = ("import os, numpy as np\nos.chdir(%r)\nd = {'alpha': 1, 'beta': 2}\n"
         "def func(param_one, param_two=3): pass\nclass K:\n    attr = 1\nk = K()\nlst = [1]" % WORK)

CASES = [
    "%ti", "%%ti", "%hist", "import nu", "from os import pa", "np.ara", "os.path.jo", "open('/us",
    "open('data_", "open('sub", "func(para", "k.at", "lst.ap", "np.arange(3).res",
    "\\alpha", "x = \\bet", "\\GREEK SMALL LETTER AL", "\\GREEK SMALL LETTER ALPHA",
    "!ls /us", "!cat data_", "%cd /us", "%cd sub", "%time np.ara", "%timeit lst.ap",
]


def run_all(name):
    km, kc = du.start(name)
    try:
        kc.execute_interactive(SETUP, timeout=60)
        out = []
        for c in CASES:
            kc.complete(c, len(c))
            r = kc.get_shell_msg(timeout=30)["content"]
            out.append((sorted(set(r["matches"])), r["cursor_start"], r["cursor_end"]))
        return out
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


ours, theirs = run_all("cellbox"), run_all("python3")
for c, a, b in zip(CASES, ours, theirs):
    tap.ok(a == b and a[0], "as ipykernel: %r -> %s" % (c, b[0][:4]), "cellbox:   %r\nipykernel: %r" % (a, b))
