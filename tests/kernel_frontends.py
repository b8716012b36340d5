"""Real Jupyter frontends with the cellbox kernel: nbclient (API and the
`jupyter execute` CLI) runs a notebook, and jupyter console runs cells
non-interactively. Output: TAP."""
import os
import subprocess

import kutil

import nbformat
from nbclient import NotebookClient
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

tap = kutil.TAP()

nb = new_notebook(cells=[
    new_markdown_cell("# test"),
    new_code_cell("x = 6 * 7\nx"),
    new_code_cell("print('hello from nbclient')"),
    new_code_cell("from IPython.display import display, HTML\ndisplay(HTML('<b>bold</b>'))"),
    new_code_cell("import sys; print('warn', file=sys.stderr)"),
    new_code_cell("raise ValueError('expected')", metadata={"tags": ["raises-exception"]}),
    new_code_cell("x + 1"),
], metadata={"kernelspec": {"name": "cellbox", "display_name": "Python 3 (cellbox)", "language": "python"}})
path = os.path.join(kutil.TMP, "frontend.ipynb")
nbformat.write(nb, path)

client = NotebookClient(nbformat.read(path, as_version=4), timeout=60, kernel_name="cellbox")
out = client.execute()
cells = out.cells
tap.eq(cells[1].outputs[0]["data"]["text/plain"], "42", "nbclient: execute_result")
tap.eq(cells[1].execution_count, 1, "nbclient: execution_count")
tap.eq(cells[2].outputs[0]["text"], "hello from nbclient\n", "nbclient: stream")
tap.eq(cells[3].outputs[0]["data"]["text/html"], "<b>bold</b>", "nbclient: display_data from IPython.display")
tap.eq(cells[4].outputs[0]["name"], "stderr", "nbclient: stderr")
tap.eq(cells[5].outputs[0]["ename"], "ValueError", "nbclient: error output on a raises-exception cell")
tap.eq(cells[6].outputs[0]["data"]["text/plain"], "43", "nbclient: execution continues after it")
tap.eq(out.metadata["language_info"]["name"], "python", "nbclient: language_info copied")
try:
    nbformat.validate(out)
    tap.ok(True, "nbclient: the executed notebook is valid nbformat")
except Exception as e:
    tap.ok(False, "nbclient: the executed notebook is valid nbformat", e)

p = subprocess.run(["/usr/bin/jupyter-execute", "--kernel_name=cellbox", path], capture_output=True, text=True, timeout=120)
tap.eq(p.returncode, 0, "jupyter execute --kernel_name=cellbox exits 0")

p = subprocess.run(["/usr/bin/jupyter-console", "--kernel", "cellbox", "--simple-prompt"],
                   input="print('hi from console')\n6*7\nimport sys; sys.version_info[0]\n",
                   capture_output=True, text=True, timeout=120)
tap.ok(p.returncode == 0 and "hi from console" in p.stdout and "Out[2]: 42" in p.stdout and "Out[3]: 3" in p.stdout,
       "jupyter console runs cells non-interactively", p.stdout + p.stderr)

# exit() in a cell ends jupyter console, as with ipykernel: the console reads
# the reply (its ask_exit payload) only while the kernel process is alive, and
# the kernel used to exit 12 ms after sending it, before the console read it
# (the console then went on with a dead kernel: In [3] below)
for i in range(3):
    p = subprocess.run(["/usr/bin/jupyter-console", "--kernel", "cellbox", "--simple-prompt"],
                       input="print(1)\nexit()\nprint('after exit')\n", capture_output=True, text=True, timeout=120)
    if not (p.returncode == 0 and "Shutting down kernel" in p.stdout and "In [3]" not in p.stdout):
        break
tap.ok(p.returncode == 0 and "Shutting down kernel" in p.stdout and "In [3]" not in p.stdout,
       "jupyter console: exit() in a cell ends the console (3 of 3 times), nothing runs after it",
       p.stdout + p.stderr)

# a silent request that fails (a variable inspector's probe) aborts nothing
# queued behind it (ipykernel: `if not silent and ... stop_on_error`); a
# failing cell that is not silent still does
km, kc = kutil.start("cellbox")
try:
    got = {}
    for silent in (True, False):
        a = kc.execute("import time; time.sleep(0.3); 1/0", silent=silent)
        b = kc.execute("print('queued cell ran')")
        seen = {}
        while len(seen) < 2:
            r = kc.get_shell_msg(timeout=30)
            seen[r["parent_header"]["msg_id"]] = r["content"]["status"]
        got[silent] = (seen[a], seen[b])
    tap.eq(got, {True: ("error", "ok"), False: ("error", "aborted")},
           "a failing silent execute does not abort the cell queued behind it; a failing cell does")
finally:
    kc.stop_channels()
    km.shutdown_kernel(now=True)
