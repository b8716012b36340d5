"""cellbox.display without IPython: the display() builtin and the module's
classes and functions (HTML, Markdown, Math, Latex, SVG, JSON, Javascript,
Image from bytes / a file / a URL, Pretty, clear_output, update_display,
DisplayHandle), checked against IPython.display's classes run in the same
kernel: the same MIME data and metadata (only the class name in
text/plain differs). Also: IPython is not imported by any of this, and a
repr method that raises falls back with a warning. Output: TAP."""
import os
import struct
import zlib

import display_util as du
import kutil

tap = kutil.TAP()


def png(w, h):
    rows = b"".join(b"\x00" + b"".join(
        bytes([x * 9 % 256, y * 17 % 256, 99]) for x in range(w)) for y in range(h))

    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xffffffff)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


PNG = os.path.join(kutil.TMP, "img.png")
with open(PNG, "wb") as f:
    f.write(png(10, 6))
JPG = os.path.join(kutil.TMP, "img.jpg")
from PIL import Image as _PIL  # noqa: E402
_PIL.new("RGB", (12, 8), (20, 40, 200)).save(JPG)
SVG = os.path.join(kutil.TMP, "img.svg")
with open(SVG, "w") as f:
    f.write('<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="4" height="4"><rect width="4" height="4"/></svg>')

km, kc = du.start("cellbox")


def run(code):
    reply, out = du.collect(kc, code)
    return reply, out


def outputs(out):
    return [(t, c) for t, c, b in out if t in ("display_data", "execute_result", "update_display_data", "clear_output")]


# -- the builtin, and no IPython anywhere
r, out = run("display(1, 'two')\nimport sys\n'IPython' in sys.modules")
tap.eq([c["data"]["text/plain"] for t, c in outputs(out)], ["1", "'two'", "False"],
       "the display() builtin works without importing IPython")

r, out = run("import cellbox.display as cd\nfrom cellbox.display import *\n'IPython' in sys.modules")
tap.eq([c["data"]["text/plain"] for t, c in outputs(out)], ["False"], "importing cellbox.display does not import IPython")

PAIRS = [
    ("HTML", "HTML('<b>x</b>')"),
    ("HTML with metadata", "HTML('<b>x</b>', metadata={'isolated': True})"),
    ("Markdown", "Markdown('*m*')"),
    ("Math", "Math(r'x^2')"),
    ("Math with dollars", "Math(r'$x^2$')"),
    ("Latex", "Latex(r'\\\\begin{equation}a\\\\end{equation}')"),
    ("SVG from a string", "SVG('<svg xmlns=\"http://www.w3.org/2000/svg\"><circle r=\"2\"/></svg>')"),
    ("SVG from a file (prolog dropped)", "SVG(filename=%r)" % SVG),
    ("JSON", "JSON({'a': [1, 2]})"),
    ("JSON expanded, root", "JSON([1, {'b': None}], expanded=True, root='data')"),
    ("Image png from bytes", "Image(data=open(%r, 'rb').read())" % PNG),
    ("Image png from a file", "Image(filename=%r)" % PNG),
    ("Image png path as data", "Image(%r)" % PNG),
    ("Image with width and height", "Image(filename=%r, width=100, height=50)" % PNG),
    ("Image retina", "Image(filename=%r, retina=True)" % PNG),
    ("Image jpeg from a file", "Image(filename=%r)" % JPG),
    ("Image jpeg retina", "Image(filename=%r, retina=True)" % JPG),
    ("Image from a URL, not embedded", "Image(url='https://example.invalid/x.png')"),
    ("Pretty", "Pretty('text as is')"),
]
for name, expr in PAIRS:
    r1, o1 = run("display(cd.%s)" % expr)
    r2, o2 = run("import IPython.display as ipd\ndisplay(ipd.%s)" % expr)
    d1 = [c for t, c in outputs(o1)]
    d2 = [c for t, c in outputs(o2)]
    ok = len(d1) == len(d2) == 1
    if ok:
        a, b = dict(d1[0]["data"]), dict(d2[0]["data"])
        ok = a.pop("text/plain", "").replace("cellbox.display", "X") == b.pop("text/plain", "").replace(
            "IPython.core.display", "X") and a == b and d1[0]["metadata"] == d2[0]["metadata"]
    tap.ok(ok, "cellbox.display.%s shows what IPython.display's does" % name, "cellbox %r\nIPython %r" % (d1, d2))

r, out = run("display(cd.Javascript('var a = 1;', lib=['https://example.invalid/l.js'], css='https://example.invalid/s.css'))")
js = [c for t, c in outputs(out)][0]["data"].get("application/javascript", "")
tap.ok("var a = 1;" in js and js.index("s.css") < js.index("l.js") < js.index("var a = 1;"),
       "Javascript: stylesheet, then library, then the code", js)

# -- display ids, updates, clearing with the module's functions
r, out = run("h = cd.display('a', display_id=True)\nh.update('b')\ncd.update_display('c', display_id=h.display_id)\n"
             "h.display('d')\ncd.clear_output(wait=True)\ncd.clear_output()\nisinstance(h, cd.DisplayHandle)")
kinds = [(t, c.get("data", {}).get("text/plain"), (c.get("transient") or {}).get("display_id") is not None, c.get("wait"))
         for t, c in outputs(out)]
tap.eq(kinds, [("display_data", "'a'", True, None), ("update_display_data", "'b'", True, None),
               ("update_display_data", "'c'", True, None), ("display_data", "'d'", True, None),
               ("clear_output", None, False, True), ("clear_output", None, False, False),
               ("execute_result", "True", False, None)],
       "DisplayHandle.update/display, update_display, clear_output(wait)")
ids = {c["transient"]["display_id"] for t, c in outputs(out) if c.get("transient")}
tap.eq(len(ids), 1, "all of them carry the same display_id")
r, out = run("cd.update_display('x')")
tap.eq(r.get("ename"), "TypeError", "update_display needs a display_id")
r, out = run("cd.display({'text/plain': 'raw', 'application/x-thing': {'k': 1}}, raw=True)")
tap.eq([c["data"] for t, c in outputs(out)], [{"text/plain": "raw", "application/x-thing": {"k": 1}}],
       "display(raw=True) sends the bundle as is")
r, out = run("class Bad:\n    def _repr_html_(self): raise RuntimeError('no html')\n    def __repr__(self): return 'Bad()'\n"
             "cd.display(Bad())")
warn = "".join(c["text"] for t, c, b in out if t == "stream" and c["name"] == "stderr")
tap.ok([c["data"] for t, c in outputs(out)] == [{"text/plain": "Bad()"}] and "RuntimeError: no html" in warn,
       "a raising repr method: a warning on stderr, the other representations shown", out)
r, out = run("class BadRepr:\n    def __repr__(self): raise ValueError('no repr')\nBadRepr()")
tap.ok(r["status"] == "ok" and [t for t, c in outputs(out)] == ["execute_result"],
       "even a raising __repr__ gives a result (with a warning)", out)
r, out = run("cd.format_object([1, 2])")
tap.eq([c["data"]["text/plain"] for t, c in outputs(out)], ["({'text/plain': '[1, 2]'}, {})"],
       "format_object returns (data, metadata)")

kc.stop_channels()
km.shutdown_kernel(now=True)
del kc, km
