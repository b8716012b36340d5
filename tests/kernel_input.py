"""How the cellbox kernel reads what users type or paste, against ipykernel:
is_complete (what jupyter console and qtconsole ask at every Enter: complete,
incomplete with the indent of the next line, invalid) and IPython's cleanup
of pasted code (indented code, `>>>` and `In [1]:` sessions, leading blank
lines) before a cell runs. Output: TAP.
"""
import display_util as du
import kutil

tap = kutil.TAP()

IS_COMPLETE = [
    "x = 1", "for i in range(3):", "for i in range(3):\n    print(i)", "for i in range(3):\n    print(i)\n",
    "def f(", "%time x=1", "%%time\nx=1", "%%time", "%%time\nx=1\n\n", "!ls", "x = [1,\n2",
    "if True:\n    pass\nelse:", "'''abc", "x = 1 +", "1 +* 2", "?len", "len?", "@dec",
    "class A:\n    def f(self):", "async def f():\n    await g()", "await x", "\\", "x = 1;",
    "print('a' \\", "%%bash\necho hi", "%cd /tmp", "a = !ls", "%matplotlib", "  x = 1", "\tx=1", "lambda:",
    "try:\n    x\n", "match x:\n    case 1:", "x = '''\nabc'''", 'x = "abc', "def f():\n    return 1\n",
    "def f():\n    return 1", "if x:\n    if y:\n        pass", "if x:\n    if y:\n        pass\n", "@property",
    "with open('f') as f:", "while True:\n    break\n\n", "print(1)\n\n", ")", "x = (1,\n 2)", "# comment",
    "# comment\n", "x = 1 # trailing comment", "x = [\n", ">>> x = 1", ">>> for i in x:", "In [1]: for i in x:",
    "  if x:", "x = 1\ny = 2\n", "import", "from x import (a,", "f'{x'", "return", "yield 1", "x: int = 1",
    "def f(x: int) -> int:", "async for x in y:", "else:", "pass;", "1 if x else", "[x for x in",
    "{'a': 1,", "x = \\\n1", "\n\n", "   ", "if x:\n    y = 1\n  z = 2", "def f():\n\treturn 1\n",
]

# pasted code that IPython cleans up before running it
CELLS = [
    ("indented code", "  x = 1\n  y = 2\n  x + y"),
    ("tab-indented code", "\tz = 4\n\tz"),
    ("a pasted >>> session", ">>> a = 5\n>>> a"),
    ("a pasted >>> block with ...", ">>> for i in range(2):\n...     print(i)"),
    ("a pasted IPython session", "In [1]: b = 3\n   ...: b"),
    ("a prompt on the second line only", "c = 7\n>>> c"),
    ("leading blank lines", "\n\n\nd = 1\nd"),
    ("indentation that does not match the first line's", "  e = 1\nf = 2\nf"),
    ("an indented magic", "  %time g = 1\n"),
]


def run_all(name):
    km, kc = du.start(name)
    try:
        complete = []
        for code in IS_COMPLETE:
            msg_id = kc.is_complete(code)
            # its reply (a second kernel_info_reply of the start may still
            # be queued: jupyter_client asks again when the first is slow)
            m = kc.get_shell_msg(timeout=30)
            while m["parent_header"].get("msg_id") != msg_id:
                m = kc.get_shell_msg(timeout=30)
            r = m["content"]
            complete.append((r["status"], r.get("indent")))
        cells = []
        for _, code in CELLS:
            reply, out = du.collect(kc, code)
            msgs = [m for m in du.Normalizer().messages(du.merge_streams(out))]
            # %time's figures differ from run to run
            msgs = [m[:2] + ("<timings>",) if m[0] == "stream" and "Wall time" in m[2] else m for m in msgs]
            cells.append((reply["status"], reply.get("ename"), msgs))
        return complete, cells
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


ours, theirs = run_all("cellbox"), run_all("python3")
for code, a, b in zip(IS_COMPLETE, ours[0], theirs[0]):
    tap.ok(a == b, "is_complete as ipykernel: %r -> %s" % (code, b), "cellbox:   %r\nipykernel: %r" % (a, b))
for (name, _), a, b in zip(CELLS, ours[1], theirs[1]):
    tap.ok(a == b, "runs as under ipykernel: %s" % name, "cellbox:   %r\nipykernel: %r" % (a, b))
