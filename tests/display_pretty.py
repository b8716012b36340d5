"""text/plain as IPython writes it: cellbox's pretty printer (interp/py/
cellbox/_pretty.py, imported from the source tree) against IPython.lib.pretty
on a list of typical results and on 3000 random nested containers at
several widths. Output: TAP."""
import collections
import datetime
import io
import os
import random
import re
import sys
import types

import kutil

sys.path.insert(0, os.path.join(kutil.SRCDIR, "interp", "py"))
from cellbox import _pretty  # noqa: E402
from IPython.lib import pretty as ipretty  # noqa: E402

tap = kutil.TAP()


def f(x, y=2, *a, k=None, **kw):
    pass


class A:
    pass


class B:
    def __repr__(self):
        return "B(\n  1,\n  2)"


class C:
    def _repr_pretty_(self, p, cycle):
        with p.group(2, "C<", ">"):
            p.text("a")
            p.breakable()
            p.text("b" * 40)
            p.breakable()
            p.text("c" * 50)


class L(list):
    pass


class L2(list):
    def __repr__(self):
        return "L2!"


cyc = [1, 2]
cyc.append(cyc)
d = {}
d["self"] = d
CASES = [
    ("int", 1), ("str", "x"), ("None", None), ("bool", True), ("float", 1.5), ("long list", list(range(40))),
    ("nested dict", {"b": 1, "a": [1] * 30}), ("mixed set", {3, 1, "a"}), ("empty set", set()),
    ("empty frozenset", frozenset()), ("frozenset", frozenset({1, 2})), ("1-tuple", (1,)), ("empty tuple", ()),
    ("type", int), ("class", A), ("function", f), ("builtin function", print), ("instance", A()),
    ("multi-line repr", B()), ("list of multi-line reprs", [B(), B()]), ("_repr_pretty_", C()),
    ("list of _repr_pretty_", [C(), C()]), ("list subclass", L([1, 2])), ("list subclass with repr", L2([1])),
    ("cyclic list", cyc), ("cyclic dict", d), ("regex with flags", re.compile(r"a\d+", re.I | re.M)),
    ("regex", re.compile("x")), ("SimpleNamespace", types.SimpleNamespace(a=1, b="x" * 80)),
    ("OrderedDict", collections.OrderedDict(a=1)), ("empty OrderedDict", collections.OrderedDict()),
    ("deque", collections.deque([1, 2], maxlen=5)), ("Counter", collections.Counter("aab")),
    ("defaultdict", collections.defaultdict(list, {1: [2]})), ("exception", ValueError("x", 2)),
    ("KeyError", KeyError("k")), ("datetime", datetime.datetime(2020, 1, 2)), ("super", super(B, B())),
    ("dict of lists", {"k%d" % i: list(range(i)) for i in range(12)}), ("deep nesting", [[list(range(10))] * 5] * 3),
    ("long str", "a" * 200), ("list of long str", ["a" * 100, "b"]), ("dict of str", {i: "v" * i for i in range(30)}),
    ("list over 1000 items", list(range(2000))), ("set over 1000 items", set(range(1500))),
    ("mappingproxy", types.MappingProxyType({"a": 1})), ("range", range(10)), ("bytes", b"abc"),
    ("slice", slice(1, 2)), ("unbound method", A.__init__), ("builtin method", [].append), ("complex", 1 + 2j),
    ("Ellipsis", Ellipsis),
]
for name, obj in CASES:
    tap.eq(_pretty.pretty(obj), ipretty.pretty(obj), "pretty: %s" % name)

rnd = random.Random(1)


def gen(depth):
    k = rnd.randrange(8 if depth < 4 else 3)
    if k == 0:
        return rnd.randrange(-10 ** rnd.randrange(12), 10 ** rnd.randrange(12))
    if k == 1:
        return "x" * rnd.randrange(30)
    if k == 2:
        return rnd.random()
    if k == 3:
        return [gen(depth + 1) for _ in range(rnd.randrange(12))]
    if k == 4:
        return tuple(gen(depth + 1) for _ in range(rnd.randrange(6)))
    if k == 5:
        return {str(rnd.randrange(1000)): gen(depth + 1) for _ in range(rnd.randrange(8))}
    if k == 6:
        return {rnd.randrange(100) for _ in range(rnd.randrange(8))}
    return B()


bad = []
for i in range(3000):
    o = gen(0)
    w = rnd.choice([79, 40, 20, 120])
    a = _pretty.Printer(max_width=w)
    a.pretty(o)
    b = ipretty.RepresentationPrinter(io.StringIO(), max_width=w)
    b.pretty(o)
    b.flush()
    if a.getvalue() != b.output.getvalue():
        bad.append((w, b.output.getvalue()[:200], a.getvalue()[:200]))
tap.ok(not bad, "3000 random nested containers at widths 20-120 break like IPython's", bad[:3])

# the formatter API on top of it: printers registered by type
pt = _pretty.PlainText()
pt.type_printers[int] = lambda obj, p, cycle: p.text("I" * obj)
tap.eq(pt([2, 3]), "[II, III]", "a type printer registered for int is used inside containers")
pt.float_precision = 2
tap.eq(pt(3.14159), "3.14", "float_precision")
