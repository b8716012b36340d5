"""Tracebacks in IPython's form with ipykernel's colours, compared with
ipykernel on the same failing cells: the same blocks (header, one per
frame, the error line, chained exceptions), the same text once the colours
are removed (frame links, code context line numbers with the comment
lines around, the failing line),
and the colours of the scheme where IPython puts them. Output: TAP."""
import re

import display_util as du
import kutil

tap = kutil.TAP()
ANSI = re.compile(r"\x1b\[[0-9;]*m")

CELLS = [
    ("define functions", "def inner(x):\n    return 1 / x\n\ndef outer(y):\n    z = y - 1\n    return inner(z)"),
    ("error two frames deep", "outer(1)"),
    ("error in the standard library", "import json\njson.loads('{bad')"),
    ("bare raise", "raise ValueError"),
    ("error inside a block", "for i in range(3):\n    if i == 2:\n        undefined_name"),
    ("chained with from", "try:\n    1/0\nexcept Exception as e:\n    raise KeyError('x') from e"),
    ("chained while handling", "try:\n    [][1]\nexcept IndexError:\n    int('x')"),
    ("syntax error", "def f(:\n    pass"),
    ("method of a class", "class K:\n    def m(self, a, *rest, **kw):\n        return a.missing\nK().m(3)"),
    # comments are context too (a run of them is one of stack_data's pieces)
    ("comments around the failing line", "x = 1\n# comment before the error\n1/0\n# after\ny = 2"),
    ("comments in a function", "def f():\n    x = 1\n    # a comment\n    # another\n    y = 2\n\n    return 1/0\nf()"),
    ("a comment after the failing line", "def g():\n    a = 1\n    b = a / 0  # trailing\n    # after\n    return b\ng()"),
]


def strip(s):
    return ANSI.sub("", s)


def shape(tb):
    """What must agree: per block, its stripped first line, and for frames
    the numbers of the lines shown and the failing line's text."""
    out = []
    for block in tb:
        lines = strip(block).split("\n")
        if lines[0].startswith(("Cell ", "File ")):
            nums = [l.split()[1] if l.lstrip().startswith("-") else l.split()[0]
                    for l in lines[1:] if l.strip() and not l.strip().startswith("(...)")]
            cur = [l for l in lines[1:] if re.match(r"\s*-*> ", l)]
            out.append(("frame", lines[0], nums, [c.rstrip() for c in cur]))
        else:
            out.append(("text", strip(block).strip()))
    return out


def errors(kernel):
    km, kc = du.start(kernel)
    try:
        res = []
        for name, code in CELLS:
            reply, out = du.collect(kc, code)
            errs = [c for t, c, b in out if t == "error"]
            res.append((reply, errs[0] if errs else None))
        return res
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


ours = errors("cellbox")
theirs = errors("python3")

for (name, code), (r1, e1), (r2, e2) in zip(CELLS, ours, theirs):
    if e2 is None:
        tap.ok(e1 is None and r1["status"] == "ok", "no error: %s" % name, str(e1))
        continue
    if not tap.ok(e1 is not None, "an error output: %s" % name, str(r1)):
        continue
    tap.eq(e1["ename"], e2["ename"], "ename: %s" % name)
    if e1["ename"] != "SyntaxError":
        tap.eq(e1["evalue"], e2["evalue"], "evalue: %s" % name)
    s1, s2 = shape(e1["traceback"]), shape(e2["traceback"])
    tap.eq(s1, s2, "same traceback blocks and text as ipykernel: %s" % name)

# colours where ipykernel puts them
e = ours[1][1]["traceback"]
RED, GREEN, CYAN, BLUE = "\x1b[0;31m", "\x1b[0;32m", "\x1b[0;36m", "\x1b[0;34m"
tap.ok(e[0].startswith(RED + "-" * 75), "the top rule is red")
tap.ok(e[1].startswith(RED + "ZeroDivisionError\x1b[0m") and e[1].endswith("Traceback (most recent call last)"),
       "the header names the exception in red", repr(e[1]))
tap.ok(e[2].startswith("Cell " + GREEN + "In [") and (GREEN + "----> 1\x1b[0m") in e[2],
       "frame link and arrow in green", repr(e[2]))
tap.ok((CYAN + "outer" + BLUE + "(y)\x1b[0m") in e[3], "function in cyan, its arguments in blue", repr(e[3]))
tap.ok("\x1b[1;32m      4\x1b[0m" in e[3], "context line numbers in bold green", repr(e[3]))
tap.ok("\x1b[43m" in e[3] and "\x1b[38;5;28;01mreturn" in e[3],
       "code coloured like pygments' default style, the failing call on yellow", repr(e[3]))
tap.eq(e[-1], RED + "ZeroDivisionError\x1b[0m: division by zero", "the error line")
tap.ok(all(isinstance(x, str) for x in e), "every block is a string")
