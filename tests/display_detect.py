"""How libraries tell they run in a notebook kernel: cellbox against ipykernel.

Progress bars, rich and plotly choose what to publish by asking whether they
run in a Jupyter kernel: `get_ipython()` and its class
(`ZMQInteractiveShell`, module `ipykernel.zmqshell`), `'IPKernelApp' in
get_ipython().config` (and its connection file), the builtin `__IPYTHON__`,
`sys.ps1`, `get_ipython().kernel` / `.has_trait('kernel')`, the class of
`sys.stdout` (click keeps its colours for ipykernel's), and tqdm.auto's
`sys.modules['IPython'].get_ipython()`, which ipykernel has imported before
any cell runs and cellbox imports only for code that uses it. Each cell here
must produce the same IOPub messages in cellbox as in Debian's ipykernel:
the outputs in order, each stream's text, and the comm messages in order
(the relative order of comms and streams is not meaningful to a frontend:
ipykernel flushes stdout/stderr before outputs, not before comms).

Debian's tqdm 4.64 notebook bar sets `FloatProgress.style.bar_color`, which
Debian's ipywidgets 6 does not have: under ipykernel `tqdm(range(100))` from
tqdm.auto opens the widgets, displays them and fails with AttributeError,
and cellbox must do the same; a cell then gives FloatProgress ipywidgets 7's
`style` so that the whole bar (updates, close) is compared too.
Output: TAP.
"""
import importlib.util
import re

import display_util as du
import kutil

tap = kutil.TAP()

_SHIM = ("import ipywidgets, tqdm.notebook as tqdm_notebook\n"
         "class _Style:\n"
         "    bar_color = None   # ipywidgets 7's ProgressStyle; 6 has no style\n"
         "class FloatProgress(ipywidgets.FloatProgress):\n"
         "    style = _Style()\n"
         "tqdm_notebook.IProgress = FloatProgress\n")

# Each list runs in a kernel of its own, in order; "!cellbox-only" names are
# checked in cellbox alone.
CASES = [
    ("__IPYTHON__ is a builtin", "__IPYTHON__"),
    ("builtins.__IPYTHON__, in dir(builtins), in vars(__builtins__)",
     "import builtins\nbuiltins.__IPYTHON__, '__IPYTHON__' in dir(builtins), '__IPYTHON__' in vars(__builtins__)"),
    ("sys.ps1, ps2, ps3 (the interactive prompts IPython sets)",
     "import sys\nhasattr(sys, 'ps1'), sys.ps1, sys.ps2, sys.ps3"),
    ("!cellbox-only: IPython is not imported yet", "'IPython' in sys.modules"),
    # tqdm.autonotebook: sys.modules['IPython'].get_ipython().config
    ("tqdm.auto picks the notebook bar",
     "from tqdm.auto import tqdm, trange\n[c.__module__ + '.' + c.__name__ for c in tqdm.__mro__[:3]]"),
    # last: the bar that failed in its __init__ says so again when it is
    # collected, at a moment that differs between the kernels
    ("tqdm.auto: for i in tqdm(range(100)) (fails in Debian's ipywidgets 6 as under ipykernel)",
     "for i in tqdm(range(100)): pass"),
]

CASES_BARS = [
    ("tqdm.auto: the whole notebook bar, FloatProgress with a style",
     "from tqdm.auto import tqdm, trange\n" + _SHIM + "for i in tqdm(range(100)): pass"),
    ("tqdm.auto: trange with a description", "for i in trange(3, desc='steps'): pass"),
    ("tqdm.auto: a bar with no total", "for i in tqdm(iter(range(3))): pass"),
    ("tqdm.auto: leave=False closes the bar's widgets", "for i in tqdm(range(3), leave=False): pass"),
    ("tqdm's console bar (tqdm.tqdm) still writes to stderr",
     "from tqdm import tqdm as tqdm_std\nfor i in tqdm_std(range(3)): pass"),
    ("tqdm.auto: tqdm.pandas() and progress_apply",
     "import pandas as pd\ntqdm.pandas(desc='apply')\npd.Series(range(5)).progress_apply(lambda x: x * 2)"),
    ("tqdm.contrib: tenumerate", "from tqdm.contrib import tenumerate\nlist(tenumerate('ab'))"),
    ("tqdm.notebook imported itself", "from tqdm.notebook import tqdm as tqdm_nb\n"
     "for i in tqdm_nb(range(5), desc='nb'): pass\ntype(tqdm_nb(disable=True)).__name__"),
    # IPython is in sys.modules now (tqdm.auto): pyplot hooks its redraw into
    # the shell's post_execute, as it always does under ipykernel
    ("matplotlib after tqdm.auto: an inline figure", "import matplotlib.pyplot as plt\n"
     "plt.figure(figsize=(2, 1), dpi=40)\nplt.plot([1, 2]);"),
    ("matplotlib after tqdm.auto: interactive mode",
     "plt.ion()\nfig = plt.figure(figsize=(2, 1), dpi=40)\nplt.plot([2, 1])\nprint(plt._REPL_DISPLAYHOOK)"),
    ("matplotlib after tqdm.auto: the figures shown were closed", "plt.ioff()\nplt.get_fignums()"),
    ("the shell's class, as libraries read it",
     "ip = get_ipython()\ntype(ip).__name__, type(ip).__module__, str(type(ip)), 'zmq' in str(type(ip)).lower()"),
    ("get_ipython() as a result", "get_ipython()"),
    ("repr(get_ipython())", "repr(get_ipython()).split(' at 0x')[0]"),
    ("'IPKernelApp' in get_ipython().config and what it holds",
     "cfg = get_ipython().config\n'IPKernelApp' in cfg, sorted(cfg), sorted(cfg['IPKernelApp'])"),
    ("config.IPKernelApp.connection_file is the kernel's connection file",
     "import json\ncf = (get_ipython().config.get('IPKernelApp', {}) or {}).get('connection_file', '')\n"
     "cf.lower().endswith('.json'), sorted(json.load(open(cf)))"),
    ("get_ipython().kernel and has_trait",
     "ip = get_ipython()\nhasattr(ip, 'kernel'), ip.has_trait('kernel'), ip.has_trait('no_such_trait'), "
     "ip.has_trait('config'), 'kernel' in ip.trait_names()"),
    ("IPython.get_ipython (sys.modules['IPython'])",
     "import sys, IPython\nsys.modules['IPython'].get_ipython() is get_ipython(), type(IPython.get_ipython()).__name__"),
    ("pandas: interactive session, zmq frontend, not a terminal",
     "from pandas.io.formats import console\nfrom pandas.core import config_init\n"
     "console.in_interactive_session(), console.in_ipython_frontend(), config_init.is_terminal()"),
    ("rich: a Jupyter console", "from rich.console import Console, _is_jupyter\nc = Console()\n"
     "_is_jupyter(), c.is_jupyter, c.is_terminal, c.is_interactive, c.color_system, c.width"),
    ("plotly: the default renderer", "import plotly.io as pio\npio.renderers.default"),
    ("the output streams' class (click looks for module ipykernel.*)",
     "import sys\n[(type(f).__module__, type(f).__name__, repr(f).split(' at 0x')[0]) for f in (sys.stdout, sys.stderr)]"),
]
if importlib.util.find_spec("click") is not None:   # Debian's python3-click
    CASES_BARS.append(("click keeps its colours in a notebook",
                       "import click\nfrom click._compat import should_strip_ansi\n"
                       "click.secho('red', fg='red')\nclick.echo(click.style('bold', bold=True), err=True)\n"
                       "should_strip_ansi(sys.stdout), should_strip_ansi(sys.stderr)"))
else:
    tap.skip("same as ipykernel: click keeps its colours in a notebook", "python3-click is not installed")

# rich.pretty.install() finds IPython's shell and puts its own text/plain
# formatter (an IPython BaseFormatter) in get_ipython().display_formatter
CASES_RICH = [
    ("rich.pretty.install() in a notebook", "from rich import pretty\npretty.install()\n"
     "type(get_ipython().display_formatter.formatters['text/plain']).__name__"),
    ("a result after rich.pretty.install()", "{'a': [1, 2, 3], 'b': 'x' * 3}"),
    ("a rich renderable as a result after it", "from rich.text import Text\nText('hi', style='bold')"),
    ("rich.progress.track: a Live display in an Output widget",
     "from rich.progress import track\nfor i in track(range(3), description='work', auto_refresh=False): pass"),
]

_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def rich_traceback(out):
    """rich's traceback box, each line without its frame and padding and
    with the kernel's pid out of the cell's file name: rich prints a cell's
    code for ipykernel's cell files (/tmp/ipykernel_PID/N.py, N from the
    code: the same in both kernels), which cellbox's cells are too."""
    res = []
    for t, c, b in out:
        if t == "display_data":
            text = _ANSI.sub("", c["data"].get("text/plain", ""))
            kept = [re.sub(r"ipykernel_\d+", "ipykernel_PID", line.strip("│╭╮╰╯─ "))
                    for line in text.splitlines()]
            c = dict(c, data={k: kept if k == "text/plain" else "<rich's html>" for k in c["data"]})
        res.append((t, c, b))
    return res


# rich.traceback.install() replaces IPython's showtraceback and _showtraceback
# on get_ipython(): errors are shown by rich, with no error output
# (cases with a third element compare what it keeps, not the reply's evalue)
CASES_RICH_TRACEBACK = [
    ("rich.traceback.install() in a notebook", "from rich import traceback as rtb\nrtb.install()\n"
     "get_ipython().showtraceback.__name__, get_ipython()._showtraceback.__name__"),
    ("an error shown by rich's traceback, not as an error output", "def f():\n    return 1 / 0\nf()",
     rich_traceback),
    ("a syntax error shown by rich", "1 +", rich_traceback),
    ("an error in a cell that catches it is not shown", "try:\n    f()\nexcept ZeroDivisionError:\n    pass\n'caught'"),
]

# tqdm.auto imports tqdm.autonotebook, which warns only when imported itself
CASES_AUTONOTEBOOK = [
    ("tqdm.autonotebook: notebook mode and its TqdmExperimentalWarning",
     "from tqdm.autonotebook import tqdm, trange\ntqdm.__module__, tqdm.__name__"),
    ("tqdm.autonotebook: for i in tqdm(range(100))", _SHIM + "for i in tqdm(range(100)): pass"),
]

_MSG_ID = re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{24}_\d+_\d+\b")    # jupyter_client's msg_id (an Output widget's)
_TIMES = re.compile(r"\[[^\]]*(?:it/s|s/it)\]")                  # tqdm's "[00:00<00:00, 1234.5it/s]"
# a warning's location: <ipython-input-1-HASH>:1 (cellbox) or /tmp/ipykernel_PID/HASH.py:1 (ipykernel)
_WHERE = re.compile(r"^(?:<ipython-input-\d+-[0-9a-f]+>|/tmp/ipykernel_\d+/\d+\.py):(\d+): ", re.M)


def normalized(out):
    """(outputs in order, {stream name: text}, comm messages in order)"""
    n = du.Normalizer()
    outputs, streams, comms = [], {}, []
    for t, c, b in out:
        if t == "stream":
            streams[c["name"]] = streams.get(c["name"], "") + _WHERE.sub(r"<cell>:\1: ", c["text"])
        elif t.startswith("comm_"):
            comms.append((t, c, b))
        else:
            outputs.append((t, c, b))
    text = lambda x: _MSG_ID.sub("<msg_id>", _TIMES.sub("[times]", repr(n.messages(x))))   # noqa: E731
    return text(outputs), {k: _TIMES.sub("[times]", n.text(v)) for k, v in streams.items()}, text(comms)


def run_all(kernel_name, cases):
    with du.running(kernel_name) as (km, kc):
        got = []
        for name, code, *summary in cases:
            if name.startswith("!cellbox-only") and kernel_name != "cellbox":
                got.append(None)
                continue
            try:
                reply, out = du.collect(kc, code, timeout=120)
                evalue = reply.get("evalue")
                if summary:
                    out, evalue = summary[0](out), None
                got.append((reply.get("status"), reply.get("ename"), evalue) + normalized(out) + (len(out),))
            except Exception as e:
                got.append(("timeout", repr(e), "", "", {}, "", 0))
        return got


def diff(a, b):
    sa, sb = str(a), str(b)
    i = next((k for k in range(min(len(sa), len(sb))) if sa[k] != sb[k]), min(len(sa), len(sb)))
    return "cellbox:   ...%s\nipykernel: ...%s" % (sa[max(0, i - 300):i + 300], sb[max(0, i - 300):i + 300])


for cases in (CASES, CASES_BARS, CASES_RICH, CASES_RICH_TRACEBACK, CASES_AUTONOTEBOOK):
    ours = run_all("cellbox", cases)
    theirs = run_all("python3", cases)
    for (name, *_), a, b in zip(cases, ours, theirs):
        if b is None:
            tap.ok(a is not None and a[3] == repr([("execute_result", {
                "data": {"text/plain": "False"}, "mime_keys": ["text/plain"], "metadata": {}, "has_count": True})]),
                name[1:], repr(a))
            continue
        same = a[:-1] == b[:-1]   # not the number of messages: kernels batch streams differently
        tap.ok(same and a[-1] > 0, "same as ipykernel: %s" % name, None if same else diff(a, b))
