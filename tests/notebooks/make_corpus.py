#!/usr/bin/python3
"""Regenerates tests/notebooks/corpus/*.ipynb: the notebooks that
tests/nb_corpus.py executes with `cellbox run` and with nbclient and compares.

Each notebook is deterministic (no time, randomness, hash order or memory
addresses in its outputs beyond what the comparison normalises) and exercises
one area of what an executor must get right. Cell ids are fixed so the files
are stable; two notebooks are nbformat 4.4 (no ids) on purpose.

The "cellbox" list in each notebook's metadata.cellbox_test says whether the
cellbox kernel is expected to give the same outputs as ipykernel
("same"), or why not ("skip: reason").

    /usr/bin/python3 tests/notebooks/make_corpus.py tests/notebooks/corpus
"""
import os
import sys

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook
from nbformat.v4.nbbase import new_raw_cell

KS = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}

C = "code"
M = "md"
R = "raw"

NOTEBOOKS = {
    "01_expressions": ("same", [
        (C, "1 + 1"),
        (C, "x = 6 * 7\nx"),
        (C, "x / 4"),
        (C, "'a string'"),
        (C, "None"),
        (C, "x;"),
        (C, "[1, 2.5, 'three', None, True]"),
        (C, "{'b': 1, 'a': [1, 2], 'c': {'d': None}}"),
        (C, "(1,)"),
        (C, "2 ** 100"),
        (C, "1e-5, 1e16, 0.1 + 0.2, float('inf')"),
        (C, "b'bytes\\x00\\xff'"),
    ]),
    "02_print": ("same", [
        (C, "print('hello')"),
        (C, "print('a'); print('b')\nprint('c', end='')\nprint('d')"),
        (C, "for i in range(3):\n    print(i, i * i)"),
        (C, "print('no newline at the end', end='')"),
        (C, "print('tab\\there', 'and', 'sep', sep='|')"),
        (C, "print()\nprint('')\nprint('\\n\\n')"),
    ]),
    "03_stderr": ("same", [
        (C, "import sys\nprint('to stderr', file=sys.stderr)"),
        (C, "sys.stderr.write('partial ')\nsys.stderr.write('line\\n')\nsys.stderr.flush()"),
        (C, "print('out only')"),
    ]),
    "04_stream_big": ("same", [
        (C, "for i in range(5000):\n    print('line', i)"),
        (C, "print('x' * 100000)"),
        (C, "print('\\n'.join(str(i) for i in range(2000)))"),
    ]),
    "05_display": ("same", [
        (C, "from IPython.display import display, HTML, Markdown, Math, Latex, JSON, Pretty"),
        (C, "display(HTML('<b>bold</b>'))"),
        (C, "display(Markdown('*emphasis* and `code`'))"),
        (C, "display(Math(r'\\int_0^1 x\\,dx'))"),
        (C, "display(Latex(r'$\\alpha$'))"),
        (C, "display(HTML('<i>one</i>'), Markdown('**two**'))"),
        (C, "HTML('<p>as a result</p>')"),
        (C, "display('a plain string', 42)"),
    ]),
    "06_display_update": ("same", [
        (C, "from IPython.display import display, update_display, HTML"),
        (C, "h = display(HTML('<p>first</p>'), display_id=True)"),
        (C, "h.update(HTML('<p>second</p>'))"),
        (C, "display('shown twice', display_id='twice')\ndisplay('shown twice', display_id='twice')"),
        (C, "update_display('updated both', display_id='twice')"),
        (C, "h2 = display('in this cell', display_id='here')\nprint('between')\nh2.update('updated in this cell')"),
    ]),
    "07_clear_output": ("same", [
        (C, "from IPython.display import clear_output, display"),
        (C, "print('gone')\nclear_output()\nprint('kept')"),
        (C, "print('also gone')\nclear_output(wait=True)\nprint('replaces it')"),
        (C, "for i in range(5):\n    clear_output(wait=True)\n    print('step', i)"),
        (C, "print('stays')\nclear_output(wait=True)"),
        (C, "display('x')\nclear_output()"),
    ]),
    "08_errors_allowed": ("same-errors", [
        (M, "The middle cell raises on purpose; it is tagged `raises-exception`."),
        (C, "print('before')"),
        (C, "print('partial output')\nraise ValueError('expected failure')", ["raises-exception"]),
        (C, "print('after the error')"),
        (C, "1 / 0", ["raises-exception"]),
        (C, "'still running'"),
    ]),
    "09_skip_execution": ("same", [
        (C, "x = 1"),
        (C, "x = 2\nprint('must not run')", ["skip-execution"]),
        (C, "x"),
    ]),
    "10_markdown_raw": ("same", [
        (M, "# Title\n\nSome *markdown* with a [link](https://example.invalid) and\n\n- a list\n- of items\n"),
        (R, "raw cell: \\LaTeX{} or rst, untouched"),
        (C, "print('code between')"),
        (M, "Unicode in markdown: é ü 漢字 🙂"),
        (R, ""),
    ]),
    "11_unicode": ("same", [
        (C, "print('é ü ß ç ñ')"),
        (C, "print('漢字 かな 한국어 Русский Ελληνικά עברית العربية')"),
        (C, "'🙂🚀 emoji and \\u2028 line separator'"),
        (C, "s = 'naïve café'\ns.upper()"),
        (C, "print('\\x1b[31mred\\x1b[0m ansi')"),
    ]),
    "12_matplotlib": ("same", [
        (C, "import matplotlib\nimport matplotlib.pyplot as plt"),
        (C, "fig, ax = plt.subplots(figsize=(3, 2))\nax.plot([0, 1, 2], [0, 1, 4])\nax.set_title('squares')\nplt.show()"),
        (C, "fig, ax = plt.subplots(figsize=(2, 2))\nax.bar(['a', 'b'], [3, 5])"),
        (C, "plt.close('all')\nprint('closed')"),
    ]),
    "13_numpy_pandas": ("same", [
        (C, "import numpy as np\nimport pandas as pd"),
        (C, "np.arange(12).reshape(3, 4)"),
        (C, "np.linspace(0, 1, 5)"),
        (C, "df = pd.DataFrame({'a': [1, 2, 3], 'b': [0.5, 1.5, 2.5], 'c': ['x', 'y', 'z']})\ndf"),
        (C, "df.describe()"),
        (C, "print(df.to_string())"),
        (C, "df['a'].sum()"),
    ]),
    "14_json_output": ("same", [
        (C, "from IPython.display import JSON, display"),
        (C, "display(JSON({'int': 1, 'float': 1.0, 'small': 1e-7, 'list': [1, 2.5], 'nested': {'ok': True, 'none': None}}))"),
        (C, "display({'application/json': {'a': 1.5}, 'text/plain': 'a bundle'}, raw=True)"),
        (C, "display({'application/vnd.custom+json': {'x': [1, 2]}, 'text/plain': 'custom'}, raw=True)"),
    ]),
    "15_result_types": ("same", [
        (C, "set([3, 1, 2])"),
        (C, "frozenset([1])"),
        (C, "range(5)"),
        (C, "list(range(30))"),
        (C, "{'k%d' % i: i for i in range(5)}"),
        (C, "3.14159"),
        (C, "complex(1, 2)"),
        (C, "True"),
        (C, "print\n"),
    ]),
    "16_functions_classes": ("same", [
        (C, "def fib(n):\n    a, b = 0, 1\n    for _ in range(n):\n        a, b = b, a + b\n    return a\n\nfib(50)"),
        (C, "class Point:\n    def __init__(self, x, y):\n        self.x, self.y = x, y\n    def __repr__(self):\n        return f'Point({self.x}, {self.y})'\n\nPoint(1, 2)"),
        (C, "class Rich:\n    def _repr_html_(self):\n        return '<b>rich html</b>'\n    def __repr__(self):\n        return 'Rich()'\n\nRich()"),
        (C, "class Md:\n    def _repr_markdown_(self):\n        return '**md**'\n    def _repr_latex_(self):\n        return '$x^2$'\n    def __repr__(self):\n        return 'Md()'\n\nMd()"),
        (C, "[Point(i, -i) for i in range(3)]"),
        (C, "lambda_ = lambda x: x + 1\nlambda_(41)"),
    ]),
    "17_empty_cells": ("same", [
        (C, ""),
        (C, "   \n\n"),
        (C, "y = 5"),
        (C, "# only a comment"),
        (C, "y"),
        (C, "y;"),
        (C, "\n\ny * 2\n\n"),
    ]),
    "18_magics_shell": ("same", [
        (C, "%env CELLBOX_CORPUS_VAR=hello"),
        (C, "import os\nos.environ['CELLBOX_CORPUS_VAR']"),
        (C, "import os\nos.path.basename(os.getcwd())"),
    ]),
    "19_cwd_files": ("same", [
        (C, "with open('corpus_data.txt') as f:\n    print(f.read())"),
        (C, "import os\nsorted(p for p in os.listdir('.') if p.startswith('corpus_data'))"),
    ]),
    "20_subprocess": ("same", [
        (C, "import subprocess\nprint(subprocess.run(['echo', 'child'], capture_output=True, text=True).stdout)"),
        (C, "import sys\nr = subprocess.run([sys.executable, '-c', 'print(21 * 2)'], capture_output=True, text=True)\nr.stdout.strip()"),
    ]),
    "21_parameters_cell": ("same", [
        (M, "A papermill-style notebook run without parameters."),
        (C, "alpha = 0.5\nname = 'default'\nn = 3", ["parameters"]),
        (C, "print(f'{name}: {alpha * n}')"),
    ]),
    "22_carriage_returns": ("same", [
        (C, "for i in range(4):\n    print(f'\\rprogress {i}', end='')\nprint()"),
        (C, "print('a\\r\\nb\\rc')"),
        (C, "print('bell\\x07 backspace\\x08 formfeed\\x0c vt\\x0b')"),
    ]),
    "23_mimebundles": ("same", [
        (C, "from IPython.display import display\ndisplay({'text/plain': 'plain', 'text/html': '<p>html</p>', 'text/markdown': '*md*'}, raw=True)"),
        (C, "display({'text/plain': 'svg', 'image/svg+xml': '<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"4\" height=\"4\">\\n<rect width=\"4\" height=\"4\"/>\\n</svg>'}, raw=True)"),
        (C, "display({'text/plain': 'png', 'image/png': 'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=='}, metadata={'image/png': {'width': 1, 'height': 1}}, raw=True)"),
        (C, "display({'text/plain': 'js', 'application/javascript': 'console.log(1);\\nconsole.log(2);'}, raw=True)"),
    ]),
    "24_execution_count": ("same", [
        (C, "a = 1"),
        (M, "markdown does not count"),
        (C, ""),
        (C, "a += 1", ["skip-execution"]),
        (C, "a"),
        (C, "In[1] if 'In' in dir() else 'a = 1'"),
    ]),
    "25_stdin_disallowed": ("same", [
        (C, "input('name? ')", ["raises-exception"]),
        (C, "print('went on')"),
    ]),
    "26_widget_comms": ("same", [
        (C, "from ipykernel.comm import Comm\n"
            "state = {'_model_name': 'IntSliderModel', '_model_module': '@jupyter-widgets/controls',\n"
            "         '_model_module_version': '1.5.0', 'value': 3}\n"
            "c = Comm(target_name='jupyter.widget', comm_id='corpus-widget', data={'state': state, 'buffer_paths': []})"),
        (C, "c.send({'method': 'update', 'state': {'value': 7}, 'buffer_paths': []})"),
        (C, "c.send({'method': 'update', 'state': {'data': None}, 'buffer_paths': [['data']]}, buffers=[b'\\x00\\x01binary'])"),
        (C, "print('widget state stored')"),
    ]),
    # nbclient's Output-widget emulation, with the ipywidgets 7 protocol
    # spoken by hand (Debian 12's ipywidgets 6 makes nbclient 0.7 fail):
    # while the widget's msg_id is a request's, that request's outputs go to
    # the widget (and back to the kernel), not to the cell
    "28_output_widget": ("same", [
        (C, "import sys\nfrom ipykernel.comm import Comm\n"
            "state = {'_model_name': 'OutputModel', '_model_module': '@jupyter-widgets/output',\n"
            "         '_model_module_version': '1.0.0', 'outputs': [], 'msg_id': ''}\n"
            "c = Comm(target_name='jupyter.widget', comm_id='corpus-output', data={'state': state, 'buffer_paths': []})\n"
            "def capture(on):\n"
            "    sys.stdout.flush(); sys.stderr.flush()\n"
            "    mid = get_ipython().kernel.get_parent()['header']['msg_id'] if on else ''\n"
            "    c.send({'method': 'update', 'state': {'msg_id': mid}, 'buffer_paths': []})"),
        (C, "from IPython.display import display, HTML, clear_output\n"
            "capture(True)\nprint('captured one')\nprint('captured two')\n"
            "display(HTML('<i>in the widget</i>'))\ncapture(False)\nprint('in the cell')"),
        (C, "capture(True)\nclear_output(wait=True)\nprint('after a clear')\ncapture(False)\n'result in the cell'"),
        (C, "print('nothing captured')"),
    ]),
    "27_shell_escape": ("same", [
        (C, "!echo from a shell"),
        (C, "files = !ls corpus_data.txt\nfiles"),
    ]),
}

FORMAT_44 = {"02_print", "17_empty_cells"}


def build(name, spec):
    expect, cells = spec
    nb = new_notebook()
    nb.metadata["kernelspec"] = dict(KS)
    nb.metadata["cellbox_test"] = {"cellbox": expect}
    for i, c in enumerate(cells):
        kind, src = c[0], c[1]
        tags = c[2] if len(c) > 2 else None
        cell = new_code_cell(src) if kind == C else new_markdown_cell(src) if kind == M else new_raw_cell(src)
        cell["id"] = "%s-%02d" % (name.split("_")[0], i)
        if tags:
            cell.metadata["tags"] = list(tags)
        nb.cells.append(cell)
    if name == "10_markdown_raw":
        nb.cells[0]["attachments"] = {"dot.png": {"image/png": "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="}}
        nb.cells[1].metadata["format"] = "text/latex"
        nb.metadata["custom_tool"] = {"keep": ["me", 1, 2.0, None], "nested": {"x": "é"}}
        nb.cells[2].metadata["collapsed"] = False
        nb.cells[2].metadata["my_extension"] = {"anything": True}
    if name == "09_skip_execution":
        # stale outputs in the skipped cell must be kept as they are
        nb.cells[1].outputs = [nbformat.v4.new_output("stream", name="stdout", text="old output\n")]
        nb.cells[1].execution_count = 7
    if name in FORMAT_44:
        nb.nbformat_minor = 4
        for cell in nb.cells:
            del cell["id"]
    nbformat.validate(nb)
    return nb


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "corpus")
    os.makedirs(out, exist_ok=True)
    for name, spec in NOTEBOOKS.items():
        with open(os.path.join(out, name + ".ipynb"), "w") as fh:
            nbformat.write(build(name, spec), fh)
    with open(os.path.join(out, "corpus_data.txt"), "w") as fh:
        fh.write("data file next to the notebooks\n")
    print("wrote %d notebooks to %s" % (len(NOTEBOOKS), out))


if __name__ == "__main__":
    main()
