"""IPython extensions and user magics in the cellbox kernel, against ipykernel.

Notebooks register magics (IPython.core.magic's decorators, Magics classes,
stateful Magics instances) and load extensions (%load_ext) that were written
for IPython's InteractiveShell. The same cells run in a cellbox kernel and in
Debian's ipykernel; where the output is deterministic the IOPub messages and
reply payloads must be the same (display_util.Normalizer), where it is not
(profilers, compilers) both kernels must produce output of the same shape.
Real extensions from Debian: line_profiler (%lprun, a pager payload),
memory_profiler (%memit) and Cython (%%cython, compiled with gcc).

The lazy IPython package of the cellbox kernel is checked too: a notebook's
first IPython import may be any submodule, and each must work in a fresh
kernel. Output: TAP.
"""
import os
import re
import sys
import textwrap

import display_util as du
import kutil

tap = kutil.TAP()

EXT_DIR = os.path.join(kutil.TMP, "ext_mods")
os.makedirs(EXT_DIR, exist_ok=True)
with open(os.path.join(EXT_DIR, "cbx_demo_ext.py"), "w") as f:
    f.write(textwrap.dedent("""\
        LOADS = []

        def load_ipython_extension(ip):
            LOADS.append('load')
            print('demo loaded', len(LOADS))
            ip.register_magic_function(lambda line: 'demo:' + line, 'line', 'demo')

        def unload_ipython_extension(ip):
            print('demo unloaded')
        """))

SETUP = "import sys\nsys.path.insert(0, %r)\n" % EXT_DIR
# %store writes IPython's profile database: a private one for both kernels
os.environ["IPYTHONDIR"] = os.path.join(kutil.TMP, "ipythondir")

# (name, code): compared message by message, payloads too
PARITY = [
    ("register_line_magic", "from IPython.core.magic import register_line_magic, register_cell_magic, "
     "register_line_cell_magic, needs_local_scope, no_var_expand\n"
     "@register_line_magic\ndef hello(line):\n    return 'hello ' + line\n"),
    ("a registered line magic's value is the result", "%hello world"),
    ("the value of a line magic in an assignment", "x = %hello there\nprint(x)"),
    ("register_cell_magic", "@register_cell_magic\ndef upper(line, cell):\n    print(cell.upper().strip(), '|', line)"),
    ("a registered cell magic gets the line and the body", "%%upper args here\nsome text\nmore"),
    ("register_line_cell_magic, used both ways",
     "@register_line_cell_magic\ndef both(line, cell=None):\n    return (line, cell)\n"
     "r = %both only line\nprint(r)"),
    ("line_cell magic as a cell magic", "%%both l\nbody"),
    ("$name expansion in a registered magic's line", "who = 'you'\n%hello $who"),
    ("no_var_expand keeps $name", "@register_line_magic\n@no_var_expand\ndef raw(line):\n    return line\n%raw $who {1+1}"),
    ("needs_local_scope gets the namespace",
     "@register_line_magic\n@needs_local_scope\ndef lookup(line, local_ns):\n    return local_ns[line.strip()]\n"
     "secret = 41 + 1\n%lookup secret"),
    ("a Magics class registered by class",
     "from IPython.core.magic import Magics, magics_class, line_magic, cell_magic, line_cell_magic\n"
     "@magics_class\nclass Mine(Magics):\n    @line_magic\n    def shout(self, line):\n        return line.upper()\n"
     "    @cell_magic\n    def count_lines(self, line, cell):\n        return len(cell.splitlines())\n"
     "    @line_magic\n    def ns_has(self, line):\n        return line.strip() in self.shell.user_ns\n"
     "get_ipython().register_magics(Mine)\n%shout quiet"),
    ("its cell magic", "%%count_lines\na\nb\nc"),
    ("its shell is the kernel's shell (user_ns)", "%ns_has secret"),
    ("a stateful Magics instance made with get_ipython()",
     "@magics_class\nclass Stateful(Magics):\n    def __init__(self, shell, data):\n        super().__init__(shell)\n"
     "        self.data = data\n    @line_magic\n    def plus(self, line):\n        self.data += int(line)\n        return self.data\n"
     "ip = get_ipython()\nip.register_magics(Stateful(ip, 40))\n%plus 1"),
    ("the instance keeps its state", "%plus 1"),
    ("magic_arguments", "from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring\n"
     "@magic_arguments()\n@argument('-n', type=int, default=1)\n@argument('word')\n"
     "def rep(line):\n    a = parse_argstring(rep, line)\n    return a.word * a.n\n"
     "get_ipython().register_magic_function(rep)\n%rep -n 3 ab"),
    ("register_magic_function with a name and kind",
     "get_ipython().register_magic_function(lambda line, cell: cell[::-1], 'cell', 'rev')"),
    ("that cell magic", "%%rev\nabc"),
    ("magics_manager lists registered magics",
     "m = get_ipython().magics_manager.magics\nsorted(n for n in ('hello', 'both', 'shout', 'plus', 'rep') if n in m['line']), "
     "sorted(n for n in ('upper', 'both', 'count_lines', 'rev') if n in m['cell'])"),
    ("find_line_magic / find_cell_magic",
     "ip = get_ipython()\nip.find_line_magic('hello')('x'), ip.find_cell_magic('nope') is None, ip.find_magic('rev', 'cell') is not None"),
    ("an unknown line magic", "%definitely_not_a_magic"),
    ("a line magic used as a cell magic", "%%hello\nbody"),
    # extensions
    ("%load_ext of a module with load_ipython_extension", "%load_ext cbx_demo_ext"),
    ("the extension's magic", "%demo it works"),
    ("%load_ext twice: already loaded", "%load_ext cbx_demo_ext"),
    ("%reload_ext unloads and loads again", "%reload_ext cbx_demo_ext"),
    ("extension_manager.loaded", "'cbx_demo_ext' in get_ipython().extension_manager.loaded"),
    ("%unload_ext", "%unload_ext cbx_demo_ext"),
    ("%unload_ext of an extension not loaded", "%unload_ext cbx_demo_ext"),
    ("%load_ext of a module that is no extension", "%load_ext json"),
    ("%load_ext of a missing module", "%load_ext no_such_module_here"),
    ("%load_ext without a name", "%load_ext"),
    # the shell API extensions use
    ("set_next_input: a payload", "get_ipython().set_next_input('x = 1')"),
    ("IPython.core.page.page: a pager payload", "from IPython.core.page import page\npage('paged text')"),
    ("run_cell runs code in the user namespace", "r = get_ipython().run_cell('rc_value = 6 * 7')\nr.success, rc_value"),
    ("run_cell of failing code: error shown, not raised", "r = get_ipython().run_cell('1/0')\n"
     "r.success, type(r.error_in_exec).__name__"),
    ("post_run_cell callbacks see the cell's error",
     "def _after(result):\n    print('post_run_cell success:', result.success)\n"
     "get_ipython().events.register('post_run_cell', _after)"),
    ("an ok cell", "ok_value = 1"),
    ("a failing cell", "raise KeyError('k')"),
    ("unregister", "get_ipython().events.unregister('post_run_cell', _after)"),
    ("InteractiveShellABC", "from IPython.core.interactiveshell import InteractiveShellABC\n"
     "isinstance(get_ipython(), InteractiveShellABC)"),
    ("user_global_ns is the namespace", "get_ipython().user_global_ns is globals()"),
    # ipykernel's raw API some libraries and notebooks use (nbclient's update-display-id.ipynb)
    ("kernel.session.send(kernel.iopub_socket, ...) with display ids",
     "ip = get_ipython()\n"
     "def send_display(obj, display_id, update=False, execute_result=False):\n"
     "    data, md = ip.display_formatter.format(obj)\n"
     "    content = {'data': data, 'metadata': md, 'transient': {'display_id': str(display_id)}}\n"
     "    if execute_result:\n"
     "        msg_type = 'execute_result'\n"
     "        content['execution_count'] = ip.execution_count\n"
     "    else:\n"
     "        msg_type = 'update_display_data' if update else 'display_data'\n"
     "    return ip.kernel.session.send(ip.kernel.iopub_socket, msg_type, content, parent=ip.parent_header)\n"
     "m = send_display(1, 'here')\nsend_display(2, 'there')\nsend_display(3, 'here', update=True)\n"
     "m['header']['msg_type'], m['content']['data'], m['msg_type']"),
    ("an execute_result sent that way", "send_display(5, 'x', execute_result=True);"),
    ("a stream and clear_output sent that way",
     "s = get_ipython().kernel.session\nk = get_ipython().kernel\n"
     "s.send(k.iopub_socket, 'stream', {'name': 'stdout', 'text': 'raw\\n'}, parent=get_ipython().parent_header)\n"
     "s.send(k.iopub_socket, s.msg('stream', {'name': 'stderr', 'text': 'built\\n'}));"),
    ("shell.parent_header is the execute request", "get_ipython().parent_header['header']['msg_type']"),
    # automagic (IPython's prefilter, one-line cells only)
    ("automagic: pwd", "pwd"),
    ("automagic: cd", "cd /"),
    ("automagic: env with an argument", "env HOME"),
    ("automagic: who_ls with an argument (its value is the result)", "who_ls int"),
    ("a variable shadows a magic", "who = 'me'\nwho"),
    ("an assignment to a magic's name stays Python", "precision = 3"),
    ("the shadowing variable again", "precision"),
    ("a builtin shadows", "del who, precision\nprint"),
    ("a two-line cell gets no automagic", "x_am = 1\npwd"),
    ("%automagic toggles it off", "%automagic"),
    ("without automagic", "pwd"),
    ("%automagic on", "%automagic on"),
    # IPython's inspection and namespace magics
    ("%pdef", "def insp_f(a, b=2):\n    'Doc of f.'\n    return a\n%pdef insp_f"),
    ("%pdoc", "%pdoc insp_f"),
    ("%psource", "%psource insp_f"),
    ("%pdoc of a missing name", "%pdoc no_such_thing"),
    ("%page", "%page [1, 2, {'a': 3}]\nvalue_for_page = {'k': list(range(3))}\n%page value_for_page"),
    ("%page -r", "%page -r value_for_page"),
    ("%pycat", "with open('pycat_me.py', 'w') as fh: fh.write('x = 1  # one\\n')\n%pycat pycat_me.py"),
    ("%pycat of a missing file", "%pycat no_such_file.py"),
    ("%less", "%less pycat_me.py"),
    ("%xdel", "xd = [1]\nxd\n%xdel xd\n'xd' in dir(), any(v == [1] for v in Out.values())"),
    ("%xdel of a missing name", "%xdel xd"),
    ("%reset_selective -f", "rs_a, rs_b, keep_c = 1, 2, 3\n%reset_selective -f ^rs_\n"
     "[n in dir() for n in ('rs_a', 'rs_b', 'keep_c')]"),
    ("%conda outside conda", "%conda list"),
    ("%store", "stored_q = 41\n%store stored_q"),
    ("%store lists", "%store"),
    ("%store -r", "del stored_q\n%store -r stored_q\nstored_q"),
    ("%store -z", "%store -z\n%store"),
    # the directory magics (%cd's history and bookmarks, %dhist, %pushd/%popd/%dirs)
    ("%cd DIR", "import os\nos.chdir('/var')\n%cd /tmp"),
    ("%cd another", "%cd /"),
    ("%cd -", "%cd -"),
    ("%dhist", "%dhist"),
    ("%pushd", "%pushd /usr"),
    ("%dirs", "%dirs"),
    ("%popd", "%popd"),
    ("%cd -N", "%cd -1"),
    ("%cd -q", "%cd -q /"),
    ("%bookmark NAME DIR", "%bookmark tmpmark /tmp"),
    ("%bookmark -l", "%bookmark -l"),
    ("%cd -b NAME", "%cd -b tmpmark"),
    ("%cd NAME (a bookmark)", "%cd /\n%cd tmpmark"),
    ("%bookmark -d", "%bookmark -d tmpmark\n%bookmark -l"),
    ("%cd -b of a missing bookmark", "%cd -b nomark"),
    ("%cd of a missing folder", "%cd /nonexistent"),
    ("%popd on an empty stack", "%popd"),
    ("%cd -N out of range", "%cd -99"),
    # IPython's HistoryManager (session numbers and files differ by design: not compared)
    ("history_manager: this session's range",
     "hm = get_ipython().history_manager\nhist_probe = 6 * 7\nhist_probe"),
    ("get_range of the last cells, with outputs",
     "n = len(hm.input_hist_raw)\n[(s, l - n, v) for s, l, v in hm.get_range(0, n - 2, n, output=True)]"),
    ("get_range raw=False translates magics", "hv = %hello hist\n[v for _, _, v in hm.get_range(0, len(hm.input_hist_raw) - 1, "
     "raw=False)]"),
    ("get_tail without and with the running cell",
     "[v for _, _, v in hm.get_tail(2)], [v for _, _, v in hm.get_tail(1, include_latest=True)]"),
    ("search (the running cell matches itself, as in IPython)",
     "[v for _, _, v in hm.search('*hist_probe*')]"),
    ("search with n and unique", "[v for _, _, v in hm.search('*hist_probe*', n=1, unique=True)]"),
    ("get_range_by_str", "[v for _, _, v in hm.get_range_by_str('%d-%d' % (len(hm.input_hist_raw) - 3, "
     "len(hm.input_hist_raw) - 2))]"),
    ("session_number, output_hist, input_hist_parsed",
     "hm.session_number > 0, hm.output_hist is Out, hm.input_hist_parsed[-1].startswith('hm.session_number'), "
     "isinstance(hm.hist_file, (str, type(hm.hist_file)))"),
    # %precision
    ("%precision 3: the format is the result", "%precision 3"),
    ("a float with %precision 3", "3.14159265, [2.718281828]"),
    ("%precision %e", "%precision %.2e"),
    ("a float with %precision %.2e", "12345.678"),
    ("%precision resets", "%precision"),
    ("a float after the reset", "3.14159265"),
    # InteractiveShell.ast_node_interactivity
    ("%config ast_node_interactivity = 'all'", "%config InteractiveShell.ast_node_interactivity = 'all'"),
    ("'all': every expression statement shows", "1\n2\nx = 5\nx\nfor i in range(2): i"),
    ("'all' with a trailing semicolon", "3\n4;"),
    ("'last_expr_or_assign'", "%config InteractiveShell.ast_node_interactivity = 'last_expr_or_assign'\n"),
    ("'last_expr_or_assign': an assignment shows its value", "y = 7"),
    ("'last_expr_or_assign': an augmented one too", "y += 1"),
    ("'last'", "%config InteractiveShell.ast_node_interactivity = 'last'"),
    ("'last': the last statement runs as at a prompt", "1\nfor i in range(3): i * 10"),
    ("'none'", "%config InteractiveShell.ast_node_interactivity = 'none'"),
    ("'none': nothing shows", "1 + 1"),
    ("the notebook idiom: InteractiveShell.ast_node_interactivity = 'all'",
     "%config InteractiveShell.ast_node_interactivity = 'last_expr'\n"
     "from IPython.core.interactiveshell import InteractiveShell\nInteractiveShell.ast_node_interactivity = 'all'"),
    ("the idiom takes effect", "6\n7"),
    ("back to 'last_expr'", "InteractiveShell.ast_node_interactivity = 'last_expr'\n8\n9"),
]

# first imports in fresh kernels (the lazy IPython package)
FIRST_IMPORTS = [
    "from IPython.core.magic import register_line_magic",
    "from IPython.core.interactiveshell import InteractiveShell",
    "import IPython.core.magics",
    "from IPython.utils.capture import capture_output",
    "from IPython.core.magic import Magics, magics_class",
    "from IPython import get_ipython",
    "import IPython; IPython.version_info[0] >= 8",
    "from IPython.display import HTML\nfrom IPython.core.magic import register_cell_magic",
]


def run_parity(kernel_name):
    km, kc = du.start(kernel_name)
    try:
        du.collect(kc, SETUP)
        res = []
        for name, code in PARITY:
            try:
                res.append(du.collect(kc, code))
            except Exception as e:
                res.append(({"status": "timeout", "error": repr(e)}, []))
        return res
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def norm_payload(n, reply):
    out = []
    for p in reply.get("payload") or []:
        p = dict(p)
        if "data" in p:
            p["data"] = n.value("", p["data"])
        out.append(p)
    return out


def norm_reply(n, reply):
    keep = {k: reply.get(k) for k in ("status", "ename")}
    if reply.get("status") == "error":
        keep["evalue"] = n.text(reply.get("evalue", ""))
    return keep


ours = run_parity("cellbox")
theirs = run_parity("python3")
for (name, code), (r1, o1), (r2, o2) in zip(PARITY, ours, theirs):
    n1, n2 = du.Normalizer(), du.Normalizer()
    m1 = (norm_reply(n1, r1), n1.messages(du.merge_streams(o1)), norm_payload(n1, r1))
    m2 = (norm_reply(n2, r2), n2.messages(du.merge_streams(o2)), norm_payload(n2, r2))
    tap.ok(m1 == m2, "same as ipykernel: %s" % name, "cellbox:   %r\nipykernel: %r" % (m1, m2))


# %matplotlib's modes, in a fresh kernel each (matplotlib's backend is process state)
MPL_PARITY = [
    ("%matplotlib --list", "%matplotlib --list"),
    ("%matplotlib notebook: nbAgg's interactive figure over a comm", "%matplotlib notebook\n"
     "import matplotlib.pyplot as plt\nplt.plot([1, 2])\nplt.show()"),
    ("a figure drawn under nbAgg is not shown inline at the end of the cell", "plt.plot([3, 4]);"),
    ("back to %matplotlib inline", "%matplotlib inline\nplt.plot([5, 6]);"),
    ("%matplotlib agg: no figure shown", "%matplotlib agg\nplt.plot([1, 2])\nplt.show()\nplt.get_backend()"),
    ("%matplotlib widget without ipympl: matplotlib's error", "%matplotlib widget"),
    ("%matplotlib tk without a display: matplotlib's error", "%matplotlib tk"),
    ("%matplotlib nbagg", "%matplotlib nbagg\nimport matplotlib\nmatplotlib.get_backend()"),
]
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def run_mpl(kernel_name):
    km, kc = du.start(kernel_name)
    try:
        return [du.collect(kc, code) for _, code in MPL_PARITY]
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def streams_last(msgs):
    """ipykernel sends text printed before a comm message after it (its
    stdout is flushed on a timer); cellbox keeps the order of events. The
    streams are compared after the other messages."""
    return [m for m in msgs if m[0] != "stream"] + [m for m in msgs if m[0] == "stream"]


for (name, code), (r1, o1), (r2, o2) in zip(MPL_PARITY, run_mpl("cellbox"), run_mpl("python3")):
    n1, n2 = du.Normalizer(), du.Normalizer()
    m1 = UUID.sub("<uuid>", repr((norm_reply(n1, r1), streams_last(n1.messages(du.merge_streams(o1))))))
    m2 = UUID.sub("<uuid>", repr((norm_reply(n2, r2), streams_last(n2.messages(du.merge_streams(o2))))))
    tap.ok(m1 == m2, "same as ipykernel: %s" % name, "cellbox:   %s\nipykernel: %s" % (m1[:1500], m2[:1500]))


def unparented(kernel_name):
    """kernel.session.send() of a message built without a parent: it is
    published with an empty parent_header (so frontends do not put it in
    the cell), and one addressed to the request is parented to it."""
    km, kc = du.start(kernel_name)
    try:
        code = ("s = get_ipython().kernel.session; k = get_ipython().kernel\n"
                "s.send(k.iopub_socket, s.msg('stream', {'name': 'stdout', 'text': 'orphan\\n'}))\n"
                "s.send(k.iopub_socket, 'stream', {'name': 'stdout', 'text': 'mine\\n'}, "
                "parent=get_ipython().parent_header);")
        msg_id = kc.execute(code)
        seen, idle = [], False
        while not idle:
            m = kc.get_iopub_msg(timeout=30)
            if m["msg_type"] == "stream":
                seen.append((m["content"]["text"], m["parent_header"].get("msg_id")))
            idle = (m["msg_type"] == "status" and m["content"]["execution_state"] == "idle"
                    and m["parent_header"].get("msg_id") == msg_id)
        kc.get_shell_msg(timeout=30)
        return [(t, None if p is None else p == msg_id) for t, p in seen]
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def exit_behaviour(kernel_name):
    """`exit` in a cell: the ask_exit payload, then the kernel stops on its
    own; exit(keep_kernel=True) keeps it."""
    import time
    out = []
    for code in ("exit", "exit(keep_kernel=True)"):
        km, kc = du.start(kernel_name)
        try:
            reply, _ = du.collect(kc, code)
            payload = [p for p in reply.get("payload") or [] if p.get("source") == "ask_exit"]
            end = time.monotonic() + 15
            while km.is_alive() and time.monotonic() < end:
                time.sleep(0.1)
            alive = km.is_alive()
            if alive:
                r2, o2 = du.collect(kc, "6 * 7")
                alive = any(t == "execute_result" for t, _, _ in o2)
            out.append((reply["status"], [p.get("keepkernel") for p in payload], alive))
        finally:
            kc.stop_channels()
            km.shutdown_kernel(now=True)
    return out


e1, e2 = exit_behaviour("cellbox"), exit_behaviour("python3")
tap.ok(e1 == e2 == [("ok", [False], False), ("ok", [True], True)],
       "exit stops the kernel after its reply, exit(keep_kernel=True) keeps it, as ipykernel",
       "cellbox %r ipykernel %r" % (e1, e2))

u1, u2 = unparented("cellbox"), unparented("python3")
tap.ok(u1 == u2 == [("orphan\n", None), ("mine\n", True)],
       "session.send without a parent: an unparented message, as ipykernel's", "cellbox %r ipykernel %r" % (u1, u2))


# -- real extensions: output of the same shape in both kernels --------------------------------
def shape_lprun(reply, out):
    pages = [p for p in reply.get("payload") or [] if p.get("source") == "page"]
    if len(pages) != 1:
        return None
    text = pages[0]["data"]["text/plain"]
    if "Could not find file" in text:
        return "source not found"
    rows = re.findall(r"^\s+(\d+)\s+(\d+)\s+[\d.]+\s+[\d.]+\s+[\d.]+\s+(.*)$", text, re.M)
    return ("Timer unit:" in text, "Line #      Hits" in text, [(int(a), int(b), c.strip()) for a, b, c in rows])


def shape_memit(reply, out):
    text = "".join(c["text"] for t, c, b in out if t == "stream" and c["name"] == "stdout")
    return bool(re.fullmatch(r"peak memory: [\d.]+ MiB, increment: -?[\d.]+ MiB\n", text)), reply["status"]


def shape_cython(reply, out):
    return reply["status"], [c["data"]["text/plain"] for t, c, b in out if t == "execute_result"]


LPRUN = "def tri(n):\n    s = 0\n    for i in range(n):\n        s += i\n    return s\n%lprun -f tri tri(50)"
CYTHON = "%%cython\ndef csum(int n):\n    cdef long s = 0\n    cdef int i\n    for i in range(n):\n        s += i\n    return s"
REAL = [
    ("%load_ext line_profiler; %lprun -f: per-line hits of the function's own source, in the pager",
     ["%load_ext line_profiler"], LPRUN, shape_lprun),
    ("%load_ext memory_profiler; %memit", ["%load_ext memory_profiler"], "%memit sum(range(10000))", shape_memit),
    ("%load_ext Cython; %%cython compiles a function into the namespace",
     ["%load_ext Cython", CYTHON], "csum(1000)", shape_cython),
]


def run_real(kernel_name):
    got = []
    km, kc = du.start(kernel_name)
    try:
        for name, setup, code, shape in REAL:
            for s in setup:
                du.collect(kc, s, timeout=180)
            reply, out = du.collect(kc, code, timeout=180)
            got.append((shape(reply, out), reply, out))
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
    return got


ours = run_real("cellbox")
theirs = run_real("python3")
for (name, *_), (s1, r1, o1), (s2, r2, o2) in zip(REAL, ours, theirs):
    tap.ok(s1 is not None and s1 == s2, "same as ipykernel: %s" % name,
           "cellbox:   %r\n  reply %r\n  out %r\nipykernel: %r" % (s1, r1, o1[:5], s2))
tap.ok(ours[0][0] and ours[0][0][2][:1] == [(2, 1, "s = 0")] and len(ours[0][0][2]) == 4,
       "%lprun's table has the function's lines with their hit counts", repr(ours[0][0]))
tap.ok(ours[2][0] == ("ok", ["499500"]), "the Cython function computes", repr(ours[2][0]))

# -- first imports in fresh kernels ---------------------------------------------------------
for code in FIRST_IMPORTS:
    results = []
    for kernel_name in ("cellbox", "python3"):
        km, kc = du.start(kernel_name)
        try:
            reply, out = du.collect(kc, code)
            n = du.Normalizer()
            results.append((reply["status"], n.messages(out)))
        finally:
            kc.stop_channels()
            km.shutdown_kernel(now=True)
    tap.ok(results[0][0] == "ok" and results[0] == results[1],
           "as the first IPython import in a fresh kernel: %s" % code.replace("\n", "; "),
           "cellbox %r\nipykernel %r" % tuple(results))


NESTED = ("import os\nfrom jupyter_client.manager import start_new_kernel\n"
          "os.environ['PYDEVD_DISABLE_FILE_VALIDATION'] = '1'   # the nested ipykernel's debugpy warning\n"
          "nkm, nkc = start_new_kernel(kernel_name='python3')\n"
          "r = nkc.execute_interactive('print(\\'nested\\')\\n40 + 2', timeout=60)\n"
          "nkc.stop_channels()\nnkm.shutdown_kernel(now=True)\nprint(r['content']['status'])")


def nested_kernel(name):
    """A notebook driving another kernel: jupyter_client's execute_interactive,
    run inside a kernel, re-publishes the nested kernel's results through
    get_ipython().display_pub (ipykernel's session, pub_socket, parent_header)."""
    km, kc = du.start(name)
    try:
        reply, out = du.collect(kc, NESTED, timeout=120)
        results = [c["data"].get("text/plain") for t, c, b in out if t == "execute_result"]
        text = "".join(c["text"] for t, c, b in out if t == "stream" and c["name"] == "stdout")
        return reply["status"], results, text
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


# (where the forwarded result falls among the prints differs: ipykernel's own
# stdout is batched, cellbox keeps the order; the content must be the same)
mine, ref = nested_kernel("cellbox"), nested_kernel("python3")
tap.ok(mine == ref and mine == ("ok", ["42"], "nested\nok\n"),
       "execute_interactive on a nested kernel inside a cell: its result is forwarded, as by ipykernel",
       "cellbox %r\nipykernel %r" % (mine, ref))
