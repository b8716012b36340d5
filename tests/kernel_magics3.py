"""IPython's magics that cellbox once had as toys, against ipykernel: %run
(its options, the fresh __main__ namespace, sys.argv and globs, SystemExit,
.ipy and .ipynb files, errors), %history/%hist (ranges and options), %load
(ranges, symbols, objects), %time/%%time, %config's listings, help on plain
objects (name?) and %%svg. Each cell runs in a cellbox kernel and in
Debian's ipykernel; the IOPub messages and the reply payloads must be the
same once what differs by nature is normalized (cell and temporary file
names, timings). Output: TAP.
"""
import os
import re

import display_util as du
import kutil

tap = kutil.TAP()

CELL_FILE = re.compile(r"[^\s(]*(/tmp/ipykernel_\d+/\d+\.py|<ipython-input-\d+-[0-9a-f]+>)|(?<![\w/.])\d{6,}\.py")
WORK_DIR = re.compile(r"magics3-(cellbox|python3)")
ANSI = re.compile(r"\x1b\[[0-9;]*m")
# a warning names the file and line that raised it, then shows that line:
# IPython's module or cellbox's
WARNING = re.compile(r"^\S+:\d+: (\w+Warning: [^\n]*\n)  [^\n]*\n", re.M)
# timings differ from run to run: the numbers go, the layout stays
SECONDS = re.compile(r"\d+(\.\d+)?(e[+-]\d+)? (s|ms|\xb5s|ns)\b")   # ("%.3g": 1e+03 µs)
RUN_TIMES = re.compile(r"\d+\.\d\d s\.")


class Norm(du.Normalizer):
    def text(self, s):
        s = WORK_DIR.sub("magics3-K", CELL_FILE.sub("<cell>", s))
        s = WARNING.sub(r"\1", s)
        return super().text(s)


class TimeNorm(Norm):
    def text(self, s):
        return RUN_TIMES.sub("N s.", SECONDS.sub("N s", super().text(s)))


class CPUNorm(Norm):
    """Timings normalized, but a zero user time kept (as os.times() once
    gave for everything): some CPU work must show as some time."""
    def text(self, s):
        s = re.sub(r"user (?!0 ns)[^,]+", "user N s", super().text(s))
        return re.sub(r"(sys: |total: |Wall time: )[^,\n]+", r"\1N s", s)


def collect(kc, code, **kw):
    return du.collect(kc, code, timeout=60, **kw)


def view(result, how="all"):
    reply, out = result
    n = {"time": TimeNorm, "cpu": CPUNorm}.get(how, Norm)()
    keep = {"status": reply.get("status"), "ename": reply.get("ename")}
    if reply.get("status") == "error" and how != "ename":
        keep["evalue"] = n.text(reply.get("evalue", ""))
    payload = []
    for p in reply.get("payload") or []:
        p = dict(p)
        if "data" in p:
            p["data"] = n.value("", p["data"])
            if how == "page head":   # a profile: its rows and counts are each kernel's own calls
                p["data"] = {k: re.sub(r"\d+(\.\d+)?", "N", v.split("\n")[0]) for k, v in p["data"].items()}
        for k in ("filename", "text"):
            if k in p:
                p[k] = n.text(p[k])
        payload.append(p)
    keep["payload"] = payload
    if how == "ename":
        return keep, [m[0] for m in n.messages(out)]
    if how == "debug":
        # the debugger's own output, then only the last line of the error it
        # prints (the frames below the script are each kernel's own code)
        def cut(text):
            head, sep, tail = text.partition("\x1b[0;31m" + "-" * 75)
            return head + (sep and ANSI.sub("", tail).rstrip().split("\n")[-1])
        return keep, [m[:2] + (cut(m[2]),) if m[0] == "stream" else m for m in n.messages(du.merge_streams(out))]
    msgs = n.messages(du.merge_streams(out))
    if how in ("tb", "time"):
        msgs.append([[n.text(b) for b in c["traceback"]] for t, c, b in out if t == "error"])
    elif how == "tb heads":   # each frame's header: the code lines are coloured by cellbox's own highlighter
        msgs.append([[n.text(b).split("\n")[0] for b in c["traceback"]] for t, c, b in out if t == "error"])
    return keep, msgs


SETUP = r'''
import os, nbformat
files = {
 "s1.py": "import sys\nprint('argv', sys.argv[1:])\nprint('name', __name__)\n"
          "print('sees nbvar', 'nbvar' in globals())\nrun_x = 10\ndef run_f():\n    return run_x * 2\n",
 "exit0.py": "import sys\nprint('before')\nsys.exit(0)\nprint('after')\n",
 "exit3.py": "import sys\nprint('before')\nsys.exit(3)\n",
 "exitmsg.py": "import sys\nsys.exit('bye now')\n",
 "err.py": "def f(x):\n    return 1 / x\n\nf(0)\n",
 "syn.py": "x = (\n",
 "mymodrun.py": "import sys\nprint('mod', __name__, sys.argv[1:])\nmod_value = 7\n",
 "magic.ipy": "ipy_v = 3\n%pwd\nprint(ipy_v)\n!echo shell\nipy_v * 2\n",
 "a1.txt": "", "a2.txt": "",
}
for name, text in files.items():
    with open(name, "w") as fh:
        fh.write(text)
nb = nbformat.v4.new_notebook()
nb.cells = [nbformat.v4.new_code_cell("nb_v = 5\nprint('in nb', nb_v)"), nbformat.v4.new_markdown_cell("# t"),
            nbformat.v4.new_code_cell("nb_v * 2"), nbformat.v4.new_code_cell("nb_w = nb_v + 1")]
nbformat.write(nb, "nbrun.ipynb")
'''

# (name, code[, how[, kw]]): how is "all" (messages and payloads), "tb"
# (the traceback too), "tb heads", "ename", "time" (timings normalized) or
# "page head"; kw: {"answer": text} answers input requests, {"stdin": False}
# runs without them (as a headless notebook)
PARITY = [
    ("setup", SETUP),
    ("a notebook variable", "nbvar = 1"),
    # %run
    ("%run FILE: a fresh __main__", "%run s1.py\nrun_x, run_f(), __name__"),
    ("%run FILE ARGS", "%run s1.py a 'b c' --opt"),
    # (one match per pattern: the order of several is the file system's)
    ("%run with a glob", "%run s1.py a1*.txt zz*.q '[a]2.txt' ~"),
    ("%run -G: no glob", "%run -G s1.py a1*.txt ~"),
    ("%run -i: the notebook's namespace", "%run -i s1.py x"),
    ("%run -n: not __main__", "%run -n s1.py"),
    ("__doc__ and __file__ after %run", "__doc__, '__file__' in dir()"),
    ("%run without .py", "%run s1"),
    ("%run of a missing file", "%run nosuch.py"),
    ("%run without a file", "%run"),
    ("%run -i of a missing file", "%run -i nosuch.py"),
    ("%run: sys.exit(0)", "%run exit0.py"),
    ("%run: sys.exit(3)", "%run exit3.py", "tb"),
    ("%run -e: sys.exit(3) ignored", "%run -e exit3.py"),
    ("%run: sys.exit('msg')", "%run exitmsg.py", "tb"),
    ("%run: an error in the script", "%run err.py", "tb heads"),
    ("%run: a syntax error", "%run syn.py", "tb"),
    ("%run -t", "%run -t s1.py", "time"),
    ("%run -t -N3", "%run -t -N3 s1.py", "time"),
    ("%run -m", "%run -m mymodrun x y"),
    ("mod_value", "mod_value"),
    ("%run -m missing", "%run -m nosuchmodrun", "ename"),
    ("%run -p -q", "%run -p -q s1.py"),
    ("%run -p: a profile in the pager", "%run -p s1.py", "page head"),
    ("%run -d headless", "%run -d s1.py", "debug", {"stdin": False}),
    ("%run -d -b2 headless", "%run -d -b2 s1.py", "debug", {"stdin": False}),
    ("%run -p -r: the stats", "%run -p -r -l 3 -s cumulative s1.py", "page head"),
    ("%run -e of an error", "%run -e err.py", "tb heads"),
    ("%run -i of an error", "%run -i err.py", "tb heads"),
    ("%run -t of sys.exit(3)", "%run -t exit3.py", "time"),
    ("%run -t -N0", "%run -t -N0 s1.py"),
    ("%run -m with options after the module", "%run -m mymodrun -i -x"),
    ("__file__ is the notebook's", "'__file__' in dir(), __name__"),
    ("%run .ipy", "%run magic.ipy"),
    ("ipy_v", "ipy_v"),
    ("%run .ipynb", "%run nbrun.ipynb"),
    ("nb_w", "nb_w"),
    # %history: @H is the number of the first of these cells
    ("history: first cell", "h_a = 1"),
    ("history: two lines", "h_b = 2\nh_c = 3"),
    ("history: a tab", "def h_f():\n\treturn 1"),
    ("history: a magic", "%pwd"),
    ("history: an output", "h_a + 41"),
    ("history: a print", "print('h printed')"),
    ("%history N", "%history @H"),
    ("%history N-M", "%history @H-@H+2"),
    ("%history N:M", "%history @H:@H+2"),
    ("%history several ranges", "%history @H @H+2 @H+4"),
    ("%history -n", "%history -n @H-@H+5"),
    ("%hist -n -o", "%hist -n -o @H-@H+5"),
    ("%history -p", "%history -p @H-@H+5"),
    ("%history -p -o", "%history -p -o @H+2-@H+4"),
    ("%history -t: translated", "%history -t @H+3"),
    ("%history -r: raw", "%history -r @H+3"),
    ("%history ~1/1-5: an earlier session (none)", "%history ~1/1-5"),
    ("%history 0/N (this session)", "%history 0/@H"),
    ("%history -g PATTERN", "%history -g h_a"),
    ("%history -g -u", "%history -g -u h_a"),
    ("%history -g PATTERN with a range", "%history -g h_ @H-@H+3"),
    ("%history -l N", "%history -l 3"),
    ("%history -n -l", "%history -n -l 2"),
    ("%history -l 0", "%history -l 0"),
    ("%history -f FILE", "%history -f hist_out.py @H-@H+2\nprint(open('hist_out.py').read())"),
    ("%history -f FILE that exists, headless", "%history -f hist_out.py @H", "all", {"stdin": False}),
    ("%history -f FILE that exists, answer n", "%history -f hist_out.py @H", "all", {"answer": "n"}),
    ("%history -f FILE that exists, answer y", "%history -f hist_out.py @H+1\nprint(open('hist_out.py').read())",
     "all", {"answer": "y"}),
    ("%history with a bad option", "%history -z"),
    ("%history -l with a word", "%history -l x"),
    ("%history with no range (all)", "%history"),
    # %load
    ("a file to load", "with open('ld.py', 'w') as fh:\n    fh.write('# -*- coding: utf-8 -*-\\nimport os\\n\\n"
     "def ld_f(x):\\n    return x + 1\\n\\nclass LdC:\\n    def m(self):\\n        return 2\\n\\nLD = 3\\n')\n"
     "def nb_func(a, b=2):\n    \"\"\"Doc.\"\"\"\n    return a * b\nsrc_str = 'print(1)'"),
    ("%load FILE", "%load ld.py"),
    ("%load FILE without .py", "%load ld"),
    ("%load -r N-M", "%load -r 4-5 ld.py"),
    ("%load -r several", "%load -r 1,4:6 ld.py"),
    ("%load -r with an indent", "%load -r 9-10 ld.py"),
    ("%load -s SYMBOLS", "%load -s ld_f,LdC ld.py"),
    ("%load -s a method", "%load -s LdC.m ld.py"),
    ("%load -s of a missing symbol", "%load -s nosuch ld.py"),
    ("%load -s of missing symbols", "%load -s ld_f,nosuch,other ld.py"),
    ("%load -y", "%load -y ld.py"),
    ("%load history N", "%load @H"),
    ("%load history N-M", "%load @H-@H+2"),
    ("%load a string variable", "%load src_str"),
    ("%load -n a notebook function", "%load -n nb_func"),
    ("%load -n a module's function", "import json\n%load -n json.dumps"),
    ("%load -n a class", "%load -n json.JSONDecoder"),
    ("%load of an object without -n", "%load json.dumps"),
    ("%load of nothing known", "%load nosuchthing"),
    ("%load of an expression", "%load 1+1"),
    ("%load of a directory", "%load ."),
    ("%load with no argument", "%load"),
    ("%loadpy FILE", "%loadpy ld.py"),
    # %time, %%time (timings normalized: "N s")
    ("%time of a statement", "%time t_v = sum(range(1000))", "time"),
    ("%time of an expression: its value", "%time t_v + 1", "time"),
    ("%time of an expression and ;", "%time t_v + 1;", "time"),
    ("%time's value in a variable", "t_r = %time t_v * 2\nt_r", "time"),
    ("%%time of statements", "%%time\nt_w = 1\nt_w += 1", "time"),
    ("%%time with a last expression: its value", "%%time\nt_w = 5\nt_w * 3", "time"),
    ("%%time of one expression", "%%time\nt_w * 4", "time"),
    ("%%time with a print", "%%time\nprint('timed')", "time"),
    ("%%time of a magic", "%%time\n%pwd", "time"),
    ("%%time with a statement on its line", "%%time x = 1\ny = 2", "time"),
    ("%time of an error", "%time 1 / 0", "tb"),
    ("%%time of an error", "%%time\nt_w = 1\nundefined_name_t", "tb"),
    ("%time of a syntax error", "%time 1 +", "ename"),
    ("%time with CPU use: user > 0", "%time t_cpu = sum(i * i for i in range(3 * 10 ** 6))\n"
     "print('(not zero)')", "cpu"),
    # a cell whose parsing and compiling take far over IPython's 0.1 s
    ("%%time of a big cell: Parser and Compiler lines", "%%time\n" + "t_big = 1\n" * 150000, "time"),
    # %timeit, %%timeit (timings normalized: "N s"; -n and -r fixed so the layout is fixed)
    ("%%timeit -n1 -r1", "%%timeit -n1 -r1\nti_x = 1", "time"),
    ("%%timeit -n 1 -r 1 (spaced options)", "%%timeit -n 1 -r 1\nti_x = 1", "time"),
    ("%%timeit: setup on the line", "%%timeit -n1 -r1 ti_y = 2\nti_x = ti_y", "time"),
    ("%timeit -o: the TimeitResult", "%timeit -o -n1 -r1 pass", "time"),
    ("TimeitResult's fields", "_.loops, _.repeat, len(_.all_runs), len(_.timings), _.best <= _.worst"),
    ("%%timeit -q prints nothing", "%%timeit -q -n1 -r1\nti_x = 1", "time"),
    ("%timeit -p 5 -t", "%timeit -n2 -r3 -p 5 -t pass", "time"),
    ("%timeit -c (CPU clock)", "%timeit -n2 -r2 -c pass", "time"),
    ("%timeit with nothing to time", "%timeit"),
    ("%timeit keeps the statement's names local", "%timeit -n1 -r1 ti_local = 1\n'ti_local' in globals()", "time"),
    ("%timeit of a syntax error", "%timeit -n1 -r1 1 +", "ename"),
    ("%timeit of a bad option", "%timeit -z pass"),
    # %config
    ("%config: the configurables", "%config"),
    ("%config InlineBackend before the inline backend", "%config InlineBackend"),
    ("%config StoreMagics", "%config StoreMagics"),
    ("%config AliasManager", "%config AliasManager"),
    ("%config ScriptMagics.script_paths", "%config ScriptMagics.script_paths"),
    ("%config of a class in the wrong case", "%config storemagics"),
    ("%config Class.trait of an unknown class", "%config NoSuch.x", "ename"),
    ("%matplotlib inline", "%matplotlib inline"),
    ("%config lists InlineBackend", "%config"),
    ("%config InlineBackend", "%config InlineBackend"),
    ("%config InlineBackend.figure_formats", "%config InlineBackend.figure_formats"),
    ("%config InlineBackend.rc", "%config InlineBackend.rc"),
    ("%config with braces (expanded first)", "%config InlineBackend.figure_formats = {'svg'}", "ename"),
    ("%config InlineBackend settings", "%config InlineBackend.figure_formats = ['svg']\n"
     "%config InlineBackend.close_figures = False\n%config InlineBackend.print_figure_kwargs = dict(dpi=50)\n"
     "%config InlineBackend.figure_format = 'svg'\n%config InlineBackend"),
    ("%config InlineBackend back", "%config InlineBackend.figure_formats = ['png']\n"
     "%config InlineBackend.close_figures = True\n%config InlineBackend.print_figure_kwargs = "
     "{'bbox_inches': 'tight'}\n%config InlineBackend.figure_formats"),
    ("%config IPCompleter.use_jedi", "%config IPCompleter.use_jedi"),
    # help on objects (name?, name??): the page
    ("objects to look at", "def pf(a, b=2, *args, c: int = 3, **kw) -> str:\n    \"\"\"Do a thing.\n\n    More.\"\"\"\n"
     "    return str(a)\n\nclass PC:\n    \"\"\"A class.\"\"\"\n    def __init__(self, x=1):\n        self.x = x\n"
     "    def meth(self, y):\n        \"\"\"A method.\"\"\"\n        return y\n    def __call__(self, z):\n"
     "        return z\n\nclass PD(PC):\n    pass\n\nclass Plain:\n    pass\n\npc = PC()\nplain = Plain()\npl = [1, 2, 3]\npn = 42\n"
     "ps = 'text'\ndef nodoc(x):\n    return x\nplam = lambda q: q\nimport json, collections"),
    ("pf?: a function", "pf?"),
    ("pf??: its source", "pf??"),
    ("nodoc?", "nodoc?"),
    ("plam?: a lambda", "plam?"),
    ("PC?: a class", "PC?"),
    ("PC??", "PC??"),
    ("Plain?: a class without doc or init", "Plain?"),
    ("pc?: a callable instance", "pc?"),
    ("plain?: an instance", "plain?"),
    ("pc.meth?: a method", "pc.meth?"),
    ("PC.meth??", "PC.meth??"),
    ("pl?: a list", "pl?"),
    ("pn?: an int", "pn?"),
    ("ps?: a str", "ps?"),
    ("json?: a module", "json?"),
    ("json.dumps?: a module's function", "json.dumps?"),
    ("collections.OrderedDict?: a builtin class", "collections.OrderedDict?"),
    ("len?: a builtin", "len?"),
    ("print??: a builtin without source", "print??"),
    ("json.dumps??: a module function's source", "json.dumps??"),
    # (not int?: its subclasses are those of the modules each kernel loaded)
    ("bool?: a builtin type", "bool?"),
    ("?pf: the mark before", "?pf"),
    ("nosuch?", "nosuch?"),
    ("%colors NoColor", "%colors NoColor"),
    ("pf? without colours", "pf?"),
    ("%colors Neutral", "%colors Neutral"),
    # %%svg, %%SVG: the SVG element as minidom writes it again
    ("%%svg", "%%svg\n<svg width=\"10\" height='10'><circle r=\"4\"></circle></svg>"),
    ("%%SVG with a prolog, a comment and a namespace", "%%SVG\n<?xml version=\"1.0\"?>\n<!-- c -->\n"
     "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"10\" height=\"10\">\n  <rect width=\"5\" height=\"5\"/>\n"
     "  <text>a &amp; b</text>\n</svg>\n"),
    ("%%svg nested in other XML", "%%svg\n<div><p>x</p><svg><g/></svg></div>"),
    ("%%svg without an svg element", "%%svg\n<div>no svg</div>"),
    ("%%svg of what is not XML", "%%svg\nnot xml"),
    # $x and {x} in !cmd and magics: IPython's var_expand, with the locals of
    # a function the line is in; magics that need the local scope get it
    ("!cmd in a function: its locals in $x and {x}",
     "def _g():\n    loc = 'LOCAL'\n    !echo dollar=$loc brace={loc}\n_g()"),
    ("x = !cmd in a function: its locals", "def _h():\n    loc = 'LOCAL'\n    r = !echo $loc {loc}\n    return r\n_h()"),
    ("%env in a function: its locals",
     "def _e():\n    loc = 'LOCAL'\n    %env AUDITVAR=$loc\n    import os\n    return os.environ['AUDITVAR']\n_e()"),
    ("$obj.attr, '$v' in single quotes, {{x}}",
     "import types\nv = 'VAL'\nobj = types.SimpleNamespace(attr='ATTR')\n!echo $obj.attr '$v' \"$v\" {{x}} $$v"),
    ("an unknown name leaves the whole line as typed", "v = 'VAL'\n!echo $nosuchname_zz {v}"),
    ("{expr} with a slice and a call", "w = 'abcdef'\n!echo {w[1:3]} {len(w)} {w!r}"),
    ("%time in a function: its locals", "def _f2():\n    n = 5\n    r = %time sum(range(n))\n    return r\n_f2()",
     "time"),
    ("%timeit in a function: its locals",
     "def _f():\n    n = 5\n    %timeit -n1 -r1 -q range(n)\n    return 'timeit ok'\n_f()"),
    ("a user magic with needs_local_scope, in a function",
     "from IPython.core.magic import register_line_magic, needs_local_scope\n"
     "@register_line_magic\n@needs_local_scope\ndef lm(line, local_ns):\n"
     "    return sorted(k for k in local_ns if not k.startswith('_'))[:5]\n"
     "def _ff():\n    zz_local = 1\n    r = %lm\n    return r\n_ff()"),
    # IPython's wildcard searches with ?: a pattern need not start with *
    ("NAME.PAT*? searches a module", "import re\nre.e*?"),
    ("?NAME.PAT*", "?re.e*"),
    ("NAME.*PAT*?", "re.*err*?"),
    ("PAT*? in the namespace", "abcwild = 1\nabcw*?"),
]


def run_parity(kernel_name):
    km, kc = du.start(kernel_name)
    work = os.path.join(kutil.TMP, "magics3-" + kernel_name)
    os.makedirs(work)
    try:
        collect(kc, "import os\nos.chdir(%r)" % work)
        res = []
        first = None
        for name, code, *rest in PARITY:
            code = re.sub(r"@H([+-]\d+)?", lambda m: str(first + int(m.group(1) or 0)), code)
            kw = dict(rest[1]) if len(rest) > 1 else {}
            opts = {}
            if "answer" in kw:
                answer = kw.pop("answer")
                opts["stdin_hook"] = lambda msg, a=answer: kc.input(a)
            if kw.pop("stdin", True) is False:
                opts["allow_stdin"] = False
            try:
                res.append(collect(kc, code, **opts))
                if name == "history: first cell":
                    first = res[-1][0]["execution_count"]
            except Exception as e:
                res.append(({"status": "timeout", "error": repr(e)}, []))
        return res
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


ours = run_parity("cellbox")
theirs = run_parity("python3")
for (name, code, *rest), r1, r2 in zip(PARITY, ours, theirs):
    how = rest[0] if rest else "all"
    v1, v2 = view(r1, how), view(r2, how)
    tap.ok(v1 == v2 and v1[0]["status"] in ("ok", "error"), "same as ipykernel: %s" % name,
           "cellbox:   %r\nipykernel: %r" % (v1, v2))


@tap.case
def no_import_at_start():
    """The magics stay off the hot path: a plain cell loads none of them (nor
    what the magics of kernel_magics2.py and this file import)."""
    km, kc = du.start("cellbox")
    try:
        collect(kc, "x = 1\nx")
        reply, out = collect(kc, "import sys\nsorted(m for m in ('cellbox._magics', 'IPython', 'IPython.core.macro', "
                                 "'runpy', 'IPython.core.oinspect', 'nbformat', 'xml.dom.minidom') if m in sys.modules)")
        tap.eq(kutil.results([(t, c) for t, c, b in out]), ["[]"], "no magics module loaded by plain cells")
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
