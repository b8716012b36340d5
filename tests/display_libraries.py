"""Popular display libraries in the cellbox kernel, against ipykernel.

Users bring notebooks that print with sympy, plot with plotly, altair and
seaborn, and format with rich and pandas' Styler. Those libraries look for
IPython's shell (get_ipython(), its display formatter, its config and colour
scheme) and decide from it what to publish; each cell here must produce the
same IOPub messages in cellbox as in Debian's ipykernel (display_util's
normalization, plus the random element ids these libraries generate).
Output: TAP.
"""
import re

import display_util as du
import kutil

tap = kutil.TAP()

CASES = [
    # first, before anything imports IPython: pandas registers its table schema
    # formatter with IPython's shell only when IPython is imported
    ("pandas: table_schema on adds application/vnd.dataresource+json",
     "import sys, pandas as pd\npd.options.display.html.table_schema = True\n"
     "pd.DataFrame({'a': [1, 2], 'b': ['x', None]})"),
    ("pandas: a Series with table_schema", "pd.Series([1.5, 2.5], name='s')"),
    ("pandas: table_schema off again", "pd.options.display.html.table_schema = False\npd.DataFrame({'a': [1]})"),
    ("sympy init_printing: LaTeX, PNG and unicode text",
     "import sympy\nsympy.init_printing()\nx = sympy.Symbol('x')\nsympy.Integral(x**2, x)"),
    ("sympy: builtin containers of expressions", "[x, 1.5, {x: 2}]"),
    ("sympy: a matrix", "sympy.Matrix([[1, x], [x**2, 3]])"),
    ("plotly: fig.show() in a notebook", "import plotly.express as px\nfig = px.scatter(x=[1, 2, 3], y=[3, 1, 2])\nfig.show()"),
    ("plotly: a figure as the result", "fig"),
    ("plotly: the default renderer", "import plotly.io as pio\npio.renderers.default"),
    ("altair: a chart as the result", "import altair as alt, pandas as pd\n"
     "alt.Chart(pd.DataFrame({'a': [1, 2], 'b': [3, 4]})).mark_point().encode(x='a', y='b')"),
    ("seaborn: a themed matplotlib figure", "import seaborn as sns, matplotlib.pyplot as plt\nsns.set_theme()\n"
     "plt.figure(figsize=(3, 2), dpi=50)\nplt.plot([1, 2]);"),
    ("rich: print", "from rich import print as rprint\nrprint({'a': [1, 2], 'b': 'text'})"),
    ("rich: a console with markup", "from rich.console import Console\nConsole().print('[bold]hi[/bold] there')"),
    ("rich: a table", "from rich.table import Table\nt = Table('a', 'b')\nt.add_row('1', '2')\nConsole().print(t)"),
    ("pandas: a Styler", "pd.DataFrame({'a': [1.5, 2]}).style.format('{:.1f}')"),
    ("pandas: a wide DataFrame", "pd.DataFrame([[i * j for j in range(30)] for i in range(5)])"),

]

# random ids these libraries put into their HTML/JSON
_IDS = [re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"),   # plotly divs
        re.compile(r"(?<!\w)T_[0-9a-f]{5}"),                                               # pandas Styler
        re.compile(r"altair-viz-[0-9a-f]{32}"), re.compile(r"\bel[0-9a-f]{32}\b")]


def normalized(out):
    n = du.Normalizer()
    text = repr(n.messages(du.merge_streams(out)))
    for rx in _IDS:
        text = rx.sub("<random id>", text)
    return text


def run_all(kernel_name):
    km, kc = du.start(kernel_name)
    try:
        got = []
        for name, code in CASES:
            try:
                reply, out = du.collect(kc, code, timeout=120)
                got.append((reply.get("status"), reply.get("ename"), normalized(out), len(out)))
            except Exception as e:
                got.append(("timeout", repr(e), "", 0))
        return got
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


ours = run_all("cellbox")
theirs = run_all("python3")
for (name, code), a, b in zip(CASES, ours, theirs):
    diag = None
    if a != b:
        sa, sb = str(a), str(b)
        i = next((k for k in range(min(len(sa), len(sb))) if sa[k] != sb[k]), min(len(sa), len(sb)))
        diag = "cellbox:   ...%s\nipykernel: ...%s" % (sa[max(0, i - 300):i + 300], sb[max(0, i - 300):i + 300])
    tap.ok(a == b and a[0] == "ok" and a[3] > 0, "same as ipykernel: %s" % name, diag)
