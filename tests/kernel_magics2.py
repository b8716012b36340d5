"""More of IPython's magics in the cellbox kernel, against ipykernel: help on
magics (%name?, %%name??, ?%name, a user's magic), %lsmagic's result (text
and JSON), and the magics added after kernel_magics.py: %autoawait,
%autocall, %colors (the traceback colour schemes), %doctest_mode, %pprint,
%quickref, %alias_magic, %macro (run by its name), %notebook, %logstart and
its family, %edit, %autosave, %gui, %sc, %killbgscripts, %hist, %%HTML...
Each cell runs in a cellbox kernel and in Debian's ipykernel; the IOPub
messages and the reply payloads must be the same once what differs by
nature is normalized (cell file names, temporary file names). Output: TAP.
"""
import os
import re

import display_util as du
import kutil

tap = kutil.TAP()

CELL_FILE = re.compile(r"[^\s(]*(/tmp/ipykernel_\d+/\d+\.py|<ipython-input-\d+-[0-9a-f]+>)|(?<![\w/.])\d{6,}\.py")
WORK_DIR = re.compile(r"magics2-(cellbox|python3)")
EDIT_TMP = re.compile(r"/tmp/ipython_edit_\w+/ipython_edit_\w+\.py")
WARN_LOC = re.compile(r"^\S+:\d+: (\w+Warning: )", re.M)
WARN_SRC = re.compile(r"^  \S.*\)\n", re.M)   # the source line under a warning
ANSI = re.compile(r"\x1b\[[0-9;]*m")


class Norm(du.Normalizer):
    def text(self, s):
        s = WORK_DIR.sub("magics2-K", CELL_FILE.sub("<cell>", s))
        s = EDIT_TMP.sub("<edit tmp>", s)
        if "Warning: " in s:
            s = WARN_SRC.sub("", WARN_LOC.sub(r"\1", s))
        return super().text(s)


def collect(kc, code):
    return du.collect(kc, code, timeout=60)


def view(result, how="all"):
    reply, out = result
    n = Norm()
    keep = {"status": reply.get("status"), "ename": reply.get("ename")}
    if reply.get("status") == "error" and how != "ename":
        keep["evalue"] = n.text(reply.get("evalue", ""))
    payload = []
    for p in reply.get("payload") or []:
        p = dict(p)
        if "data" in p:
            p["data"] = n.value("", p["data"])
        if "filename" in p:
            p["filename"] = n.text(p["filename"])
        payload.append(p)
    keep["payload"] = payload
    if how == "ename":   # the error's class only (its traceback runs through each kernel's own code)
        return keep, [m[0] for m in n.messages(out)]
    msgs = n.messages(du.merge_streams(out))
    # ipykernel shows %autocall's rewritten line twice (it transforms a cell twice): once is enough
    msgs = [m[:2] + (re.sub(r"^(------> .*\n)\1", r"\1", m[2]),) if m[0] == "stream" else m for m in msgs]
    if how == "tb":
        msgs.append([[n.text(b) for b in c["traceback"]] for t, c, b in out if t == "error"])
    elif how == "tb heads":   # each frame's header: the code lines are coloured by cellbox's own highlighter
        msgs.append([[n.text(b).split("\n")[0] for b in c["traceback"]] for t, c, b in out if t == "error"])
    return keep, msgs


TB_SETUP = ("def inner(x):\n    return 1 / x\n\ndef outer(y, *rest, k=3, **kw):\n    z = y - 1\n"
            "    return inner(z)")
ERRORS = [("an error two frames deep", "outer(1)"), ("a syntax error", "def f(:\n    pass"),
          ("an error with a cause", "try:\n    1/0\nexcept Exception as e:\n    raise KeyError('x') from e")]

# (name, code[, how]): how is "all" (messages and payloads), "tb" (the
# traceback too, with its colours), "tb heads" or "ename"
PARITY = [
    # help on magics
    ("%timeit?", "%timeit?"),
    ("%timeit??: the source", "%timeit??"),
    ("%%timeit?", "%%timeit?"),
    ("%%timeit??", "%%timeit??"),
    ("?%cd", "?%cd"),
    ("??%cd", "??%cd"),
    ("cd?: a magic without its %", "cd?"),
    ("%lsmagic?", "%lsmagic?"),
    ("%history?: an argparse docstring", "%history?"),
    ("%%capture?", "%%capture?"),
    ("%hist?: an alias of a magic", "%hist?"),
    ("%%HTML?", "%%HTML?"),
    ("%%file?", "%%file?"),
    ("%%bash?: a script magic", "%%bash?"),
    ("%%sh??", "%%sh??"),
    ("%sx? and %system? (one function)", "%system?"),
    ("%ls?: a shell alias", "%ls?"),
    ("%edit?: ipykernel's own magic", "%edit?"),
    ("%autosave?", "%autosave?"),
    ("%store?", "%store?"),
    ("%colors?", "%colors?"),
    ("%aimport? before %load_ext autoreload", "%aimport?"),
    ("%nosuch?", "%nosuch?"),
    ("%%!?: no such cell magic", "%%!?"),
    ("%%%timeit?", "%%%timeit?"),
    ("%timeit?? with more words: not help", "%timeit?? extra"),
    ("a user's magic", "from IPython.core.magic import register_line_magic, register_cell_magic\n"
     "@register_line_magic\ndef mym(line):\n    'My magic doc.'\n    return line\n"
     "@register_cell_magic\ndef mycell(line, cell):\n    return cell\n"),
    ("%mym?", "%mym?"),
    ("%mym??", "%mym??"),
    ("%%mycell?", "%%mycell?"),
    # %lsmagic
    ("%lsmagic: the lists and the classes (JSON)", "%lsmagic"),
    ("%lsmagic with automagic off", "%automagic off\n%lsmagic"),
    ("%lsmagic after %load_ext autoreload", "%automagic on\n%load_ext autoreload\n%lsmagic"),
    ("%aimport? after %load_ext autoreload", "%aimport?"),
    ("str(%lsmagic)", "print(str(get_ipython().run_line_magic('lsmagic', '')).splitlines()[-1])"),
    # %alias_magic
    ("%alias_magic without arguments", "%alias_magic"),
    ("%alias_magic NAME TARGET: line and cell", "%alias_magic t timeit"),
    ("%alias_magic -c", "%alias_magic -c ct timeit"),
    ("%alias_magic -l -p", "%alias_magic -l -p '-n1 -r1' t1 timeit"),
    ("%alias_magic of a missing magic", "%alias_magic nope nosuchmagic"),
    ("%alias_magic -c of a line magic", "%alias_magic -c pw pwd"),
    ("an alias runs its target", "%alias_magic wl who_ls\nal_var = 1\n%wl int"),
    ("help on an alias", "%t1?"),
    ("%lsmagic lists the aliases", "%lsmagic"),
    # %autoawait
    ("%autoawait", "%autoawait"),
    ("%autoawait off", "%autoawait off"),
    ("%autoawait shows off", "%autoawait"),
    ("asyncio", "import asyncio"),
    ("await with %autoawait off: a SyntaxError", "await asyncio.sleep(0)\n1", "tb"),
    ("%autoawait on", "%autoawait on"),
    ("await with %autoawait on", "await asyncio.sleep(0)\n2"),
    ("%autoawait asyncio", "%autoawait asyncio\n%autoawait"),
    ("%autoawait of a module that is not there", "%autoawait nosuchrunner", "ename"),
    # %autocall
    ("%autocall", "%autocall"),
    ("a callable", "def twice(x=1):\n    return 2 * x\n"),
    ("autocall smart: `twice 4`", "twice 4"),
    ("autocall smart: a bare name is not called", "twice"),
    ("autocall smart: an operator is not a call", "twice + 0 if False else 5"),
    ("%autocall 2", "%autocall 2"),
    ("autocall full: a bare name is called", "twice"),
    ("autocall with a trailing ;", "twice 3;"),
    ("%autocall 0", "%autocall 0"),
    ("no autocall", "twice"),
    ("%autocall with a bad mode", "%autocall 5"),
    ("%autocall toggles back", "%autocall\n%autocall"),
    ("%autocall off at the end", "%autocall 0"),
    # %pprint, %doctest_mode
    ("a value to show", "wide = {'k%02d' % i: list(range(i)) for i in range(12)}"),
    ("%pprint off", "%pprint"),
    ("a dict without pretty printing", "wide"),
    ("%pprint on", "%pprint"),
    ("a dict with pretty printing", "wide"),
    ("%doctest_mode on", "%doctest_mode"),
    ("a result in doctest mode", "wide"),
    ("an error in doctest mode (Plain)", "outer_missing_name", "tb"),
    ("%doctest_mode off", "%doctest_mode"),
    ("a result after doctest mode", "wide"),
    # %colors
    ("%colors without a scheme", "%colors"),
    ("%colors with a wrong scheme", "%colors nosuch"),
    ("functions that fail", TB_SETUP),
]
for scheme in ("Linux", "LightBG", "NoColor", "Neutral"):
    PARITY.append(("%%colors %s" % scheme, "%%colors %s" % scheme))
    for mode in ("Context", "Plain", "Minimal"):
        PARITY.append(("%%xmode %s" % mode, "%%xmode %s" % mode))
        how = "tb" if mode != "Context" or scheme == "NoColor" else "tb heads"
        for name, code in ERRORS:
            PARITY.append(("%s, %s, %s" % (scheme, mode, name), code, how))
    PARITY.append(("help in the %s colours" % scheme, "%pdoc outer"))
PARITY += [
    ("%xmode Context again", "%xmode Context"),
    # %macro
    ("cells for a macro", "mac_list = []"),
    ("another", "mac_list.append(len(mac_list))\nprint('ran', mac_list)"),
    ("%macro without arguments", "%macro"),
    ("%macro NAME RANGE", "%%macro mac %d-%d" % (0, 0)),   # replaced below with the real range
    ("the macro by its name runs its cells", "mac"),
    ("again", "mac"),
    ("%macro -q", "%macro -q mac2 mac_list"),
    ("a string variable's macro", "src_code = 'print(40 + 2)'\n%macro mac3 src_code"),
    ("run it", "mac3"),
    ("%macro of nothing", "%macro nomac nosuchthing"),
    ("the macro's type", "type(mac).__name__, str(mac3)"),
    # %notebook
    ("%notebook without a name", "%notebook"),
    ("%notebook FILE", "%notebook exported.ipynb"),
    ("the notebook written", "import nbformat\nnb = nbformat.read('exported.ipynb', as_version=4)\n"
     "[(c.cell_type, c.execution_count, c.source) for c in nb.cells][-6:], nb.nbformat"),
    # logging
    ("%logstate before %logstart", "%logstate"),
    ("%logon before %logstart", "%logon"),
    ("%logoff before %logstart", "%logoff"),
    ("%logstop before %logstart", "%logstop"),
    ("%logstart FILE", "%logstart session_log.py"),
    ("a logged cell", "logged_x = 6 * 7\nlogged_x"),
    ("a logged magic", "%pwd"),
    ("%logstate", "%logstate"),
    ("%logoff", "%logoff"),
    ("a cell that is not logged", "not_logged = 1"),
    ("%logon", "%logon"),
    ("%logstart again", "%logstart other_log.py"),
    ("%logstop", "%logstop"),
    # (the lines logged as cells run; the history %logstart writes first is
    # translated with today's %autocall, not the one each cell ran with)
    ("the log's lines (without the header's date)", "log_lines = open('session_log.py').readlines()\n"
     "print(''.join(log_lines[max(i for i, l in enumerate(log_lines) if 'session_log.py' in l):]))"),
    ("%logstart -o -r -q", "%logstart -o -r -q raw_log.py append"),
    ("a cell with output", "%pwd\n21 * 2"),
    ("%logstop and the raw log", "%logstop\nlog_lines = open('raw_log.py').readlines()\n"
     "print(''.join(log_lines[max(i for i, l in enumerate(log_lines) if 'raw_log.py' in l):]))"),
    ("%logstart with too many arguments", "%logstart a b c"),
    # ipykernel's kernel magics and the rest
    ("%autosave N", "%autosave 30"),
    ("%autosave 0", "%autosave 0"),
    ("%autosave without a number", "%autosave"),
    ("%gui", "%gui"),
    ("%edit: a temporary file", "%edit"),
    ("%edit FILE", "%edit edit_me.py"),
    ("%ed -n", "%ed -n 3 edit_me.py"),
    ("%killbgscripts", "%killbgscripts"),
    ("%connect_info: the file's keys and the instructions", "import io, contextlib, json\nbuf = io.StringIO()\n"
     "with contextlib.redirect_stdout(buf):\n    %connect_info\ninfo_text = buf.getvalue()\n"
     "sorted(json.loads(info_text[:info_text.index('}') + 1])), info_text[info_text.index('}') + 1:].count('--existing')"),
    ("%sc -l", "%sc -l sc_lines = echo a b; echo c\nsc_lines"),
    ("%sc", "%sc sc_text = echo x y\nsc_text"),
    ("%%HTML", "%%HTML\n<b>bold</b>"),
    ("%loadpy", "with open('lp.py', 'w') as fh: fh.write('lp_value = 3\\n')\n%loadpy lp.py"),
    ("%quickref", "%quickref"),
]


def run_parity(kernel_name):
    km, kc = du.start(kernel_name)
    work = os.path.join(kutil.TMP, "magics2-" + kernel_name)
    os.makedirs(work)
    try:
        collect(kc, "import os\nos.chdir(%r)" % work)
        res = []
        count = 1
        for name, code, *how in PARITY:
            if code.startswith("%%macro mac "):
                code = "%%macro mac %d-%d" % (count - 2, count - 1)
            try:
                r = collect(kc, code)
                count = r[0].get("execution_count", count) + 1
                res.append(r)
            except Exception as e:
                res.append(({"status": "timeout", "error": repr(e)}, []))
        return res
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


ours = run_parity("cellbox")
theirs = run_parity("python3")
for (name, code, *how), r1, r2 in zip(PARITY, ours, theirs):
    v1, v2 = view(r1, *how), view(r2, *how)
    if code in ("%ls?", "%quickref"):   # cellbox's %ls shows no colours (ls --color=never)
        v1 = eval(repr(v1).replace("--color=never", "--color"))
    tap.ok(v1 == v2 and v1[0]["status"] in ("ok", "error"), "same as ipykernel: %s" % name,
           "cellbox:   %r\nipykernel: %r" % (v1, v2))
