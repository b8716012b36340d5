"""Display updates and clear_output as a frontend sees them.

A display updated 1000 times sends 1000 update_display_data messages with
its display_id, and nbclient (a real frontend-side consumer of the
protocol) keeps one output with the last value; clear_output(wait=True)
in a loop leaves only the last output; a display made in one cell is
updated from a later cell. The notebooks nbclient produces with cellbox
and with ipykernel must hold the same outputs. Output: TAP.
"""
import copy

import nbformat
from nbclient import NotebookClient

import display_util as du
import kutil

tap = kutil.TAP()

# raw protocol: every update is sent
km, kc = du.start("cellbox")
try:
    r, out = du.collect(kc, "h = display('start', display_id='counter')\nfor i in range(1, 1001):\n    h.update(i)")
    ups = [c for t, c, b in out if t == "update_display_data"]
    tap.eq(len(ups), 1000, "1000 updates send 1000 update_display_data messages")
    tap.ok(all(c["transient"] == {"display_id": "counter"} for c in ups), "every update carries the display_id")
    tap.eq([c["data"]["text/plain"] for c in ups[:3]] + [ups[-1]["data"]["text/plain"]], ["1", "2", "3", "1000"],
           "updates arrive in order, complete")
    tap.eq([t for t, c, b in out if t == "display_data"], ["display_data"], "one display_data before them")
finally:
    kc.stop_channels()
    km.shutdown_kernel(now=True)

CELLS = [
    "from IPython.display import display, clear_output, update_display, HTML\n"
    "h = display('start', display_id='counter')\nfor i in range(1, 1001):\n    h.update(i)",
    "for i in range(100):\n    clear_output(wait=True)\n    print('step', i)",
    "early = display(HTML('<b>early</b>'), display_id=True)",
    "print('other cell')\nearly.update(HTML('<b>updated from a later cell</b>'))",
    "display('x')\nclear_output()\nprint('after clear')",
    "for i in range(3):\n    display(i)\n    clear_output(wait=True)",
]


def execute(kernel):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c) for c in CELLS]
    client = NotebookClient(copy.deepcopy(nb), kernel_name=kernel, timeout=120, startup_timeout=60)
    return client.execute()


def outputs(nb):
    res = []
    for cell in nb.cells:
        outs = []
        for o in cell.outputs:
            o = dict(o)
            o.pop("execution_count", None)
            if "data" in o:
                o["data"] = dict(o["data"])
            if "metadata" in o:
                o["metadata"] = dict(o["metadata"])
            # consecutive stream outputs of one name show as one text: merged,
            # as ipykernel's flush timer may cut a print's line between two
            # messages (nbclient 0.7 keeps them as two outputs)
            if (o.get("output_type") == "stream" and outs and outs[-1].get("output_type") == "stream"
                    and outs[-1].get("name") == o.get("name")):
                outs[-1]["text"] += o["text"]
                continue
            outs.append(o)
        res.append(outs)
    return res


ours = outputs(execute("cellbox"))
theirs = outputs(execute("python3"))

tap.eq([o.get("data", {}).get("text/plain") for o in ours[0]], ["1000"],
       "nbclient keeps one output for the display updated 1000 times, with the last value")
tap.eq(ours[1], [{"output_type": "stream", "name": "stdout", "text": "step 99\n"}],
       "clear_output(wait=True) in a loop leaves the last output only")
tap.eq([o.get("data", {}).get("text/html") for o in ours[2]], ["<b>updated from a later cell</b>"],
       "a display is updated from a later cell")
tap.eq([o.get("text") for o in ours[4]], ["after clear\n"], "clear_output() clears what was shown before")
tap.eq([o.get("data", {}).get("text/plain") for o in ours[5]], ["2"],
       "a pending clear_output(wait=True) at the end of a cell leaves the last output")
for i, (a, b) in enumerate(zip(ours, theirs)):
    tap.eq(a, b, "nbclient outputs of cell %d are the same as with ipykernel" % (i + 1))
