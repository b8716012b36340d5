"""cellbox's rich outputs against ipykernel's, message by message.

The same cells run in a cellbox kernel and in Debian's ipykernel
(kernelspec python3); for each case the IOPub messages must agree in
type, order, MIME keys, data (text exactly, PNG images by pixels),
metadata and transient display ids (see display_util.normalize).

One documented difference: a _repr_*_ method that raises. ipykernel sends
an `error` output with a traceback into IPython's formatter; cellbox writes
a one-line warning on stderr (the issue asks for a warning), and both then
show the other representations. That case checks the fallback and the
warning, not the error message. Output: TAP.
"""
import os
import struct
import sys
import zlib

import display_util as du
import kutil

tap = kutil.TAP()


def tiny_png(w=3, h=2):
    rows = b"".join(b"\x00" + b"".join(bytes([(x * 80) % 256, (y * 120) % 256, 200]) for x in range(w)) for y in range(h))

    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xffffffff)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


PNG_PATH = os.path.join(kutil.TMP, "tiny.png")
with open(PNG_PATH, "wb") as f:
    f.write(tiny_png())
JPG_PATH = os.path.join(kutil.TMP, "tiny.jpg")
from PIL import Image as _PIL  # noqa: E402
_PIL.new("RGB", (8, 6), (200, 30, 30)).save(JPG_PATH, quality=90)

SETUP = "import os, sys\nPNG_PATH = %r\nJPG_PATH = %r\n" % (PNG_PATH, JPG_PATH)

# (name, code). Cells run in order in one kernel of each kind.
CASES = [
    # -- execute_result and the text/plain pretty printer
    ("int result", "1 + 1"),
    # IPython's capture_output swaps get_ipython().display_pub: displays are kept, not sent
    ("capture_output keeps stdout and displays",
     "from IPython.utils.capture import capture_output\nfrom IPython.display import display, HTML\n"
     "with capture_output() as cap_o:\n    print('inside')\n    display(HTML('<b>kept</b>'))\n"
     "    display({'text/plain': 'raw kept'}, raw=True)\nprint(repr(cap_o.stdout), len(cap_o.outputs))"),
    ("... and shows them again", "cap_o.show()"),
    ("clear_output inside capture_output", "with capture_output() as cap_c:\n    display(HTML('<i>gone</i>'))\n"
     "    from IPython.display import clear_output\n    clear_output()\n    display(HTML('<i>left</i>'))\n"
     "len(cap_c.outputs)"),
    ("str result", "'a' * 3"),
    ("None result is not shown", "None"),
    ("long list wraps like IPython", "list(range(40))"),
    ("nested dict wraps", "{'b': 1, 'a': [1] * 30, 'c': {'x': list(range(12))}}"),
    ("set is sorted", "{3, 1, 2, 10}"),
    ("type prints its name", "int, dict"),
    ("function prints its signature", "def f(x, y=2, *a, k=None, **kw): pass\nf"),
    ("class instance default repr", "class A: pass\nA()"),
    ("exception value", "ValueError('bad', 2)"),
    ("trailing semicolon hides the result", "1 + 1;"),
    # -- display() of plain values
    ("display builtin", "display(1)\ndisplay('x', [1, 2])"),
    ("display several then result", "display(1); 5"),
    ("print then display then print keeps order", "print('a')\ndisplay(2)\nprint('b')\ndisplay(3)"),
    ("stderr output", "print('e', file=sys.stderr)"),
    # -- IPython.display classes
    ("HTML result", "from IPython.display import *\nHTML('<b>bold</b>')"),
    ("display HTML", "display(HTML('<i>x</i>'))"),
    ("Markdown", "Markdown('# Title\\n*x*')"),
    ("Math", "Math(r'\\int_0^1 x\\,dx')"),
    ("Latex", "Latex(r'$\\alpha + \\beta$')"),
    ("SVG", "SVG('<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"10\" height=\"10\"><rect width=\"10\" height=\"10\"/></svg>')"),
    ("JSON", "JSON({'a': [1, 2, {'b': None}]}, expanded=True)"),
    ("JSON list", "display(JSON([1, 2, 3]))"),
    ("Javascript", "Javascript('console.log(1)')"),
    ("Pretty", "Pretty('some text')"),
    ("Image png from file", "Image(filename=PNG_PATH)"),
    ("Image png from bytes with size", "display(Image(data=open(PNG_PATH, 'rb').read(), width=30, height=20))"),
    ("Image retina halves the size", "Image(filename=PNG_PATH, retina=True)"),
    ("Image jpeg from file", "Image(filename=JPG_PATH)"),
    ("Image url not embedded", "Image(url='https://example.invalid/a.png')"),
    ("IFrame", "IFrame('https://example.invalid/', width=300, height=200)"),
    ("Audio from samples", "import numpy as np\nAudio(np.sin(np.linspace(0, 100, 800)), rate=8000)"),
    ("Video url", "Video('https://example.invalid/v.mp4')"),
    ("ProgressBar iteration", "for _ in ProgressBar(3): pass"),
    ("Code", "Code('x = 1', language='python')"),
    ("FileLink", "FileLink('x.txt')"),
    # -- display ids, updates, clearing
    ("display_id given", "h = display('first', display_id='d1')\nh"),
    ("display_id True", "h2 = display('v', display_id=True)"),
    ("empty display with id", "display(display_id='empty1')"),
    ("update_display", "update_display('second', display_id='d1')"),
    ("DisplayHandle update and display", "h2.update('v2')\nh2.display('v3')"),
    ("DisplayHandle object", "dh = DisplayHandle('myid')\ndh.display(1)\ndh.update(2)"),
    ("many updates arrive", "hh = display(0, display_id='many')\nfor i in range(50): hh.update(i)"),
    ("clear_output", "print('x')\nclear_output()"),
    ("clear_output wait", "print('y')\nclear_output(wait=True)\nprint('z')"),
    ("display clear=True", "display('a')\ndisplay('b', clear=True)"),
    # -- the _repr_*_ protocol
    ("all repr methods", """class R:
    def _repr_html_(self): return '<p>h</p>'
    def _repr_markdown_(self): return '*m*'
    def _repr_svg_(self): return '<svg></svg>'
    def _repr_png_(self): return open(PNG_PATH, 'rb').read()
    def _repr_jpeg_(self): return open(JPG_PATH, 'rb').read()
    def _repr_latex_(self): return '$x$'
    def _repr_json_(self): return {'k': 1}
    def _repr_javascript_(self): return 'var a;'
    def _repr_pdf_(self): return b'%PDF-1.4 fake'
R()"""),
    ("repr returning (data, metadata)", """class M:
    def _repr_html_(self): return '<p>x</p>', {'isolated': True}
    def _repr_png_(self): return open(PNG_PATH, 'rb').read(), {'width': 7}
M()"""),
    ("repr returning None is skipped", """class N:
    def _repr_html_(self): return None
    def _repr_markdown_(self): raise NotImplementedError
N()"""),
    ("_repr_mimebundle_", """class B:
    def _repr_mimebundle_(self, include=None, exclude=None):
        return {'text/html': '<b>b</b>', 'application/x-custom': {'v': 1}}, {'application/x-custom': {'m': 2}}
    def _repr_html_(self): return 'not used'
B()"""),
    ("_repr_mimebundle_ with text/plain", """class B2:
    def _repr_mimebundle_(self, include=None, exclude=None):
        return {'text/plain': 'custom plain', 'text/markdown': '**md**'}
display(B2())"""),
    ("display include", "display(R(), include=['text/html', 'image/png'])"),
    ("display exclude", "display(R(), exclude=['image/png', 'text/latex', 'application/pdf'])"),
    ("display metadata merged", "display(M(), metadata={'image/png': {'height': 3}, 'extra': 1})"),
    ("display raw bundle", "display({'text/plain': 'raw', 'text/html': '<u>raw</u>'}, raw=True, metadata={'a': 1})"),
    ("_ipython_display_", """class D:
    def _ipython_display_(self):
        display(HTML('<b>self</b>'))
        print('displayed')
D()"""),
    ("_repr_pretty_", """class P:
    def _repr_pretty_(self, p, cycle):
        with p.group(2, 'P(', ')'):
            for i in range(30):
                if i: p.text(','); p.breakable()
                p.text('item%d' % i)
P()"""),
    ("class object shows no rich reprs", "R"),
    ("formatter registered with for_type", """ip = get_ipython()
ip.display_formatter.formatters['text/html'].for_type(complex, lambda c: '<i>%s</i>' % c)
1 + 2j"""),
    # -- libraries
    ("pandas DataFrame", "import pandas as pd\ndf = pd.DataFrame({'a': [1, 2, 3], 'b': ['x', 'y', 'z']})\ndf"),
    ("pandas wide DataFrame", "import numpy as np\npd.DataFrame(np.arange(90).reshape(3, 30))"),
    ("pandas long DataFrame", "pd.DataFrame({'v': range(100)})"),
    ("pandas Series", "pd.Series([1.5, 2.5], name='s')"),
    ("display DataFrame", "display(df)"),
    ("numpy array", "np.arange(12).reshape(3, 4)"),
    ("numpy big array", "np.linspace(0, 1, 2000)"),
    ("PIL image", "from PIL import Image as PILImage\nPILImage.new('RGB', (4, 3), (10, 200, 30))"),
    # -- matplotlib inline
    ("figure shown at the end of the cell", "import matplotlib.pyplot as plt\nplt.plot([1, 3, 2]);"),
    ("plt.plot result then the figure", "plt.plot([1, 2])"),
    ("plt.show mid-cell", "plt.plot([3, 1])\nplt.show()\nprint('after')"),
    ("two figures", "plt.figure(); plt.plot([1]); plt.figure(); plt.bar([1, 2], [3, 4]);"),
    ("figure as result", "fig, ax = plt.subplots()\nax.plot([0, 1])\nfig"),
    ("empty figure", "plt.figure();"),
    ("transparent figure", "f = plt.figure(facecolor='none'); plt.plot([1, 2]);"),
    ("retina format", "%config InlineBackend.figure_format = 'retina'\nplt.plot([1, 2, 4]);"),
    ("svg format", "%config InlineBackend.figure_format = 'svg'\nplt.plot([4, 2]);"),
    ("back to png, no tight bbox", "%config InlineBackend.figure_format = 'png'\n"
                                   "%config InlineBackend.print_figure_kwargs = {'bbox_inches': None}\n"
                                   "plt.figure(figsize=(3, 2), dpi=50); plt.plot([1, 2]);"),
    ("display(fig)", "fig2 = plt.figure(figsize=(2, 2), dpi=40); plt.plot([1, 0])\ndisplay(fig2)\nplt.close(fig2)"),
    # -- errors and warnings
    ("error in a cell", "1 / 0"),
    ("error after output", "print('before')\nraise KeyError('k')"),
]


def run_all(kernel_name):
    km, kc = du.start(kernel_name)
    try:
        du.collect(kc, SETUP)
        results = []
        for name, code in CASES:
            try:
                reply, out = du.collect(kc, code)
            except Exception as e:
                reply, out = {"status": "timeout", "error": repr(e)}, []
            results.append((reply, du.merge_streams(out)))
        extra = run_extra(kc)
        return results, extra
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def run_extra(kc):
    """The raising repr case, compared apart (see the module docstring)."""
    code = "class Bad:\n    def _repr_html_(self): raise ValueError('boom')\n    def _repr_markdown_(self): return '*ok*'\nBad()"
    reply, out = du.collect(kc, code)
    return reply, out


ours, our_extra = run_all("cellbox")
theirs, their_extra = run_all("python3")

for (name, code), (r1, o1), (r2, o2) in zip(CASES, ours, theirs):
    n1, n2 = du.Normalizer(), du.Normalizer()
    m1, m2 = n1.messages(o1), n2.messages(o2)
    same = m1 == m2 and r1.get("status") == r2.get("status")
    diag = None
    if not same:
        lines = ["status: cellbox %s, ipykernel %s" % (r1.get("status"), r2.get("status"))]
        for i in range(max(len(m1), len(m2))):
            a = m1[i] if i < len(m1) else None
            b = m2[i] if i < len(m2) else None
            mark = "  " if a == b else "!!"
            lines.append("%s cellbox:   %s" % (mark, str(a)[:600]))
            lines.append("%s ipykernel: %s" % (mark, str(b)[:600]))
        diag = "\n".join(lines)
    tap.ok(same, "same messages as ipykernel: %s" % name, diag)

tap.ok(len(CASES) >= 40, "at least 40 display cases compared (%d)" % len(CASES))

# the raising repr: same fallback data; ipykernel's error output becomes a warning
(r1, o1), (r2, o2) = our_extra, their_extra
res1 = [c for t, c, b in o1 if t == "execute_result"]
res2 = [c for t, c, b in o2 if t == "execute_result"]
tap.ok(len(res1) == 1 and len(res2) == 1 and sorted(res1[0]["data"]) == sorted(res2[0]["data"])
       and res1[0]["data"]["text/markdown"] == "*ok*",
       "raising _repr_html_: the other representations are shown as under ipykernel",
       "cellbox %r\nipykernel %r" % (res1, res2))
warn = "".join(c["text"] for t, c, b in o1 if t == "stream" and c["name"] == "stderr")
tap.ok("_repr_html_" in warn and "ValueError" in warn and "boom" in warn and r1["status"] == "ok",
       "raising _repr_html_: a warning on stderr names the method and the error", warn)
tap.ok(any(t == "error" for t, c, b in o2), "(ipykernel reports it as an error output)")
