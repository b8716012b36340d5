"""IPython syntax -> plain Python: %magics, %%cell magics, !shell, obj? and
obj??. Only lines that start a logical line are rewritten: text inside
strings and brackets is left alone."""
import re

_HELP_RE = re.compile(r"^\s*(\?\??)?(%{0,2}[A-Za-z_][\w.]*(\[[^\]]*\])?|(?=[\w.]*\*)[A-Za-z_*][\w.*]*)\s*(\?\??)?\s*$")
# IPython's help_end for a cell magic's name: `%%timeit?` is help, not a cell
_CELL_HELP_RE = re.compile(r"%%\w+\?")
_ASSIGN_RE = re.compile(r"^(\s*)([\w.,\s\[\]()*]+?)\s*=\s*([%!])(.*)$")
_NAME_RE = re.compile(r"^[A-Za-z_]\w*$")


def _logical_starts(lines):
    """Yields (index, is_start) for each physical line: whether the line
    begins a new logical line (not inside brackets, strings or after '\\')."""
    depth = 0
    quote = None  # current open triple/single quote
    cont = False
    for line in lines:
        yield depth == 0 and quote is None and not cont
        i, n = 0, len(line)
        cont = False
        while i < n:
            ch = line[i]
            if quote:
                if ch == "\\":
                    i += 2
                    continue
                if line.startswith(quote, i):
                    i += len(quote)
                    quote = None
                    continue
                i += 1
                continue
            if ch == "#":
                break
            if ch in "\"'":
                q = line[i:i + 3] if line[i:i + 3] in ('"""', "'''") else ch
                quote = q
                i += len(q)
                continue
            if ch in "([{":
                depth += 1
            elif ch in ")]}":
                depth = max(0, depth - 1)
            elif ch == "\\" and line[i + 1:].strip() == "":
                cont = True
            i += 1
        if quote and len(quote) == 1:
            quote = None  # an unterminated single-quoted string ends at the line end


def _magic_call(kind, body):
    body = body.strip()
    if kind == "!":
        if body.startswith("!"):
            return "get_ipython().getoutput(%r)" % body[1:].strip()
        return "get_ipython().system(%r)" % body
    name, _, args = body.partition(" ")
    return "get_ipython().run_line_magic(%r, %r)" % (name, args.strip())


def _help_call(line):
    m = _HELP_RE.match(line)
    if not m:
        return None
    pre, target, _, post = m.groups()
    marks = (pre or "") + (post or "")
    if not marks or (pre and post):
        return None
    magic = "pinfo2" if len(marks) == 2 else "pinfo"
    if target.startswith("*") or "*" in target:
        magic = "psearch"
    return "get_ipython().run_line_magic(%r, %r)" % (magic, target)


def transform_line(line):
    stripped = line.lstrip()
    indent = line[:len(line) - len(stripped)]
    body = stripped.rstrip("\n")
    nl = "\n" if line.endswith("\n") else ""
    if body.startswith("%") and body.endswith("?"):
        h = _help_call(body)   # %timeit? %%timeit?? : the magic's help
        if h:
            return indent + h + nl
    if body.startswith("%") and not body.startswith("%%"):
        return indent + _magic_call("%", body[1:]) + nl
    if body.startswith("!"):
        return indent + _magic_call("!", body[1:]) + nl
    if body in ("?", "??"):
        return indent + "get_ipython().show_usage()" + nl   # IPython's introduction
    if "?" in body:
        h = _help_call(body)
        if h:
            return indent + h + nl
    m = _ASSIGN_RE.match(line.rstrip("\n"))
    if m and "=" not in m.group(2) and not m.group(2).strip().startswith(("if ", "for ", "while ")):
        ind, target, kind, rest = m.groups()
        if kind == "!":
            call = "get_ipython().getoutput(%r)" % rest.strip()
        else:
            call = _magic_call("%", rest)
        return "%s%s = %s%s" % (ind, target.strip(), call, nl)
    return line


# IPython's cleanup transforms, applied first: leading empty lines, the
# first line's indentation (pasted indented code), and the prompts of pasted
# sessions (">>> ", "... ", "In [1]: ", "   ...: ")
_INDENT_RE = re.compile(r"^[ \t]+")
_CLASSIC_FIRST = re.compile(r"^>>>( |$)")
_CLASSIC = re.compile(r"^(>>>|\.\.\.)( |$)")
_IPY_PROMPT = re.compile(r"^(In \[\d+\]: |\s*\.{3,}: ?)")


# while the debugger is on, leading empty lines stay (as in ipykernel):
# breakpoints are set on the lines of the cell as the frontend shows it
KEEP_LEADING_EMPTY_LINES = False


def needs_cleanup(code):
    """Whether cleanup() could change code (cheap: the first two lines)."""
    if code[:1] in (" ", "\t", "\n", "\r"):
        return True
    head = code.split("\n", 2)
    return any(_CLASSIC.match(h) or _IPY_PROMPT.match(h) for h in head[:2])


def cleanup_lines(lines):
    for i, line in enumerate(lines):   # leading_empty_lines
        if line and not line.isspace():
            lines = lines[i:] if not KEEP_LEADING_EMPTY_LINES else lines
            break
    if not lines:
        return lines
    m = _INDENT_RE.match(lines[0])   # leading_indent
    if m:
        space = m.group(0)
        lines = [l[len(space):] if l.startswith(space) else l for l in lines]
    for first, prompt in ((_CLASSIC_FIRST, _CLASSIC), (_IPY_PROMPT, _IPY_PROMPT)):   # the prompts
        if first.match(lines[0]) or (len(lines) > 1 and prompt.match(lines[1])):
            lines = [prompt.sub("", l, count=1) for l in lines]
    return lines


def cleanup(code):
    """IPython's cleanup transforms on a cell's text."""
    return "".join(cleanup_lines(code.splitlines(True))) if needs_cleanup(code) else code


def transform_cell(code):
    if not code.endswith("\n"):
        code += "\n"   # as IPython: a cell magic's body ends with a newline
    lines = cleanup_lines(code.splitlines(True)) if needs_cleanup(code) else code.splitlines(True)
    # a cell magic takes the whole cell
    first = 0
    while first < len(lines) and not lines[first].strip():
        first += 1
    if first < len(lines) and lines[first].lstrip().startswith("%%") \
            and not _CELL_HELP_RE.match(lines[first].lstrip()):
        head = lines[first].strip()[2:]
        name, _, args = head.partition(" ")
        body = "".join(lines[first + 1:])
        return "get_ipython().run_cell_magic(%r, %r, %r)\n" % (name, args.strip(), body)
    out = []
    for line, start in zip(lines, _logical_starts(lines)):
        if start and line.lstrip()[:1] in ("%", "!") or start and "?" in line or start and ("= %" in line or "= !" in line or "=%" in line or "=!" in line):
            out.append(transform_line(line))
        else:
            out.append(line)
    return "".join(out)
