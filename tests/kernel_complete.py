"""Completion in the cellbox kernel, against ipykernel: for each text the
set of matches and the replaced range must be what ipykernel answers —
names, attributes, modules, keyword arguments, paths in strings,
in `!` lines and magic arguments (only paths for %cd, %ls and the
other magics taking a file), magics (line and cell), LaTeX names
(`\\alpha` -> α) and Unicode names; and inspection (Shift-Tab: the
inspect_request a frontend sends), which must give IPython's inspector page
as ipykernel does. Output: TAP.
"""
import os
import re

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
    # a path magic's argument is a path, not code (sum and super start with su)
    "%cd su", "%ls su", "%cat su",
]

# (code, cursor offset from the end, detail level)
INSPECT = [
    ("func", 0, 0), ("func", 0, 1), ("len", 0, 0), ("np.arange", 0, 0), ("k", 0, 0), ("K", 0, 0),
    ("lst", 0, 0), ("d", 0, 0), ("os.path", 0, 0), ("func(1, ", 0, 0), ("k.attr", 0, 0), ("no_such_name", 0, 0),
    ("x = func", 0, 0), ("np.arange(3).reshape", 0, 0),
]
CELL_FILE = re.compile(r"[^\s\x1b]*(/tmp/ipykernel_\d+/\d+\.py|<ipython-input-\d+-[0-9a-f]+>)")


def run_all(name):
    km, kc = du.start(name)
    try:
        kc.execute_interactive(SETUP, timeout=60)
        out = []
        for c in CASES:
            kc.complete(c, len(c))
            r = kc.get_shell_msg(timeout=30)["content"]
            out.append((sorted(set(r["matches"])), r["cursor_start"], r["cursor_end"]))
        insp = []
        for code, back, level in INSPECT:
            kc.inspect(code, len(code) - back, level)
            r = kc.get_shell_msg(timeout=60)["content"]
            # the file a cell's code was compiled under differs by nature
            # (and memory addresses)
            data = {k: du.Normalizer().text(CELL_FILE.sub("<cell>", v)) for k, v in r.get("data", {}).items()}
            insp.append((r["status"], r["found"], data))
        return out, insp
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


ours, theirs = run_all("cellbox"), run_all("python3")
for c, a, b in zip(CASES, ours[0], theirs[0]):
    tap.ok(a == b and a[0], "as ipykernel: %r -> %s" % (c, b[0][:4]), "cellbox:   %r\nipykernel: %r" % (a, b))
for (code, _, level), a, b in zip(INSPECT, ours[1], theirs[1]):
    tap.ok(a == b, "inspect as ipykernel: %r (detail %d)" % (code, level), "cellbox:   %r\nipykernel: %r" % (a, b))
