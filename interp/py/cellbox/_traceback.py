"""Tracebacks of the user's code in IPython's form, with ipykernel's colours.

The error message's ``traceback`` is a list of strings, one per block, as
IPython 8 writes them:

    ---------------------------------------------------------------------------
    ZeroDivisionError                         Traceback (most recent call last)
    Cell In [2], line 1
    ----> 1 outer(1)
    Cell In [1], line 6, in outer(y)
          4 def outer(y):
          5     z = y - 1
    ----> 6     return inner(z)
    ...
    ZeroDivisionError: division by zero

Each frame shows its file (``Cell In [n]`` for cells), line number,
function and arguments, then its code: the failing statement with up to
two statements of context on each side, within the function. Code is
coloured like pygments' default style in a 256-colour terminal, the failing
expression (from the code object's positions) on a yellow background.
Chained exceptions come first, joined by Python's sentences. The kernel's
own frames are dropped. No pygments, IPython or stack_data needed.

That is IPython's "Context" mode; %xmode picks another (set_mode):

- "Verbose": Context plus the arguments' values in each frame's header and,
  under the failing line, the variables of the failing statement (with
  stack_data, as IPython, when it is installed; else the plain names);
- "Plain": one block per frame, "  Cell In [n], line 3 in f" and the
  failing line, as Python prints them (IPython's ListTB, its colours);
- "Minimal": only the "Name: message" line of each exception.

A SyntaxError of a cell that does not compile looks the same in every mode.
"""
import builtins
import io
import keyword
import linecache
import os
import sys
import tokenize
import traceback

__all__ = ["format_exception", "format_text", "set_mode", "MODES"]

# the colour scheme of ipykernel ("Linux")
RED = "\x1b[0;31m"
GREEN = "\x1b[0;32m"
BGREEN = "\x1b[1;32m"
CYAN = "\x1b[0;36m"
BLUE = "\x1b[0;34m"
PURPLE = "\x1b[0;35m"
BPURPLE = "\x1b[1;35m"
NORMAL = "\x1b[0m"
WIDTH = 75
_NUM_WIDTH = 7

# pygments' default style in 256 colours: (foreground, bold/italic)
_KEYWORD = ("38;5;28", "01")
_OP_WORD = ("38;5;129", "01")
_BUILTIN = ("38;5;28", "")
_EXCEPTION = ("38;5;167", "01")
_FUNCTION = ("38;5;21", "")
_NAMESPACE = ("38;5;21", "01")
_OPERATOR = ("38;5;241", "")
_STRING = ("38;5;124", "")
_COMMENT = ("38;5;66", "03")
_DECORATOR = ("38;5;129", "")
_PUNCT = set("()[]{},:;")

_CAUSE = "\nThe above exception was the direct cause of the following exception:\n"
_CONTEXT = "\nDuring handling of the above exception, another exception occurred:\n"

# IPython's exception reporting modes, in the order %xmode cycles through them
MODES = ("Plain", "Context", "Verbose", "Minimal")
mode = "Context"


def set_mode(name=""):
    """%xmode: switch to a mode of MODES (ValueError for another name, with
    IPython's message); an empty name cycles to the next one."""
    global mode
    if not name:
        mode = MODES[(MODES.index(mode) + 1) % len(MODES)]
    elif name not in MODES:
        raise ValueError("Unrecognized mode in FormattedTB: <%s>\nValid modes: %s" % (name, list(MODES)))
    else:
        mode = name
    return mode


# -- code colouring ---------------------------------------------------------------------

def _style_of(tok, prev):
    t, s = tok.type, tok.string
    if t == tokenize.NAME:
        if s in ("in", "is", "not", "and", "or"):
            return _OP_WORD
        if keyword.iskeyword(s):
            return _KEYWORD
        if prev in ("def",):
            return _FUNCTION
        if prev in ("class", "import", "from"):
            return _NAMESPACE
        b = getattr(builtins, s, None)
        if b is not None and s != "_":
            if isinstance(b, type) and issubclass(b, BaseException):
                return _EXCEPTION
            return _BUILTIN
        if s == "self":
            return _BUILTIN
        return None
    if t == tokenize.NUMBER:
        return _OPERATOR
    if t == tokenize.STRING or t in _FSTRING_TYPES:
        return _STRING
    if t == tokenize.COMMENT:
        return _COMMENT
    if t == tokenize.OP:
        if s == "@" and prev in (None, "NEWLINE"):
            return _DECORATOR
        return None if s in _PUNCT else _OPERATOR
    return None


_FSTRING_TYPES = {getattr(tokenize, n) for n in ("FSTRING_START", "FSTRING_MIDDLE", "FSTRING_END")
                  if hasattr(tokenize, n)}


def _tokens(lines):
    """Tokens of a piece of source (best effort: a fragment may not parse)."""
    src = "".join(lines)
    out = []
    try:
        for tok in tokenize.generate_tokens(io.StringIO(src).readline):
            out.append(tok)
    except (tokenize.TokenError, IndentationError, SyntaxError):
        pass
    return out


def _paint(text, style, hl):
    """text in a pygments-like style, on yellow when hl."""
    if not text:
        return ""
    if scheme == "NoColor":
        return text
    if False:
        return ""
    fg, attr = style if style else (None, "")
    codes = ";".join(c for c in (fg, attr, "43" if hl else None) if c)
    if not codes:
        return text
    resets = ";".join(c for c in ("39" if fg else None, "00" if attr else None, "49" if hl else None) if c)
    return "\x1b[%sm%s\x1b[%sm" % (codes, text, resets)


def _highlight(lines, first_lineno, span):
    """Colour lines (a list of str, numbered from first_lineno); span is
    ((line, col), (end_line, end_col)) of the failing expression or None.
    Returns the coloured lines (without their newlines)."""
    toks = _tokens([l if l.endswith("\n") else l + "\n" for l in lines])
    styles = {}  # (row, col) -> (end_col, style) for the tokens on one line
    prev = None
    for tok in toks:
        if tok.type in (tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT, tokenize.ENDMARKER):
            if tok.type == tokenize.NEWLINE:
                prev = "NEWLINE"
            continue
        st = _style_of(tok, prev)
        (r0, c0), (r1, c1) = tok.start, tok.end
        if r0 == r1:
            styles.setdefault(r0, []).append((c0, c1, st))
        else:  # a multi-line string: one piece per line
            for r in range(r0, r1 + 1):
                line = lines[r - 1] if r - 1 < len(lines) else ""
                a = c0 if r == r0 else 0
                b = c1 if r == r1 else len(line.rstrip("\n"))
                styles.setdefault(r, []).append((a, b, st))
        prev = tok.string
    out = []
    for i, line in enumerate(lines):
        row = i + 1
        lineno = first_lineno + i
        text = line.rstrip("\n")

        def in_span(col):
            if not span:
                return False
            (l0, c0), (l1, c1) = span
            pos = (lineno, col)
            return (l0, c0) <= pos < (l1, c1)

        pieces = []
        col = 0
        for a, b, st in sorted(styles.get(row, [])):
            if a > col:
                pieces.append((text[col:a], None, col))
            pieces.append((text[a:b], st, a))
            col = max(col, b)
        if col < len(text):
            pieces.append((text[col:], None, col))
        rendered = []
        for chunk, st, start in pieces:
            # split a chunk where the highlight starts or ends
            cur, cur_hl, buf = start, None, ""
            for k, ch in enumerate(chunk):
                h = in_span(start + k)
                if cur_hl is None:
                    cur_hl = h
                if h != cur_hl:
                    rendered.append(_paint(buf, st, cur_hl))
                    buf, cur_hl = "", h
                buf += ch
            if buf:
                rendered.append(_paint(buf, st, bool(cur_hl)))
        out.append("".join(rendered))
    return out


# -- frames --------------------------------------------------------------------------------

# cells' code files: file -> N (see _kernel._cell_filename)
CELL_FILES = {}


def _cell_name(filename):
    """N of a cell's code file (see _kernel._cell_filename), or of IPython's
    own name <ipython-input-N-HASH>."""
    if filename in CELL_FILES:
        return str(CELL_FILES[filename])
    if filename.startswith("<ipython-input-") and filename.endswith(">"):
        n = filename[15:-1].partition("-")[0]
        if n.isdigit():
            return n
    return None


def _compress_user(path):
    home = os.path.expanduser("~")
    if home and home != "/" and path.startswith(home + os.sep):
        return "~" + path[len(home):]
    return path


def _link(filename, lineno, colour=None, normal=None):
    colour = FILENAMEEM if colour is None else colour
    normal = NORMAL if normal is None else normal
    n = _cell_name(filename)
    if n is not None:
        return "Cell %sIn [%s], line %s%s" % (colour, n, lineno, normal)
    return "File %s%s:%s%s" % (colour, _compress_user(filename), lineno, normal)


def _logical_lines(filename):
    """[(first, last)] line ranges of the statements/logical lines of a file."""
    lines = linecache.getlines(filename)
    if not lines:
        return [], lines
    ranges = []
    start = None
    try:
        for tok in tokenize.generate_tokens(io.StringIO("".join(lines)).readline):
            if tok.type in (tokenize.COMMENT, tokenize.NL, tokenize.INDENT, tokenize.DEDENT, tokenize.ENDMARKER):
                continue
            if start is None:
                start = tok.start[0]
            if tok.type == tokenize.NEWLINE:
                ranges.append((start, tok.end[0]))
                start = None
    except (tokenize.TokenError, IndentationError, SyntaxError):
        pass
    if start is not None:
        ranges.append((start, len(lines)))
    return ranges, lines


def _with_comments(ranges, lines):
    """The statements' ranges and the comment lines between them as pieces
    of their own (blank lines at their ends left out): stack_data's pieces,
    which IPython shows as a frame's context (a comment above the failing
    line is part of it)."""
    def blank(i):
        return not lines[i - 1].strip()

    out, prev = [], 0
    for a, b in list(ranges) + [(len(lines) + 1, None)]:
        s, e = prev + 1, a - 1
        while s <= e and blank(s):
            s += 1
        while e >= s and blank(e):
            e -= 1
        if s <= e:
            out.append((s, e))
        if b is not None:
            out.append((a, b))
            prev = b
    return out


def _context(filename, code, lineno, pieces_around):
    """(first_lineno, lines) around lineno: the statement holding it and up
    to pieces_around pieces (statements, runs of comments) before and after,
    within the function."""
    ranges, lines = _logical_lines(filename)
    ranges = _with_comments(ranges, lines)
    if not lines or lineno < 1 or lineno > len(lines):
        return None, []
    lo_scope = code.co_firstlineno if code.co_name != "<module>" else 1
    hi_scope = len(lines)
    if code.co_name != "<module>":
        try:
            hi_scope = max(l for _, _, l in code.co_lines() if l is not None)
        except ValueError:
            pass
        hi_scope = max(hi_scope, lineno)
    scoped = [r for r in ranges if r[0] >= lo_scope and r[1] <= hi_scope]
    cur = next((i for i, r in enumerate(scoped) if r[0] <= lineno <= r[1]), None)
    if cur is None:
        return [lineno], lines
    lo = max(0, cur - pieces_around)
    hi = min(len(scoped) - 1, cur + pieces_around)
    shown = []   # line numbers, None where lines are left out
    for a, b in scoped[lo:hi + 1]:
        if b - a + 1 > 6 and not (a <= lineno <= b):
            # a long statement around: its first 3 and last 2 lines
            shown.extend(list(range(a, a + 3)) + [None] + list(range(b - 1, b + 1)))
        else:
            shown.extend(range(a, b + 1))
    return shown, lines


def _args(frame, verbose=False):
    import inspect
    if verbose:
        import pydoc   # IPython's eqrepr: pydoc's short repr, without addresses

        def value(v):
            try:
                return "=" + pydoc.text.repr(v)
            except Exception:
                return "=UNRECOVERABLE REPR FAILURE"
    else:
        def value(v):
            return ""
    try:
        a = inspect.getargvalues(frame)
        return inspect.formatargvalues(a.args, a.varargs, a.keywords, a.locals, formatvalue=value)
    except Exception:
        return "(***failed resolving arguments***)"


def _variables(tb):
    """[(expression, value)] of the failing statement of a frame, as IPython's
    Verbose mode lists them (stack_data's variables_in_executing_piece); the
    plain names of the statement when stack_data is not installed. None when
    the frame cannot be inspected."""
    try:
        import stack_data
    except ImportError:
        return _names_of_statement(tb)
    try:
        return [(v.name, v.value) for v in stack_data.FrameInfo(tb).variables_in_executing_piece]
    except Exception:
        return None


def _names_of_statement(tb):
    import ast
    frame = tb.tb_frame
    ranges, lines = _logical_lines(frame.f_code.co_filename)
    piece = next(((a, b) for a, b in ranges if a <= tb.tb_lineno <= b), None)
    if piece is None:
        return []
    text = "".join(lines[piece[0] - 1:piece[1]])
    try:
        tree = ast.parse(text.strip())
    except SyntaxError:
        try:
            tree = ast.parse(text.strip() + "\n    pass")   # a block's header: for/if/def ...
        except SyntaxError:
            return []
    out, seen = [], set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.Name) or node.id in seen:
            continue
        seen.add(node.id)
        if node.id in frame.f_locals:
            value = frame.f_locals[node.id]
        elif node.id in frame.f_globals:
            value = frame.f_globals[node.id]
        else:
            continue
        if getattr(builtins, node.id, out) is value or getattr(value, "__name__", None) == node.id:
            continue   # obvious: a builtin, or a function/class/module under its own name
        out.append((node.id, value))
    return out


def _locals_line(tb):
    """Verbose mode: the line of variables shown under the failing line."""
    indent = " " * 8
    variables = _variables(tb)
    if variables is None:
        items = ["Exception trying to inspect frame. No more locals available."]
    else:
        items = []
        for name, value in variables:
            try:
                text = repr(value)
            except Exception:
                text = "<unprintable %s object>" % type(value).__name__
            items.append("%s %s= %s%s" % (name, VALEM, text, NORMAL))
    if not items:
        return ""
    return indent + ("%s\n%s%s" % (VALEM, indent, NORMAL)).join(items)


def _format_frame(frame, summary, pieces_around, tb=None, verbose=False):
    code = frame.f_code
    lineno = summary.lineno or frame.f_lineno
    head = _link(summary.filename, lineno)
    if code.co_name != "<module>":
        name = getattr(code, "co_qualname", code.co_name)
        head += ", in %s%s%s%s%s" % (VNAME, name, VALEM, _args(frame, verbose), NORMAL)
    out = head + "\n"
    shown, lines = _context(summary.filename, code, lineno, pieces_around)
    if not shown:
        return out
    numbered = [n for n in shown if n is not None]
    first, last = min(numbered), max(numbered)
    block = lines[first - 1:last]
    # dedent the lines shown as a whole (IPython shows a method's body unindented)
    indents = [len(lines[n - 1]) - len(lines[n - 1].lstrip()) for n in numbered if lines[n - 1].strip()]
    cut = min(indents) if indents else 0
    block = [t[cut:] if t[:cut].isspace() or not t[:cut] else t.lstrip() for t in block]
    span = None
    if getattr(summary, "colno", None) is not None and summary.end_colno is not None:
        span = ((summary.lineno, max(0, summary.colno - cut)),
                (summary.end_lineno or summary.lineno, max(0, summary.end_colno - cut)))
    # colour the whole range at once: tokens (strings...) span lines
    coloured = _highlight(block, first, span)
    for n in shown:
        if n is None:
            out += "%s   (...)%s\n" % (LINENOEM, NORMAL)
        elif n == lineno:
            out += "%s%s%s %s\n" % (LINENOEM, _arrow(n), NORMAL, coloured[n - first])
            if verbose and tb is not None:
                values = _locals_line(tb)
                if values:
                    out += values + "\n"
        else:
            out += "%s%*d%s %s\n" % (LINENO, _NUM_WIDTH, n, NORMAL, coloured[n - first])
    return out


def _arrow(n):
    """'----> 6', '--> 346': the arrow fills the number column."""
    s = str(n)
    pad = _NUM_WIDTH - len(s)
    if pad >= 2:
        return "-" * (pad - 2) + "> " + s
    return (">" if pad == 1 else "") + s


def _is_kernel_frame(filename, skip_file):
    return filename == skip_file or filename.startswith("<cellbox>")


def _frames(tb, skip_file):
    """[(frame, FrameSummary, traceback entry)] of the user's code."""
    triples = []
    for summary in traceback.extract_tb(tb):   # with the failing expression's columns
        # an exception raised by a trace function (pdb without stdin) has its
        # frame twice in a row: once is enough
        if not (triples and triples[-1][2].tb_frame is tb.tb_frame and triples[-1][2].tb_lineno == tb.tb_lineno):
            triples.append((tb.tb_frame, summary, tb))
        tb = tb.tb_next
    # the kernel's frames, and those of asyncio's loop when the kernel ran a
    # top-level await (run_until_complete), come before the cell's
    aio = sys.modules.get("asyncio")
    aio_dir = os.path.dirname(getattr(aio, "__file__", "") or "") + os.sep if aio else None
    i = 0
    while i < len(triples) and (_is_kernel_frame(triples[i][1].filename, skip_file)
                                or (aio_dir and triples[i][1].filename.startswith(aio_dir))):
        i += 1
    return triples[i:]


def _notes(exc):
    """The lines of the exception's PEP 678 notes (add_note()), as Python
    prints them under the exception's line; IPython 8.5 leaves them out, so
    pytest's, hypothesis' or pydantic's explanations were lost."""
    try:
        notes = getattr(exc, "__notes__", None)
    except Exception:
        return []
    if notes is None:
        return []

    def text(value, what, func):
        try:
            return func(value)
        except Exception:
            return "<%s %s() failed>" % (what, func.__name__)

    import collections.abc
    if isinstance(notes, collections.abc.Sequence):   # as Python 3.11's traceback module
        return [line for note in notes for line in text(note, "note", str).split("\n")]
    return [text(notes, "__notes__", repr)]


def _group_tree(exc):
    """The sub-exceptions of an exception group (asyncio.TaskGroup's), as
    Python's traceback module draws them ('+-+---- 1 ----' and a '| ' block
    for each, with its traceback): IPython 8.5 shows only 'ExceptionGroup:
    ... (2 sub-exceptions)', hiding the errors themselves. '' otherwise."""
    if not isinstance(exc, BaseExceptionGroup):
        return ""
    try:
        lines = "".join(traceback.TracebackException(type(exc), exc, None, compact=True)
                        .format(chain=False)).split("\n")
        for i, line in enumerate(lines):
            if line.lstrip().startswith("+-+"):
                return "\n" + "\n".join(lines[i:]).rstrip("\n")
    except Exception:   # never lose the error because of its display
        pass
    return ""


def _exc_line(exc):
    name = type(exc).__name__
    try:
        msg = str(exc)
    except Exception:
        msg = "<unprintable %s object>" % name
    return ("%s%s%s: %s" % (EXCNAME, name, NORMAL, msg) + "".join("\n" + n for n in _notes(exc))
            + _group_tree(exc))


def _header(exc):
    name = type(exc).__name__
    return "%s%s%s%s" % (EXCNAME, name, NORMAL, "Traceback (most recent call last)".rjust(WIDTH - len(name)))


def _syntax_error(exc):
    """IPython's form for code that does not compile: one block."""
    fn = exc.filename or "<unknown>"
    n = _cell_name(fn)
    where = ("Cell %sIn [%s], line %s" % (FILENAMEEM, n, exc.lineno) if n is not None
             else "File %s%s:%s" % (FILENAMEEM, _compress_user(fn), exc.lineno))
    out = "%s  %s%s%s\n" % (NORMALEM, where, NORMALEM, NORMAL)
    if exc.text:
        text = exc.text.rstrip("\n")
        stripped = text.lstrip()
        out += "%s    %s%s\n" % (LINE, stripped, NORMAL)
        if exc.offset:
            caret = max(0, exc.offset - 1 - (len(text) - len(stripped)))
            out += "%s    %s^%s\n" % (CARET, " " * caret, NORMAL)
    out += "%s%s%s%s:%s %s\n" % (EXCNAME, type(exc).__name__, NORMAL, EXCNAME, NORMAL, exc.msg)
    return out


def _collapse(frames):
    """IPython's (stack_data's) repeated frames, so that a deep recursion reads
    as a few frames and one line, not thousands of frames (a RecursionError
    after sys.setrecursionlimit(100000) made a 40 MB error in 16 s): in a run
    of frames whose (code, line) comes more than 3 times in the traceback,
    each (code, line) is shown at its first two and its last place; the
    frames between are skipped. -> [(True, triple) | (False, [triples])]"""
    keys = [(f.f_code, tb.tb_lineno) for f, _, tb in frames]
    counts = {}
    for k in keys:
        counts[k] = counts.get(k, 0) + 1
    shown = [counts[k] <= 3 for k in keys]
    start = 0
    while start < len(keys):
        if shown[start]:
            start += 1
            continue
        end = start
        while end < len(keys) and counts[keys[end]] > 3:
            end += 1
        seen, last = {}, {}
        for i in range(start, end):
            k = keys[i]
            if seen.get(k, 0) < 2:
                seen[k] = seen.get(k, 0) + 1
                shown[i] = True
            last[k] = i
        for i in last.values():
            shown[i] = True
        start = end
    items = []
    for i, triple in enumerate(frames):
        if shown[i]:
            items.append((True, triple))
        elif items and not items[-1][0]:
            items[-1][1].append(triple)
        else:
            items.append((False, [triple]))
    return items


def _skipped(triples):
    """'    [... skipping similar frames: f at line 1 (2970 times)]', most
    frequent first, as IPython."""
    counts = {}
    for frame, _, tb in triples:
        k = (frame.f_code, tb.tb_lineno)
        counts[k] = counts.get(k, 0) + 1
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0][0].co_name))
    what = ", ".join("%s at line %d (%d times)" % (getattr(code, "co_qualname", code.co_name), line, n)
                     for (code, line), n in ranked)
    return "    %s[... skipping similar frames: %s]%s\n" % (EXCNAME, what, NORMAL)


def _block(exc, skip_file, pieces_around, verbose=False):
    frames = _frames(exc.__traceback__, skip_file)
    parts = [_header(exc)]
    for one, item in _collapse(frames):
        if not one:
            parts.append(_skipped(item))
            continue
        frame, summary, tb = item
        try:
            parts.append(_format_frame(frame, summary, pieces_around, tb, verbose))
        except Exception:  # never lose the error because of its display
            parts.append("%s\n" % _link(summary.filename, summary.lineno or 0))
    parts.append(_exc_line(exc))
    return parts


# -- Plain and Minimal (IPython's ListTB) -------------------------------------------------

def _exception_only(exc):
    """'Name: message' as IPython's ListTB writes it (an exception's .msg
    wins over str(), a SyntaxError has its place and caret)."""
    if isinstance(exc, SyntaxError):
        return _syntax_error(exc)
    stype = "%s%s%s" % (EXCNAME, type(exc).__name__, NORMAL)
    try:
        msg = exc.msg
    except Exception:
        try:
            msg = str(exc)
        except Exception:
            msg = "<unprintable %s object>" % type(exc).__name__
    notes = "".join(n + "\n" for n in _notes(exc))
    if msg:
        return "%s%s:%s %s\n" % (stype, EXCNAME, NORMAL, msg) + notes
    return stype + "\n" + notes


def _plain_block(exc, skip_file):
    frames = _frames(exc.__traceback__, skip_file)
    parts = []
    if frames:
        parts.append("Traceback %s(most recent call last)%s:\n" % (NORMALEM, NORMAL))
    for i, (frame, summary, tb) in enumerate(frames):
        if i == len(frames) - 1:   # the last frame is emphasised
            normal, name_c, file_c, line_c = NORMALEM, NAMEEM, FILENAMEEM, LINE
        else:
            normal, name_c, file_c, line_c = NORMAL, NAME, FILENAME, ""
        item = "%s  %s" % (normal, _link(summary.filename, summary.lineno, file_c, normal))
        if summary.name != "<module>":
            item += " in %s%s%s\n" % (name_c, summary.name, normal)
        else:
            item += "\n"
        if summary.line:
            item += "%s    %s%s\n" % (line_c, summary.line.strip(), normal)
        parts.append(item)
    tree = _group_tree(exc)
    parts.append(_exception_only(exc) + (tree[1:] + "\n" if tree else ""))
    return parts


def _chain(exc):
    """The exceptions of a chain, newest first, and the sentence joining each
    to the next one."""
    chain, links, seen = [exc], [], {id(exc)}
    e = exc
    while True:
        if e.__cause__ is not None:
            nxt, link = e.__cause__, _CAUSE
        elif e.__context__ is not None and not e.__suppress_context__:
            nxt, link = e.__context__, _CONTEXT
        else:
            break
        if id(nxt) in seen:
            break
        seen.add(id(nxt))
        chain.append(nxt)
        links.append(link)
        e = nxt
    return chain, links


def format_exception(exc, skip_frames_of=None):
    """-> list of strings, the error message's traceback in the current mode
    (see the module doc)."""
    if isinstance(exc, SyntaxError) and not _frames(exc.__traceback__, skip_frames_of):
        return [_syntax_error(exc)]
    chain, links = _chain(exc)
    out = [] if mode in ("Plain", "Minimal") else ["%s%s%s" % (TOPLINE, "-" * WIDTH, NORMAL)]
    for i in range(len(chain) - 1, -1, -1):
        if mode == "Minimal":
            out.append(_exception_only(chain[i]))
        elif mode == "Plain":
            out += _plain_block(chain[i], skip_frames_of)
        else:
            out += _block(chain[i], skip_frames_of, 2 if i == 0 else 1, verbose=mode == "Verbose")
        if i > 0:
            out.append(links[i - 1])
    return out


def format_text(exc, skip_frames_of=None):
    """The traceback as one text, as IPython prints it to a stream."""
    return ("" if mode in ("Plain", "Minimal") else "\n").join(format_exception(exc, skip_frames_of))


# -- %colors: IPython's exception colour schemes -------------------------------------
SCHEMES = ("NoColor", "Linux", "LightBG", "Neutral")
scheme = "Neutral"


# IPython's excolors: role -> (NoColor, Linux, LightBG, Neutral) ANSI codes
_ROLES = {
    "TOPLINE": ("", "1;31", "0;31", "0;31"), "FILENAME": ("", "0;32", "1;32", "1;32"),
    "LINENO": ("", "0;32", "1;32", "1;32"), "NAME": ("", "0;35", "1;35", "1;35"),
    "VNAME": ("", "0;36", "0;36", "0;36"), "VAL": ("", "0;32", "1;32", "1;32"),
    "EM": ("", "1;36", "0;36", "0;36"), "NORMALEM": ("", "1;36", "0;36", "0;36"),
    "FILENAMEEM": ("", "1;32", "0;32", "0;32"), "LINENOEM": ("", "1;32", "0;32", "0;32"),
    "NAMEEM": ("", "1;35", "0;35", "0;35"), "VALEM": ("", "1;34", "0;34", "0;34"),
    "EXCNAME": ("", "1;31", "0;31", "0;31"), "LINE": ("", "1;33", "0;31", "0;31"),
    "CARET": ("", "1;37", "0", "0"), "NORMAL": ("", "0", "0", "0"),
}


def set_colors(name):
    """%colors: IPython's exception colour scheme (NoColor: none at all)."""
    global scheme
    if name not in SCHEMES:
        raise ValueError("Unrecognized color scheme: %s" % name)
    scheme = name
    i = SCHEMES.index(name)
    g = globals()
    for role, codes in _ROLES.items():
        g[role] = "\x1b[%sm" % codes[i] if codes[i] else ""


set_colors("Neutral")
