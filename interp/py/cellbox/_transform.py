"""IPython syntax -> plain Python: %magics, %%cell magics, !shell, obj? and
obj??. Only lines that start a logical line are rewritten: text inside
strings and brackets is left alone."""
import re

_HELP_RE = re.compile(r"^\s*(\?\??)?(%{0,2}[A-Za-z_][\w.]*(\[[^\]]*\])?|\*[\w.*]*)\s*(\?\??)?\s*$")
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


def transform_cell(code):
    if not code.endswith("\n"):
        code += "\n"   # as IPython: a cell magic's body ends with a newline
    lines = code.splitlines(True)
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
