"""A real frontend: Debian's Jupyter Notebook server with the cellbox kernel,
driven by Debian's headless Chromium through playwright-core (npm). The
page runs a notebook's cells; the test checks that it shows the printed
text, a pandas DataFrame table, a matplotlib image and an ipywidgets
slider, and that moving the slider in the page changes the value in the
kernel. The screenshot is kept as tests/browser_notebook.png in the build
folder. Skipped (not failed) when chromium, node or playwright-core is
missing. Output: TAP."""
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import nbformat

import browser_util
import kutil

tap = kutil.TAP()
HERE = os.path.dirname(os.path.abspath(__file__))
BUILD = os.environ.get("CELLBOX_BUILDDIR") or os.path.dirname(HERE)
SHOT = os.path.join(BUILD, "tests", "browser_notebook.png")
missing = browser_util.missing("playwright-core", programs=["jupyter-notebook"])
if missing:
    tap.skip("notebook in a real browser", "missing: " + ", ".join(missing))
    sys.exit(0)

CELLS = [
    'print("hello from cellbox")',
    'import pandas as pd\npd.DataFrame({"city": ["Oslo", "Lima", "Pune"], "temp": [3, 19, 31]})',
    'import matplotlib.pyplot as plt\nplt.plot([1, 4, 2, 8], marker="o")\nplt.title("cellbox inline plot");',
    'import ipywidgets as w\ns = w.IntSlider(value=5, min=0, max=10, description="level")\ndisplay(s)',
]
workdir = os.path.join(kutil.TMP, "nbdir")
os.makedirs(workdir)
nb = nbformat.v4.new_notebook()
nb.metadata["kernelspec"] = {"name": "cellbox", "display_name": "Python 3 (cellbox)", "language": "python"}
nb.cells = [nbformat.v4.new_code_cell(c) for c in CELLS]
nbformat.write(nb, os.path.join(workdir, "demo.ipynb"))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


port = free_port()
log = open(os.path.join(kutil.TMP, "notebook.log"), "w")
server = subprocess.Popen(
    ["jupyter-notebook", "--no-browser", "--port=%d" % port, "--ip=127.0.0.1", "--notebook-dir=" + workdir,
     "--NotebookApp.token=", "--NotebookApp.password=", "--NotebookApp.open_browser=False",
     "--MappingKernelManager.kernel_info_timeout=60"] + (["--allow-root"] if os.geteuid() == 0 else []),
    stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=dict(os.environ))


def stop_server():
    if server.poll() is None:
        try:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=15)
        except Exception:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=5)


try:
    base = "http://127.0.0.1:%d" % port
    deadline = time.time() + 60
    up = False
    while time.time() < deadline and server.poll() is None:
        try:
            with urllib.request.urlopen(base + "/api/kernelspecs", timeout=2) as r:
                specs = json.load(r)
                up = "cellbox" in specs.get("kernelspecs", {})
                break
        except Exception:
            time.sleep(0.3)
    if not tap.ok(up, "jupyter-notebook serves the cellbox kernelspec", open(log.name).read()[-2000:]):
        sys.exit(1)
    if os.path.exists(SHOT):
        os.unlink(SHOT)
    res = browser_util.run_driver(os.path.join(HERE, "browser_notebook.js"), base + "/notebooks/demo.ipynb", SHOT)
    diag = json.dumps(res, indent=1)[:3000]
    checks = res.get("checks", {})
    tap.ok(not res.get("error"), "the browser ran the notebook", diag)
    tap.eq(res.get("details", {}).get("implementation"), "cellbox", "the page talks to the cellbox kernel")
    tap.ok(checks.get("text"), "the page shows the printed text", diag)
    tap.ok(checks.get("dataframe"), "the page shows the DataFrame as a table", diag)
    tap.eq(res.get("details", {}).get("table"), ["Oslo", "3", "Lima", "19", "Pune", "31"], "the table holds the data")
    tap.ok(checks.get("image") and checks.get("image_decoded"), "the page shows the matplotlib figure (decoded PNG)", diag)
    tap.ok(checks.get("widget"), "the page shows the ipywidgets slider", diag)
    tap.ok(checks.get("widget_roundtrip"), "moving the slider in the page changes the value in the kernel", diag)
    tap.ok(os.path.exists(SHOT) and os.path.getsize(SHOT) > 10000, "screenshot kept: %s" % SHOT)
finally:
    stop_server()
    log.close()
